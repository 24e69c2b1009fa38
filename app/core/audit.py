"""A tamper-evident audit log: append-only events, hash-chained per org.

Each event stores the SHA-256 of its canonical content and of the previous event
of the same chain (one chain per org, plus a system chain for events with no
org, such as a failed login for an unknown address). Editing, removing or
reordering a row breaks the chain; a head row per chain (locked while appending,
so concurrent writers line up) and signed daily anchors catch a truncated tail.
Events never hold personal data: ids, action names, outcomes and a request id.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import sqlalchemy as sa
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow

if TYPE_CHECKING:
    from app.core.access import Actor

SYSTEM_CHAIN = UUID(int=0)
GENESIS = "0" * 64


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"
    __table_args__ = (sa.UniqueConstraint("chain_id", "seq"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    chain_id: UUID = Field(index=True)
    seq: int = Field(sa_type=sa.BigInteger)
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    org_id: UUID | None = Field(default=None, index=True)
    actor_type: str = Field(max_length=20)  # user | partner_app | system | anonymous
    actor_id: str | None = Field(default=None, max_length=64, index=True)
    action: str = Field(max_length=64, index=True)
    object_type: str | None = Field(default=None, max_length=40)
    object_id: str | None = Field(default=None, max_length=64, index=True)
    outcome: str = Field(max_length=16)  # success | denied | failure
    request_id: str | None = Field(default=None, max_length=128)
    details: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    prev_digest: str = Field(max_length=64)
    digest: str = Field(max_length=64)


class AuditChainHead(SQLModel, table=True):
    """The last event of each chain; the row is locked while an event is appended."""

    __tablename__ = "audit_chain_head"

    chain_id: UUID = Field(primary_key=True)
    seq: int = Field(default=0, sa_type=sa.BigInteger)
    digest: str = Field(default=GENESIS, max_length=64)


class AuditAnchor(SQLModel, table=True):
    """A signed record of a chain head at a point in time (detects truncation)."""

    __tablename__ = "audit_anchor"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    chain_id: UUID = Field(index=True)
    seq: int = Field(sa_type=sa.BigInteger)
    digest: str = Field(max_length=64)
    at: datetime = Field(sa_type=UTCDateTime)
    signature: str = Field(max_length=200)


_CANONICAL_FIELDS = ("chain_id", "seq", "at", "org_id", "actor_type", "actor_id", "action",
                     "object_type", "object_id", "outcome", "request_id", "details")


def _canonical_value(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return value


def compute_digest(prev_digest: str, fields: dict[str, Any]) -> str:
    """SHA-256 over the previous digest and the event's canonical JSON (offline-checkable)."""
    canonical = json.dumps(
        {name: _canonical_value(fields.get(name)) for name in _CANONICAL_FIELDS},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_digest}\n{canonical}".encode()).hexdigest()


def _current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value)[:128] if value else None


def _lock_head(db: Session, chain_id: UUID) -> AuditChainHead:
    table = AuditChainHead.__table__
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    db.execute(insert(table).values(chain_id=chain_id, seq=0, digest=GENESIS)
               .on_conflict_do_nothing(index_elements=["chain_id"]))
    head = db.execute(
        sa.select(AuditChainHead).where(AuditChainHead.chain_id == chain_id)  # type: ignore[arg-type]
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    return head


def _sanitise_details(details: dict[str, Any] | None) -> dict[str, Any] | None:
    if not details:
        return None
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, UUID):
            value = str(value)
        if value is not None and not isinstance(value, str | int | bool):
            raise TypeError(f"audit detail {key!r} must be a short id, number or flag")
        if isinstance(value, str) and len(value) > 200:
            raise ValueError(f"audit detail {key!r} is too long")
        clean[key] = value
    return clean


