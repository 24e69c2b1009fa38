"""The court-ready incident summary: what goes in it, gathered as the staff member who asked
for it, then redacted, then rendered (Jinja2 → HTML → WeasyPrint PDF).

:func:`check_request` is run when the report is requested (422 naming the field for a
choice that does not fit). :func:`collect` runs in the worker with the requester's own
reach, through the services that audit every read (the client, each incident's history,
the evidence, the protective orders and court dates): if the requester lost access since,
the build fails. The result is plain data — dicts, lists and strings — that
``redaction.Redactor`` scrubs before :func:`render_html` ever sees it.
"""

from __future__ import annotations

import hashlib
import html
import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlmodel import Session

from app import __version__
from app.clients import service as clients
from app.core.access import Actor
from app.core.errors import Invalid
from app.core.gcpause import cyclic_gc_paused
from app.core.pagination import PageParams
from app.evidence import previews
from app.evidence import service as evidence_service
from app.evidence.models import Evidence
from app.identity.models import Org, StaffUser
from app.incidents import service as incidents
from app.incidents.models import Incident, IncidentRevision
from app.legal import service as legal
from app.reports import redaction
from app.reports.schemas import CourtSummaryCreate
from app.resources.models import Resource

log = structlog.get_logger("app.reports.court_summary")

TEMPLATES_DIR = Path(__file__).parent / "templates"
TEMPLATE = "court_summary.html"
PDF_VARIANT = "pdf/a-3b"  # archival (fonts embedded, colour profile), and tagged below

CATEGORY_LABELS = {
    "physical": "Physical", "sexual": "Sexual", "emotional_verbal": "Emotional or verbal",
    "threats": "Threats", "stalking": "Stalking",
    "technology_facilitated": "Technology-facilitated", "financial": "Financial",
    "property_damage": "Property damage",
    "protective_order_violation": "Protective order violation",
    "child_related": "Involving children",
}
FIELD_LABELS = {
    "occurred": "When it happened", "categories": "Kind of incident", "place": "Where",
    "client_account": "Client's account", "advocate_observations": "Advocate's observations",
    "injuries": "Injuries", "medical_care": "Medical care", "witnesses": "Witnesses",
    "police": "Police", "children_present": "Children present",
    "weapons_involved": "Weapons involved",
    "respondent_identifiers": "The other person's identifiers", "retracted": "Retracted",
}
ORDER_TYPES = {"emergency": "Emergency", "temporary": "Temporary", "final": "Final",
               "criminal_no_contact": "Criminal no-contact", "other": "Other"}
HEARING_KINDS = {"protective_order_hearing": "Protective order hearing", "custody": "Custody",
                 "criminal": "Criminal", "divorce": "Divorce", "other": "Other"}
CUSTODY_ACTIONS = {"upload": "Received", "view": "Viewed", "download": "Downloaded",
                   "export": "Exported", "hash_check": "Hash checked"}


# --- checking a request ---------------------------------------------------------------------


def _field_error(name: str, message: str, kind: str = "value") -> dict[str, str]:
    return {"field": name, "location": "body", "message": message, "type": kind}


def _local_dates(revision: IncidentRevision) -> tuple[date, date]:
    """The first and last local day an incident's occurrence covers."""
    zone = ZoneInfo(revision.occurred_time_zone)
    first = revision.occurred_start.astimezone(zone).date()
    last = first
    if revision.occurred_end is not None:
        last = (revision.occurred_end - timedelta(microseconds=1)).astimezone(zone).date()
    return first, max(first, last)


