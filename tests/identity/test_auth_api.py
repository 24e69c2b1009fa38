"""Staff sign-in, MFA, tokens and sessions through the HTTP API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pyotp
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core import audit, ratelimit
from app.core.crypto import unseal
from app.identity.models import AuthSession, StaffUser
from tests.support.identity import PASSWORD, bearer, make_org, make_user, staff_token


@pytest.fixture(autouse=True)
def fresh_throttle() -> Iterator[None]:
    ratelimit.reset_stores()
    yield
    ratelimit.reset_stores()


def login(client: TestClient, email: str, password: str = PASSWORD, **extra: str):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password} | extra)


def events(db: Session, action: str) -> list[audit.AuditEvent]:
    return list(db.scalars(sa.select(audit.AuditEvent).where(audit.AuditEvent.action == action)))


def totp_now(db: Session, user: StaffUser, offset_steps: int = 0) -> str:
    db.refresh(user)
    secret = unseal(user.mfa_secret, table="staff_user", column="mfa_secret", row_id=str(user.id))
    totp = pyotp.TOTP(secret)
    return totp.at(datetime.now(UTC).timestamp() + offset_steps * totp.interval)


def enrol_mfa(client: TestClient, db: Session, user: StaffUser, token: str) -> list[str]:
    assert client.post("/api/v1/me/mfa", headers=bearer(token)).status_code == 201
    response = client.post("/api/v1/me/mfa/confirm", json={"totp_code": totp_now(db, user)},
                           headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()["recovery_codes"]


# --- failure cases first -------------------------------------------------------------------


def test_wrong_password_and_unknown_email_get_the_same_answer(client, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    wrong = login(client, user.email, "not the password at all")
    unknown = login(client, "nobody@example.test", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json().items() if k != "request_id"}  # noqa: E731
    assert strip(wrong) == strip(unknown)
    assert user.email not in wrong.text
    failed = events(db, "auth.login_failed")
    assert len(failed) == 2 and all(e.outcome == "denied" for e in failed)
    assert all("example.test" not in str(e.model_dump()) for e in failed)


def test_unknown_email_takes_as_long_as_a_wrong_password(client, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()

    def timed(email: str) -> float:
        ratelimit.reset_stores()
        start = time.perf_counter()
        login(client, email, "not the password at all")
        return time.perf_counter() - start

    # Interleaved, so a busy moment on a shared machine hits both alike.
    samples: dict[str, list[float]] = {"known": [], "unknown": []}
    for _ in range(5):
        samples["known"].append(timed(user.email))
        samples["unknown"].append(timed("nobody@example.test"))
    known, unknown = (sorted(samples[k])[2] for k in ("known", "unknown"))
    # Both pay one Argon2id verification (~40 ms); without it the unknown email would
    # answer 10-20 times faster, which these bounds catch.
    assert 0.25 < unknown / known < 4.0, samples


def test_repeated_failures_are_throttled_with_retry_after(client, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    statuses = [login(client, user.email, "wrong password guess").status_code for _ in range(6)]
    assert statuses[:5] == [401] * 5
    throttled = login(client, user.email, PASSWORD)
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.headers["content-type"].startswith("application/problem+json")
    assert events(db, "auth.login_throttled")


def test_inactive_account_cannot_sign_in(client, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    user.is_active = False
    db.commit()
    assert login(client, user.email).status_code == 401


@pytest.mark.parametrize("body", [
    {"email": "a@example.test"},
    {"email": "a@example.test", "password": "x", "org_id": "00000000-0000-0000-0000-000000000000"},
    {"email": "a@example.test", "password": "x", "role": "admin"},
])
def test_login_body_is_strict(client, body) -> None:
    assert client.post("/api/v1/auth/login", json=body).status_code == 422


# --- sign-in, tokens, sessions --------------------------------------------------------------


def test_advocate_signs_in_and_reads_me(client, db) -> None:
    user = make_user(db, make_org(db, "riverside"), "advocate")
    db.commit()
    response = login(client, user.email.upper())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert body["refresh_token"]
    me = client.get("/api/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == user.email
    assert me.json()["org_slug"] == "riverside"
    assert "users:manage" not in me.json()["permissions"]
    assert events(db, "auth.login")


def test_refresh_rotates_and_reuse_revokes_the_family(client, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    first = login(client, user.email).json()
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]

    # The spent token is presented again: the whole session ends.
    reused = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert events(db, "auth.refresh_reused")
    after = client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401
    assert client.get("/api/v1/me", headers=bearer(second["access_token"])).status_code == 401


def test_logout_stops_access_and_refresh_tokens(client, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    tokens = login(client, user.email).json()
    assert client.post("/api/v1/auth/logout",
                       headers=bearer(tokens["access_token"])).status_code == 204
    assert client.get("/api/v1/me", headers=bearer(tokens["access_token"])).status_code == 401
    assert client.post("/api/v1/auth/refresh",
                       json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_sessions_are_listed_and_revocable_but_only_ones_own(client, db) -> None:
    org = make_org(db)
    user, other = make_user(db, org, "advocate"), make_user(db, org, "advocate")
    db.commit()
    a = login(client, user.email).json()["access_token"]
    b = login(client, user.email).json()["access_token"]
    theirs = staff_token(db, other)
    db.commit()
    listed = client.get("/api/v1/sessions", headers=bearer(a)).json()["items"]
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    other_session = client.get("/api/v1/sessions", headers=bearer(theirs)).json()["items"][0]
    assert client.delete(f"/api/v1/sessions/{other_session['id']}",
                         headers=bearer(a)).status_code == 404
    mine_b = next(s for s in listed if not s["current"])
    assert client.delete(f"/api/v1/sessions/{mine_b['id']}", headers=bearer(a)).status_code == 204
    assert client.get("/api/v1/me", headers=bearer(b)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(a)).status_code == 200


def test_password_change_checks_and_ends_other_sessions(client, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    a = login(client, user.email).json()["access_token"]
    b = login(client, user.email).json()["access_token"]
    wrong = client.post("/api/v1/me/password", headers=bearer(a),
                        json={"current_password": "nope", "new_password": "x" * 20})
    assert wrong.status_code == 403
    weak = client.post("/api/v1/me/password", headers=bearer(a),
                       json={"current_password": PASSWORD, "new_password": "short"})
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["field"] == "new_password"
    ok = client.post("/api/v1/me/password", headers=bearer(a),
                     json={"current_password": PASSWORD,
                           "new_password": "a much longer fictional passphrase"})
    assert ok.status_code == 204
    assert client.get("/api/v1/me", headers=bearer(b)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(a)).status_code == 200
    assert login(client, user.email, "a much longer fictional passphrase").status_code == 200


# --- MFA ------------------------------------------------------------------------------------


def test_admin_must_enrol_mfa_before_doing_anything(client, db) -> None:
    admin = make_user(db, make_org(db), "admin")
    db.commit()
    response = login(client, admin.email)
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == "mfa:enrol" and body["refresh_token"] is None
    token = body["access_token"]
    blocked = client.get("/api/v1/me", headers=bearer(token))
    assert blocked.status_code == 403
    assert blocked.json()["type"].endswith("mfa-enrolment-required")
    assert client.get("/api/v1/users", headers=bearer(token)).status_code == 403

    start = client.post("/api/v1/me/mfa", headers=bearer(token)).json()
    assert start["otpauth_uri"].startswith("otpauth://totp/advocase:")
    assert start["qr_svg"].startswith("data:image/svg+xml;base64,")
    bad = client.post("/api/v1/me/mfa/confirm", json={"totp_code": "000000"},
                      headers=bearer(token))
    assert bad.status_code == 422
    codes = client.post("/api/v1/me/mfa/confirm", json={"totp_code": totp_now(db, admin)},
                        headers=bearer(token)).json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10

    assert login(client, admin.email).json()["type"].endswith("mfa-required")
    code = totp_now(db, admin, offset_steps=1)
    signed_in = login(client, admin.email, totp_code=code)
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["scope"] is None
    assert client.get("/api/v1/users",
                      headers=bearer(signed_in.json()["access_token"])).status_code == 200
    # The same code again is a replay.
    assert login(client, admin.email, totp_code=code).status_code == 401


def test_recovery_code_works_once(client, db) -> None:
    admin = make_user(db, make_org(db), "admin")
    db.commit()
    codes = enrol_mfa(client, db, admin, login(client, admin.email).json()["access_token"])
    assert login(client, admin.email, totp_code=codes[0]).status_code == 200
    assert login(client, admin.email, totp_code=codes[0]).status_code == 401
    assert login(client, admin.email, totp_code=codes[1].upper()).status_code == 200


def test_org_policy_can_require_mfa_for_everyone(client, db) -> None:
    advocate = make_user(db, make_org(db, require_mfa_for_all=True), "advocate")
    db.commit()
    assert login(client, advocate.email).json()["scope"] == "mfa:enrol"


def test_admin_resets_a_colleagues_mfa_after_reauthenticating(client, db) -> None:
    org = make_org(db)
    admin, supervisor = make_user(db, org, "admin"), make_user(db, org, "supervisor")
    db.commit()
    enrol_mfa(client, db, supervisor, login(client, supervisor.email).json()["access_token"])
    supervisor_token = login(client, supervisor.email,
                             totp_code=totp_now(db, supervisor, 1)).json()["access_token"]
    admin_token = staff_token(db, admin)
    db.commit()
    url = f"/api/v1/users/{supervisor.id}/mfa-reset"
    assert client.post(url, json={"password": "wrong"},
                       headers=bearer(admin_token)).status_code == 403
    assert client.post(url, json={"password": PASSWORD},
                       headers=bearer(supervisor_token)).status_code == 403
    done = client.post(url, json={"password": PASSWORD}, headers=bearer(admin_token))
    assert done.status_code == 200 and done.json()["mfa_enabled"] is False
    assert client.get("/api/v1/me", headers=bearer(supervisor_token)).status_code == 401
    assert events(db, "mfa.reset") and events(db, "mfa.reset_refused")


# --- users ----------------------------------------------------------------------------------


def test_admin_invites_a_user_who_sets_a_password(client, db) -> None:
    org = make_org(db)
    admin = make_user(db, org, "admin")
    token = staff_token(db, admin)
    db.commit()
    created = client.post("/api/v1/users", headers=bearer(token), json={
        "email": "new.advocate@example.test", "display_name": "New Advocate",
        "role": "advocate"})
    assert created.status_code == 201, created.text
    invitation = created.json()["invitation_token"]
    assert invitation and "password_hash" not in created.text
    assert login(client, "new.advocate@example.test", "anything at all here").status_code == 401
    weak = client.post("/api/v1/auth/accept-invitation",
                       json={"token": invitation, "password": "password1234"})
    assert weak.status_code == 422
    accepted = client.post("/api/v1/auth/accept-invitation",
                           json={"token": invitation, "password": "a fictional long passphrase"})
    assert accepted.status_code == 204
    again = client.post("/api/v1/auth/accept-invitation",
                        json={"token": invitation, "password": "another fictional passphrase"})
    assert again.status_code == 401
    assert login(client, "new.advocate@example.test",
                 "a fictional long passphrase").status_code == 200
    assert client.post("/api/v1/users", headers=bearer(token), json={
        "email": "NEW.advocate@example.test", "display_name": "Dup",
        "role": "advocate"}).status_code == 409


@pytest.mark.parametrize("field", ["org_id", "id", "password_hash", "mfa_enabled"])
def test_mass_assignment_is_refused(client, db, field) -> None:
    org = make_org(db)
    admin = make_user(db, org, "admin")
    target = make_user(db, org, "advocate")
    token = staff_token(db, admin)
    db.commit()
    create = client.post("/api/v1/users", headers=bearer(token), json={
        "email": "x@example.test", "display_name": "X", "role": "advocate", field: "1"})
    assert create.status_code == 422
    assert create.json()["errors"][0]["field"] == field
    patch = client.patch(f"/api/v1/users/{target.id}", headers=bearer(token), json={field: "1"})
    assert patch.status_code == 422


def test_role_change_and_deactivation_take_effect_at_once(client, db) -> None:
    org = make_org(db)
    admin, advocate = make_user(db, org, "admin"), make_user(db, org, "advocate")
    admin_token, advocate_token = staff_token(db, admin), staff_token(db, advocate)
    db.commit()
    changed = client.patch(f"/api/v1/users/{advocate.id}", headers=bearer(admin_token),
                           json={"role": "supervisor"})
    assert changed.status_code == 200 and changed.json()["role"] == "supervisor"
    assert client.get("/api/v1/me", headers=bearer(advocate_token)).status_code == 401
    fresh = staff_token(db, db.get(StaffUser, advocate.id))
    db.commit()
    client.patch(f"/api/v1/users/{advocate.id}", headers=bearer(admin_token),
                 json={"is_active": False})
    assert client.get("/api/v1/me", headers=bearer(fresh)).status_code == 401


def test_the_last_admin_cannot_be_removed(client, db) -> None:
    org = make_org(db)
    admin = make_user(db, org, "admin")
    token = staff_token(db, admin)
    db.commit()
    for change in ({"role": "advocate"}, {"is_active": False}):
        response = client.patch(f"/api/v1/users/{admin.id}", headers=bearer(token), json=change)
        assert response.status_code == 409


def test_another_orgs_user_is_not_found(client, db) -> None:
    mine, theirs = make_org(db), make_org(db)
    admin = make_user(db, mine, "admin")
    stranger = make_user(db, theirs, "advocate")
    token = staff_token(db, admin)
    db.commit()
    for response in (client.get(f"/api/v1/users/{stranger.id}", headers=bearer(token)),
                     client.patch(f"/api/v1/users/{stranger.id}", headers=bearer(token),
                                  json={"is_active": False})):
        assert response.status_code == 404
    listed = client.get("/api/v1/users", headers=bearer(token)).json()["items"]
    assert {u["id"] for u in listed} == {str(admin.id)}


def test_auth_events_never_hold_personal_data(client, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    login(client, user.email, "a wrong fictional guess")
    login(client, user.email)
    for event in db.scalars(sa.select(audit.AuditEvent)):
        text = str(event.model_dump())
        assert user.email not in text and "fictional guess" not in text and PASSWORD not in text


def test_sessions_table_keeps_only_token_digests(client, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    tokens = login(client, user.email).json()
    dump = " ".join(str(row) for row in db.execute(sa.select(AuthSession)).all())
    dump += " ".join(str(row) for row in db.execute(sa.text("SELECT * FROM refresh_token")).all())
    assert tokens["refresh_token"] not in dump
