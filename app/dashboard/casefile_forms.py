"""The case-file pages' forms: incidents, protective orders and court dates, posted fields
into the services' shapes and stored records back into form values.

As in ``client_forms``, inputs are named by where their value goes
(``witnesses.1.contact``, ``police.report_number``) so a schema's or a service's field
error lands next to its input. Where one value is typed in two inputs — when an incident
happened (a date and a time, in the client's time zone), when a hearing starts — the
reader composes it and the errors about it are put back on the date input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.core.timezones import iana_zone
from app.dashboard.client_forms import BLANK_ROWS, FormReader

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")

# Tri-state answers (a radio group): yes, no, or not known.
TRI_STATE = (("yes", "Yes"), ("no", "No"), ("", "Not known"))
PRECISIONS = (("exact", "At a known date and time"),
              ("date", "On a known day, time not known"),
              ("range", "Somewhere between two moments"))

# Errors about a composed value, put on the input where its date is typed.
INCIDENT_RENAMES = {"occurred.start": "occurred.start_date", "occurred.end": "occurred.end_date",
                    "occurred": "occurred.precision"}
HEARING_RENAMES = {"starts_at": "starts_on"}


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def text(r: FormReader, name: str) -> str:
    """A text input, trimmed, with the browser's CRLF line ends made LF (a textarea sent
    back unchanged must not read as a changed record)."""
    return r.text(name).replace("\r\n", "\n").replace("\r", "\n")


def tri_state(r: FormReader, name: str, errors: list[dict[str, str]]) -> bool | None:
    value = r.text(name)
    if value not in ("", "yes", "no"):
        errors.append(_error(name, "choose yes, no or not known"))
        return None
    return {"yes": True, "no": False}.get(value)


def tri_state_value(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def rows(r: FormReader, prefix: str, texts: Sequence[str], *,
         keep_when: Sequence[str] | None = None,
         extra: Sequence[str] = ()) -> list[dict[str, str]]:
    """The rows of a list the page showed; a row is kept when any of ``keep_when`` (all
    its text inputs by default) was filled in. ``extra`` inputs (a select) are read too."""
    items, kept = [], []
    for row in range(r.count(prefix, texts)):
        item = {name: text(r, f"{prefix}.{row}.{name}") for name in (*extra, *texts)}
        if any(item[name] for name in (keep_when or texts)):
            items.append(item)
            kept.append(row)
    r.keep(prefix, kept)
    return items


def lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def rename(errors: list[dict[str, str]], renames: dict[str, str]) -> list[dict[str, str]]:
    return [{**e, "field": renames.get(e["field"], e["field"])} for e in errors]


def _checked_day(value: str, field: str, errors: list[dict[str, str]]) -> str:
    if value and not (_DATE.match(value) and _is_date(value)):
        errors.append(_error(field, "not a date (YYYY-MM-DD)"))
    return value


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _checked_time(value: str, field: str, errors: list[dict[str, str]]) -> str:
    if value and not (_TIME.match(value) and _is_time(value)):
        errors.append(_error(field, "not a time (HH:MM)"))
    return value


def _is_time(value: str) -> bool:
    try:
        time.fromisoformat(value)
    except ValueError:
        return False
    return True


# --- incidents ---------------------------------------------------------------------------


def _read_occurrence(r: FormReader, errors: list[dict[str, str]]) -> dict[str, Any]:
    precision = r.text("occurred.precision")
    start_day = _checked_day(r.text("occurred.start_date"), "occurred.start_date", errors)
    start_time = _checked_time(r.text("occurred.start_time"), "occurred.start_time", errors)
    end_day = _checked_day(r.text("occurred.end_date"), "occurred.end_date", errors)
    end_time = _checked_time(r.text("occurred.end_time"), "occurred.end_time", errors)
    time_zone = r.text("occurred.time_zone")
    if precision not in {value for value, _ in PRECISIONS}:
        errors.append(_error("occurred.precision", "say how precisely the time is known"))
    if not start_day:
        errors.append(_error("occurred.start_date", "give the date"))
    if precision == "exact" and not start_time:
        errors.append(_error("occurred.start_time",
                             "give the time, or choose that only the day is known"))
    if precision == "date" and start_time:
        errors.append(_error("occurred.start_time", "only the day is known: leave the time "
                                                    "empty, or choose a known date and time"))
    if precision in ("exact", "date") and (end_day or end_time):
        errors.append(_error("occurred.end_date", "only a range has an end: clear it, or "
                                                  "choose somewhere between two moments"))
    if precision == "range" and not end_day:
        errors.append(_error("occurred.end_date", "give the latest day it could have been"))
    if end_time and not end_day:
        errors.append(_error("occurred.end_date", "give the day of the end time"))
    if not time_zone:
        errors.append(_error("occurred.time_zone", "give the time zone"))
    start = start_day + (f"T{start_time}" if start_time and precision != "date" else "")
    end = (end_day + (f"T{end_time}" if end_time else "")) if end_day else None
    return {"precision": precision or "exact", "start": start, "end": end,
            "time_zone": time_zone}


def read_incident_form(r: FormReader) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The posted incident form as the API's incident body, and the errors found before
    the schema is asked (a missing time, an end for a day-only incident)."""
    errors: list[dict[str, str]] = []
    body: dict[str, Any] = {"occurred": _read_occurrence(r, errors)}
    body["categories"] = r.choices("categories")
    for name in ("place", "client_account", "advocate_observations", "injuries",
                 "medical_care"):
        body[name] = text(r, name)
    body["witnesses"] = rows(r, "witnesses", ("name", "contact", "note"))
    body["police"] = {"involved": tri_state(r, "police.involved", errors),
                      "agency": text(r, "police.agency"),
                      "report_number": text(r, "police.report_number"),
                      "officer": text(r, "police.officer")}
    body["children_present"] = tri_state(r, "children_present", errors)
    body["weapons_involved"] = tri_state(r, "weapons_involved", errors)
    body["respondent_identifiers"] = rows(r, "respondent_identifiers", ("value", "platform"),
                                          extra=("kind",))
    return body, errors