def check_request(db: Session, actor: Actor, data: CourtSummaryCreate) -> None:
    """Refuse (422, naming the field) chosen records that are not the client's, lie outside
    the period, or are evidence of an incident that was not chosen. The client itself must
    be within reach (404)."""
    client = clients.get_client(db, actor, data.client_id)
    if data.period.end > datetime.now(UTC).date() + timedelta(days=1):
        raise Invalid("The period ends in the future.", errors=[
            _field_error("period.end", "in the future", "date")])
    chosen = {incident_id: index for index, incident_id in enumerate(data.incident_ids)}
    revisions = {r.incident_id: r for r in db.scalars(
        incidents.current_revisions(client).where(
            IncidentRevision.incident_id.in_(list(chosen))))}
    errors = []
    for incident_id, index in chosen.items():
        revision = revisions.get(incident_id)
        if revision is None:
            errors.append(_field_error(f"incident_ids.{index}",
                                       "not an incident of this client", "not_found"))
            continue
        first, last = _local_dates(revision)
        if first > data.period.end or last < data.period.start:
            errors.append(_field_error(f"incident_ids.{index}",
                                       "did not happen within the period", "period"))
    found = dict(db.execute(sa.select(Evidence.id, Evidence.incident_id).where(
        Evidence.org_id == client.org_id, Evidence.client_id == client.id,
        Evidence.id.in_(data.evidence_ids))).all()) if data.evidence_ids else {}
    for index, evidence_id in enumerate(data.evidence_ids):
        if found.get(evidence_id) not in chosen:
            errors.append(_field_error(f"evidence_ids.{index}",
                                       "not evidence of a chosen incident", "not_found"))
    if errors:
        raise Invalid("Some chosen records cannot go into this report.", errors=errors)


# --- gathering ----------------------------------------------------------------------------


@dataclass
class ExhibitSource:
    """What the worker needs to stream one exhibit: no personal data."""

    number: int
    stored: evidence_service.StoredFile | None  # None: the keyset does not open
    evidence: Evidence
    file_name: str  # in the bundle: exhibits/003-<id>.<ext>
    preview_key: str | None = None  # where its kept preview is stored, if one was made


@dataclass
class Gathered:
    data: dict[str, Any]
    exhibits: list[ExhibitSource]
    redactor: redaction.Redactor
    hidden: tuple[str, ...]
    org_id: UUID
    client_id: UUID
    evidence_ids: list[UUID] = field(default_factory=list)


