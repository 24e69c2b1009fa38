"""Partner apps and the OAuth2 server: client credentials, revocation, metadata, admin routes.

Failure cases first. Tokens are checked where they matter: on an API route, where a
valid partner token gets 403 (staff-only route) and a dead one 401.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlmodel import Session

from app.core import audit, ratelimit
from app.core.access import PARTNER_SCOPES
from app.db import utcnow
from app.identity import oauth, partners, tokens
from app.identity.models import Org, PartnerApp, PartnerToken, StaffUser
from tests.support.identity import bearer, make_org, make_partner_app, make_user, staff_token

ALL_SCOPES = " ".join(PARTNER_SCOPES)
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def fresh_limits() -> Iterator[None]:
    ratelimit.reset_stores()
    yield
    ratelimit.reset_stores()


def _address() -> str:
    # Its own client address per test, so per-address counters never meet (shared Redis).
    raw = uuid.uuid4().bytes
    return f"198.18.{raw[0]}.{raw[1]}"


@pytest.fixture
def api(make_app) -> Iterator[TestClient]:
    with TestClient(make_app(), raise_server_exceptions=False,
                    client=(_address(), 50000)) as client:
        yield client


@dataclass
class Agency:
    org: Org
    admin: StaffUser
    admin_token: str
    app: PartnerApp
    secret: str


@pytest.fixture
def agency(db: Session) -> Agency:
    org = make_org(db)
    admin = make_user(db, org, "admin")
    app, secret = make_partner_app(db, org, scopes=("referrals:read", "resources:read"))
    token = staff_token(db, admin)
    db.commit()
    return Agency(org, admin, token, app, secret)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def request_token(api: TestClient, client_id: str, secret: str, *, how: str = "basic",
                  **form: str):
    form.setdefault("grant_type", "client_credentials")
    if how == "basic":
        return api.post("/oauth/token", data=form, headers=basic(client_id, secret))
    return api.post("/oauth/token", data=form | {"client_id": client_id,
                                                  "client_secret": secret})


def issue(api: TestClient, app: PartnerApp, secret: str, **form: str) -> str:
    response = request_token(api, app.client_id, secret, **form)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def revoke(api: TestClient, app: PartnerApp, secret: str, token: str):
    return api.post("/oauth/revoke", data={"token": token}, headers=basic(app.client_id, secret))


def events(db: Session, action: str) -> list[audit.AuditEvent]:
    return list(db.scalars(sa.select(audit.AuditEvent).where(audit.AuditEvent.action == action)
                           .order_by(audit.AuditEvent.at)))


def assert_oauth_error(response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error
    assert set(body) <= {"error", "error_description", "error_uri"}
    assert response.headers["cache-control"] == "no-store"
    return body


def token_state_on_api(api: TestClient, token: str) -> int:
    """401 if the token is refused, 403 if it is accepted (the route is staff-only)."""
    return api.get("/api/v1/me", headers=bearer(token)).status_code


# --- client authentication failures -----------------------------------------------------------


def test_wrong_secret_is_401_invalid_client_and_audited_without_the_secret(api, db, agency):
    response = request_token(api, agency.app.client_id, "not-the-secret-at-all")
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert "not-the-secret-at-all" not in response.text

    [event] = events(db, "oauth.client_auth_failed")
    assert event.outcome == "denied"
    assert event.org_id == agency.org.id
    assert event.object_id == str(agency.app.id)
    assert event.details == {"endpoint": "token", "reason": "wrong_secret"}
    assert "not-the-secret-at-all" not in json.dumps(event.model_dump(mode="json"))


def test_wrong_secret_by_post_is_401_too(api, agency):
    response = request_token(api, agency.app.client_id, "wrong", how="post")
    assert_oauth_error(response, 401, "invalid_client")


def test_unknown_client_gets_the_same_answer_as_a_wrong_secret(api, db, agency):
    wrong = request_token(api, agency.app.client_id, "wrong-secret")
    unknown = request_token(api, "pa_no-such-client", "wrong-secret")
    assert_oauth_error(unknown, 401, "invalid_client")
    assert unknown.json() == wrong.json()
    assert unknown.headers["www-authenticate"] == wrong.headers["www-authenticate"]
    failures = events(db, "oauth.client_auth_failed")
    system = [e for e in failures if e.org_id is None]
    assert len(system) == 1 and system[0].details["reason"] == "unknown_client"
    assert "pa_no-such-client" not in json.dumps(system[0].model_dump(mode="json"))


def test_no_client_credentials_is_401(api, agency):
    response = api.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert_oauth_error(response, 401, "invalid_client")


def test_secret_of_another_app_does_not_authenticate(api, db, agency):
    other, other_secret = make_partner_app(db, agency.org)
    db.commit()
    response = request_token(api, agency.app.client_id, other_secret)
    assert_oauth_error(response, 401, "invalid_client")


def test_both_auth_methods_at_once_is_invalid_request(api, agency):
    response = api.post("/oauth/token", headers=basic(agency.app.client_id, agency.secret),
                        data={"grant_type": "client_credentials",
                              "client_id": agency.app.client_id, "client_secret": agency.secret})
    assert_oauth_error(response, 400, "invalid_request")


def test_client_id_beside_basic_must_agree_with_it(api, db, agency):
    other, _ = make_partner_app(db, agency.org, name="Other Fictional App")
    db.commit()
    headers = basic(agency.app.client_id, agency.secret)
    agreeing = api.post("/oauth/token", headers=headers, data={
        "grant_type": "client_credentials", "client_id": agency.app.client_id})
    assert agreeing.status_code == 200, agreeing.text
    disagreeing = api.post("/oauth/token", headers=headers, data={
        "grant_type": "client_credentials", "client_id": other.client_id})
    assert_oauth_error(disagreeing, 400, "invalid_request")


@pytest.mark.parametrize("authorization", [
    "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),  # not UTF-8
    "Basic !!!not-base64!!!",
    "Basic",
    "Bearer something",
])
def test_malformed_client_authentication_is_401_not_500(api, agency, authorization):
    for path, data in (("/oauth/token", {"grant_type": "client_credentials"}),
                       ("/oauth/revoke", {"token": "x"})):
        response = api.post(path, data=data, headers={"Authorization": authorization})
        assert_oauth_error(response, 401, "invalid_client")


# --- malformed requests -------------------------------------------------------------------------


@pytest.mark.parametrize("form", [{}, {"grant_type": "password"},
                                  {"grant_type": "authorization_code"},
                                  {"grant_type": "<script>x</script>"}])
def test_missing_or_other_grant_type_is_unsupported_grant_type(api, agency, form):
    response = api.post("/oauth/token", data=form,
                        headers=basic(agency.app.client_id, agency.secret))
    body = assert_oauth_error(response, 400, "unsupported_grant_type")
    assert "<script>" not in response.text and "password" not in body.get("error_description", "")


def test_json_body_is_invalid_request(api, agency):
    response = api.post("/oauth/token", json={"grant_type": "client_credentials"},
                        headers=basic(agency.app.client_id, agency.secret))
    assert_oauth_error(response, 400, "invalid_request")


def test_credentials_in_the_url_are_refused(api, agency):
    response = api.post(
        f"/oauth/token?client_id={agency.app.client_id}&client_secret={agency.secret}",
        data={"grant_type": "client_credentials"})
    body = assert_oauth_error(response, 400, "invalid_request")
    assert agency.secret not in response.text and "URL" in body["error_description"]


def test_repeated_parameter_is_invalid_request(api, agency):
    response = api.post("/oauth/token", content=b"grant_type=client_credentials&scope=a&scope=b",
                        headers=basic(agency.app.client_id, agency.secret)
                        | {"content-type": "application/x-www-form-urlencoded"})
    assert_oauth_error(response, 400, "invalid_request")


# --- scopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["resources:write", "referrals:read referrals:write",
                                   "admin", "users:manage"])
def test_scope_beyond_the_apps_is_invalid_scope(api, db, agency, scope):
    response = request_token(api, agency.app.client_id, agency.secret, scope=scope)
    assert_oauth_error(response, 400, "invalid_scope")
    assert db.scalar(sa.select(sa.func.count()).select_from(PartnerToken)) == 0


def test_requesting_a_subset_gets_exactly_that_subset(api, db, agency):
    response = request_token(api, agency.app.client_id, agency.secret, scope="resources:read")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "resources:read"
    row = db.scalar(sa.select(PartnerToken).where(PartnerToken.app_id == agency.app.id))
    assert row.scope == "resources:read"
    assert tokens.decode(response.json()["access_token"]).scope == "resources:read"


def test_no_scope_requested_gets_all_of_the_apps_scopes(api, agency):
    response = request_token(api, agency.app.client_id, agency.secret)
    assert response.json()["scope"] == "referrals:read resources:read"


# --- the token and where it stops working --------------------------------------------------------


@pytest.mark.parametrize("how", ["basic", "post"])
def test_token_by_basic_and_by_post(api, db, agency, how):
    response = request_token(api, agency.app.client_id, agency.secret, how=how)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] == 600
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"

    claims = tokens.decode(body["access_token"])
    assert claims.audience == tokens.PARTNER_AUDIENCE
    assert claims.subject == agency.app.client_id
    assert claims.org_id == agency.org.id
    row = db.get(PartnerToken, claims.token_id)
    assert row is not None and row.app_id == agency.app.id and row.revoked_at is None
    assert timedelta(seconds=595) < row.expires_at - row.issued_at <= timedelta(seconds=600)
    # Accepted as a partner on the API (a staff-only route answers 403, not 401).
    assert token_state_on_api(api, body["access_token"]) == 403

    [event] = events(db, "oauth.token_issued")
    assert (event.actor_type, event.actor_id) == ("partner_app", str(agency.app.id))
    assert event.org_id == agency.org.id and event.object_id == claims.token_id
    assert body["access_token"] not in json.dumps(event.model_dump(mode="json"))


def test_disabled_app_gets_no_token_and_its_token_stops_at_once(api, db, agency):
    token = issue(api, agency.app, agency.secret)
    assert token_state_on_api(api, token) == 403
    response = api.patch(f"/api/v1/partner-apps/{agency.app.id}", json={"is_active": False},
                         headers=bearer(agency.admin_token))
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False and response.json()["disabled_at"]

    assert token_state_on_api(api, token) == 401
    assert_oauth_error(request_token(api, agency.app.client_id, agency.secret), 401,
                       "invalid_client")
    db.expire_all()
    assert db.get(PartnerToken, tokens.decode(token).token_id).revoked_at is not None
    reasons = [e.details["reason"] for e in events(db, "oauth.client_auth_failed")]
    assert reasons == ["app_disabled"]


def test_disabled_token_is_refused_even_if_its_row_were_not_revoked(api, db, agency):
    token = issue(api, agency.app, agency.secret)
    agency.app.is_active = False  # as a direct database change would, without the service
    db.commit()
    assert token_state_on_api(api, token) == 401


def test_reenabled_app_gets_tokens_again_but_old_ones_stay_dead(api, db, agency):
    token = issue(api, agency.app, agency.secret)
    headers = bearer(agency.admin_token)
    api.patch(f"/api/v1/partner-apps/{agency.app.id}", json={"is_active": False}, headers=headers)
    response = api.patch(f"/api/v1/partner-apps/{agency.app.id}", json={"is_active": True},
                         headers=headers)
    assert response.json()["disabled_at"] is None
    assert token_state_on_api(api, token) == 401
    assert token_state_on_api(api, issue(api, agency.app, agency.secret)) == 403


def test_removing_a_scope_revokes_the_apps_tokens(api, agency):
    token = issue(api, agency.app, agency.secret)
    response = api.patch(f"/api/v1/partner-apps/{agency.app.id}",
                         json={"scopes": ["referrals:read"]}, headers=bearer(agency.admin_token))
    assert response.json()["scopes"] == ["referrals:read"]
    assert token_state_on_api(api, token) == 401


def test_expired_token_is_refused(api, db, agency):
    jti = uuid.uuid4().hex
    token, _ = tokens.issue({"sub": agency.app.client_id, "org": str(agency.org.id),
                             "scope": "referrals:read", "jti": jti},
                            audience=tokens.PARTNER_AUDIENCE, lifetime_seconds=-120)
    # The row alone would still allow it: the JWT's own expiry must be enough.
    db.add(PartnerToken(jti=jti, app_id=agency.app.id, scope="referrals:read",
                        expires_at=utcnow() + timedelta(minutes=5)))
    db.commit()
    assert token_state_on_api(api, token) == 401


def test_token_whose_row_has_expired_is_refused(api, db, agency):
    token = issue(api, agency.app, agency.secret)
    row = db.get(PartnerToken, tokens.decode(token).token_id)
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    assert token_state_on_api(api, token) == 401


def test_tampered_signature_is_refused(api, agency):
    token = issue(api, agency.app, agency.secret)
    head, payload, signature = token.split(".")
    flipped = ("A" if signature[10] != "A" else "B")
    assert token_state_on_api(api, f"{head}.{payload}.{signature[:10]}{flipped}"
                                    f"{signature[11:]}") == 401


def test_tampered_claims_are_refused(api, agency):
    token = issue(api, agency.app, agency.secret)
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = ALL_SCOPES
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert token_state_on_api(api, f"{head}.{forged}.{signature}") == 401


def test_alg_none_token_is_refused(api, agency):
    token = issue(api, agency.app, agency.secret)
    _head, payload, _signature = token.split(".")
    none = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').decode().rstrip("=")
    assert token_state_on_api(api, f"{none}.{payload}.") == 401


def test_staff_audience_token_is_not_a_partner_token(api, agency):
    token = issue(api, agency.app, agency.secret)
    claims = tokens.decode(token)
    staff_like, _ = tokens.issue({"sub": agency.app.client_id, "org": str(agency.org.id),
                                  "scope": claims.scope, "jti": claims.token_id},
                                 audience=tokens.STAFF_AUDIENCE, lifetime_seconds=300)
    assert token_state_on_api(api, staff_like) == 401


def test_partner_jwt_that_was_never_issued_is_refused(api, agency):
    token, _ = tokens.issue({"sub": agency.app.client_id, "org": str(agency.org.id),
                             "scope": "referrals:read"},
                            audience=tokens.PARTNER_AUDIENCE, lifetime_seconds=300)
    assert token_state_on_api(api, token) == 401


# --- revocation (RFC 7009) ------------------------------------------------------------------------


def test_revocation_needs_client_authentication(api, db, agency):
    token = issue(api, agency.app, agency.secret)
    unauthenticated = api.post("/oauth/revoke", data={"token": token})
    assert_oauth_error(unauthenticated, 401, "invalid_client")
    wrong = revoke(api, agency.app, "wrong-secret", token)
    assert_oauth_error(wrong, 401, "invalid_client")
    assert token_state_on_api(api, token) == 403
    assert [e.details["endpoint"] for e in events(db, "oauth.client_auth_failed")] == [
        "revocation", "revocation"]


def test_revocation_without_a_token_is_invalid_request(api, agency):
    response = api.post("/oauth/revoke", data={"token_type_hint": "access_token"},
                        headers=basic(agency.app.client_id, agency.secret))
    assert_oauth_error(response, 400, "invalid_request")


def test_revoking_another_apps_token_does_nothing(api, db, agency):
    other, other_secret = make_partner_app(db, agency.org, name="Other Fictional App")
    db.commit()
    token = issue(api, agency.app, agency.secret)
    response = revoke(api, other, other_secret, token)
    assert response.status_code == 200
    assert token_state_on_api(api, token) == 403
    db.expire_all()
    assert db.get(PartnerToken, tokens.decode(token).token_id).revoked_at is None
    assert events(db, "oauth.token_revoked") == []


@pytest.mark.parametrize("garbage", ["not-a-token", "a.b.c", "x" * 5000])
def test_revoking_an_unknown_token_answers_200(api, agency, garbage):
    response = revoke(api, agency.app, agency.secret, garbage)
    assert response.status_code == 200, response.text


def test_revoked_token_is_refused(api, db, agency):
    token = issue(api, agency.app, agency.secret)
    keep = issue(api, agency.app, agency.secret)
    response = api.post("/oauth/revoke", data={"token": token, "token_type_hint": "access_token",
                                               "client_id": agency.app.client_id,
                                               "client_secret": agency.secret})
    assert response.status_code == 200, response.text
    assert token_state_on_api(api, token) == 401
    assert token_state_on_api(api, keep) == 403  # only that token
    assert revoke(api, agency.app, agency.secret, token).status_code == 200  # idempotent
    [event] = events(db, "oauth.token_revoked")
    assert event.actor_id == str(agency.app.id)
    assert event.object_id == tokens.decode(token).token_id


# --- transport ----------------------------------------------------------------------------------


@pytest.fixture
def production_api(make_app, settings) -> Iterator[FastAPI]:
    settings.secret_key_value()  # resolved before copying: production never generates keys
    app = make_app()
    app.state.settings = settings.model_copy(update={"env": "production"})
    yield app


@pytest.mark.parametrize("base_url, status", [
    ("http://advocase.example.org", 400),
    ("https://advocase.example.org", 200),
    ("http://localhost:8000", 200),
    ("http://127.0.0.1:8000", 200),
    ("http://[::1]:8000", 200),
])
def test_production_needs_https_except_on_loopback(production_api, agency, base_url, status):
    with TestClient(production_api, base_url=base_url, client=(_address(), 50000)) as api:
        response = request_token(api, agency.app.client_id, agency.secret)
        revocation = revoke(api, agency.app, agency.secret, "whatever")
    assert response.status_code == status, response.text
    assert revocation.status_code == status
    if status == 400:
        body = assert_oauth_error(response, 400, "invalid_request")
        assert "HTTPS" in body["error_description"]


def test_forwarded_proto_header_alone_does_not_make_a_request_secure(production_api, agency):
    # X-Forwarded-Proto is honoured by uvicorn (proxy_headers) from trusted proxies only;
    # the application never reads it itself.
    with TestClient(production_api, base_url="http://advocase.example.org",
                    client=(_address(), 50000)) as api:
        response = api.post("/oauth/token", data={"grant_type": "client_credentials"},
                            headers=basic(agency.app.client_id, agency.secret)
                            | {"x-forwarded-proto": "https"})
    assert_oauth_error(response, 400, "invalid_request")


def test_transport_rule() -> None:
    from app.settings import Settings

    production = Settings(env="production")
    development = Settings(env="development")
    assert oauth.transport_allowed(production, "https", "advocase.example.org")
    assert not oauth.transport_allowed(production, "http", "advocase.example.org")
    assert not oauth.transport_allowed(production, "http", "127.0.0.1.example.org")
    assert oauth.transport_allowed(production, "http", "127.0.0.2")
    assert oauth.transport_allowed(production, "http", "::ffff:127.0.0.1")
    assert oauth.transport_allowed(development, "http", "advocase.example.org")


# --- rate limits ----------------------------------------------------------------------------------


def test_token_endpoint_limits_each_client_id_to_30_a_minute(api, agency):
    statuses = [request_token(api, agency.app.client_id, "wrong").status_code
                for _ in range(30)]
    assert statuses == [401] * 30
    response = request_token(api, agency.app.client_id, agency.secret)
    body = assert_oauth_error(response, 429, "temporarily_unavailable")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert agency.secret not in json.dumps(body)


def test_token_endpoint_limits_each_address(api, db, agency, monkeypatch):
    monkeypatch.setattr(oauth, "LIMIT_PER_ADDRESS", (3, 60.0))
    apps = [make_partner_app(db, agency.org, name=f"Fictional App {n}") for n in range(4)]
    db.commit()
    statuses = [request_token(api, app.client_id, secret).status_code for app, secret in apps]
    assert statuses == [200, 200, 200, 429]


def test_revocation_is_rate_limited_too(api, agency, monkeypatch):
    monkeypatch.setattr(oauth, "LIMIT_PER_CLIENT", (2, 60.0))
    statuses = [revoke(api, agency.app, agency.secret, "x").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert request_token(api, agency.app.client_id, agency.secret).status_code == 200


# --- metadata and keys ---------------------------------------------------------------------------


def test_metadata_describes_the_server(api, agency, settings):
    response = api.get("/.well-known/oauth-authorization-server",
                       headers={"host": "attacker.example"})
    assert response.status_code == 200
    meta = response.json()
    # The configured public address, never the request's Host header.
    issuer = settings.issuer
    assert meta["issuer"] == issuer
    assert meta["token_endpoint"] == f"{issuer}/oauth/token"
    assert meta["revocation_endpoint"] == f"{issuer}/oauth/revoke"
    assert meta["jwks_uri"] == f"{issuer}/oauth/jwks"
    # ... and it is the `iss` of the tokens the server issues (RFC 9068).
    token = issue(api, agency.app, agency.secret)
    assert jwt.decode(token, KeySet.import_key_set(api.get("/oauth/jwks").json()),
                      algorithms=["ES256"]).claims["iss"] == issuer
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic",
                                                                   "client_secret_post"}
    assert set(meta["revocation_endpoint_auth_methods_supported"]) == {"client_secret_basic",
                                                                        "client_secret_post"}
    assert meta["scopes_supported"] == list(PARTNER_SCOPES)


def test_jwks_verifies_an_issued_token_and_holds_no_private_key(api, agency):
    jwks = api.get("/oauth/jwks")
    assert jwks.status_code == 200
    keys = jwks.json()["keys"]
    assert keys and all("d" not in key for key in keys)
    token = issue(api, agency.app, agency.secret)
    decoded = jwt.decode(token, KeySet.import_key_set(jwks.json()), algorithms=["ES256"])
    assert decoded.header["kid"] == keys[0]["kid"]
    assert decoded.claims["sub"] == agency.app.client_id
    assert decoded.claims["aud"] == tokens.PARTNER_AUDIENCE


# --- managing partner apps ----------------------------------------------------------------------


def test_anonymous_cannot_manage_partner_apps(api, agency):
    assert api.get("/api/v1/partner-apps").status_code == 401
    assert api.post("/api/v1/partner-apps", json={"name": "X", "scopes": ["resources:read"]}
                    ).status_code == 401


@pytest.mark.parametrize("role", ["advocate", "supervisor", "auditor"])
def test_other_roles_get_403(api, db, agency, role):
    token = staff_token(db, make_user(db, agency.org, role))
    db.commit()
    headers = bearer(token)
    path = f"/api/v1/partner-apps/{agency.app.id}"
    responses = [
        api.get("/api/v1/partner-apps", headers=headers),
        api.post("/api/v1/partner-apps", json={"name": "X", "scopes": ["resources:read"]},
                 headers=headers),
        api.get(path, headers=headers),
        api.patch(path, json={"is_active": False}, headers=headers),
        api.post(f"{path}/secret", headers=headers),
    ]
    for response in responses:
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
    db.expire_all()
    assert db.get(PartnerApp, agency.app.id).is_active is True


def test_partner_token_cannot_manage_partner_apps(api, agency):
    token = issue(api, agency.app, agency.secret)
    assert api.get("/api/v1/partner-apps", headers=bearer(token)).status_code == 403
    assert api.post("/api/v1/partner-apps", json={"name": "X", "scopes": ["resources:read"]},
                    headers=bearer(token)).status_code == 403
    assert api.get(f"/api/v1/partner-apps/{agency.app.id}",
                   headers=bearer(token)).status_code == 403


def test_another_agencys_app_is_404(api, db, agency):
    elsewhere, _ = make_partner_app(db, make_org(db))
    db.commit()
    headers = bearer(agency.admin_token)
    path = f"/api/v1/partner-apps/{elsewhere.id}"
    assert api.get(path, headers=headers).status_code == 404
    assert api.patch(path, json={"is_active": False}, headers=headers).status_code == 404
    assert api.post(f"{path}/secret", headers=headers).status_code == 404
    listed = api.get("/api/v1/partner-apps", headers=headers).json()["items"]
    assert [item["id"] for item in listed] == [str(agency.app.id)]
    db.expire_all()
    assert db.get(PartnerApp, elsewhere.id).is_active is True


@pytest.mark.parametrize("extra", [{"org_id": str(uuid.uuid4())}, {"id": str(uuid.uuid4())},
                                   {"client_secret_digest": "0" * 64},
                                   {"client_id": "pa_chosen"}, {"is_active": False}])
def test_unknown_fields_on_create_are_422(api, db, agency, extra):
    response = api.post("/api/v1/partner-apps", headers=bearer(agency.admin_token),
                        json={"name": "Fictional Shelter Network", "scopes": ["resources:read"]}
                        | extra)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert db.scalar(sa.select(sa.func.count()).select_from(PartnerApp)) == 1


@pytest.mark.parametrize("body", [{"org_id": str(uuid.uuid4())},
                                  {"client_secret_digest": "0" * 64}, {"client_id": "pa_x"},
                                  {"scopes": []}, {"scopes": ["users:manage"]}, {"name": ""}])
def test_bad_or_unknown_fields_on_update_are_422(api, db, agency, body):
    response = api.patch(f"/api/v1/partner-apps/{agency.app.id}", json=body,
                         headers=bearer(agency.admin_token))
    assert response.status_code == 422, response.text
    db.expire_all()
    app = db.get(PartnerApp, agency.app.id)
    assert app.org_id == agency.org.id and app.scopes == "referrals:read resources:read"


@pytest.mark.parametrize("scopes", [[], ["users:manage"], ["resources:read", "admin"]])
def test_create_with_bad_scopes_is_422(api, agency, scopes):
    response = api.post("/api/v1/partner-apps", headers=bearer(agency.admin_token),
                        json={"name": "Fictional Shelter Network", "scopes": scopes})
    assert response.status_code == 422, response.text
    assert any(error["field"].startswith("scopes") for error in response.json()["errors"])


def test_admin_creates_lists_reads_and_updates_a_partner_app(api, db, agency):
    headers = bearer(agency.admin_token)
    created = api.post("/api/v1/partner-apps", headers=headers,
                       json={"name": "Fictional Shelter Network",
                             "scopes": ["resources:write", "resources:read", "resources:read"]})
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["client_secret"]
    assert body["client_id"].startswith("pa_") and len(secret) >= 40
    assert body["scopes"] == ["resources:read", "resources:write"]
    assert body["org_id"] == str(agency.org.id) and body["created_by"] == str(agency.admin.id)
    assert "client_secret_digest" not in body
    assert created.headers["location"] == f"/api/v1/partner-apps/{body['id']}"
    assert created.headers["cache-control"] == "no-store"
    row = db.get(PartnerApp, uuid.UUID(body["id"]))
    assert row.client_secret_digest != secret and secret not in row.client_secret_digest

    # The secret works at the token endpoint...
    token = api.post("/oauth/token", data={"grant_type": "client_credentials"},
                     headers=basic(body["client_id"], secret))
    assert token.status_code == 200 and token.json()["scope"] == "resources:read resources:write"

    # ...and is never shown again.
    listed = api.get("/api/v1/partner-apps", headers=headers)
    one = api.get(f"/api/v1/partner-apps/{body['id']}", headers=headers)
    patched = api.patch(f"/api/v1/partner-apps/{body['id']}", headers=headers,
                        json={"name": "Fictional Shelter Network (new)",
                              "scopes": ["resources:read"]})
    for response in (listed, one, patched):
        assert response.status_code == 200, response.text
        assert secret not in response.text and "client_secret" not in response.text
        assert row.client_secret_digest not in response.text
    assert {item["name"] for item in listed.json()["items"]} == {
        "Fictional Shelter Network", agency.app.name}
    assert one.json()["client_id"] == body["client_id"]
    assert patched.json()["name"] == "Fictional Shelter Network (new)"
    assert patched.json()["scopes"] == ["resources:read"]

    created_events = events(db, "partner_app.created")
    assert any(e.actor_id == str(agency.admin.id) and e.object_id == body["id"]
               for e in created_events)
    assert all(secret not in json.dumps(e.model_dump(mode="json")) for e in created_events)
    [updated] = events(db, "partner_app.updated")
    assert updated.details["scopes"] == "resources:read"


def test_listing_is_cursor_paginated(api, db, agency):
    for n in range(3):
        make_partner_app(db, agency.org, name=f"Fictional App {n}")
    db.commit()
    headers = bearer(agency.admin_token)
    first = api.get("/api/v1/partner-apps?limit=2", headers=headers).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = api.get(f"/api/v1/partner-apps?limit=2&cursor={first['next_cursor']}",
                     headers=headers).json()
    assert len(second["items"]) == 2 and second["next_cursor"] is None
    ids = [item["id"] for item in first["items"] + second["items"]]
    assert len(set(ids)) == 4


def test_rotating_the_secret_shows_a_new_one_once_and_ends_the_old(api, db, agency):
    token = issue(api, agency.app, agency.secret)
    response = api.post(f"/api/v1/partner-apps/{agency.app.id}/secret",
                        headers=bearer(agency.admin_token))
    assert response.status_code == 200, response.text
    new_secret = response.json()["client_secret"]
    assert new_secret != agency.secret
    assert_oauth_error(request_token(api, agency.app.client_id, agency.secret), 401,
                       "invalid_client")
    assert token_state_on_api(api, token) == 401
    assert token_state_on_api(api, issue(api, agency.app, new_secret)) == 403
    [event] = events(db, "partner_app.secret_rotated")
    assert event.details == {"tokens_revoked": 1}


def test_cli_style_creation_validates_scopes_and_is_audited(db):
    from app.core.errors import Invalid

    org = make_org(db)
    with pytest.raises(Invalid):
        partners.create_partner_app(db, None, org=org, name="Fictional App", scopes=["nope"])
    with pytest.raises(Invalid):
        partners.create_partner_app(db, None, org=org, name="  ", scopes=["resources:read"])
    app, secret = partners.create_partner_app(db, None, org=org, name="Fictional App",
                                              scopes=["resources:read"])
    assert app.created_by is None and app.client_secret_digest != secret
    [event] = [e for e in events(db, "partner_app.created") if e.object_id == str(app.id)]
    assert event.org_id == org.id
