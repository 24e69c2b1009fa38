"""Staff access tokens that must be refused: every way of forging or replaying one."""

from __future__ import annotations

import base64
import json
import time

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from app.identity import tokens
from tests.support.identity import bearer, make_org, make_user, staff_session, staff_token


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.fixture
def signed_in(db):
    user = make_user(db, make_org(db), "advocate")
    token = staff_token(db, user)
    db.commit()
    return user, token


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def refused(client: TestClient, token: str) -> None:
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["type"].endswith("invalid-token")
    assert "invalid_token" in response.headers["www-authenticate"]


def test_the_valid_token_works(client, signed_in) -> None:
    assert client.get("/api/v1/me", headers=bearer(signed_in[1])).status_code == 200


def test_alg_none_is_refused(client, signed_in) -> None:
    header, payload, _ = signed_in[1].split(".")
    refused(client, f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.")


def test_hs256_signed_with_the_public_key_is_refused(client, signed_in) -> None:
    public = tokens.signing_key().as_dict(private=False)
    secret = OctKey.import_key(json.dumps(public).encode())
    forged = jwt.encode({"alg": "HS256"}, claims_of(signed_in[1]), secret, algorithms=["HS256"])
    refused(client, forged)


def test_tampered_claims_are_refused(client, signed_in) -> None:
    header, payload, signature = signed_in[1].split(".")
    claims = claims_of(signed_in[1]) | {"role": "supervisor"}
    refused(client, f"{header}.{b64(claims)}.{signature}")


def test_another_key_is_refused(client, signed_in) -> None:
    other = ECKey.generate_key("P-256")
    forged = jwt.encode({"alg": "ES256", "kid": tokens.signing_key().kid},
                        claims_of(signed_in[1]), other, algorithms=["ES256"])
    refused(client, forged)


def test_expired_token_is_refused(client, db, signed_in) -> None:
    user, _ = signed_in
    session = staff_session(db, user)
    db.commit()
    expired, _ = tokens.issue({"sub": str(user.id), "org": str(user.org_id), "role": user.role,
                               "sid": str(session.id)}, audience=tokens.STAFF_AUDIENCE,
                              lifetime_seconds=-120)
    refused(client, expired)


def test_wrong_audience_and_wrong_issuer_are_refused(client, db, signed_in) -> None:
    user, token = signed_in
    claims = claims_of(token)
    for change in ({"aud": "someone-else"}, {"iss": "https://attacker.example"}):
        forged = jwt.encode({"alg": "ES256"}, claims | change, tokens.signing_key(),
                            algorithms=["ES256"])
        refused(client, forged)


def test_a_staff_token_cannot_pose_as_another_user(client, db, signed_in) -> None:
    user, token = signed_in
    other = make_user(db, make_org(db), "supervisor")
    db.commit()
    # Correctly signed (as if the key leaked) but naming a session that is not theirs.
    forged = jwt.encode({"alg": "ES256"}, claims_of(token) | {"sub": str(other.id)},
                        tokens.signing_key(), algorithms=["ES256"])
    refused(client, forged)


def test_revoked_session_is_refused_even_with_a_cached_verification(client, signed_in) -> None:
    _, token = signed_in
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
    refused(client, token)


@pytest.mark.parametrize("value", ["", "Bearer", "Basic abc", "Bearer a.b", "Bearer " + "x" * 5000])
def test_malformed_authorization_headers(client, value) -> None:
    response = client.get("/api/v1/me", headers={"Authorization": value} if value else {})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_cached_verification_still_checks_expiry(signed_in, monkeypatch) -> None:
    _, token = signed_in
    tokens.decode(token)
    later = time.time() + 16 * 60 + tokens.LEEWAY_SECONDS
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(tokens.InvalidToken):
        tokens.decode(token)