def _zone_of(record: clients.ClientRecord) -> ZoneInfo:
    name = (record.fields.get("safe_contact") or {}).get("time_zone") or "UTC"
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _moment(value: datetime | None, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    local = value.astimezone(zone)
    return f"{local.day} {local:%B %Y, %H:%M} ({zone.key})"


def _day(value: date | None) -> str:
    return f"{value.day} {value:%B %Y}" if value else ""


def _occurred(occurred: dict[str, Any]) -> str:
    """When an incident happened, as its revision recorded it, in the client's zone."""
    zone = occurred["time_zone"]
    start = occurred["start"]
    if occurred["precision"] == "date":
        return f"{_day(date.fromisoformat(start))} (time not known, {zone})"
    first = datetime.fromisoformat(start)
    if occurred["precision"] == "range" and occurred.get("end"):
        last = datetime.fromisoformat(occurred["end"])  # exclusive
        if (first.hour, first.minute, last.hour, last.minute) == (0, 0, 0, 0):
            # Given as days: the window runs to the end of its last day.
            return (f"between {_day(first.date())} and "
                    f"{_day((last - timedelta(days=1)).date())} ({zone})")
        return (f"between {_moment(first, ZoneInfo(zone))} and "
                f"{_moment(last, ZoneInfo(zone))}")
    start_text = _moment(first, ZoneInfo(zone))
    return start_text


def _staff_names(db: Session, org_id: UUID, ids: set[UUID]) -> dict[UUID, str]:
    if not ids:
        return {}
    return dict(db.execute(sa.select(StaffUser.id, StaffUser.display_name).where(
        StaffUser.org_id == org_id, StaffUser.id.in_(ids))).all())


def _change_text(path: str, value: Any) -> str:
    """A changed value as a person reads it; a category by its label."""
    if path == "categories" and isinstance(value, str):
        return CATEGORY_LABELS.get(value, value)
    return _value_text(value)


def _value_text(value: Any) -> str:
    """A changed value as a person reads it."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value or "(empty)"
    if isinstance(value, dict):
        parts = [f"{k.replace('_', ' ')}: {_value_text(v)}" for k, v in value.items()
                 if v not in (None, "", [])]
        return "; ".join(parts) or "(empty)"
    if isinstance(value, list):
        return " | ".join(_value_text(v) for v in value) or "(none)"
    return str(value)


def _path_label(path: str) -> str:
    head = path.split(".", 1)[0].split("[", 1)[0]
    label = FIELD_LABELS.get(head, head.replace("_", " ").capitalize())
    rest = path[len(head):].lstrip(".")
    return f"{label} ({rest.replace('_', ' ')})" if rest else label


def _fields(state: dict[str, Any]) -> dict[str, Any]:
    """A revision's content as the report shows it."""
    police = state.get("police") or {}
    return {
        "occurred": _occurred(state["occurred"]),
        "categories": [CATEGORY_LABELS.get(c, c) for c in state.get("categories") or []],
        "place": state.get("place") or "",
        "client_account": state.get("client_account") or "",
        "advocate_observations": state.get("advocate_observations") or "",
        "injuries": state.get("injuries") or "",
        "medical_care": state.get("medical_care") or "",
        "witnesses": [{"name": w.get("name") or "", "contact": w.get("contact") or "",
                       "note": w.get("note") or ""} for w in state.get("witnesses") or []],
        "police": {"involved": _value_text(police.get("involved"))
                   if police.get("involved") is not None else "not known",
                   "agency": police.get("agency") or "",
                   "report_number": police.get("report_number") or "",
                   "officer": police.get("officer") or ""},
        "children_present": _value_text(state.get("children_present"))
        if state.get("children_present") is not None else "not known",
        "weapons_involved": _value_text(state.get("weapons_involved"))
        if state.get("weapons_involved") is not None else "not known",
        "respondent_identifiers": [
            {"kind": i.get("kind", ""), "value": i.get("value", ""),
             "platform": i.get("platform") or ""}
            for i in state.get("respondent_identifiers") or []],
        "retracted": bool(state.get("retracted")),
    }


def _all_pages(fetch: Any) -> list[Any]:
    found: list[Any] = []
    cursor = None
    while True:
        page, cursor = fetch(PageParams(limit=200, cursor=cursor))
        found.extend(page)
        if not cursor:
            return found


def _add_hidden_values(redactor: redaction.Redactor, hidden: tuple[str, ...],
                       record: clients.ClientRecord, shelters: list[str],
                       states: list[dict[str, Any]]) -> None:
    fields = record.fields
    if "client_address" in hidden and fields.get("address"):
        redactor.add("client_address", redaction.address_parts(fields["address"]))
    if "shelter_locations" in hidden:
        for address in shelters:
            redactor.add("shelter_locations", redaction.address_parts(address))
    if "client_contact_details" in hidden:
        redactor.add("client_contact_details",
                     [c.get("value") for c in fields.get("contact_details") or []])
    if "children_names" in hidden:
        children = (fields.get("household") or {}).get("children") or []
        redactor.add("children_names", [c.get("first_name") for c in children])
    for state in states:
        witnesses = state.get("witnesses") or []
        if "witness_contacts" in hidden:
            redactor.add("witness_contacts", [w.get("contact") for w in witnesses])
        if "witness_names" in hidden:
            redactor.add("witness_names", [w.get("name") for w in witnesses])
        if "respondent_identifiers" in hidden:
            redactor.add("respondent_identifiers",
                         [i.get("value") for i in state.get("respondent_identifiers") or []])


def _party_name(party: dict[str, Any], fields: dict[str, Any]) -> str:
    source = party.get("from_record")
    if source is None:
        return str(party.get("name") or "")
    if source == "client_legal_name":
        return fields.get("legal_name") or fields.get("preferred_name") or "(not recorded)"
    if source == "client_preferred_name":
        return fields.get("preferred_name") or "(not recorded)"
    return (fields.get("other_party") or {}).get("name") or "(not recorded)"


def collect(db: Session, actor: Actor, *, org_id: UUID, client_id: UUID,
            params: dict[str, Any], generated_at: datetime) -> Gathered:
    """Everything the report shows, read as ``actor`` (so within their reach and audited),
    already redacted, and what the worker needs to stream the exhibits."""
    data_in = CourtSummaryCreate.model_validate(params)
    hidden = redaction.hidden_kinds(data_in.redaction_profile, data_in.also_hide)
    record = clients.read_client(db, actor, client_id)
    zone = _zone_of(record)
    org = db.get(Org, org_id)
    assert org is not None

    incidents_out: list[dict[str, Any]] = []
    all_states: list[dict[str, Any]] = []
    author_ids: set[UUID] = set()
    heads: list[tuple[IncidentRevision, Incident, list[incidents.HistoryEntry]]] = []
    for incident, history in incidents.open_histories(db, actor, data_in.incident_ids):
        heads.append((history[-1].record.revision, incident, history))
    heads.sort(key=lambda h: (h[0].occurred_start, h[1].created_at, str(h[1].id)))

    for number, (current, incident, history) in enumerate(heads, start=1):
        previous: dict[str, Any] | None = None
        revisions = []
        for entry in history:
            raw = entry.record.state()
            all_states.append(raw)
            state = redaction.withhold_fields(raw, hidden)
            changes = incidents.diff_states(previous, state) if previous is not None else []
            author_ids.add(entry.record.revision.created_by)
            revisions.append({
                "revision": entry.record.revision.revision,
                "saved_at": entry.record.revision.created_at,
                "saved_by_id": entry.record.revision.created_by,
                "reason": entry.record.reason or "",
                "retracted": entry.record.revision.retracted,
                "fields": _fields(state),
                "changes": [{"field": _path_label(c.path), "kind": c.kind,
                             "before": _change_text(c.path, c.before),
                             "after": _change_text(c.path, c.after)}
                            for c in changes if c.path != "retracted"],
            })
            previous = state
        author_ids.add(incident.created_by)
        incidents_out.append({
            "number": number, "id": str(incident.id), "recorded_at": incident.created_at,
            "recorded_by_id": incident.created_by, "occurred_start": current.occurred_start,
            "retracted": current.retracted, "current": revisions[-1],
            "revisions": revisions})

    # Exhibits: numbered in the order of their incidents, then as received.
    incident_number = {UUID(i["id"]): i["number"] for i in incidents_out}
    rows = [evidence_service.get_evidence(db, actor, evidence_id)
            for evidence_id in data_in.evidence_ids]
    rows.sort(key=lambda e: (incident_number[e.incident_id], e.uploaded_at, str(e.id)))
    evidence_records = evidence_service.list_records(db, actor, rows)
    exhibits_out: list[dict[str, Any]] = []
    sources: list[ExhibitSource] = []
    kept = previews.kept_previews(db, [item.evidence.id for item in evidence_records])
    for number, item in enumerate(evidence_records, start=1):
        e = item.evidence
        custody = evidence_service.custody_log(db, e.id)
        author_ids.update(c.actor_id for c in custody if c.actor_id and c.actor_type == "user")
        author_ids.add(e.uploaded_by)
        extension = (e.content_type.split("/")[-1].replace("jpeg", "jpg")
                     .replace("plain", "txt").replace("rfc822", "eml").replace("quicktime", "mov")
                     .replace("mpeg", "mp3"))
        file_name = f"exhibits/{number:03d}-{e.id}.{extension}"
        exhibits_out.append({
            "number": number, "evidence_id": str(e.id),
            "incident_number": incident_number[e.incident_id],
            "description": item.description or "", "content_type": e.content_type,
            "size_bytes": e.size_bytes, "sha256_at_upload": e.sha256,
            "captured_at": _moment(e.captured_at, zone),
            "captured_by": item.source.get("captured_by") or "",
            "device": item.source.get("device") or "",
            "source_notes": item.source.get("notes") or "",
            "uploaded_at": _moment(e.uploaded_at, zone), "uploaded_by_id": e.uploaded_by,
            "file_name": file_name,
            "custody": [{"at": _moment(c.at, zone),
                         "action": CUSTODY_ACTIONS.get(c.action, c.action),
                         "by_id": c.actor_id if c.actor_type == "user" else None,
                         "by_kind": c.actor_type, "purpose": (c.purpose or "").replace("_", " "),
                         "outcome": c.outcome.replace("_", " ")} for c in custody],
        })
        sources.append(ExhibitSource(number, evidence_service.open_for_check(db, e.id), e,
                                     file_name, kept.get(e.id)))

    orders = _all_pages(lambda p: legal.list_orders(db, actor, client_id, p))
    hearings = _all_pages(lambda p: legal.list_court_dates(db, actor, client_id, p))
    today = generated_at.date()
    orders_out = [{"id": str(o.order.id), "type": ORDER_TYPES.get(o.order.order_type, "Other"),
                   "status": o.order.status, "in_force": o.in_force(today),
                   "issued_on": _day(o.order.issued_on), "expires_on": _day(o.order.expires_on),
                   "issued": o.order.issued_on, "expires": o.order.expires_on,
                   "court": o.court or "", "case_number": o.case_number or "",
                   "conditions": list(o.conditions)} for o in orders]
    orders_out.sort(key=lambda o: (o["issued"] or date.max, o["id"]))
    hearings_out = [{"id": str(h.hearing.id), "kind": HEARING_KINDS.get(h.hearing.kind, "Other"),
                     "starts_at": h.hearing.starts_at,
                     "when": _moment(h.hearing.starts_at, ZoneInfo(h.hearing.time_zone)),
                     "status": h.hearing.status, "court": h.court or "",
                     "outcome": h.outcome or ""} for h in hearings]
    hearings_out.sort(key=lambda h: (h["starts_at"], h["id"]))

    names = _staff_names(db, org_id, {a for a in author_ids if a})
    for incident in incidents_out:
        incident["recorded_by"] = names.get(incident.pop("recorded_by_id"), "a former colleague")
        incident["recorded_at_text"] = _moment(incident["recorded_at"], zone)
        for revision in incident["revisions"]:
            revision["saved_by"] = names.get(revision.pop("saved_by_id"), "a former colleague")
            revision["saved_at_text"] = _moment(revision["saved_at"], zone)
    for exhibit in exhibits_out:
        exhibit["uploaded_by"] = names.get(exhibit.pop("uploaded_by_id"), "a former colleague")
        for event in exhibit["custody"]:
            by_id = event.pop("by_id")
            event["by"] = (names.get(by_id, "a former colleague") if by_id
                           else "advocase (automatic)" if event.pop("by_kind") == "system"
                           else "a partner application")
            event.pop("by_kind", None)

    requester = db.get(StaffUser, actor.id)
    cover = data_in.cover
    data = {
        "cover": {
            "court": cover.court, "case_number": cover.case_number,
            "parties": [{"role": p.role, "name": _party_name(p.model_dump(), record.fields)}
                        for p in cover.parties],
            "prepared_by": cover.prepared_by or (requester.display_name if requester else ""),
            "agency": org.name, "agency_reference": record.client.case_number,
            "prepared_on": _day(generated_at.astimezone(zone).date()),
            "generated_at": _moment(generated_at, zone),
            "period": f"{_day(data_in.period.start)} to {_day(data_in.period.end)}",
            "time_zone": zone.key,
        },
        "incidents": incidents_out,
        "exhibits": exhibits_out,
        "orders": orders_out,
        "court_dates": hearings_out,
        "hidden": [redaction.DESCRIPTIONS[k] for k in hidden],
        "software": f"advocase {__version__}",
    }
    shelters = list(db.scalars(sa.select(Resource.address).where(
        Resource.org_id == org_id, Resource.address_confidential.is_(True),
        Resource.address.is_not(None))))
    redactor = redaction.Redactor()
    _add_hidden_values(redactor, hidden, record, [s for s in shelters if s], all_states)
    data = redactor.scrub(data)
    return Gathered(data, sources, redactor, hidden, org_id, client_id,
                    [s.evidence.id for s in sources])


# --- hashes of what is included --------------------------------------------------------------


def _canonical(value: Any) -> bytes:
    def default(item: Any) -> str:
        if isinstance(item, datetime | date):
            return item.isoformat()
        return str(item)

    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=default).encode()


