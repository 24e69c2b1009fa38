"""A tamper-evident audit log: append-only events, hash-chained per org.

Each event stores the SHA-256 of its canonical content and of the previous event
of the same chain (one chain per org, plus a system chain for events with no
org, such as a failed login for an unknown address). Editing, removing or
reordering a row breaks the chain; a head row per chain (locked while appending,
so concurrent writers line up) and signed daily anchors catch a truncated tail.
Events never hold personal data: ids, action names, outcomes and a request id.

An event is recorded in the caller's session when the action happens and joins its
chain right before the transaction commits (see "joining the chain at commit" below),
so the head stays locked for the insert and the COMMIT only; a rolled-back transaction
leaves no event, a committed one always has its events.
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
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql import util as sql_util
from sqlmodel import Field, SQLModel

from app.db import COMMIT_MAY_WAIT, UTCDateTime, utcnow

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


def _canonical_json(fields: dict[str, Any]) -> str:
    return json.dumps(
        {name: _canonical_value(fields.get(name)) for name in _CANONICAL_FIELDS},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )


def compute_digest(prev_digest: str, fields: dict[str, Any]) -> str:
    """SHA-256 over the previous digest and the event's canonical JSON (offline-checkable)."""
    return hashlib.sha256(f"{prev_digest}\n{_canonical_json(fields)}".encode()).hexdigest()


_SEQ_SLOT = '"seq":-1'  # only a key can read so: inside a JSON string the quotes are escaped


def _canonical_around_seq(fields: dict[str, Any]) -> tuple[str, str]:
    """The event's canonical JSON before and after its ``seq`` value, made while the seq is
    not known yet: ``before + str(seq) + after`` is what :func:`compute_digest` hashes."""
    before, after = _canonical_json(fields | {"seq": -1}).split(_SEQ_SLOT)
    return before + '"seq":', after