def _local(text_value: str) -> datetime:
    return datetime.fromisoformat(text_value)


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S" if moment.second else "%H:%M")


def incident_values(state: dict[str, Any] | None, *, time_zone: str) -> FormReader:
    """An incident form filled in from a revision's state (or blank, in the client's
    time zone), with room for more witnesses and identifiers."""
    r = FormReader()
    v = r.values
    s = state or {}
    occurred = s.get("occurred") or {"precision": "exact", "time_zone": time_zone,
                                     "start": "", "end": None}
    v["occurred.precision"] = occurred["precision"]
    v["occurred.time_zone"] = occurred["time_zone"]
    for name in ("start_date", "start_time", "end_date", "end_time"):
        v[f"occurred.{name}"] = ""
    if occurred["start"]:
        if occurred["precision"] == "date":
            v["occurred.start_date"] = occurred["start"]
        else:
            start = _local(occurred["start"])
            v["occurred.start_date"] = start.date().isoformat()
            if occurred["precision"] == "exact" or start.time() != time(0, 0):
                v["occurred.start_time"] = _clock(start)
    if occurred.get("end"):
        end = _local(occurred["end"])
        if end.time() == time(0, 0):
            # The end of a day is stored as the next midnight: show the day itself.
            v["occurred.end_date"] = (end.date() - timedelta(days=1)).isoformat()
        else:
            v["occurred.end_date"] = end.date().isoformat()
            v["occurred.end_time"] = _clock(end)
    v["categories"] = list(s.get("categories") or [])
    for name in ("place", "client_account", "advocate_observations", "injuries",
                 "medical_care"):
        v[name] = s.get(name) or ""
    witnesses = s.get("witnesses") or []
    for row, witness in enumerate(witnesses):
        for name in ("name", "contact", "note"):
            v[f"witnesses.{row}.{name}"] = witness.get(name) or ""
    r.counts["witnesses"] = len(witnesses) + BLANK_ROWS
    police = s.get("police") or {}
    v["police.involved"] = tri_state_value(police.get("involved"))
    for name in ("agency", "report_number", "officer"):
        v[f"police.{name}"] = police.get(name) or ""
    v["children_present"] = tri_state_value(s.get("children_present"))
    v["weapons_involved"] = tri_state_value(s.get("weapons_involved"))
    identifiers = s.get("respondent_identifiers") or []
    for row, identifier in enumerate(identifiers):
        for name in ("kind", "value", "platform"):
            v[f"respondent_identifiers.{row}.{name}"] = identifier.get(name) or ""
    r.counts["respondent_identifiers"] = len(identifiers) + BLANK_ROWS
    v["reason"] = ""
    return r


def describe_occurrence(occurred: dict[str, Any]) -> str:
    """When it happened, in words, in the client's time zone."""
    zone = occurred["time_zone"]
    if occurred["precision"] == "date":
        return f"{occurred['start']}, time not known ({zone})"
    start = _local(occurred["start"])
    if occurred["precision"] == "exact":
        return f"{start:%Y-%m-%d} at {_clock(start)} ({zone})"
    end = _local(occurred["end"]) if occurred.get("end") else None
    first = f"{start:%Y-%m-%d}" + ("" if start.time() == time(0, 0) else f" {_clock(start)}")
    if end is None:
        return f"From {first} ({zone})"
    if end.time() == time(0, 0):
        last = f"the end of {(end.date() - timedelta(days=1)).isoformat()}"
    else:
        last = f"{end:%Y-%m-%d} {_clock(end)}"
    return f"Between {first} and {last} ({zone})"