def sha256_of(value: Any) -> str:
    """SHA-256 of a record as included in the report (canonical JSON, after redaction)."""
    return hashlib.sha256(_canonical(value)).hexdigest()


# --- the timeline chart --------------------------------------------------------------------


def _month_starts(start: date, end: date) -> list[date]:
    months = []
    current = date(start.year, start.month, 1)
    while current <= end:
        months.append(current)
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return months


def timeline_svg(data: dict[str, Any], start: date, end: date) -> str:
    """A picture of the period: incidents per month as bars, and below them each incident
    (a dot; hollow when retracted), court date (a diamond) and protective order in force (a
    band). Dates and counts only."""
    width, left, right = 680, 92, 12
    span = max((end - start).days + 1, 1)
    plot = width - left - right

    def x(day: date) -> float:
        offset = min(max((day - start).days, 0), span)
        return round(left + plot * offset / span, 1)

    def day_of(moment: datetime) -> date:
        return moment.astimezone(UTC).date()

    months = _month_starts(start, end)
    counts = []
    for index, month in enumerate(months):
        following = months[index + 1] if index + 1 < len(months) else end + timedelta(days=1)
        counts.append(sum(1 for i in data["incidents"]
                          if month <= day_of(i["occurred_start"]) < following))
    top = max(counts or [0]) or 1
    bar_area, base = 90, 110
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="230" '
             f'viewBox="0 0 {width} 230" role="img" aria-labelledby="chart-title chart-desc" '
             'font-family="DejaVu Sans, sans-serif">',
             '<title id="chart-title">Timeline of the period</title>']
    summary = ", ".join(f"{m:%b %Y}: {c}" for m, c in zip(months, counts, strict=True))
    parts.append(f'<desc id="chart-desc">Incidents per month: {html.escape(summary)}. '
                 f'{len(data["court_dates"])} court dates and {len(data["orders"])} protective '
                 'orders are marked below.</desc>')
    parts.append(f'<text x="4" y="{base - bar_area / 2:.0f}" font-size="9">Incidents</text>')
    parts.append(f'<text x="4" y="{base + 10:.0f}" font-size="9">per month</text>')
    for index, (month, count) in enumerate(zip(months, counts, strict=True)):
        following = months[index + 1] if index + 1 < len(months) else end + timedelta(days=1)
        x0, x1 = x(max(month, start)), x(min(following, end + timedelta(days=1)))
        height = round(bar_area * count / top, 1)
        parts.append(f'<rect x="{x0 + 1}" y="{base - height}" width="{max(x1 - x0 - 2, 1)}" '
                     f'height="{height}" fill="#4a4a4a"/>')
        if count:
            parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{base - height - 3}" '
                         f'font-size="9" text-anchor="middle">{count}</text>')
        parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{base + 14}" font-size="9" '
                     f'text-anchor="middle">{month:%b %Y}</text>')
    parts.append(f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" '
                 'stroke="#000" stroke-width="1"/>')
    rows = {"incidents": 150, "court": 180, "orders": 210}
    parts.append(f'<text x="4" y="{rows["incidents"] + 4}" font-size="9">Incidents</text>')
    parts.append(f'<text x="4" y="{rows["court"] + 4}" font-size="9">Court dates</text>')
    parts.append(f'<text x="4" y="{rows["orders"] + 4}" font-size="9">Orders</text>')
    for incident in data["incidents"]:
        cx = x(day_of(incident["occurred_start"]))
        style = ('fill="#fff" stroke="#000" stroke-width="1.5"' if incident["retracted"]
                 else 'fill="#000"')
        parts.append(f'<circle cx="{cx}" cy="{rows["incidents"]}" r="4" {style}/>')
    for hearing in data["court_dates"]:
        day = day_of(hearing["starts_at"])
        if start <= day <= end:
            cx, cy = x(day), rows["court"]
            parts.append(f'<polygon points="{cx},{cy - 6} {cx + 6},{cy} {cx},{cy + 6} '
                         f'{cx - 6},{cy}" fill="#000"/>')
    for order in data["orders"]:
        issued, expires = order["issued"], order["expires"]
        if issued is None or issued > end or (expires is not None and expires < start):
            continue
        x0, x1 = x(max(issued, start)), x(min(expires or end, end) + timedelta(days=1))
        parts.append(f'<rect x="{x0}" y="{rows["orders"] - 5}" width="{max(x1 - x0, 2)}" '
                     'height="10" fill="#9a9a9a"/>')
    parts.append("</svg>")
    return "".join(parts)


