"""The client pages' forms: posted fields into the services' shapes, stored values back.

Inputs are named by where their value goes (``safe_contact.channels.0.code_word``,
``content.go_bag.2.ready``, ``answers.threatened_to_kill``), the same dotted paths the
schemas and services name in their field errors, so an error lands next to its input.
Forms show a few blank rows for lists (no script adds rows); rows left blank are
dropped, and :class:`FormReader` remembers which form row each kept item came from, so
an error about the second kept item lands on the row where it was typed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from app.core.errors import DomainError

CHANNELS = (("phone", "Phone call"), ("sms", "Text message (SMS)"), ("email", "Email"),
            ("post", "Post"))
WEEKDAYS = (("mon", "Mon"), ("tue", "Tue"), ("wed", "Wed"), ("thu", "Thu"), ("fri", "Fri"),
            ("sat", "Sat"), ("sun", "Sun"))
CONTACT_KINDS = (("phone", "Phone"), ("email", "Email"), ("post", "Post"), ("other", "Other"))
# Rows a form shows beyond those already filled in.
BLANK_ROWS = 2
# No form has more rows than this; a crafted post cannot make the reader loop for long.
MAX_ROWS = 60

# The plan's list sections: their text inputs, then their tick boxes.
PLAN_LISTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "safe_places": (("place", "how_to_get_there"), ()),
    "go_bag": (("item",), ("ready",)),
    "important_contacts": (("name", "phone", "note"), ()),
    "technology_safety": (("item",), ("done",)),
}
PLAN_TEXTS = ("children", "pets", "money", "housing_and_legal", "reasons_for_leaving", "notes")


@dataclass(frozen=True)
class FormProblem:
    """What a page shows for a refused form: the summary and the errors per input."""

    detail: str
    errors: list[dict[str, str]]
    status: int = 422


@dataclass
class FormReader:
    """Reads a posted form (or nothing, for a blank one) and keeps what was typed."""

    form: FormData | None = None
    names: list[str] = field(default_factory=list)  # every input read, in page order
    values: dict[str, Any] = field(default_factory=dict)  # as typed, to show again
    counts: dict[str, int] = field(default_factory=dict)  # rows each list had on the page
    rows: dict[str, list[int]] = field(default_factory=dict)  # kept item -> its form row

    def _raw(self, name: str) -> list[str]:
        if self.form is None:
            return []
        return [value for value in self.form.getlist(name) if isinstance(value, str)]

    def text(self, name: str) -> str:
        self.names.append(name)
        raw = self._raw(name)
        self.values[name] = raw[0] if raw else ""
        return self.values[name].strip()

    def flag(self, name: str) -> bool:
        self.names.append(name)
        self.values[name] = bool(self._raw(name))
        return bool(self.values[name])

    def choices(self, name: str) -> list[str]:
        self.names.append(name)
        self.values[name] = [value.strip() for value in self._raw(name)][:MAX_ROWS]
        return list(self.values[name])

    def count(self, prefix: str, texts: Sequence[str]) -> int:
        """How many rows of ``prefix`` the page had (text inputs are always posted)."""
        rows = 0
        while rows < MAX_ROWS and any(self._raw(f"{prefix}.{rows}.{name}") for name in texts):
            rows += 1
        self.counts[prefix] = rows
        return rows

    def keep(self, list_path: str, form_rows: list[int]) -> None:
        self.rows[list_path] = form_rows

    # --- errors back onto inputs -----------------------------------------------------

    def field(self, loc: Sequence[str | int] | str) -> str:
        """The input a schema or service error is about (``""``: the form as a whole)."""
        parts: list[str | int] = list(loc.split(".")) if isinstance(loc, str) else list(loc)
        schema: list[str] = []
        form: list[str] = []
        for part in parts:
            if isinstance(part, str) and part.isdigit():
                part = int(part)
            if isinstance(part, int):
                kept = self.rows.get(".".join(schema))
                form.append(str(kept[part] if kept is not None and 0 <= part < len(kept)
                                else part))
            else:
                form.append(part)
            schema.append(str(part))
        name = ".".join(form)
        while name and name not in self.names:
            inside = next((n for n in self.names if n.startswith(name + ".")), None)
            if inside is not None:
                return inside
            name = name.rpartition(".")[0]
        return name

    def schema_errors(self, exc: ValidationError,
                      prefix: Sequence[str] = ()) -> list[dict[str, str]]:
        # The offending value is never repeated: it may be personal data.
        return [{"field": self.field((*prefix, *error["loc"])),
                 "message": str(error.get("msg") or "invalid")}
                for error in exc.errors(include_url=False, include_input=False,
                                        include_context=False)]

    def relabel(self, exc: DomainError, *, rename: dict[str, str] | None = None,
                prefix: str = "") -> FormProblem:
        """A service's refusal with its field errors put on this form's inputs."""
        errors = []
        for error in exc.errors or []:
            name = str(error.get("field") or "")
            name = (rename or {}).get(name, prefix + name if name else "")
            errors.append({"field": self.field(name) if name else "",
                           "message": str(error.get("message") or "invalid")})
        return FormProblem(exc.detail, errors, exc.status)


def invalid_form(errors: list[dict[str, str]]) -> FormProblem:
    return FormProblem("Some answers need changing. Each one is marked next to its field.",
                       errors)


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


# --- the client form ---------------------------------------------------------------------


def read_client_form(r: FormReader, *, editing: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The posted client form as (the API's client body, the household body)."""
    body: dict[str, Any] = {
        "preferred_name": r.text("preferred_name") or None,
        "legal_name": r.text("legal_name") or None,
        "aliases": lines(r.text("aliases")) or None,
        "date_of_birth": r.text("date_of_birth") or None,
    }
    contacts, kept = [], []
    for row in range(r.count("contact_details", ("kind", "value", "label"))):
        prefix = f"contact_details.{row}"
        kind = r.text(f"{prefix}.kind")
        value, label = r.text(f"{prefix}.value"), r.text(f"{prefix}.label")
        if value or label:
            contacts.append({"kind": kind, "value": value, "label": label or None})
            kept.append(row)
    r.keep("contact_details", kept)
    body["contact_details"] = contacts or None
    body["address"] = r.text("address") or None
    body["notes"] = r.text("notes") or None
    body["safe_contact"] = _read_safe_contact(r)
    other_party = {
        "name": r.text("other_party.name") or None,
        "aliases": lines(r.text("other_party.aliases")),
        "description": r.text("other_party.description") or None,
        "vehicle": r.text("other_party.vehicle") or None,
        "known_addresses": lines(r.text("other_party.known_addresses")),
    }
    body["other_party"] = other_party if any(other_party.values()) else None
    household = {"children": _rows(r, "household.children", ("first_name", "age",
                                                               "custody_notes")),
                 "pets": _rows(r, "household.pets", ("name", "species", "notes"))}
    status = r.text("status")
    if editing:
        body["status"] = status or None
        body["closing_reason"] = r.text("closing_reason") or None
        body["urgent"] = r.flag("urgent")
    else:
        body["status"] = status or "intake"
    return body, household


