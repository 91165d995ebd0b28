from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from app.core.crypto import SecretBox, redact


def test_round_trip_and_binding() -> None:
    box = SecretBox("master-secret")
    sealed = box.encrypt("sk_test_123", purpose="integration:1:api_key")
    assert "sk_test_123" not in sealed
    assert box.decrypt(sealed, purpose="integration:1:api_key") == "sk_test_123"
    assert box.encrypt("sk_test_123", purpose="x") != box.encrypt("sk_test_123", purpose="x")  # fresh nonce
    with pytest.raises(InvalidTag):
        box.decrypt(sealed, purpose="integration:2:api_key")
    with pytest.raises(InvalidTag):
        SecretBox("another-secret").decrypt(sealed, purpose="integration:1:api_key")


def test_redact() -> None:
    assert redact("sk_test_abcdefgh1234") == "sk_test_…1234"
    assert redact("whsec_abcd9876") == "whsec_…9876"
    assert redact(None) == ""