def _current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value)[:128] if value else None


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
                outcome: str = "success") -> None:
    """Record one event per object (a listing that showed several clients); they join
    the chain, one after the other, when the transaction commits. (No row objects are
    made for them: a page of 50 would spend more time building them than writing.)"""
    base = {"chain_id": org_id or SYSTEM_CHAIN, "at": utcnow(), "org_id": org_id,
            "actor_type": actor_type, "actor_id": actor_id, "action": action,
            "object_type": object_type, "outcome": outcome,
            "request_id": _current_request_id(), "details": None}
    _unwritten(db).record([_Entry(base | {"id": uuid4(), "object_id": str(object_id)})
                           for object_id in object_ids])


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
    """Record one event in the caller's transaction; it joins its org's chain when the
    transaction commits (``seq`` and the digests of the returned event are set then)."""
    row = {
        "id": uuid4(),
        "chain_id": org_id or SYSTEM_CHAIN,
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
    event = AuditEvent(**row)
    _unwritten(db).record([_Entry(row, event)])
    return event


# --- joining the chain at commit -----------------------------------------------------------
# Appending locks the chain head row (PostgreSQL; SQLite's write lock on SQLite) until the
# transaction ends, and every audited request of an agency appends to the same chain. An
# event is therefore only recorded in the session when the request makes it, and joins the
# chain in ``before_commit``: the lock is held for the insert and the COMMIT alone, not for
# the decrypting, rendering and waiting the request does after its event. The event is
# still written in the same transaction as the change it records. ``at`` is when the event
# was recorded; ``seq`` is its place in the chain, which is the order of the commits.
# On PostgreSQL the join is one statement per chain (``advocase_audit_append``, migration
# 0021): the lock is taken, the events inserted and the head moved in one round trip, and
# the thread holding the lock waits for its turn at the GIL once (to send the COMMIT)
# instead of three times; on SQLite, whose write lock serialises writers anyway, it is
# three statements run from here.

_UNWRITTEN = "advocase.audit_unwritten"


class _Entry:
    """A recorded event: its columns but the seq and digests, the row object handed to the
    caller (if one was), and the number of the write that put it in the chain (0: not
    yet)."""

    __slots__ = ("event", "row", "written")

    def __init__(self, row: dict[str, Any], event: AuditEvent | None = None) -> None:
        self.row, self.event, self.written = row, event, 0


class _Unwritten:
    """The events a session recorded in its transaction and which of them are written.

    A savepoint remembers where it began, so rolling it back forgets the events recorded
    inside it and takes back the writes made inside it (the database undid them), which
    join the chain again at commit."""

    __slots__ = ("entries", "marks", "writes")

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.writes = 0
        self.marks: dict[Any, tuple[int, int]] = {}

    def record(self, entries: list[_Entry]) -> None:
        self.entries.extend(entries)

    def pending(self) -> list[_Entry]:
        return [entry for entry in self.entries if not entry.written]

    def undo_to(self, savepoint: Any) -> None:
        mark = self.marks.pop(savepoint, None)
        if mark is None:
            return
        length, writes = mark
        del self.entries[length:]
        for entry in self.entries:
            if entry.written > writes:
                entry.written = 0


def _unwritten(db: Session) -> _Unwritten:
    """The session's record of unwritten events, bound to its current transaction (begun
    here if none is, as the statements appending used to begin it)."""
    if not db.in_transaction():
        db.begin()
    state = db.info.get(_UNWRITTEN)
    if state is None:
        state = db.info[_UNWRITTEN] = _Unwritten()
        db.info[COMMIT_MAY_WAIT] = True  # a request's commit then runs off the event loop
        savepoint = db.get_nested_transaction()
        while savepoint is not None and savepoint.nested:  # already open: they begin empty
            state.marks[savepoint] = (0, 0)
            savepoint = savepoint.parent
    return state


def _append_here(connection: sa.Connection, chain_id: UUID,
                 prepared: list[tuple[_Entry, dict[str, Any], str, str]]) -> None:
    """SQLite: lock the chain's head (made on first use), insert the events with their
    digests and move the head, in three statements. The head's upsert is a write, which
    takes the database's write lock before the head is read; it is held to the COMMIT."""
    heads = AuditChainHead.__table__
    from sqlalchemy.dialects.sqlite import insert

    upsert = insert(heads).values(chain_id=chain_id, seq=0, digest=GENESIS)
    head = connection.execute(
        upsert.on_conflict_do_update(index_elements=["chain_id"],
                                     set_={"chain_id": upsert.excluded.chain_id})
        .returning(heads.c.seq, heads.c.digest)).one()
    seq, prev = int(head.seq), str(head.digest)
    rows = []
    for entry, row, before, after in prepared:
        seq += 1
        digest = hashlib.sha256(f"{prev}\n{before}{seq}{after}".encode()).hexdigest()
        row.update(seq=seq, prev_digest=prev, digest=digest)
        rows.append(row)
        if entry.event is not None:
            entry.event.seq, entry.event.prev_digest, entry.event.digest = seq, prev, digest
        prev = digest
    connection.execute(sa.insert(AuditEvent.__table__), rows)
    connection.execute(sa.update(heads).where(heads.c.chain_id == chain_id)
                       .values(seq=seq, digest=prev))


_APPEND = sa.text("SELECT o_seq, o_prev, o_digest "
                  "FROM advocase_audit_append(:chain, CAST(:rows AS jsonb)) ORDER BY o_seq")


def _append_in_one_statement(connection: sa.Connection, chain_id: UUID,
                             prepared: list[tuple[_Entry, dict[str, Any], str, str]]) -> None:
    """PostgreSQL: the events join the chain in one statement (migration 0021's
    ``advocase_audit_append``: lock the head, insert each event with its digest, move the
    head), so no round trip, and no wait for this thread's turn at the GIL, falls between
    taking the chain's lock and the COMMIT but the COMMIT's own. The digests are computed
    by the database from the canonical JSON made here, as :func:`compute_digest` does."""
    # Each value as the canonical JSON has it, so the row stored is the row hashed.
    payload = [{name: _canonical_value(value) for name, value in row.items()
                if name != "chain_id"}
               | {"before": before, "after": after} for _, row, before, after in prepared]
    chained = connection.execute(_APPEND, {
        "chain": chain_id, "rows": json.dumps(payload, ensure_ascii=False,
                                             separators=(",", ":"))}).all()
    for (entry, *_), (seq, prev, digest) in zip(prepared, chained, strict=True):
        if entry.event is not None:
            entry.event.seq, entry.event.prev_digest, entry.event.digest = seq, prev, digest


def write_pending(db: Session) -> None:
    """Append the events the session recorded and has not written to their chains now.

    Runs by itself right before COMMIT, and before a statement of the session reads the
    audit tables (so a transaction reads its own events); chains are locked in a fixed
    order, so two transactions writing to the same two chains cannot deadlock."""
    state: _Unwritten | None = db.info.get(_UNWRITTEN)
    pending = state.pending() if state is not None else []
    if not pending or state is None:
        return
    by_chain: dict[UUID, list[_Entry]] = {}
    for entry in pending:
        by_chain.setdefault(entry.row["chain_id"], []).append(entry)
    # Everything but the seq and the digests is ready before the lock is taken.
    prepared = {chain_id: [(entry, dict(entry.row), *_canonical_around_seq(entry.row))
                           for entry in entries] for chain_id, entries in by_chain.items()}
    connection = db.connection()
    append = _append_in_one_statement if connection.dialect.name == "postgresql" \
        else _append_here
    for chain_id in sorted(prepared, key=str):
        append(connection, chain_id, prepared[chain_id])
    state.writes += 1
    for entry in pending:
        entry.written = state.writes


@sa.event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    state: _Unwritten | None = session.info.get(_UNWRITTEN)
    if state is None or session.in_nested_transaction() or not state.pending():
        return  # (a savepoint being released is not the commit: its events wait)
    session.flush()  # the rest of the unit of work first, outside the lock
    write_pending(session)


_AUDIT_TABLES = frozenset({"audit_event", "audit_chain_head"})


@sa.event.listens_for(Session, "do_orm_execute")
def _write_before_reading_the_log(state: ORMExecuteState) -> None:
    unwritten: _Unwritten | None = state.session.info.get(_UNWRITTEN)
    if unwritten is None or not state.is_select or not unwritten.pending():
        return
    if {getattr(table, "name", None) for table in sql_util.find_tables(
            state.statement, include_aliases=True, include_joins=True)} & _AUDIT_TABLES:
        write_pending(state.session)


@sa.event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction: SessionTransaction) -> None:
    state: _Unwritten | None = session.info.get(_UNWRITTEN)
    if state is not None and transaction.nested:
        state.marks[transaction] = (len(state.entries), state.writes)


@sa.event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    state: _Unwritten | None = session.info.get(_UNWRITTEN)
    if state is None:
        return
    if previous_transaction.nested:
        state.undo_to(previous_transaction)
    else:
        session.info.pop(_UNWRITTEN, None)
        session.info.pop(COMMIT_MAY_WAIT, None)


@sa.event.listens_for(Session, "after_transaction_end")
def _forget_ended(session: Session, transaction: SessionTransaction) -> None:
    # The session's transaction committed (its events written by then), rolled back or was
    # closed: nothing carries over. (A savepoint's end is handled by the rollback hook
    # above, which runs after this one; a released savepoint's mark is simply unused.)
    if transaction.parent is None:
        session.info.pop(_UNWRITTEN, None)
        session.info.pop(COMMIT_MAY_WAIT, None)


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
