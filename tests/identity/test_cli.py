"""The identity commands of the CLI, run as a new operator would run them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_cli import PROJECT, embedded_env


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    environment = embedded_env(tmp_path_factory.mktemp("cli"))
    assert run(environment, "migrate").returncode == 0
    return environment


def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=PROJECT, env=env,  # noqa: S603
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_create_org_user_partner_app_and_use_them(env: dict[str, str]) -> None:
    org = run(env, "create-org", "--name", "Hillside Fictional Shelter", "--json")
    assert org.returncode == 0, org.stderr
    created = json.loads(org.stdout)
    assert created["slug"] == "hillside-fictional-shelter"
    again = run(env, "create-org", "--name", "Hillside Fictional Shelter", "--json")
    assert again.returncode == 1 and "exists already" in again.stderr

    weak = run(env, "create-user", "--org", created["slug"], "--email", "a@example.test",
               "--role", "advocate", "--json", stdin="password123\n")
    assert weak.returncode == 1
    assert "password123" not in weak.stderr + weak.stdout
    user = run(env, "create-user", "--org", created["slug"], "--email", "Lead@Example.test",
               "--role", "supervisor", "--json", stdin="a fictional supervisor passphrase\n")
    assert user.returncode == 0, user.stderr
    assert json.loads(user.stdout)["email"] == "lead@example.test"
    unknown_org = run(env, "create-user", "--org", "nowhere", "--email", "b@example.test",
                      "--role", "advocate", stdin="a fictional long passphrase\n")
    assert unknown_org.returncode == 1

    app = run(env, "create-partner-app", "--org", created["slug"], "--name", "Legal Aid App",
              "--scopes", "referrals:read referrals:write", "--json")
    assert app.returncode == 0, app.stderr
    partner = json.loads(app.stdout)
    assert partner["client_id"].startswith("pa_") and len(partner["client_secret"]) >= 40
    bad_scope = run(env, "create-partner-app", "--org", created["slug"], "--name", "X",
                    "--scopes", "clients:read")
    assert bad_scope.returncode == 1

    reset = run(env, "reset-mfa", "--email", "lead@example.test", "--json")
    assert reset.returncode == 0 and json.loads(reset.stdout)["mfa_enabled"] is False
    assert run(env, "reset-mfa", "--email", "ghost@example.test").returncode == 1

    verify = run(env, "audit", "verify", "--json")
    assert verify.returncode == 0, verify.stdout
    report = json.loads(verify.stdout)
    assert report["ok"] and report["events"] >= 4
    anchored = run(env, "audit", "anchor", "--json")
    assert anchored.returncode == 0 and json.loads(anchored.stdout)["anchored"]
    assert run(env, "audit", "verify").returncode == 0


def test_partner_app_from_the_cli_gets_a_token_from_the_server(env: dict[str, str]) -> None:
    """As the README says: create an app with the CLI, then ask the running server."""
    import time

    import httpx

    from tests.test_cli import free_port

    org = json.loads(run(env, "create-org", "--name", "Token Test Fictional", "--json").stdout)
    app = json.loads(run(env, "create-partner-app", "--org", org["slug"], "--name", "App",
                         "--scopes", "resources:read", "--json").stdout)
    port = free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=PROJECT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        response = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                              auth=(app["client_id"], app["client_secret"]))
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "resources:read"
        wrong = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(app["client_id"], "not-the-secret"))
        assert wrong.status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_mfa_confirmation_guesses_are_limited(client, db) -> None:
    from app.core import ratelimit
    from tests.support.identity import bearer, make_org, make_user, staff_token

    ratelimit.reset_stores()
    user = make_user(db, make_org(db), "advocate")
    token = staff_token(db, user)
    db.commit()
    assert client.post("/api/v1/me/mfa", headers=bearer(token)).status_code == 201
    statuses = [client.post("/api/v1/me/mfa/confirm", json={"totp_code": f"{i:06d}"},
                            headers=bearer(token)).status_code for i in range(11)]
    assert statuses[:10] == [422] * 10
    assert statuses[10] == 429
    ratelimit.reset_stores()
