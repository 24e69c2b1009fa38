"""The directory as CSV: one listing a row, lists joined with "; ".

Cells a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage
return) are written with a leading apostrophe (OWASP's CSV-injection guard), and that
apostrophe is taken off again on import, so an export imports as it was.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.resources import opening_hours

# The columns of an import, in the order of an export; an export adds READ_ONLY_COLUMNS.
COLUMNS: tuple[str, ...] = (
    "name", "categories", "description", "services", "languages", "genders_served",
    "min_age", "max_age", "children_accepted", "pets_accepted", "accessibility",
    "time_zone", "hours", "phone", "website", "service_area", "regions", "address",
    "address_confidential", "beds_total", "beds_available",
)
READ_ONLY_COLUMNS: tuple[str, ...] = ("id", "capacity_updated_at", "updated_at")
EXPORT_COLUMNS: tuple[str, ...] = ("id", *COLUMNS, "capacity_updated_at", "updated_at")
REQUIRED_COLUMNS: tuple[str, ...] = ("name", "categories")
LIST_COLUMNS = frozenset({"categories", "services", "languages", "genders_served",
                          "accessibility", "regions"})
SEPARATOR = ";"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TRUE, FALSE = ("true", "yes", "y", "1"), ("false", "no", "n", "0")


class CellError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def guard(value: str) -> str:
    """A cell no spreadsheet will evaluate."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def unguard(value: str) -> str:
    """The value :func:`guard` was given."""
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return f"{SEPARATOR} ".join(str(v) for v in value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def write(rows: Iterable[dict[str, Any]]) -> str:
    """The CSV text of ``rows`` (dicts keyed by EXPORT_COLUMNS), every cell guarded."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([guard(_text(row.get(column))) for column in EXPORT_COLUMNS])
    return out.getvalue()


def _flag(column: str, text: str) -> bool | None:
    if not text:
        return None
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise CellError(column, "true or false (or empty: not known)")


def _number(column: str, text: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise CellError(column, "a whole number") from exc


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(SEPARATOR) if part.strip()]


def to_listing(cells: dict[str, str]) -> tuple[dict[str, Any], list[CellError]]:
    """One row's cells as the fields of a new listing (a ResourceCreate's shape), and the
    cells that could not be read at all."""
    cells = {column: unguard(value.strip()) for column, value in cells.items()}
    errors: list[CellError] = []

    def read(function: Any, column: str) -> Any:
        try:
            return function(column, cells.get(column, ""))
        except CellError as exc:
            errors.append(exc)
            return None

    listing: dict[str, Any] = {
        "name": cells.get("name", ""),
        "description": cells.get("description", ""),
        "eligibility": {
            "genders_served": _list(cells.get("genders_served", "")),
            "min_age": read(_number, "min_age"), "max_age": read(_number, "max_age"),
            "children_accepted": read(_flag, "children_accepted"),
            "pets_accepted": read(_flag, "pets_accepted"),
        },
    }
    for column in ("categories", "services", "languages", "accessibility", "regions"):
        listing[column] = _list(cells.get(column, ""))
    for column in ("phone", "website", "service_area", "address"):
        listing[column] = cells.get(column) or None
    confidential = read(_flag, "address_confidential")
    listing["address_confidential"] = True if confidential is None else confidential
    beds_total, beds_available = read(_number, "beds_total"), read(_number, "beds_available")
    if beds_total is not None or beds_available is not None:
        listing["capacity"] = {"beds_total": beds_total, "beds_available": beds_available}
    hours_text, time_zone = cells.get("hours", ""), cells.get("time_zone", "")
    if hours_text:
        try:
            always_open, weekly = opening_hours.parse(hours_text)
            listing["opening_hours"] = {"time_zone": time_zone, "always_open": always_open,
                                        "weekly": weekly}
        except ValueError as exc:
            errors.append(CellError("hours", str(exc)))
    elif time_zone:
        errors.append(CellError("hours", "give the hours with the time zone (or neither)"))
    return listing, errors


def column_of(field: str) -> str:
    """The CSV column a listing field (a dotted path, as in a problem's errors) came from."""
    parts = field.split(".")
    head = parts[0]
    if head == "eligibility" and len(parts) > 1:
        return parts[1]
    if head == "capacity":
        return parts[1] if len(parts) > 1 and parts[1].startswith("beds") else "beds_available"
    if head == "opening_hours":
        return "time_zone" if len(parts) > 1 and parts[1] == "time_zone" else "hours"
    return head if head in COLUMNS else "name"


@dataclass
class Row:
    line: int  # where the record starts, as a text editor or spreadsheet numbers it
    cells: dict[str, str]
    extra_cells: bool  # more cells than the header has columns


def read_rows(text: str) -> tuple[list[str], list[Row]]:
    """The header and the data rows of a CSV file; blank lines are skipped (and counted)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[Row] = []
    start = 1
    for record in reader:
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip().lower().lstrip("\ufeff") for cell in record]
            continue
        padded = record + [""] * (len(header) - len(record))
        rows.append(Row(line, dict(zip(header, padded, strict=False)),
                        len(record) > len(header)))
    return header or [], rows
