"""Case-file records made through the services, for dashboard tests: an incident with a
piece of evidence, a protective order and a court date of one client, and the page paths
that name them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from sqlmodel import Session

from app.core.access import Actor
from app.core.storage import get_storage
from app.db import utcnow
from app.evidence import service as evidence
from app.identity.models import StaffUser
from app.incidents import schemas as incident_schemas
from app.incidents import service as incidents
from app.legal import service as legal

BOUNDARY = "fictional-casefile-boundary"


@dataclass(frozen=True)
class CaseFile:
    incident_id: UUID
    evidence_id: UUID
    order_id: UUID
    court_date_id: UUID

    def path(self, template: str) -> str:
        """A page path template with this case file's ids filled in."""
        return (template.replace("{incident_id}", str(self.incident_id))
                .replace("{evidence_id}", str(self.evidence_id))
                .replace("{order_id}", str(self.order_id))
                .replace("{court_date_id}", str(self.court_date_id)))


def jpeg(size: int = 16 * 1024) -> bytes:
    """A JPEG signature then random bytes: accepted as evidence by its content."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(size - 11)


def make_case_file(db: Session, user: StaffUser, client_id: UUID) -> CaseFile:
    actor = Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)
    incident = incidents.record_incident(db, actor, client_id,
                                         incident_schemas.IncidentCreate.model_validate({
                                             "occurred": {"precision": "date",
                                                          "start": "2026-02-01",
                                                          "time_zone": "Europe/London"},
                                             "categories": ["threats"],
                                             "client_account": "Fictional account."}))
    target = evidence.start_upload(db, actor, incident.incident.id)
    body = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="fictional.jpg"\r\n\r\n'.encode() + jpeg()
            + f"\r\n--{BOUNDARY}--\r\n".encode())
    stored = evidence.receive_upload(db, actor, target, [body],
                                     content_type=f"multipart/form-data; boundary={BOUNDARY}",
                                     purpose=None, storage=get_storage(),
                                     max_bytes=1024 * 1024)
    order = legal.record_order(db, actor, client_id, order_type="emergency")
    hearing = legal.record_court_date(db, actor, client_id, kind="criminal",
                                      starts_at=utcnow() + timedelta(days=7),
                                      time_zone="Europe/London")
    return CaseFile(incident.incident.id, stored.evidence.id, order.order.id,
                    hearing.hearing.id)
