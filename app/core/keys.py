"""API keys and customer tokens: generation, hashing, signing. No database here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

SERVER_KEY_PREFIX = "tg_sk_"
PUBLISHABLE_KEY_PREFIX = "tg_pk_"


def new_server_key() -> str:
    return SERVER_KEY_PREFIX + secrets.token_urlsafe(32)


def new_publishable_key() -> str:
    return PUBLISHABLE_KEY_PREFIX + secrets.token_urlsafe(18)


def hash_key(key: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough: no dictionary to attack.
    return hashlib.sha256(key.encode()).hexdigest()


def key_hint(key: str) -> str:
    return key[:6] + "…" + key[-4:]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_customer_token(signing_key: bytes, customer_id: str, expires_at: int) -> str:
    """`<expires_at>.<base64url(HMAC-SHA256(key, "<customer_id>.<expires_at>"))>`: the documented formula."""
    mac = hmac.new(signing_key, f"{customer_id}.{expires_at}".encode(), hashlib.sha256).digest()
    return f"{expires_at}.{_b64(mac)}"


def verify_customer_token(
    signing_key: bytes, customer_id: str, token: str, *, now: float | None = None
) -> bool:
    try:
        expires_text, _mac = token.split(".", 1)
        expires_at = int(expires_text)
    except ValueError:
        return False
    if expires_at < (time.time() if now is None else now):
        return False
    expected = sign_customer_token(signing_key, customer_id, expires_at)
    return hmac.compare_digest(expected, token)
