"""Access tokens: short-lived ES256 JWTs (joserfc), the algorithm pinned on both sides.

Staff tokens name their session (``sid``) so a revoked session stops its access
tokens at once; partner tokens carry a ``jti`` kept in the database for RFC 7009
revocation. Refresh tokens are opaque random strings (see the service).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID, uuid4

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from joserfc.jwt import JWTClaimsRegistry

from app.core.crypto import jwt_signing_key
from app.settings import get_settings

ALGORITHM = "ES256"
STAFF_AUDIENCE = "advocase:staff"
PARTNER_AUDIENCE = "advocase:partner"
ENROLMENT_SCOPE = "mfa:enrol"
LEEWAY_SECONDS = 30


@lru_cache(maxsize=2)
def _key_for(secret: str) -> ECKey:
    key = ECKey.import_key(jwt_signing_key())
    key.ensure_kid()
    return key


def signing_key() -> ECKey:
    return _key_for(get_settings().secret_key_value())


def public_jwks() -> dict[str, Any]:
    """The JWK Set clients may use to verify our tokens (public part only)."""
    public = signing_key().as_dict(private=False)
    public |= {"use": "sig", "alg": ALGORITHM}
    return {"keys": [public]}


@dataclass(frozen=True)
class AccessClaims:
    subject: str
    audience: str
    org_id: UUID
    token_id: str
    expires_at: int
    session_id: UUID | None = None
    role: str | None = None
    scope: str = ""


def issue(claims: dict[str, Any], *, audience: str, lifetime_seconds: int) -> tuple[str, int]:
    now = int(time.time())
    payload = {
        **claims,
        "iss": get_settings().issuer,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
        "jti": claims.get("jti") or uuid4().hex,
    }
    header = {"alg": ALGORITHM, "kid": signing_key().kid, "typ": "at+jwt"}
    return jwt.encode(header, payload, signing_key(), algorithms=[ALGORITHM]), lifetime_seconds


def issue_staff_token(*, user_id: UUID, org_id: UUID, role: str, session_id: UUID,
                      scope: str = "") -> tuple[str, int]:
    claims: dict[str, Any] = {"sub": str(user_id), "org": str(org_id), "role": role,
                              "sid": str(session_id)}
    if scope:
        claims["scope"] = scope
    return issue(claims, audience=STAFF_AUDIENCE,
                 lifetime_seconds=get_settings().access_token_minutes * 60)


class InvalidToken(Exception):
    """The token is not one we issued for this audience, or it has expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_verified: OrderedDict[str, AccessClaims] = OrderedDict()
_verified_lock = threading.Lock()
VERIFIED_CACHE_SIZE = 10_000


def decode(token: str) -> AccessClaims:
    """Verify signature, algorithm, issuer, audience and lifetime; InvalidToken otherwise.

    A client presents the same token for up to 15 minutes: the result of checking
    its signature is kept (by the exact token string) in a bounded cache, while
    its lifetime is checked on every call. Revocation is checked by the caller
    against the database each time, never cached.
    """
    if not token or len(token) > 4096 or token.count(".") != 2:
        raise InvalidToken("malformed")
    with _verified_lock:
        cached = _verified.get(token)
        if cached is not None:
            _verified.move_to_end(token)
    if cached is not None:
        if cached.expires_at + LEEWAY_SECONDS < time.time():
            raise InvalidToken("expired_token")
        return cached
    claims = _verify(token)
    with _verified_lock:
        _verified[token] = claims
        if len(_verified) > VERIFIED_CACHE_SIZE:
            _verified.popitem(last=False)
    return claims


def _verify(token: str) -> AccessClaims:
    try:
        decoded = jwt.decode(token, signing_key(), algorithms=[ALGORITHM])
    except JoseError as exc:
        raise InvalidToken("signature") from exc
    except (ValueError, TypeError) as exc:
        raise InvalidToken("malformed") from exc
    if decoded.header.get("alg") != ALGORITHM:
        raise InvalidToken("algorithm")
    claims = decoded.claims
    registry = JWTClaimsRegistry(
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": get_settings().issuer},
        aud={"essential": True, "values": [STAFF_AUDIENCE, PARTNER_AUDIENCE]},
        exp={"essential": True},
        sub={"essential": True},
        jti={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise InvalidToken(getattr(exc, "error", "claims")) from exc
    try:
        return AccessClaims(
            subject=str(claims["sub"]),
            audience=str(claims["aud"]),
            org_id=UUID(str(claims["org"])),
            token_id=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            session_id=UUID(str(claims["sid"])) if claims.get("sid") else None,
            role=claims.get("role"),
            scope=str(claims.get("scope") or ""),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidToken("claims") from exc
