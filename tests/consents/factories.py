"""A client row for tests of data hanging off a client (consents, service log).

Made directly rather than through the clients API, so these tests exercise only the
reach rules they rely on (org, caseload), not the client record's own fields."""

from __future__ import annotations

from uuid import uuid4

from sqlmodel import Session

from app.clients.models import Client, ClientAssignment
from app.identity.models import Org, StaffUser


def make_client(db: Session, org: Org, advocate: StaffUser | None = None) -> str:
    client = Client(org_id=org.id, case_number=f"T-{uuid4().hex[:12]}", status="active")
    db.add(client)
    db.flush()
    if advocate is not None:
        db.add(ClientAssignment(client_id=client.id, user_id=advocate.id, org_id=org.id))
        db.flush()
    return str(client.id)
