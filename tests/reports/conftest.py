"""Report test support: a seeded, plainly fictional case (a client with an address, a phone,
a child, three incidents — one corrected, one retracted — image and text evidence, a
protective order and a court date, and a confidential shelter of the agency), builds run
in the test's own session, and the PDF's text."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from pypdf import PdfReader
from sqlmodel import Session

from app.clients import service as clients_service
from app.core.access import Actor
from app.core.storage import Storage, get_storage
from app.evidence import service as evidence_service
from app.identity.models import Org, StaffUser
from app.incidents import service as incidents
from app.incidents.schemas import IncidentCreate
from app.legal import service as legal
from app.resources.models import Resource
from tests.support.identity import bearer, make_org, make_user, staff_token

CLIENT_ADDRESS = "12 Example Street, Sampletown"
CLIENT_PHONE = "+44 7700 900123"
CHILD_NAME = "Fictionalia"
SHELTER_ADDRESS = "99 Fictional Refuge Lane, Sampletown"
WITNESS_NAME = "Fictional Neighbour Marguerite"
WITNESS_CONTACT = "555-0142, marguerite@example.org"
FIRST_REPORT_NUMBER = "FSP-2026-000417"
CORRECTED_REPORT_NUMBER = "FSP-2026-000471"
CORRECTION_REASON = "Fictional correction: the client remembered the police report number"
RETRACTION_REASON = "Fictional retraction: recorded for the wrong client"
PERIOD = {"start": "2026-01-01", "end": "2026-03-31"}


def png(colour: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (320, 200)
        ) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def jpeg_with_location() -> bytes:
    """A photo whose EXIF holds a (fictional) place, as a phone's camera writes it."""
    from PIL import Image

    image = Image.new("RGB", (400, 300), (30, 90, 160))
    exif = Image.Exif()
    exif[0x010E] = "Fictional photo taken at the refuge"  # ImageDescription
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}  # GPS
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


TEXT_EVIDENCE = b"Fictional saved text message: I know where you are staying.\n"


@dataclass
class Case:
    org: Org
    other_org: Org
    users: dict[str, StaffUser]
    client_id: UUID
    other_client_id: UUID
    incidents: list[UUID]  # in the order they happened
    outside_period: UUID
    evidence: dict[str, UUID]  # photo, drawing, text
    other_evidence: UUID  # evidence of the other client
    tokens: dict[str, str] = field(default_factory=dict)

    def actor(self, who: str = "advocate") -> Actor:
        user = self.users[who]
        return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)

    def headers(self, who: str = "advocate") -> dict[str, str]:
        return bearer(self.tokens[who])

    def body(self, **changes: Any) -> dict[str, Any]:
        """A court summary request of the whole seeded case (standard redaction)."""
        body: dict[str, Any] = {
            "kind": "court_summary", "client_id": str(self.client_id), "period": PERIOD,
            "incident_ids": [str(i) for i in self.incidents],
            "evidence_ids": [str(e) for e in self.evidence.values()],
            "redaction_profile": "standard",
            "cover": {"court": "Fictional County Family Court", "case_number": "FC-2026-0099",
                      "parties": [{"role": "Petitioner", "from_record": "client_legal_name"},
                                  {"role": "Respondent", "from_record": "other_party"}]}}
        body.update(changes)
        return body


def _incident(db: Session, actor: Actor, client_id: UUID, **fields: Any) -> UUID:
    made = incidents.record_incident(db, actor, client_id,
                                     IncidentCreate.model_validate(fields))
    return made.incident.id


def upload_evidence(db: Session, actor: Actor, incident_id: UUID, content: bytes, *,
                    description: str, storage: Storage) -> UUID:
    target = evidence_service.start_upload(db, actor, incident_id)
    body = (b'--fictional\r\nContent-Disposition: form-data; name="description"\r\n\r\n'
            + description.encode() + b"\r\n"
            b'--fictional\r\nContent-Disposition: form-data; name="captured_at"\r\n\r\n'
            b"2026-01-11T08:15:00+00:00\r\n"
            b'--fictional\r\nContent-Disposition: form-data; name="captured_by"\r\n\r\n'
            b"Fictional client\r\n"
            b'--fictional\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
            b"\r\n" + content + b"\r\n--fictional--\r\n")
    made = evidence_service.receive_upload(
        db, actor, target, [body], content_type="multipart/form-data; boundary=fictional",
        purpose=None, storage=storage, max_bytes=50 * 1024 * 1024)
    return made.evidence.id


