"""Encryption at rest for secrets Tollgate must keep (Stripe keys, webhook secrets).

AES-256-GCM with a key derived from TOLLGATE_SECRET by HKDF, a fresh nonce per value, and
the purpose bound in as associated data, so a ciphertext copied into another column or row
does not decrypt. Format: "v1." + base64url(nonce || ciphertext+tag).
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_PREFIX = "v1."


class SecretBox:
    def __init__(self, master_secret: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"tollgate secrets at rest v1"
        ).derive(master_secret.encode())
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, *, purpose: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), purpose.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str, *, purpose: str) -> str:
        if not token.startswith(_PREFIX):
            raise ValueError("not a Tollgate ciphertext")
        raw = base64.urlsafe_b64decode(token[len(_PREFIX) :])
        return self._aead.decrypt(raw[:12], raw[12:], purpose.encode()).decode()


def redact(secret: str | None) -> str:
    """What logs and pages may show of a secret: its kind and last four characters."""
    if not secret:
        return ""
    head, _, _ = secret.rpartition("_")
    prefix = head + "_" if head and len(head) <= 12 else ""
    return f"{prefix}…{secret[-4:]}"
