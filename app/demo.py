"""``advocase demo-data``: a realistic, clearly fictional demo agency.

What it makes, in the agency with the slug ``demo`` (created when missing): an admin
when the agency has none, a supervisor, three advocates and an auditor (passwords
generated here and shown once), and 30 clients (``--clients``, 1 to 40) with varied
statuses, assigned advocates, safe-contact preferences, other parties, households,
safety plans of one to three versions, risk assessments on the shipped example
instrument, releases of information (some revoked, some expired) and service-log
contacts.

Plainly invented, every bit of it: people are "Demo Client Aster", "Demo Other Party
Flint", "Demo Advocate Wren" (every name comes from the lists below); addresses are
like "12 Example Street, Sampletown"; phone numbers are in the ranges reserved for
fiction (+44 7700 900000–900999 in the UK, 555-0100–0199 in North America); e-mail
addresses are on ``example.org`` and staff accounts on ``<slug>.advocase.test``
(RFC 2606 reserved names).

Exactly as through the API. Every record is made by the domain services (clients,
consents, safety plans, risk, service log), acting as the demo staff member who
would have done it, with the input first validated by the API's own request schemas:
encryption under each client's key, blind indexes, case numbers and audit events are
those a user of the API would have produced. One exception, said out loud: the
consent service rightly refuses to record a release that has already run out (a
release is recorded when it is signed), so the releases shown as expired are recorded
through the service like the others, then their three plain dates (``given_at``,
``effective_from``, ``expires_at``; nothing personal, nothing encrypted) are moved
back, and a ``demo.consent_backdated`` audit event says so.

Once per agency. The whole fill is one transaction. An agency that already holds a
client, or one of the demo staff accounts, is refused (:class:`AlreadyFilled`) and
nothing changes: demo-data never adds a second set of clients or new passwords to
an agency people may already be signed in to. Fill another agency with ``--org``.

Deterministic: the same ``--seed`` gives the same people, statuses, plans,
assessments, releases and contacts (dates are relative to today; ids, ciphertexts and
passwords are random every time, as they must be).
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.clients import schemas as client_schemas
from app.clients import service as clients
from app.clients.models import Client
from app.consents import schemas as consent_schemas
from app.consents import service as consents
from app.core import audit
from app.core.access import Actor
from app.core.errors import Conflict
from app.db import utcnow
from app.identity import service as identity
from app.identity.models import Org, Role, StaffUser
from app.risk import instruments as risk_engine
from app.risk import service as risk
from app.safety_plans import schemas as plan_schemas
from app.safety_plans import service as safety_plans
from app.service_log import schemas as contact_schemas
from app.service_log import service as service_log

DEMO_SLUG = identity.DEMO_ORG_SLUG
DEFAULT_SEED = 1
DEFAULT_CLIENTS = 30
MAX_CLIENTS = 40
INSTRUMENT_ID = "example-safety-screen"
PASSWORD_BYTES = 12  # 16 characters of URL-safe base64

# --- every name demo-data writes comes from these lists ------------------------------------

CLIENT_NAMES: tuple[str, ...] = (
    "Aster", "Birch", "Clover", "Dahlia", "Ember", "Fern", "Garnet", "Hazel", "Iris",
    "Juniper", "Kestrel", "Linden", "Marigold", "Nova", "Opal", "Poppy", "Quince", "Rowan",
    "Saffron", "Tansy", "Umber", "Violet", "Willow", "Xenia", "Yarrow", "Zinnia", "Azure",
    "Bramble", "Cedar", "Dune", "Elder", "Foxglove", "Gale", "Heather", "Ivy", "Jasper",
    "Lark", "Moss", "Nettle", "Orchid",
)
FAMILY_NAMES: tuple[str, ...] = (
    "Example", "Sample", "Fictional", "Placeholder", "Specimen", "Madeup", "Pretend",
    "Notreal",
)
OTHER_PARTY_NAMES: tuple[str, ...] = (
    "Flint", "Granite", "Basalt", "Cobalt", "Slate", "Quartz", "Onyx", "Shale", "Pumice",
    "Gravel", "Marble", "Obsidian",
)
CHILD_NAMES: tuple[str, ...] = ("Pebble", "Sprout", "Acorn", "Button", "Sparrow", "Minnow",
                                "Bean", "Pip", "Conker", "Bramblet")
PET_NAMES: tuple[str, ...] = ("Biscuit", "Pickle", "Noodle", "Muffin", "Waffle", "Sprocket",
                              "Crumpet", "Dumpling")
# (role, name): "Demo Advocate Wren", e-mail advocate.wren@<slug>.advocase.test
STAFF: tuple[tuple[str, str], ...] = (
    ("supervisor", "Sage"), ("advocate", "Wren"), ("advocate", "Robin"),
    ("advocate", "Heron"), ("auditor", "Ledger"),
)
ADMIN_NAME = "Admin"
# Words that make up the names above ("Demo Client Aster", "Demo Other Party Flint" ...).
NAME_WORDS: frozenset[str] = frozenset(
    {"Demo", "Client", "Other", "Party", "Alias", "Advocate", "Supervisor", "Auditor",
     ADMIN_NAME}
    | set(CLIENT_NAMES) | set(FAMILY_NAMES) | set(OTHER_PARTY_NAMES) | set(CHILD_NAMES)
    | set(PET_NAMES) | {name for _, name in STAFF})

STREETS = ("Example Street", "Sample Road", "Placeholder Lane", "Fiction Avenue",
           "Demo Close", "Imaginary Way")
TOWNS = ("Sampletown", "Exampleton", "Fictionville", "Nowhere-on-Sea")
TIME_ZONES = ("Europe/London", "America/New_York", "America/Chicago", "Europe/London")
CODE_WORDS = ("bluebird", "teacup", "lighthouse", "marmalade", "paper kite", "green door")
RECIPIENTS = (
    "Sampletown Housing Association (fictional)",
    "Example County Legal Aid (fictional)",
    "Fictionville Family Health Centre (fictional)",
    "Nowhere-on-Sea Children's Services (fictional)",
)
PURPOSES = ("Housing application support", "Legal representation in a protection order case",
            "Health appointments coordination", "Child welfare coordination")
SAFE_PLACES = (("Demo Community Centre (fictional), Sample Road", "Bus 12 from the corner"),
               ("A friend's flat in Exampleton (fictional)", "Ten minutes on foot"),
               ("Sampletown Library (fictional)", "Open until 8pm; staff know the code word"))
SERVICE_NOTES = ("Demo note: talked through the safety plan; client will keep the go-bag at "
                 "a friend's (fictional).",
                 "Demo note: accompanied the client to the fictional county court.",
                 "Demo note: hotline call, options explained, follow-up agreed (fictional).",
                 "Demo note: helped fill in a housing form at the fictional office.")


class AlreadyFilled(Conflict):
    """The agency has clients or demo staff already: demo-data fills an agency once."""


@dataclass
class StaffAccount:
    email: str
    role: str
    display_name: str
    password: str | None  # None: the account existed already (its password is not known)
    id: UUID

    def as_dict(self) -> dict[str, Any]:
        return {"email": self.email, "role": self.role, "display_name": self.display_name,
                "password": self.password, "id": str(self.id)}


@dataclass
class DemoSummary:
    org_slug: str
    org_id: UUID
    created_org: bool
    seed: int
    staff: list[StaffAccount] = field(default_factory=list)
    clients: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    urgent: int = 0
    households: int = 0
    other_parties: int = 0
    safety_plan_versions: int = 0
    risk_assessments: int = 0
    consents: Counter[str] = field(default_factory=Counter)
    service_contacts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "org": self.org_slug, "org_id": str(self.org_id), "created_org": self.created_org,
            "seed": self.seed, "staff": [account.as_dict() for account in self.staff],
            "clients": self.clients, "statuses": dict(sorted(self.statuses.items())),
            "urgent": self.urgent, "households": self.households,
            "other_parties": self.other_parties,
            "safety_plan_versions": self.safety_plan_versions,
            "risk_assessments": self.risk_assessments,
            "consents": dict(sorted(self.consents.items())),
            "service_contacts": self.service_contacts,
        }


def staff_email(role: str, name: str, slug: str = DEMO_SLUG) -> str:
    return f"{role}.{name.lower()}@{slug}.advocase.test"


def _actor(user: StaffUser) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


# --- fictional values ----------------------------------------------------------------------


def uk_phone(rng: random.Random) -> str:
    return f"+44 7700 900{rng.randrange(1000):03d}"  # Ofcom's range for drama


def us_phone(rng: random.Random) -> str:
    return f"+1 202-555-01{rng.randrange(100):02d}"  # 555-0100..0199: for fiction


def address(rng: random.Random) -> str:
    return f"{rng.randint(1, 99)} {rng.choice(STREETS)}, {rng.choice(TOWNS)}"


def _safe_contact(rng: random.Random) -> dict[str, Any] | None:
    """None (the default: never contact) for some; otherwise one or two safe channels."""
    if rng.random() < 0.2:
        return None
    channels: list[dict[str, Any]] = []
    for channel in rng.sample(["phone", "sms", "email"], rng.randint(1, 2)):
        entry: dict[str, Any] = {"channel": channel, "safe": True,
                                 "leave_message": rng.random() < 0.3}
        if rng.random() < 0.7:
            start = rng.choice([9, 10, 12, 13])
            entry["windows"] = [{"days": rng.sample(["mon", "tue", "wed", "thu", "fri"],
                                                    rng.randint(2, 4)),
                                 "start": f"{start:02d}:00", "end": f"{start + 2:02d}:30"}]
        if channel == "phone" and rng.random() < 0.6:
            entry["code_word"] = rng.choice(CODE_WORDS)
        channels.append(entry)
    if rng.random() < 0.3:
        channels.append({"channel": "post", "safe": False})
    return {"time_zone": rng.choice(TIME_ZONES), "channels": channels}


def fictional_personal(rng: random.Random, first: str) -> dict[str, Any]:
    """A client's personal fields as the API would pass them to the service (also used by
    the 100,000-client benchmark)."""
    family = rng.choice(FAMILY_NAMES)
    born = date(1958, 1, 1) + timedelta(days=rng.randrange(46 * 365))
    personal: dict[str, Any] = {
        "preferred_name": f"Demo Client {first}",
        "legal_name": f"{first} {family}",
        "date_of_birth": born.isoformat(),
        "address": address(rng),
        "contact_details": [{"kind": "phone", "value": rng.choice([uk_phone, us_phone])(rng),
                             "label": "safe phone"}],
        "notes": f"Fictional demo client {first} {family}; nothing here is about a real "
                 "person.",
    }
    if rng.random() < 0.5:
        personal["contact_details"].append({"kind": "email", "value": f"{first.lower()}."
                                            f"{family.lower()}@example.org"})
    if rng.random() < 0.25:
        personal["aliases"] = [f"Demo Alias {rng.choice(CLIENT_NAMES)}"]
    safe = _safe_contact(rng)
    if safe is not None:
        personal["safe_contact"] = safe
    if rng.random() < 0.85:
        other = rng.choice(OTHER_PARTY_NAMES)
        personal["other_party"] = {
            "name": f"Demo Other Party {other}",
            "description": "Fictional description for the demo: tall, usually in a work "
                           "jacket.",
            "vehicle": f"Fictional grey hatchback, plate DEMO {rng.randint(100, 999)}",
            "known_addresses": [address(rng)],
        }
        if rng.random() < 0.3:
            personal["other_party"]["aliases"] = [f"Demo Alias {rng.choice(OTHER_PARTY_NAMES)}"]
    # What the API would pass to the service: validated, unset fields left out.
    body = client_schemas.PersonalFields.model_validate(personal)
    return body.model_dump(include=set(clients.PERSONAL_FIELDS), exclude_unset=True)


def fictional_household(rng: random.Random) -> dict[str, Any]:
    children = [{"first_name": name, "age": rng.randint(1, 16)}
                for name in rng.sample(CHILD_NAMES, rng.randint(0, 3))]
    for child in children:
        if rng.random() < 0.3:
            child["custody_notes"] = "Fictional: shared care, handovers at the demo centre."
    pets = [{"name": name, "species": rng.choice(["dog", "cat", "rabbit"])}
            for name in rng.sample(PET_NAMES, rng.randint(0, 2))]
    return client_schemas.Household.model_validate(
        {"children": children, "pets": pets}).model_dump()


def _plan(rng: random.Random, version: int, previous: dict[str, Any] | None,
          first: str) -> dict[str, Any]:
    if previous is None:
        content: dict[str, Any] = {
            "safe_places": [{"place": p, "how_to_get_there": how}
                            for p, how in rng.sample(SAFE_PLACES, rng.randint(1, 2))],
            "go_bag": [{"item": item, "ready": rng.random() < 0.3}
                       for item in safety_plans.DEFAULT_GO_BAG],
            "important_contacts": [{"name": "Demo Advocate line (fictional)",
                                    "phone": uk_phone(rng), "note": "Weekdays 9-5"}],
            "code_word": {"word": rng.choice(CODE_WORDS),
                          "trusted_person": f"Demo Client {rng.choice(CLIENT_NAMES)}",
                          "check_in_time": f"{rng.choice([18, 19, 20, 21])}:00"},
            "technology_safety": [{"item": item, "done": rng.random() < 0.4}
                                  for item in safety_plans.DEFAULT_TECHNOLOGY_SAFETY],
            "reasons_for_leaving": "Fictional: to feel safe at home again.",
            "notes": f"Demo safety plan for Demo Client {first} (fictional).",
        }
    else:
        content = {**previous, "go_bag": [dict(item) for item in previous["go_bag"]],
                   "technology_safety": [dict(item) for item in previous["technology_safety"]]}
        for item in rng.sample(content["go_bag"], 3):
            item["ready"] = True
        for item in rng.sample(content["technology_safety"], 2):
            item["done"] = True
        content["notes"] = previous["notes"] + f" Reviewed for version {version} (fictional)."
    return plan_schemas.PlanContent.model_validate(content).model_dump(mode="json")


def _answers(rng: random.Random, instrument: risk_engine.Instrument,
             severity: float) -> dict[str, Any]:
    """Answers to the example screen; ``severity`` (0..1) tilts them towards risk."""
    answers: dict[str, Any] = {}
    for item in instrument.items:
        if isinstance(item, risk_engine.YesNoItem):
            chance = severity * (0.5 if item.critical else 0.8)
            answers[item.id] = rng.random() < chance
        elif isinstance(item, risk_engine.ChoiceItem):
            options = [option.value for option in item.options]
            index = min(len(options) - 1, int(severity * len(options) + rng.random() - 0.5))
            answers[item.id] = options[max(0, index)]
        elif isinstance(item, risk_engine.MultiChoiceItem):
            answers[item.id] = [option.value for option in item.options
                                if rng.random() < severity]
        elif isinstance(item, risk_engine.NumberItem):
            if rng.random() < 0.8:
                answers[item.id] = rng.randint(0, int(severity * 5))
    return answers


# --- filling -------------------------------------------------------------------------------


def _existing_staff(db: Session, emails: list[str]) -> list[str]:
    return list(db.scalars(sa.select(StaffUser.email).where(StaffUser.email.in_(emails))))


def _new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def _make_staff(db: Session, org: Org, summary: DemoSummary) -> dict[str, StaffUser]:
    """The demo staff (and an admin when the agency has none), with fresh passwords."""
    people: dict[str, StaffUser] = {}
    wanted = list(STAFF)
    has_admin = db.scalar(sa.select(StaffUser.id).where(
        StaffUser.org_id == org.id, StaffUser.role == Role.admin.value).limit(1))
    if has_admin is None:
        wanted.insert(0, ("admin", ADMIN_NAME))
    for role, name in wanted:
        password = _new_password()
        display = f"Demo {role.capitalize()} {name}" if role != "admin" else "Demo Admin"
        email = (staff_email(role, name, org.slug) if role != "admin"
                 else f"admin@{org.slug}.advocase.test")
        user = identity.create_user(db, None, org=org, email=email, display_name=display,
                                    role=role, password=password).user
        people[f"{role}:{name}"] = user
        summary.staff.append(StaffAccount(user.email, role, display, password, user.id))
    return people


def _record_releases(db: Session, rng: random.Random, actor: Actor, client_id: UUID,
                     summary: DemoSummary) -> None:
    now = utcnow()
    for recipient in rng.sample(RECIPIENTS, rng.choice([0, 1, 1, 2, 3])):
        fate = rng.choices(["active", "revoked", "expired"], weights=[6, 2, 2])[0]
        term = rng.choice([90, 180, 365])
        body = consent_schemas.ReleaseCreate.model_validate({
            "recipient_name": recipient,
            "purpose": PURPOSES[RECIPIENTS.index(recipient)] + " (fictional demo)",
            "categories": rng.sample(["contact_details", "identity", "address", "household",
                                      "service_history"], rng.randint(1, 3)),
            "how_given": rng.choice(consents.HOW_GIVEN),
            "expires_at": (now + timedelta(days=term)).isoformat()})
        record = consents.record_release(
            db, actor, client_id, recipient_name=body.recipient_name, purpose=body.purpose,
            categories=list(body.categories), how_given=body.how_given,
            given_at=body.given_at, effective_from=body.effective_from,
            expires_at=body.expires_at)
        release = record.release
        if fate == "revoked":
            consents.revoke_release(db, actor, client_id, release.id,
                                    reason="Demo: the client withdrew this release "
                                           "(fictional).")
        elif fate == "expired":
            # See the module docstring: the service records releases as they are signed.
            back = timedelta(days=term + rng.randint(5, 120))
            release.given_at -= back
            release.effective_from -= back
            release.expires_at -= back
            db.flush()
            audit.record(db, actor, "demo.consent_backdated", release,
                         details={"client_id": str(client_id), "days": back.days})
        summary.consents[fate] += 1


def _fill_client(db: Session, rng: random.Random, first: str, summary: DemoSummary,
                 supervisor: Actor, advocates: list[Actor],
                 instrument: risk_engine.Instrument) -> None:
    status = rng.choices(["intake", "active", "closed"], weights=[2, 6, 2])[0]
    personal = fictional_personal(rng, first)
    lead = rng.choice(advocates)
    if rng.random() < 0.15:  # co-worked: the supervisor opens it for two advocates
        second = rng.choice([a for a in advocates if a.id != lead.id])
        record = clients.create_client(db, supervisor, personal=personal,
                                       status="intake" if status == "intake" else "active",
                                       assign_to=[lead.id, second.id])
    else:
        record = clients.create_client(db, lead, personal=personal,
                                       status="intake" if status == "intake" else "active")
    client_id = record.client.id
    summary.clients += 1
    summary.other_parties += int("other_party" in personal)
    if rng.random() < 0.6:
        clients.replace_household(db, lead, client_id, fictional_household(rng))
        summary.households += 1
    if status != "intake" or rng.random() < 0.3:
        content = None
        for version in range(1, rng.randint(1, 3) + 1):
            content = _plan(rng, version, content, first)
            body = plan_schemas.PlanCreate.model_validate({
                "content": content,
                "review_date": (utcnow().date() + timedelta(days=rng.randint(14, 180)))
                .isoformat(),
                "change_note": None if version == 1 else
                f"Demo review {version}: more of the go-bag ready (fictional)."})
            safety_plans.create_version(db, lead, client_id,
                                        content=body.content.model_dump(mode="json"),
                                        review_date=body.review_date,
                                        change_note=body.change_note)
            summary.safety_plan_versions += 1
    severity = rng.random() ** 1.5
    for _ in range(rng.choice([0, 1, 1, 2])):
        risk.record_assessment(db, lead, client_id, instrument_id=instrument.id,
                               version=instrument.version,
                               answers=_answers(rng, instrument, severity))
        summary.risk_assessments += 1
        severity = max(0.0, severity - 0.2)  # later screens: often a little better
    _record_releases(db, rng, lead, client_id, summary)
    contacts = rng.randint(2, 6) if status != "intake" else rng.randint(0, 1)
    today = utcnow().date()
    for _ in range(contacts):
        day = today - timedelta(days=rng.randint(1, 180))
        body = contact_schemas.ContactCreate.model_validate({
            "kind": rng.choice(service_log.KINDS), "occurred_on": day.isoformat(),
            "started_at": datetime.combine(day, time(rng.randint(9, 16), rng.choice([0, 30])),
                                           tzinfo=UTC).isoformat(),
            "duration_minutes": rng.choice([10, 20, 30, 45, 60, 90, 120]),
            "notes": rng.choice(SERVICE_NOTES)})
        service_log.record_contact(db, lead, client_id, kind=body.kind,
                                   occurred_on=body.occurred_on, started_at=body.started_at,
                                   duration_minutes=body.duration_minutes,
                                   notes=body.notes)
        summary.service_contacts += 1
    if status == "closed":
        clients.update_client(db, lead, client_id, personal={}, status="closed",
                              closing_reason=rng.choice(clients.CLOSING_REASONS))
    summary.statuses[status] += 1


def fill_demo_agency(db: Session, *, seed: int = DEFAULT_SEED,
                     clients_count: int = DEFAULT_CLIENTS, slug: str = DEMO_SLUG,
                     ) -> DemoSummary:
    """Fill the demo agency (created if missing) once; :class:`AlreadyFilled` otherwise.

    The caller owns the transaction: on any error nothing is kept."""
    if not 1 <= clients_count <= MAX_CLIENTS:
        raise ValueError(f"clients_count must be between 1 and {MAX_CLIENTS}")
    org = db.scalar(sa.select(Org).where(Org.slug == slug))
    created = org is None
    if org is None:
        name = "Demo Agency (fictional)" if slug == DEMO_SLUG else \
            f"Demo Agency {slug} (fictional)"
        org = identity.create_org(db, name=name, slug=slug)
    has_clients = db.scalar(sa.select(Client.id).where(Client.org_id == org.id).limit(1))
    taken = _existing_staff(db, [staff_email(role, name, slug) for role, name in STAFF])
    if has_clients is not None or taken:
        raise AlreadyFilled(
            f"The agency {slug!r} already holds "
            + ("clients" if has_clients is not None else "the demo staff accounts")
            + "; demo-data fills an agency once and changed nothing. Use --org to fill "
              "another agency.")
    summary = DemoSummary(org.slug, org.id, created, seed)
    people = _make_staff(db, org, summary)
    supervisor = _actor(people["supervisor:Sage"])
    advocates = [_actor(people[f"advocate:{name}"]) for role, name in STAFF
                 if role == "advocate"]
    instrument = risk.get_instrument(db, advocates[0], INSTRUMENT_ID)
    # Seeded on purpose (the same demo every time); passwords come from `secrets`.
    rng = random.Random(seed)  # noqa: S311
    for first in rng.sample(CLIENT_NAMES, clients_count):
        _fill_client(db, rng, first, summary, supervisor, advocates, instrument)
    summary.urgent = int(db.scalar(sa.select(sa.func.count()).select_from(Client).where(
        Client.org_id == org.id, Client.urgent.is_(True))) or 0)
    return summary