# --- rendering ------------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES_DIR),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       undefined=StrictUndefined, auto_reload=False)


def render_html(data: dict[str, Any], *, chart: str, previews: dict[int, str],
                report_id: UUID, part: dict[str, Any] | None = None) -> str:
    """The report as one HTML page (every value escaped; the chart is our own SVG), or
    one ``part`` of it (``first``/``end``: the incidents it shows; ``opens``/``closes``:
    whether it has the cover and overview, or the exhibits and certification)."""
    from markupsafe import Markup

    return _environment().get_template(TEMPLATE).render(
        report=data, chart=Markup(chart), previews=previews,  # noqa: S704 - built above
        report_id=str(report_id), part=part)


def render_report(data: dict[str, Any], *, chart: str, previews: dict[int, bytes],
                  report_id: UUID) -> bytes:
    """The report's PDF: a long one rendered in two processes and joined
    (:mod:`app.reports.parts`), any other whole in this one."""
    from app.reports import parts
    from app.settings import get_settings

    urls = preview_urls(previews)
    first = parts.plan(data, split_from=get_settings().report_split_from_pages)
    if first is not None:
        shown = len(data["incidents"])
        try:
            return parts.render_in_parts(
                render_html(data, chart=chart, previews=urls, report_id=report_id,
                            part={"first": 0, "end": first, "opens": True, "closes": False}),
                render_html(data, chart=chart, previews=urls, report_id=report_id,
                            part={"first": first, "end": shown, "opens": False,
                                  "closes": True}),
                previews)
        except parts.PartsFailed:
            log.warning("report_rendered_whole", reason="parts_failed")
    return render_pdf(render_html(data, chart=chart, previews=urls, report_id=report_id),
                      previews)


