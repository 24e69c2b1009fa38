"""Evidence test fixtures: an agency with every role and a stranger agency, a client in the
advocate's caseload with an incident, an app whose evidence limit can be set, and
fictional files of each kind."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core.access import Actor
from app.core.storage import LocalStorage, get_storage
from app.identity.models import StaffUser
from app.incidents.models import Incident
from app.settings import Settings
from tests.consents.factories import make_client
from tests.support.apps import bind_to_session
from tests.support.identity import bearer, make_org, make_user, staff_token
from tests.support.s3 import S3Server, running_s3_server

DESCRIPTION = "Fictional photo of the damaged front door, taken next morning"
FILENAME = "fictional-door-photo-Okonkwo.jpg"
CAPTURED_BY = "Fictional neighbour Marguerite"
DEVICE = "Fictional phone model Z-1000"
NOTES = "Fictional account: sent to the client by text the same night"


def jpeg(size: int = 64 * 1024, seed: bytes = b"") -> bytes:
    """A JPEG signature then random bytes: what the type check looks at, and nothing a
    test could find in ciphertext by chance."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + seed + os.urandom(size - 11 - len(seed))


@dataclass
class Agency:
    org: Any
    other_org: Any
    users: dict[str, StaffUser]
    tokens: dict[str, str]
    client_id: UUID
    incident_id: UUID
    other_caseload_incident_id: UUID
    other_org_incident_id: UUID

    def headers(self, who: str) -> dict[str, str]:
        return bearer(self.tokens[who])

    def actor(self, who: str) -> Actor:
        user = self.users[who]
        return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def make_incident(db: Session, org_id: UUID, client_id: UUID, author: StaffUser) -> UUID:
    """An incident head row (what evidence hangs on; its revisions are not needed here)."""
    incident = Incident(org_id=org_id, client_id=client_id, created_by=author.id)
    db.add(incident)
    db.flush()
    return incident.id


@pytest.fixture
def agency(db: Session) -> Agency:
    org, other_org = make_org(db), make_org(db)
    users = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                         "auditor")}
    users["colleague"] = make_user(db, org, "advocate")
    users["stranger"] = make_user(db, other_org, "supervisor")
    tokens = {name: staff_token(db, user) for name, user in users.items()}
    client_id = UUID(make_client(db, org, users["advocate"]))
    colleague_client = UUID(make_client(db, org, users["colleague"]))
    other_client = UUID(make_client(db, other_org, users["stranger"]))
    agency = Agency(
        org, other_org, users, tokens, client_id,
        make_incident(db, org.id, client_id, users["advocate"]),
        make_incident(db, org.id, colleague_client, users["colleague"]),
        make_incident(db, other_org.id, other_client, users["stranger"]))
    db.commit()
    return agency


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server (moto's) on loopback, shared by the whole run."""
    yield from running_s3_server()


@pytest.fixture
def storage(settings: Settings) -> LocalStorage:
    found = get_storage(settings)
    assert isinstance(found, LocalStorage)
    return found


def stored_files(storage: LocalStorage, org_id: UUID) -> list[Path]:
    """Every file (published or not) under an org's evidence folder."""
    folder = storage.root / "evidence" / str(org_id)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def app_with(settings: Settings, db: Session) -> Callable[..., FastAPI]:
    """The real app bound to the test session, with settings changed as given."""
    from app.main import create_app

    def build(**changes: Any) -> FastAPI:
        return bind_to_session(create_app(settings.model_copy(update=changes)), db)

    return build


@pytest.fixture
def small_limit_client(app_with: Callable[..., FastAPI]) -> Iterator[TestClient]:
    with TestClient(app_with(evidence_max_bytes=256 * 1024),
                    raise_server_exceptions=False) as test_client:
        yield test_client


def upload(client: TestClient, agency: Agency, content: bytes, *, who: str = "advocate",
           incident_id: UUID | None = None, filename: str = FILENAME,
           fields: dict[str, str] | None = None, purpose: str | None = None) -> Any:
    data = {"description": DESCRIPTION, "captured_at": "2026-03-01T08:15:00+01:00",
            "captured_by": CAPTURED_BY, "capture_device": DEVICE, "source_notes": NOTES}
    if fields is not None:
        data = fields
    params = {"purpose": purpose} if purpose else None
    return client.post(f"/api/v1/incidents/{incident_id or agency.incident_id}/evidence",
                       files={"file": (filename, content, "application/octet-stream")},
                       data=data, params=params, headers=agency.headers(who))


def uploaded(client: TestClient, agency: Agency, content: bytes, **kwargs: Any) -> dict:
    response = upload(client, agency, content, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()
