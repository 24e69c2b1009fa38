"""Evidence rows and custody events cannot be changed or removed, even with plain SQL: the
migration's triggers refuse it on SQLite and on PostgreSQL."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.evidence.models import CustodyEvent, Evidence
from tests.consents.factories import make_client
from tests.evidence.conftest import make_incident
from tests.support import services
from tests.support.identity import make_org, make_user


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    with services.own_engine(request.param, tmp_path, "evidence_append_only") as engine:
        yield engine


REFUSED = [
    "UPDATE evidence_custody_event SET purpose = 'other'",
    "UPDATE evidence_custody_event SET outcome = 'intact', action = 'hash_check'",
    "DELETE FROM evidence_custody_event",
    "UPDATE evidence SET sha256 = '" + "0" * 64 + "'",
    "UPDATE evidence SET storage_key = 'evidence/elsewhere'",
    "DELETE FROM evidence",
]


def test_evidence_and_custody_are_append_only(database) -> None:
    with Session(database) as db:
        org = make_org(db)
        user = make_user(db, org, "advocate")
        client_id = UUID(make_client(db, org, user))
        incident_id = make_incident(db, org.id, client_id, user)
        evidence = Evidence(org_id=org.id, client_id=client_id, incident_id=incident_id,
                            storage_key=f"evidence/{org.id}/00/{uuid4()}",
                            sealed_keyset=b"fictional sealed keyset", content_type="image/jpeg",
                            size_bytes=1, sha256="a" * 64, uploaded_by=user.id)
        db.add(evidence)
        db.flush()
        db.add(CustodyEvent(org_id=org.id, evidence_id=evidence.id, actor_type="user",
                            actor_id=user.id, action="upload"))
        db.commit()
    for statement in REFUSED:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), database.begin() as conn:
            conn.execute(sa.text(statement))
    with database.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM evidence_custody_event")).scalar() == 1
        assert conn.execute(sa.text("SELECT sha256 FROM evidence")).scalar() == "a" * 64
    if database.dialect.name == "postgresql":
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), database.begin() as conn:
            conn.execute(sa.text("TRUNCATE evidence_custody_event"))


def test_unknown_custody_actions_are_refused(database) -> None:
    with Session(database) as db:
        org = make_org(db)
        user = make_user(db, org, "advocate")
        client_id = UUID(make_client(db, org, user))
        incident_id = make_incident(db, org.id, client_id, user)
        evidence = Evidence(org_id=org.id, client_id=client_id, incident_id=incident_id,
                            storage_key=f"evidence/{org.id}/00/{uuid4()}",
                            sealed_keyset=b"x", content_type="image/jpeg", size_bytes=1,
                            sha256="b" * 64, uploaded_by=user.id)
        db.add(evidence)
        db.flush()
        db.add(CustodyEvent(org_id=org.id, evidence_id=evidence.id, actor_type="user",
                            actor_id=user.id, action="edit"))
        with pytest.raises(sa.exc.IntegrityError):
            db.flush()