class ExhibitImages:
    """The WeasyPrint URL fetcher of a report: it serves the exhibit previews made for it
    (``exhibit:<number>``) and refuses every other URL, so rendering reads neither the
    network nor the server's files."""

    def __init__(self, images: dict[int, bytes]) -> None:
        self.images = images

    def fetcher(self) -> Any:
        from weasyprint.urls import URLFetcher, URLFetcherResponse

        images = self.images

        class Fetcher(URLFetcher):  # type: ignore[misc]
            def fetch(self, url: str, headers: Any = None) -> Any:
                scheme, _, number = url.partition(":")
                if scheme == "exhibit" and number.isdigit() and int(number) in images:
                    return URLFetcherResponse(url, images[int(number)],
                                              headers={"Content-Type": "image/jpeg"})
                raise ValueError("a report loads nothing but its own exhibit images")

        return Fetcher()


def _read_page_references_once() -> None:
    """pydyf (0.13) builds the tuple of every page's reference anew each time
    ``PDF.page_references`` is read, and WeasyPrint's tagging reads it once for every
    structure element it makes, so tagging a long report grew with pages × elements. This
    keeps the tuple and builds it again only when a page has been added since (pages are
    only ever appended). Installed once for the process; a pydyf without that property is
    left as it is."""
    import pydyf

    current = pydyf.PDF.__dict__.get("page_references")
    if not isinstance(current, property) or getattr(current.fget, "kept", False):
        return
    build = current.fget

    def page_references(pdf: Any) -> tuple[bytes, ...]:
        kids = pdf.pages["Kids"]
        kept = pdf.__dict__.get("_page_references_kept")
        if kept is None or kept[0] is not kids or kept[1] != len(kids):
            kept = (kids, len(kids), build(pdf))
            pdf.__dict__["_page_references_kept"] = kept
        return kept[2]

    page_references.kept = True  # type: ignore[attr-defined]
    pydyf.PDF.page_references = property(page_references)