# --- protective orders -------------------------------------------------------------------

ORDER_FIELDS = ("order_type", "status", "court", "case_number", "issued_on", "expires_on",
                "conditions", "notes")


def read_order_form(r: FormReader) -> dict[str, Any]:
    """The posted order form as the API's order body (empty inputs: None)."""
    body: dict[str, Any] = {"order_type": r.text("order_type"), "status": r.text("status")}
    for name in ("court", "case_number", "issued_on", "expires_on", "notes"):
        body[name] = text(r, name) or None
    body["conditions"] = lines(text(r, "conditions"))
    return body


def order_values(record: Any | None) -> FormReader:
    r = FormReader()
    v = r.values
    if record is None:
        v.update({"order_type": "temporary", "status": "requested", "conditions": ""})
        return r
    o = record.order
    v["order_type"], v["status"] = o.order_type, o.status
    v["court"], v["case_number"], v["notes"] = (record.court or "", record.case_number or "",
                                                record.notes or "")
    v["issued_on"] = o.issued_on.isoformat() if o.issued_on else ""
    v["expires_on"] = o.expires_on.isoformat() if o.expires_on else ""
    v["conditions"] = "\n".join(record.conditions)
    return r


def order_changes(checked: dict[str, Any], record: Any) -> dict[str, Any]:
    """What differs from the stored order, as a PATCH body (None clears)."""
    o = record.order
    current = {"order_type": o.order_type, "status": o.status, "court": record.court,
               "case_number": record.case_number, "issued_on": o.issued_on,
               "expires_on": o.expires_on, "conditions": list(record.conditions),
               "notes": record.notes}
    return {name: checked[name] for name in ORDER_FIELDS
            if (checked[name] or None) != (current[name] or None)}


# --- court dates -------------------------------------------------------------------------

HEARING_FIELDS = ("kind", "starts_at", "time_zone", "status", "court", "notes", "outcome",
                  "protective_order_id")


def _hearing_moment(day: str, clock: str, zone_name: str,
                    errors: list[dict[str, str]]) -> datetime | None:
    if not day:
        errors.append(_error("starts_on", "give the date"))
    if not clock:
        errors.append(_error("starts_time", "give the time"))
    if not zone_name:
        errors.append(_error("time_zone", "give the court's time zone"))
        return None
    try:
        zone = iana_zone(zone_name)
    except ValueError:
        errors.append(_error("time_zone", "not an IANA time zone name"))
        return None
    if not (day and clock) or any(e["field"] in ("starts_on", "starts_time") for e in errors):
        return None
    naive = datetime.combine(date.fromisoformat(day), time.fromisoformat(clock))
    local = naive.replace(tzinfo=zone)
    if local.astimezone(ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None) != naive:
        errors.append(_error("starts_time", "this local time does not exist in the time zone "
                                            "(the clocks changed)"))
        return None
    return local


def read_hearing_form(r: FormReader) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The posted court-date form as the API's body (the moment composed in the court's
    time zone) and the errors found composing it."""
    errors: list[dict[str, str]] = []
    day = _checked_day(r.text("starts_on"), "starts_on", errors)
    clock = _checked_time(r.text("starts_time"), "starts_time", errors)
    zone = r.text("time_zone")
    body: dict[str, Any] = {"kind": r.text("kind"), "status": r.text("status"),
                            "starts_at": _hearing_moment(day, clock, zone, errors),
                            "time_zone": zone}
    for name in ("court", "notes", "outcome"):
        body[name] = text(r, name) or None
    body["protective_order_id"] = r.text("protective_order_id") or None
    return body, errors


def hearing_values(record: Any | None, *, time_zone: str) -> FormReader:
    r = FormReader()
    v = r.values
    if record is None:
        v.update({"kind": "protective_order_hearing", "status": "scheduled",
                  "time_zone": time_zone})
        return r
    h = record.hearing
    local = record.local_starts_at
    v.update({"kind": h.kind, "status": h.status, "time_zone": h.time_zone,
              "starts_on": local.date().isoformat(), "starts_time": _clock(local),
              "court": record.court or "", "notes": record.notes or "",
              "outcome": record.outcome or "",
              "protective_order_id": str(h.protective_order_id or "")})
    return r


def hearing_changes(checked: dict[str, Any], record: Any) -> dict[str, Any]:
    h = record.hearing
    current = {"kind": h.kind, "starts_at": h.starts_at, "time_zone": h.time_zone,
               "status": h.status, "court": record.court, "notes": record.notes,
               "outcome": record.outcome, "protective_order_id": h.protective_order_id}
    return {name: checked[name] for name in HEARING_FIELDS
            if (checked[name] or None) != (current[name] or None)}
