"""Signing secrets and signatures in the style of Standard Webhooks.

A secret is ``whsec_`` + base64 of 32 random bytes; the HMAC key is those bytes. A
delivery carries ``webhook-id`` (the event id, the same on every retry),
``webhook-timestamp`` (unix seconds of this attempt) and ``webhook-signature``:
``v1,`` + base64 of HMAC-SHA256(key, f"{id}.{timestamp}.{body}"). The receiver
recomputes it, compares in constant time, and refuses timestamps far from its clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not a secret
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("not a webhook signing secret")
    return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)


def signature(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def headers(secret: str, *, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id=message_id, timestamp=timestamp,
                                       body=body),
    }


def verify(secret: str, *, message_id: str, timestamp: int, body: bytes,
           signature_header: str) -> bool:
    """True when one of the space-separated signatures in the header matches (what a
    receiver does; used by the tests and shown in the README)."""
    expected = signature(secret, message_id=message_id, timestamp=timestamp, body=body)
    return any(hmac.compare_digest(expected.encode(), given.encode())
               for given in signature_header.split())