class _DefaultLevelZlib:
    """What pydyf sees as ``zlib``: the same, but streams compressed at zlib's default level
    (6) instead of the 9 pydyf (0.13) asks for. Measured on the 486-page benchmark report:
    writing the PDF 8.6–8.9 s → 6.9–7.0 s of CPU, for a PDF 0.3 % larger."""

    def __getattr__(self, name: str) -> Any:
        return getattr(zlib, name)

    @staticmethod
    def compressobj(level: int = zlib.Z_DEFAULT_COMPRESSION, *args: Any, **kwargs: Any) -> Any:
        return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, *args, **kwargs)


def _compress_at_default_level_once() -> None:
    """Installed once for the process; a pydyf that does not use ``zlib.compressobj`` as a
    module global is left as it is."""
    import pydyf

    if getattr(pydyf, "zlib", None) is zlib:
        pydyf.zlib = _DefaultLevelZlib()  # type: ignore[attr-defined]


def render_pdf(document: str, images: dict[int, bytes]) -> bytes:
    """The page as a tagged PDF/A-3b (A4, fonts embedded, text selectable)."""
    from weasyprint import HTML  # imported on first use: it loads Pango, slow to start

    _read_page_references_once()
    _compress_at_default_level_once()
    with cyclic_gc_paused():  # a fifth of a long report's rendering time: docs/benchmarks.md
        pdf = HTML(string=document, url_fetcher=ExhibitImages(images).fetcher()).write_pdf(
            pdf_variant=PDF_VARIANT, pdf_tags=True)
    if pdf is None:
        raise RuntimeError("WeasyPrint returned no PDF")
    return pdf


def preview_urls(previews: dict[int, bytes]) -> dict[int, str]:
    """The URL each preview is rendered from (:class:`ExhibitImages` serves them)."""
    return {number: f"exhibit:{number}" for number in previews}