def _rows(r: FormReader, prefix: str, texts: Sequence[str]) -> list[dict[str, Any]]:
    items, kept = [], []
    for row in range(r.count(prefix, texts)):
        item = {name: r.text(f"{prefix}.{row}.{name}") or None for name in texts}
        if any(item.values()):
            items.append(item)
            kept.append(row)
    r.keep(prefix, kept)
    return items


def _read_safe_contact(r: FormReader) -> dict[str, Any]:
    channels, kept = [], []
    time_zone = r.text("safe_contact.time_zone") or "UTC"
    for slot, (channel, _) in enumerate(CHANNELS):
        prefix = f"safe_contact.channels.{slot}"
        safe = r.flag(f"{prefix}.safe")
        leave_message = r.flag(f"{prefix}.leave_message")
        code_word = r.text(f"{prefix}.code_word")
        windows, window_rows = [], []
        for row in range(r.count(f"{prefix}.windows", ("start", "end"))):
            at = f"{prefix}.windows.{row}"
            days = r.choices(f"{at}.days")
            start, end = r.text(f"{at}.start"), r.text(f"{at}.end")
            if days or start or end:
                windows.append({"days": days, "start": start, "end": end})
                window_rows.append(row)
        if safe or leave_message or code_word or windows:
            r.keep(f"safe_contact.channels.{len(channels)}.windows", window_rows)
            channels.append({"channel": channel, "safe": safe, "windows": windows,
                             "leave_message": leave_message, "code_word": code_word or None})
            kept.append(slot)
    r.keep("safe_contact.channels", kept)
    return {"time_zone": time_zone, "channels": channels}


