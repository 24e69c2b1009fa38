"""Keys and small cryptographic helpers composed from vetted primitives.

- Subkeys are derived from the server secret with HKDF-SHA256, one per purpose,
  so a key is never used for two things.
- Random tokens (refresh tokens, client secrets, invitation and session tokens)
  carry 256 bits of entropy and are stored only as SHA-256 digests: a database
  leak does not hand out working tokens.
- Small staff secrets (a TOTP seed) are sealed with AES-256-GCM under a key
  derived from the master key, with associated data binding the ciphertext to
  its table, column and row. Client data gets per-client keys (Tink) later.
- Access tokens are ES256 JWTs signed with a P-256 key derived from the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.settings import get_settings

_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def _hkdf(material: str, purpose: str, length: int = 32) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=b"advocase-v1", info=purpose.encode()
    ).derive(material.encode())


def derive_secret_key(purpose: str, length: int = 32) -> bytes:
    """A subkey of ``ADVOCASE_SECRET_KEY`` for one purpose."""
    return _hkdf(get_settings().secret_key_value(), purpose, length)


def derive_master_key(purpose: str, length: int = 32) -> bytes:
    """A subkey of ``ADVOCASE_MASTER_KEY`` for one purpose."""
    return _hkdf(get_settings().master_key_value(), purpose, length)


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> str:
    """Stored form of a high-entropy token (a slow hash adds nothing at 256 bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_digest(purpose: str, value: str) -> str:
    """HMAC of ``value``: a stable, non-reversible key for lookups and counters."""
    return hmac.new(derive_secret_key(purpose), value.encode(), hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _aad(table: str, column: str, row_id: str) -> bytes:
    return f"{table}\x00{column}\x00{row_id}".encode()


def seal(plaintext: str, *, table: str, column: str, row_id: str) -> str:
    """Encrypt a small secret bound to its place (table, column, row)."""
    key = derive_master_key("advocase/staff-secret/v1")
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), _aad(table, column, row_id))
    return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(token: str, *, table: str, column: str, row_id: str) -> str:
    """Decrypt what :func:`seal` produced for the same place; raises ValueError otherwise."""
    version, _, body = token.partition(".")
    if version != "v1":
        raise ValueError("unknown sealed-value version")
    raw = base64.urlsafe_b64decode(body)
    key = derive_master_key("advocase/staff-secret/v1")
    try:
        return AESGCM(key).decrypt(raw[:12], raw[12:], _aad(table, column, row_id)).decode()
    except Exception as exc:  # noqa: BLE001 - InvalidTag and friends: one answer
        raise ValueError("sealed value does not open here") from exc


@lru_cache(maxsize=4)
def _signing_key_for(secret: str) -> ec.EllipticCurvePrivateKey:
    seed = int.from_bytes(_hkdf(secret, "advocase/jwt-signing/v1", 48), "big")
    return ec.derive_private_key(seed % (_P256_ORDER - 1) + 1, ec.SECP256R1())


def jwt_signing_key() -> ec.EllipticCurvePrivateKey:
    """The P-256 key that signs access tokens (stable for a given secret key)."""
    return _signing_key_for(get_settings().secret_key_value())