def append_many(db: Session, *, action: str, org_id: UUID | None, actor_type: str,
                actor_id: str | None, object_type: str, object_ids: list[UUID | str],
                outcome: str = "success") -> list[AuditEvent]:
    """Append one event per object (a listing that showed several clients), locking the
    chain head once."""
    if not object_ids:
        return []
    chain_id = org_id or SYSTEM_CHAIN
    head = _lock_head(db, chain_id)
    prev, seq, at = head.digest, head.seq, utcnow()
    request_id = _current_request_id()
    events = []
    for object_id in object_ids:
        seq += 1
        fields: dict[str, Any] = {
            "chain_id": chain_id, "seq": seq, "at": at, "org_id": org_id,
            "actor_type": actor_type, "actor_id": actor_id, "action": action,
            "object_type": object_type, "object_id": str(object_id), "outcome": outcome,
            "request_id": request_id, "details": None,
        }
        digest = compute_digest(prev, fields)
        events.append(AuditEvent(**fields, prev_digest=prev, digest=digest))
        prev = digest
    db.add_all(events)
    head.seq, head.digest = seq, prev
    db.flush()
    return events


def append(
    db: Session,
    *,
    action: str,
    outcome: str = "success",
    org_id: UUID | None = None,
    actor_type: str = "system",
    actor_id: str | None = None,
    object_type: str | None = None,
    object_id: UUID | str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event to its org's chain inside the caller's transaction."""
    chain_id = org_id or SYSTEM_CHAIN
    head = _lock_head(db, chain_id)
    fields: dict[str, Any] = {
        "chain_id": chain_id,
        "seq": head.seq + 1,
        "at": at or utcnow(),
        "org_id": org_id,
        "actor_type": actor_type,
        "actor_id": actor_id,
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id) if object_id is not None else None,
        "outcome": outcome,
        "request_id": _current_request_id(),
        "details": _sanitise_details(details),
    }
    digest = compute_digest(head.digest, fields)
    event = AuditEvent(**fields, prev_digest=head.digest, digest=digest)
    db.add(event)
    head.seq, head.digest = event.seq, digest
    db.flush()
    return event


def record(
    db: Session,
    actor: Actor | None,
    action: str,
    obj: Any = None,
    *,
    outcome: str = "success",
    org_id: UUID | None = None,
    object_type: str | None = None,
    object_id: UUID | str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record what ``actor`` did to ``obj`` (a row with an ``id``) in the same transaction."""
    if obj is not None:
        object_type = object_type or getattr(obj, "__tablename__", type(obj).__name__.lower())
        object_id = object_id or getattr(obj, "id", None)
    return append(
        db,
        action=action,
        outcome=outcome,
        org_id=org_id or (actor.org_id if actor else None),
        actor_type=actor.kind if actor else "anonymous",
        actor_id=str(actor.id) if actor else None,
        object_type=object_type,
        object_id=object_id,
        details=details,
    )


# --- verification -------------------------------------------------------------------------


@dataclass
class ChainBreak:
    chain_id: UUID
    seq: int | None
    event_id: UUID | None
    reason: str

    def describe(self) -> str:
        where = f"event {self.event_id} (seq {self.seq})" if self.event_id else f"seq {self.seq}"
        return f"chain {self.chain_id}: {where}: {self.reason}"


@dataclass
class VerifyReport:
    chains: int
    events: int
    anchors: int
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


_EVENT_COLUMNS = [AuditEvent.__table__.c[name] for name in
                  ("id", "prev_digest", "digest", *_CANONICAL_FIELDS)]


def _events(conn: sa.Connection, chain_id: UUID) -> Iterator[sa.Row[Any]]:
    table = AuditEvent.__table__
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(
        sa.select(*_EVENT_COLUMNS).where(table.c.chain_id == chain_id).order_by(table.c.seq)
    )
    yield from result


def verify_chain(conn: sa.Connection, chain_id: UUID) -> tuple[int, int, ChainBreak | None]:
    """Check one chain end to end; returns (events, anchors, first break or None)."""
    prev = GENESIS
    expected_seq = 1
    checked = 0
    digests_at: dict[int, str] = {}
    anchors = conn.execute(
        sa.select(AuditAnchor.__table__).where(AuditAnchor.__table__.c.chain_id == chain_id)
    ).all()
    wanted = {a.seq for a in anchors}
    for row in _events(conn, chain_id):
        fields = row._mapping
        if fields["seq"] != expected_seq:
            return checked, len(anchors), ChainBreak(
                chain_id, expected_seq, None,
                f"event missing or out of order (found seq {fields['seq']})")
        if fields["prev_digest"] != prev:
            return checked, len(anchors), ChainBreak(
                chain_id, fields["seq"], fields["id"], "does not follow the previous event")
        if compute_digest(prev, dict(fields)) != fields["digest"]:
            return checked, len(anchors), ChainBreak(
                chain_id, fields["seq"], fields["id"], "content altered")
        if fields["seq"] in wanted:
            digests_at[fields["seq"]] = fields["digest"]
        prev = fields["digest"]
        expected_seq += 1
        checked += 1
    last_seq = expected_seq - 1
    head = conn.execute(
        sa.select(AuditChainHead.__table__).where(AuditChainHead.__table__.c.chain_id == chain_id)
    ).first()
    if head is not None and (head.seq != last_seq or head.digest != prev):
        return checked, len(anchors), ChainBreak(
            chain_id, head.seq, None, f"chain ends at seq {last_seq} but its head says {head.seq}")
    for anchor in anchors:
        if not verify_anchor_signature(anchor.chain_id, anchor.seq, anchor.digest, anchor.at,
                                       anchor.signature):
            return checked, len(anchors), ChainBreak(
                chain_id, anchor.seq, None, "anchor signature invalid")
        if anchor.seq > last_seq:
            return checked, len(anchors), ChainBreak(
                chain_id, anchor.seq, None,
                f"events up to seq {anchor.seq} were anchored but the chain ends at {last_seq}")
        if anchor.seq and digests_at.get(anchor.seq) != anchor.digest:
            return checked, len(anchors), ChainBreak(
                chain_id, anchor.seq, None, "anchored event differs from the chain")
    return checked, len(anchors), None


def verify_all(conn: sa.Connection) -> VerifyReport:
    """Verify every chain; stops at the first break."""
    chains = set(conn.execute(sa.select(AuditEvent.__table__.c.chain_id).distinct()).scalars())
    chains |= set(conn.execute(sa.select(AuditChainHead.__table__.c.chain_id)).scalars())
    chains |= set(conn.execute(sa.select(AuditAnchor.__table__.c.chain_id)).scalars())
    events = anchors = 0
    for chain_id in sorted(chains, key=str):
        n, a, broken = verify_chain(conn, chain_id)
        events += n
        anchors += a
        if broken:
            return VerifyReport(len(chains), events, anchors, broken)
    return VerifyReport(len(chains), events, anchors, None)


# --- anchors -----------------------------------------------------------------------------


def _anchor_message(chain_id: UUID, seq: int, digest: str, at: datetime) -> bytes:
    return f"advocase-audit-anchor\n{chain_id}\n{seq}\n{digest}\n{_canonical_value(at)}".encode()


def _anchor_key() -> ec.EllipticCurvePrivateKey:
    from app.core.crypto import jwt_signing_key

    return jwt_signing_key()


def verify_anchor_signature(chain_id: UUID, seq: int, digest: str, at: datetime,
                            signature: str) -> bool:
    try:
        _anchor_key().public_key().verify(
            base64.urlsafe_b64decode(signature), _anchor_message(chain_id, seq, digest, at),
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def anchor_heads(db: Session) -> list[AuditAnchor]:
    """Record a signed anchor of every chain head (the daily task)."""
    anchors = []
    at = utcnow()
    for head in db.execute(sa.select(AuditChainHead)).scalars():
        if head.seq == 0:
            continue
        signature = _anchor_key().sign(
            _anchor_message(head.chain_id, head.seq, head.digest, at), ec.ECDSA(hashes.SHA256())
        )
        anchor = AuditAnchor(chain_id=head.chain_id, seq=head.seq, digest=head.digest, at=at,
                             signature=base64.urlsafe_b64encode(signature).decode())
        db.add(anchor)
        anchors.append(anchor)
    db.flush()
    return anchors