def seed_case(db: Session, storage: Storage) -> Case:
    """The fictional case every report test starts from."""
    org, other_org = make_org(db), make_org(db)
    users = {role: make_user(db, org, role) for role in ("admin", "supervisor", "advocate",
                                                         "auditor")}
    users["colleague"] = make_user(db, org, "advocate")
    users["stranger"] = make_user(db, other_org, "supervisor")
    advocate = Actor(kind="user", id=users["advocate"].id, org_id=org.id, role="advocate")
    client = clients_service.create_client(db, advocate, personal={
        "legal_name": "Fictional Client Rowan Example", "preferred_name": "Rowan",
        "address": CLIENT_ADDRESS,
        "contact_details": [{"kind": "phone", "value": CLIENT_PHONE}],
        "household": {"children": [{"first_name": CHILD_NAME, "age": 6}], "pets": []},
        "other_party": {"name": "Fictional Respondent Blake"},
        "safe_contact": {"time_zone": "Europe/London", "channels": []},
    }).client
    db.add(Resource(org_id=org.id, name="Fictional Refuge", categories=["shelter"],
                    address=SHELTER_ADDRESS, address_confidential=True))
    first = _incident(
        db, advocate, client.id,
        occurred={"precision": "exact", "start": "2026-01-10T21:30",
                  "time_zone": "Europe/London"},
        categories=["physical", "threats"], place=f"At home, {CLIENT_ADDRESS}",
        client_account=(f"He shouted at me in front of {CHILD_NAME} and took my phone. "
                        f"I called from {CLIENT_PHONE} later."),
        advocate_observations="Fictional observation: bruising visible on the left forearm.",
        injuries="Bruised left forearm", medical_care="None sought",
        witnesses=[{"name": WITNESS_NAME, "contact": WITNESS_CONTACT,
                    "note": "Heard shouting through the wall"}],
        police={"involved": True, "agency": "Fictional Sampletown Police",
                "report_number": FIRST_REPORT_NUMBER, "officer": "Fictional Officer Dale"},
        children_present=True, weapons_involved=False)
    incidents.revise_incident(
        db, advocate, first, IncidentCreate.model_validate({
            "occurred": {"precision": "exact", "start": "2026-01-10T21:30",
                         "time_zone": "Europe/London"},
            "categories": ["physical", "threats"], "place": f"At home, {CLIENT_ADDRESS}",
            "client_account": (f"He shouted at me in front of {CHILD_NAME} and took my "
                               f"phone. I called from {CLIENT_PHONE} later."),
            "advocate_observations":
                "Fictional observation: bruising visible on the left forearm.",
            "injuries": "Bruised left forearm", "medical_care": "None sought",
            "witnesses": [{"name": WITNESS_NAME, "contact": WITNESS_CONTACT,
                           "note": "Heard shouting through the wall"}],
            "police": {"involved": True, "agency": "Fictional Sampletown Police",
                       "report_number": CORRECTED_REPORT_NUMBER,
                       "officer": "Fictional Officer Dale"},
            "children_present": True, "weapons_involved": False}),
        reason=CORRECTION_REASON, based_on_revision=1)
    second = _incident(
        db, advocate, client.id,
        occurred={"precision": "date", "start": "2026-02-03", "time_zone": "Europe/London"},
        categories=["stalking"],
        client_account=f"Fictional account: he followed me from {SHELTER_ADDRESS} to the bus.")
    third = _incident(
        db, advocate, client.id,
        occurred={"precision": "range", "start": "2026-02-20", "end": "2026-02-22",
                  "time_zone": "Europe/London"},
        categories=["technology_facilitated"],
        client_account="Fictional account: messages from an unknown number all weekend.")
    incidents.retract_incident(db, advocate, third, reason=RETRACTION_REASON)
    outside = _incident(
        db, advocate, client.id,
        occurred={"precision": "date", "start": "2025-11-02", "time_zone": "Europe/London"},
        categories=["emotional_verbal"], client_account="Fictional account from last year.")
    evidence = {
        "photo": upload_evidence(db, advocate, first, jpeg_with_location(),
                                 description="Fictional photo of the forearm", storage=storage),
        "drawing": upload_evidence(db, advocate, first, png(),
                                   description="Fictional drawing of the room", storage=storage),
        "text": upload_evidence(db, advocate, second, TEXT_EVIDENCE,
                                description="Fictional saved message", storage=storage),
    }
    legal.record_order(db, advocate, client.id, order_type="temporary", status="granted",
                       court="Fictional County Family Court", case_number="FC-2026-0099",
                       issued_on=date(2026, 1, 15), expires_on=date(2026, 7, 15),
                       conditions=["No contact with the petitioner"])
    legal.record_court_date(db, advocate, client.id, kind="protective_order_hearing",
                            starts_at=datetime(2026, 2, 12, 10, 0, tzinfo=UTC),
                            time_zone="Europe/London", status="held",
                            court="Fictional County Family Court")
    other_client = clients_service.create_client(db, Actor(
        kind="user", id=users["colleague"].id, org_id=org.id, role="advocate"),
        personal={"preferred_name": "Fictional Other Client"}).client
    other_incident = _incident(
        db, Actor(kind="user", id=users["colleague"].id, org_id=org.id, role="advocate"),
        other_client.id, occurred={"precision": "date", "start": "2026-02-01",
                                   "time_zone": "UTC"}, categories=["threats"])
    other_evidence = upload_evidence(
        db, Actor(kind="user", id=users["colleague"].id, org_id=org.id, role="advocate"),
        other_incident, png((0, 120, 0)), description="Fictional other photo", storage=storage)
    db.flush()
    return Case(org, other_org, users, client.id, other_client.id, [first, second, third],
                outside, evidence, other_evidence)


@pytest.fixture
def storage(settings: Any) -> Storage:
    return get_storage(settings)


@pytest.fixture
def case(db: Session, storage: Storage) -> Case:
    made = seed_case(db, storage)
    made.tokens = {name: staff_token(db, user) for name, user in made.users.items()}
    db.commit()
    return made


@pytest.fixture
def run_build(bound_work: Callable[..., Any], storage: Storage
              ) -> Callable[[UUID | str], str]:
    """Build a report now, in this process, as the worker would (no lease thread)."""
    from app.reports import build

    def run(report_id: UUID | str) -> str:
        return build.build_report(UUID(str(report_id)), work=bound_work, storage=storage,
                                  keep_lease=False)

    return run


def pdf_text(pdf: bytes) -> str:
    """The PDF's text, whitespace folded to single spaces."""
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() or "" for page in reader.pages).split())


def alter_one_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def recent(days: int = 0) -> date:
    return (datetime.now(UTC) - timedelta(days=days)).date()
