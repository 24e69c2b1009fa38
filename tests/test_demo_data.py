"""`advocase demo-data`: a fictional demo agency, made through the services, filled once."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from app import demo
from app.cli import alembic_config
from app.clients.models import Client, ClientAssignment
from app.consents.models import ReleaseOfInformation
from app.core import audit
from app.core.audit import AuditEvent
from app.core.passwords import verify_password
from app.db import create_db_engine, unit_of_work
from app.identity.models import Org, StaffUser
from app.risk.models import RiskAssessment
from app.safety_plans.models import SafetyPlanVersion
from app.service_log.models import ServiceContact
from app.settings import get_settings
from tests.support import services
from tests.support.identity import bearer, staff_token
from tests.support.privacy import assert_not_stored

PROJECT = Path(__file__).resolve().parents[1]
SEED = 11
# Reserved for fiction: Ofcom's drama range, and 555-0100..0199 in North America.
FICTIONAL_PHONE = re.compile(r"^(\+44 7700 900\d{3}|\+1 202-555-01\d{2})$")


@dataclass
class Filled:
    kind: str
    engine: Engine
    summary: demo.DemoSummary


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request, tmp_path_factory) -> Iterator[Filled]:
    """An empty, migrated database of its own, filled once by demo-data."""
    folder = tmp_path_factory.mktemp(f"demo-{request.param}")
    with services.own_engine(request.param, folder, "demo") as engine:
        with unit_of_work(engine) as db:
            assert db.scalar(sa.select(sa.func.count()).select_from(Org)) == 0
            summary = demo.fill_demo_agency(db, seed=SEED)
        yield Filled(request.param, engine, summary)


def count(engine: Engine, model: type, *where: object) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.count()).select_from(model).where(*where)))


def test_an_empty_database_gets_the_agency_staff_and_counted_records(filled: Filled) -> None:
    summary, engine = filled.summary, filled.engine
    org_id = summary.org_id
    assert summary.org_slug == "demo" and summary.created_org
    with engine.connect() as conn:
        staff = conn.execute(sa.select(StaffUser.role, StaffUser.email, StaffUser.display_name)
                             .where(StaffUser.org_id == org_id)).all()
    assert sorted(role for role, _, _ in staff) == ["admin", "advocate", "advocate",
                                                     "advocate", "auditor", "supervisor"]
    assert all(email.endswith("@demo.advocase.test") for _, email, _ in staff)
    assert {a.email for a in summary.staff} == {email for _, email, _ in staff}
    assert all(a.password and len(a.password) >= 16 for a in summary.staff)

    assert summary.clients == demo.DEFAULT_CLIENTS == count(engine, Client, Client.org_id == org_id)
    assert set(summary.statuses) == {"intake", "active", "closed"}
    for status, number in summary.statuses.items():
        assert count(engine, Client, Client.org_id == org_id, Client.status == status) == number
    assert count(engine, Client, Client.org_id == org_id, Client.urgent.is_(True)) \
        == summary.urgent > 0
    # Every client is in some advocate's caseload.
    with engine.connect() as conn:
        unassigned = conn.scalar(sa.select(sa.func.count()).select_from(Client).where(
            Client.org_id == org_id,
            Client.id.not_in(sa.select(ClientAssignment.client_id))))
    assert unassigned == 0

    assert count(engine, SafetyPlanVersion) == summary.safety_plan_versions > summary.clients
    with engine.connect() as conn:
        versions = dict(conn.execute(sa.select(SafetyPlanVersion.client_id,
                                               sa.func.max(SafetyPlanVersion.version))
                                     .group_by(SafetyPlanVersion.client_id)).all())
    assert set(versions.values()) == {1, 2, 3}
    assert count(engine, RiskAssessment) == summary.risk_assessments > 0
    assert count(engine, RiskAssessment,
                 RiskAssessment.instrument_id != demo.INSTRUMENT_ID) == 0
    assert count(engine, ServiceContact) == summary.service_contacts > summary.clients
    assert count(engine, ReleaseOfInformation) == sum(summary.consents.values())
    assert {"active", "revoked", "expired"} <= set(summary.consents)
    assert count(engine, ReleaseOfInformation, ReleaseOfInformation.revoked_at.is_not(None)) \
        == summary.consents["revoked"]

    # The audit trail is whole and holds what the services record.
    with engine.connect() as conn:
        assert audit.verify_all(conn).ok
    assert count(engine, AuditEvent, AuditEvent.action == "client.created") == summary.clients
    assert count(engine, AuditEvent, AuditEvent.action == "demo.consent_backdated") \
        == summary.consents["expired"]


def test_nothing_personal_is_stored_in_clear(filled: Filled) -> None:
    with filled.engine.connect() as conn:
        rows = conn.execute(sa.select(Client.__table__)).all()
        plans = conn.execute(sa.select(SafetyPlanVersion.content)).scalars().all()
    stored = "\n".join(str(tuple(row)) for row in rows) + "\n".join(plans)
    assert_not_stored(stored, [f"Demo Client {name}" for name in demo.CLIENT_NAMES]
                      + [f"Demo Other Party {name}" for name in demo.OTHER_PARTY_NAMES]
                      + list(demo.STREETS) + ["+44 7700 900", "202-555-01", "example.org",
                                              "Identity documents"])


@contextmanager
def api(engine: Engine) -> Iterator[TestClient]:
    """The real app, every request a unit of work on the demo database."""
    from app.main import create_app

    app = create_app(get_settings())
    app.state.unit_of_work = functools.partial(unit_of_work, engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def words(name: str | None) -> set[str]:
    return set((name or "").split())


def test_data_decrypts_through_the_api_and_every_name_is_fictional(filled: Filled) -> None:
    engine, summary = filled.engine, filled.summary
    with unit_of_work(engine) as db:
        users = {user.role: user for user in db.scalars(sa.select(StaffUser).where(
            StaffUser.org_id == summary.org_id))}
        supervisor = staff_token(db, users["supervisor"])
        advocate_id = next(a.id for a in summary.staff if a.role == "advocate")
        advocate = staff_token(db, db.get(StaffUser, advocate_id))
        staff_names = [user.display_name for user in db.scalars(sa.select(StaffUser))]
    for name in staff_names:
        assert words(name) <= demo.NAME_WORDS, name

    with api(engine) as client:
        listing = client.get("/api/v1/clients?limit=200", headers=bearer(supervisor))
        assert listing.status_code == 200, listing.text
        items = listing.json()["items"]
        assert len(items) == summary.clients
        mine = client.get("/api/v1/clients?limit=200", headers=bearer(advocate)).json()["items"]
        assert 0 < len(mine) < summary.clients
        # Exact-name search goes through the blind index.
        found = client.post("/api/v1/clients/search", headers=bearer(supervisor),
                            json={"name": items[0]["preferred_name"].lower()}).json()["items"]
        assert [c["id"] for c in found] == [items[0]["id"]]

        seen = {"plans": 0, "assessments": 0, "contacts": 0, "statuses": set(),
                "pets": 0, "children": 0, "safe_channels": 0}
        for item in items:
            assert re.fullmatch(r"Demo Client [A-Z][a-z]+", item["preferred_name"])
            path = f"/api/v1/clients/{item['id']}"
            record = client.get(path, headers=bearer(supervisor))
            assert record.status_code == 200, record.text
            body = record.json()
            for name in [body["preferred_name"], body["legal_name"], *body["aliases"]]:
                assert words(name) <= demo.NAME_WORDS, name
            if body["other_party"]:
                for name in [body["other_party"]["name"], *body["other_party"]["aliases"]]:
                    assert words(name) <= demo.NAME_WORDS, name
                assert any(t in body["other_party"]["known_addresses"][0] for t in demo.TOWNS)
            assert any(street in body["address"] for street in demo.STREETS)
            assert any(town in body["address"] for town in demo.TOWNS)
            for detail in body["contact_details"]:
                if detail["kind"] == "phone":
                    assert FICTIONAL_PHONE.match(detail["value"]), detail["value"]
                else:
                    assert detail["value"].endswith("@example.org")
            seen["safe_channels"] += len(body["safe_contact"]["channels"])

            household = client.get(f"{path}/household", headers=bearer(supervisor)).json()
            for child in household["children"]:
                assert child["first_name"] in demo.CHILD_NAMES
            for pet in household["pets"]:
                assert pet["name"] in demo.PET_NAMES
            seen["children"] += len(household["children"])
            seen["pets"] += len(household["pets"])

            plan = client.get(f"{path}/safety-plans/current", headers=bearer(supervisor))
            if plan.status_code == 200:
                assert plan.json()["content"]["go_bag"]
                seen["plans"] += 1
            else:
                assert plan.status_code == 404
            assessments = client.get(f"{path}/risk-assessments",
                                     headers=bearer(supervisor)).json()["items"]
            seen["assessments"] += len(assessments)
            contacts = client.get(f"{path}/contacts", headers=bearer(supervisor)).json()
            assert all(c["notes"].startswith("Demo note:") for c in contacts["items"])
            seen["contacts"] += len(contacts["items"])
            releases = client.get(f"{path}/consents", headers=bearer(supervisor)).json()
            for release in releases["items"]:
                assert release["recipient_name"] in demo.RECIPIENTS
                assert release["purpose"].endswith("(fictional demo)")
                seen["statuses"].add(release["status"])
    assert seen["assessments"] == summary.risk_assessments
    assert seen["contacts"] == summary.service_contacts
    assert seen["statuses"] == {"active", "revoked", "expired"}
    assert seen["plans"] > 0 and seen["children"] > 0 and seen["pets"] > 0
    assert seen["safe_channels"] > 0


def test_a_second_run_is_refused_and_changes_nothing(filled: Filled) -> None:
    engine = filled.engine
    before = (count(engine, Client), count(engine, StaffUser), count(engine, AuditEvent))
    with pytest.raises(demo.AlreadyFilled), unit_of_work(engine) as db:
        demo.fill_demo_agency(db, seed=SEED + 1)
    assert (count(engine, Client), count(engine, StaffUser), count(engine, AuditEvent)) == before


def demo_names(engine: Engine, slug: str = "demo") -> list[tuple[str, str, bool]]:
    """(preferred name, status, urgent) of every client, decrypted by the service."""
    from app.clients import service as clients
    from app.core.access import Actor

    with unit_of_work(engine) as db:
        supervisor = db.scalar(sa.select(StaffUser).join(Org).where(
            StaffUser.role == "supervisor", Org.slug == slug))
        actor = Actor(kind="user", id=supervisor.id, org_id=supervisor.org_id,
                      role=supervisor.role)
        rows = db.scalars(clients.readable_clients(actor).order_by(Client.case_number)).all()
        return [(clients.decrypt_record(db, actor, row).fields["preferred_name"], row.status,
                 row.urgent) for row in rows]


def test_the_same_seed_gives_the_same_demo(tmp_path: Path) -> None:
    engines = []
    try:
        summaries = []
        for name in ("first", "again"):
            url = f"sqlite:///{tmp_path / name}.sqlite"
            command.upgrade(alembic_config(url), "head")
            engines.append(create_db_engine(url))
            with unit_of_work(engines[-1]) as db:
                summaries.append(demo.fill_demo_agency(db, seed=SEED, clients_count=12))
        first, again = (s.as_dict() | {"org_id": "", "staff": []} for s in summaries)
        assert first == again
        assert demo_names(engines[0]) == demo_names(engines[1])
        with unit_of_work(engines[1]) as db:
            other = demo.fill_demo_agency(db, seed=SEED + 1, clients_count=12,
                                          slug="other-demo")
        assert other.clients == 12
        assert demo_names(engines[1], "other-demo") != demo_names(engines[1])
    finally:
        for engine in engines:
            engine.dispose()


def cli(*args: str, var: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVOCASE_")}
    env |= {"ADVOCASE_VAR_DIR": str(var), "ADVOCASE_LOG_LEVEL": "WARNING"}
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "app.cli", *args], cwd=PROJECT, env=env,
        capture_output=True, text=True, timeout=180)


def test_cli_prints_json_once_then_refuses(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first = cli("demo-data", "--json", "--clients", "6", "--seed", "3", var=var)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["org"] == "demo" and data["clients"] == 6 and data["seed"] == 3
    assert sorted(a["role"] for a in data["staff"]) == ["admin", "advocate", "advocate",
                                                        "advocate", "auditor", "supervisor"]
    assert "password" not in first.stderr.lower()
    # The printed passwords are the accounts' passwords.
    engine = create_db_engine(f"sqlite:///{var / 'advocase.sqlite'}")
    try:
        with engine.connect() as conn:
            hashes = dict(conn.execute(sa.select(StaffUser.email, StaffUser.password_hash)).all())
        for account in data["staff"]:
            assert verify_password(hashes[account["email"]], account["password"])
            UUID(account["id"])
    finally:
        engine.dispose()

    second = cli("demo-data", "--json", var=var)
    assert second.returncode == 1
    assert "fills an agency once" in json.loads(second.stdout)["error"]
    assert "Traceback" not in second.stderr

    text = cli("demo-data", "--org", "second-demo", "--clients", "3", var=var)
    assert text.returncode == 0, text.stderr
    assert "second-demo" in text.stdout and "supervisor.sage@second-demo.advocase.test" \
        in text.stdout


def test_cli_refuses_in_production(tmp_path: Path) -> None:
    env_var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVOCASE_")}
    env |= {"ADVOCASE_VAR_DIR": str(env_var), "ADVOCASE_ENV": "production",
            "ADVOCASE_LOG_LEVEL": "WARNING"}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "app.cli", "demo-data", "--json"], cwd=PROJECT, env=env,
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "not production" in json.loads(result.stdout)["error"]