def client_values(fields: dict[str, Any] | None, household: dict[str, Any] | None,
                  *, status: str = "intake", closing_reason: str | None = None,
                  urgent: bool = False) -> FormReader:
    """A form filled in from a stored client (or blank), with room for more rows."""
    f = fields or {}
    r = FormReader()
    v = r.values
    for name in ("preferred_name", "legal_name", "date_of_birth", "address", "notes"):
        v[name] = f.get(name) or ""
    v["aliases"] = "\n".join(f.get("aliases") or [])
    contacts = f.get("contact_details") or []
    for row, contact in enumerate(contacts):
        for name in ("kind", "value", "label"):
            v[f"contact_details.{row}.{name}"] = contact.get(name) or ""
    r.counts["contact_details"] = len(contacts) + BLANK_ROWS
    safe_contact = f.get("safe_contact") or {}
    v["safe_contact.time_zone"] = safe_contact.get("time_zone") or "UTC"
    by_channel: dict[str, dict[str, Any]] = {}
    for channel in safe_contact.get("channels") or []:
        by_channel.setdefault(channel.get("channel"), channel)
    for slot, (name, _) in enumerate(CHANNELS):
        channel = by_channel.get(name, {})
        prefix = f"safe_contact.channels.{slot}"
        v[f"{prefix}.safe"] = bool(channel.get("safe"))
        v[f"{prefix}.leave_message"] = bool(channel.get("leave_message"))
        v[f"{prefix}.code_word"] = channel.get("code_word") or ""
        windows = channel.get("windows") or []
        for row, window in enumerate(windows):
            v[f"{prefix}.windows.{row}.days"] = list(window.get("days") or [])
            v[f"{prefix}.windows.{row}.start"] = window.get("start") or ""
            v[f"{prefix}.windows.{row}.end"] = window.get("end") or ""
        r.counts[f"{prefix}.windows"] = len(windows) + 1
    other = f.get("other_party") or {}
    for name in ("name", "description", "vehicle"):
        v[f"other_party.{name}"] = other.get(name) or ""
    for name in ("aliases", "known_addresses"):
        v[f"other_party.{name}"] = "\n".join(other.get(name) or [])
    for prefix, names in (("children", ("first_name", "age", "custody_notes")),
                          ("pets", ("name", "species", "notes"))):
        items = (household or {}).get(prefix) or []
        for row, item in enumerate(items):
            for name in names:
                value = item.get(name)
                v[f"household.{prefix}.{row}.{name}"] = "" if value is None else str(value)
        r.counts[f"household.{prefix}"] = len(items) + 1
    v["status"] = status
    v["closing_reason"] = closing_reason or ""
    v["urgent"] = urgent
    return r


# --- the safety plan form ----------------------------------------------------------------


def read_plan_form(r: FormReader) -> dict[str, Any]:
    """The posted plan form as the API's plan body (content, review date, change note)."""
    content: dict[str, Any] = {}
    for section, (texts, flags) in PLAN_LISTS.items():
        prefix = f"content.{section}"
        items, kept = [], []
        for row in range(r.count(prefix, texts)):
            item: dict[str, Any] = {name: r.text(f"{prefix}.{row}.{name}") for name in texts}
            item.update({name: r.flag(f"{prefix}.{row}.{name}") for name in flags})
            if any(item[name] for name in texts):
                items.append(item)
                kept.append(row)
        r.keep(prefix, kept)
        content[section] = items
    content["code_word"] = {
        "word": r.text("content.code_word.word"),
        "trusted_person": r.text("content.code_word.trusted_person"),
        "check_in_time": r.text("content.code_word.check_in_time") or None,
    }
    content["contact_with_other_party"] = {
        "mode": r.text("content.contact_with_other_party.mode") or "none",
        "notes": r.text("content.contact_with_other_party.notes"),
    }
    for name in PLAN_TEXTS:
        content[name] = r.text(f"content.{name}")
    body: dict[str, Any] = {"content": content,
                            "change_note": r.text("change_note") or None}
    review_date = r.text("review_date")
    if review_date:
        body["review_date"] = review_date
    return body


def plan_values(content: dict[str, Any], review_date: str = "") -> FormReader:
    """A plan form filled in from a plan (or the template), with room for more rows."""
    r = FormReader()
    v = r.values
    for section, (texts, flags) in PLAN_LISTS.items():
        items = content.get(section) or []
        for row, item in enumerate(items):
            for name in texts:
                v[f"content.{section}.{row}.{name}"] = item.get(name) or ""
            for name in flags:
                v[f"content.{section}.{row}.{name}"] = bool(item.get(name))
        r.counts[f"content.{section}"] = len(items) + BLANK_ROWS
    code_word = content.get("code_word") or {}
    for name in ("word", "trusted_person", "check_in_time"):
        v[f"content.code_word.{name}"] = code_word.get(name) or ""
    contact = content.get("contact_with_other_party") or {}
    v["content.contact_with_other_party.mode"] = contact.get("mode") or "none"
    v["content.contact_with_other_party.notes"] = contact.get("notes") or ""
    for name in PLAN_TEXTS:
        v[f"content.{name}"] = content.get(name) or ""
    v["review_date"] = review_date
    v["change_note"] = ""
    return r


# --- risk assessment answers -------------------------------------------------------------


def read_answers(r: FormReader, items: Iterable[Any]) -> tuple[dict[str, Any],
                                                                list[dict[str, str]]]:
    """The answers posted for an instrument's items (unanswered: None), and the answers
    that are not even of the right shape (a number that is not a number)."""
    answers: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for item in items:
        name = f"answers.{item.id}"
        if item.type == "multi_choice":
            answers[item.id] = r.choices(name)
            continue
        text = r.text(name)
        if not text:
            answers[item.id] = None
        elif item.type == "yes_no":
            answers[item.id] = {"yes": True, "no": False}.get(text, text)
        elif item.type == "number":
            try:
                answers[item.id] = int(text)
            except ValueError:
                errors.append({"field": name, "message": "must be a whole number"})
        else:
            answers[item.id] = text
    return answers, errors
