"""The de-identified aggregate report for funders: counts of one agency over a period.

What it counts (the requester's agency only, never another's):

- clients served: distinct clients with at least one service contact in the period (or in
  each month or quarter); new clients: clients created in it;
- contacts and hours by service type (the service log's kinds), shelter nights (the
  ``shelter_night`` contacts);
- referrals by the referred resource's category (its first listed one) and outcome (the
  referral's state now), for referrals sent in the period.

- clients served by age band (at the period's end), over the whole period.

Counts are taken in SQL, ids never leave this module, and the one encrypted field opened
is the date of birth of each client served (the only demographic field kept; it is
encrypted under each client's key, so bands need every served client's key): opened in
the worker from one streamed query (each client's date of birth beside its data key,
``BATCH`` rows at a time), turned into a band at once and dropped with its key. So no
name, case number or client id can reach the CSV or the PDF.

Every table goes through :mod:`app.reports.suppression` before it is written.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app import __version__
from app.clients.models import Client
from app.core import keys
from app.identity.models import Org
from app.referrals.models import Referral
from app.reports import court_summary
from app.reports.suppression import Suppressed, marker, suppress
from app.resources.models import Resource
from app.service_log.models import ServiceContact
from app.service_log.service import KINDS as SERVICE_KINDS

TEMPLATE = "funder_aggregate.html"
SHELTER_KIND = "shelter_night"
OUTCOMES: tuple[str, ...] = ("sent", "accepted", "declined", "completed", "closed",
                             "withdrawn")
SERVICE_LABELS = {kind: kind.replace("_", " ").capitalize() for kind in SERVICE_KINDS}
UNCATEGORISED = "uncategorised"
BATCH = 2000  # rows fetched at a time from the streamed age-band query
AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("Under 18", 0, 17), ("18-24", 18, 24), ("25-34", 25, 34), ("35-44", 35, 44),
    ("45-54", 45, 54), ("55-64", 55, 64), ("65 and over", 65, 200))
NOT_RECORDED = "Not recorded"


def age_band(date_of_birth: str | None, on: date) -> str:
    """The band of someone born on ``date_of_birth`` (YYYY-MM-DD) on the day ``on``."""
    try:
        born = date.fromisoformat(date_of_birth or "")
    except ValueError:
        return NOT_RECORDED
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return next((label for label, low, high in AGE_BANDS if low <= age <= high), NOT_RECORDED)


def _age_bands(db: Session, org_id: UUID, served: sa.Select[Any], on: date) -> list[int]:
    """Clients served by age band: one streamed query reads each served client's encrypted
    date of birth beside its data key (no round trip per batch of ids), each is opened in
    turn, and only the band is kept (a destroyed key: not recorded)."""
    from app.clients import service as clients_service
    from app.core.key_models import ClientDataKey

    labels = [label for label, _, _ in AGE_BANDS] + [NOT_RECORDED]
    counts = dict.fromkeys(labels, 0)
    client = Client.__table__.c
    key = ClientDataKey.__table__.c
    rows = db.execute(
        sa.select(client.id.label("client_id"), client.date_of_birth.label("ciphertext"),
                  *keys.CLIENT_KEY_COLUMNS)
        .select_from(Client.__table__)
        .outerjoin(ClientDataKey.__table__, key.client_id == client.id)
        .where(client.org_id == org_id, client.id.in_(served.scalar_subquery()))
        .execution_options(yield_per=BATCH))
    for _, plain in keys.decrypt_client_column(db, org_id=org_id,
                                               table=clients_service.TABLE,
                                               column="date_of_birth", rows=rows):
        counts[age_band(plain, on)] += 1
    return [counts[label] for label in labels]


@dataclass(frozen=True)
class Period:
    label: str
    start: date  # included
    end: date  # included


def periods(start: date, end: date, grouping: str) -> list[Period]:
    """The rows of the report: the whole period, or its months or quarters (the first and
    last cut to the period)."""
    if grouping == "none":
        return [Period(f"{start.isoformat()} to {end.isoformat()}", start, end)]
    step = 1 if grouping == "month" else 3
    first_month = start.month if step == 1 else 3 * ((start.month - 1) // 3) + 1
    current = date(start.year, first_month, 1)
    result = []
    while current <= end:
        month = current.month - 1 + step
        following = date(current.year + month // 12, month % 12 + 1, 1)
        label = (f"{current:%Y-%m}" if step == 1
                 else f"{current.year}-Q{(current.month - 1) // 3 + 1}")
        result.append(Period(label, max(current, start), min(following - timedelta(days=1),
                                                             end)))
        current = following
    return result


def _moment(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass
class Table:
    """One suppressed table: titles, row and column labels, what is shown, and whether the
    totals mean anything (an unduplicated count is not a sum)."""

    key: str
    title: str
    rows: list[str]
    columns: list[str]
    suppressed: Suppressed
    shown_cells: list[list[str]]
    row_totals: list[str] | None
    column_totals: list[str] | None
    grand_total: str | None
    note: str = ""


def _table(key: str, title: str, rows: list[str], columns: list[str],
           cells: list[list[int]], threshold: int, *, row_totals: bool = True,
           note: str = "") -> Table:
    table = suppress(cells, threshold)
    shown = [[table.shown(i, j) for j in range(len(columns))] for i in range(len(rows))]
    return Table(key, title, rows, columns, table, shown,
                 [table.shown_row_total(i) for i in range(len(rows))] if row_totals else None,
                 [table.shown_column_total(j) for j in range(len(columns))],
                 table.shown_grand_total() if row_totals else None, note)


def _hours_like(base: Table, key: str, title: str, minutes: list[list[int]],
                note: str) -> Table:
    """Hours, hidden wherever the contacts table hides a count, and then suppressed again
    as amounts of their own (complementary: a hidden zero protects nothing)."""
    s = suppress(minutes, base.suppressed.threshold, hide=base.suppressed)
    hidden_mark = marker(s.threshold)

    def hours(value: int) -> str:
        return f"{value / 60:.1f}"

    rows, columns = base.rows, base.columns
    shown = [[hidden_mark if (i, j) in s.hidden else hours(minutes[i][j])
              for j in range(len(columns))] for i in range(len(rows))]
    row_totals = [hidden_mark if i in s.row_totals_hidden else hours(sum(minutes[i]))
                  for i in range(len(rows))]
    column_totals = [hidden_mark if j in s.column_totals_hidden
                     else hours(sum(row[j] for row in minutes)) for j in range(len(columns))]
    grand = hidden_mark if s.grand_hidden else hours(sum(map(sum, minutes)))
    return Table(key, title, rows, columns, s, shown, row_totals, column_totals, grand, note)


def _between(column: Any, period: Period) -> sa.ColumnElement[bool]:
    return sa.and_(column >= _moment(period.start),
                   column < _moment(period.end + timedelta(days=1)))


def collect(db: Session, *, org_id: UUID, start: date, end: date, grouping: str,
            threshold: int, generated_at: datetime) -> dict[str, Any]:
    """Every table of the report, suppressed, for one agency (counts only)."""
    rows = periods(start, end, grouping)
    labels = [p.label for p in rows]
    contact = ServiceContact.__table__.c
    org_contacts = contact.org_id == org_id

    served, new_clients, served_total = [], [], 0
    for period in rows:
        in_period = sa.and_(org_contacts, contact.occurred_on >= period.start,
                            contact.occurred_on <= period.end)
        served.append(int(db.scalar(sa.select(sa.func.count(sa.distinct(contact.client_id)))
                                    .where(in_period)) or 0))
        new_clients.append(int(db.scalar(
            sa.select(sa.func.count()).select_from(Client.__table__).where(
                Client.__table__.c.org_id == org_id,
                _between(Client.__table__.c.created_at, period))) or 0))
    served_total = int(db.scalar(sa.select(sa.func.count(sa.distinct(contact.client_id))).where(
        org_contacts, contact.occurred_on >= start, contact.occurred_on <= end)) or 0)

    kinds = list(SERVICE_KINDS)
    counts = [[0] * len(kinds) for _ in rows]
    minutes = [[0] * len(kinds) for _ in rows]
    for index, period in enumerate(rows):
        found = db.execute(sa.select(contact.kind, sa.func.count(),
                                     sa.func.coalesce(sa.func.sum(contact.duration_minutes), 0))
                           .where(org_contacts, contact.occurred_on >= period.start,
                                  contact.occurred_on <= period.end)
                           .group_by(contact.kind))
        for kind, count, total_minutes in found:
            if kind in kinds:
                counts[index][kinds.index(kind)] = int(count)
                minutes[index][kinds.index(kind)] = int(total_minutes)
    kind_labels = [SERVICE_LABELS[k] for k in kinds]

    sheltered = []
    for period in rows:
        sheltered.append(int(db.scalar(
            sa.select(sa.func.count(sa.distinct(contact.client_id))).where(
                org_contacts, contact.kind == SHELTER_KIND,
                contact.occurred_on >= period.start, contact.occurred_on <= period.end)) or 0))

    referral = Referral.__table__.c
    categories: dict[str, list[int]] = {}
    found_referrals = db.execute(
        sa.select(Resource.__table__.c.categories, referral.status)
        .join(Resource.__table__, Resource.__table__.c.id == referral.resource_id)
        .where(referral.org_id == org_id, referral.sent_at.is_not(None),
               referral.sent_at >= _moment(start),
               referral.sent_at < _moment(end + timedelta(days=1))))
    for resource_categories, status in found_referrals:
        if status not in OUTCOMES:
            continue
        listed = resource_categories or []
        category = str(listed[0]) if listed else UNCATEGORISED
        categories.setdefault(category, [0] * len(OUTCOMES))[OUTCOMES.index(status)] += 1
    category_names = sorted(categories)
    referral_cells = [categories[name] for name in category_names]

    clients_table = _table("clients_served", "Clients served", labels, ["Clients served"],
                           [[v] for v in served], threshold, row_totals=False, note=(
                               "Distinct clients with at least one service contact. The "
                               "total counts each client once over the whole period, so it "
                               "is not the sum of the rows."))
    # The unduplicated total is not a sum: shown unless it is small itself.
    clients_table.column_totals = [marker(threshold) if 1 <= served_total <= threshold
                                   else str(served_total)]
    tables = [
        clients_table,
        _table("new_clients", "New clients", labels, ["New clients"],
               [[v] for v in new_clients], threshold, row_totals=False,
               note="Clients whose record was created in the period."),
        _table("contacts", "Contacts by service type", labels, kind_labels, counts,
               threshold),
    ]
    tables.append(_hours_like(tables[2], "hours", "Hours by service type", minutes,
                              "Recorded durations; hidden wherever the number of contacts "
                              "is."))
    # Shelter nights are the contacts table's shelter-night column, shown exactly as
    # there (suppressed once, with that table: two patterns of the same numbers could
    # undo each other's protection); people sheltered are suppressed as a column of
    # their own.
    contacts, shelter_column = tables[2], kinds.index(SHELTER_KIND)
    people = _table("people_sheltered", "People sheltered", labels, ["People sheltered"],
                    [[p] for p in sheltered], threshold, row_totals=False)
    assert contacts.column_totals is not None
    tables.append(Table(
        "shelter", "Shelter", labels, ["Shelter nights", "People sheltered"],
        people.suppressed,
        [[contacts.shown_cells[i][shelter_column], people.shown_cells[i][0]]
         for i in range(len(labels))],
        None, [contacts.column_totals[shelter_column], ""], None,
        "Shelter nights are the service log's shelter-night contacts, shown as in the "
        "contacts table. People sheltered counts each person once per row; its total is "
        "omitted because it would count people more than once."))
    if referral_cells:
        tables.append(_table(
            "referrals", "Referrals by category and outcome",
            [name.replace("_", " ").capitalize() for name in category_names],
            [o.capitalize() for o in OUTCOMES], referral_cells, threshold,
            note="Referrals sent in the period, by the referred resource's first category "
                 "and their state now."))
    bands = _age_bands(db, org_id, sa.select(contact.client_id).distinct().where(
        org_contacts, contact.occurred_on >= start, contact.occurred_on <= end), end)
    age_table = _table("age_bands", "Clients served by age band", [
        f"{start.isoformat()} to {end.isoformat()}"],
        [label for label, _, _ in AGE_BANDS] + [NOT_RECORDED], [bands], threshold,
        note="Each client served in the period once, by their age on its last day; "
             "computed in the worker from the encrypted date of birth.")
    # One row: its column totals repeat it, and its total is the clients served.
    age_table.column_totals = None
    age_table.grand_total = None
    tables.insert(2, age_table)
    org = db.get(Org, org_id)
    return {
        "agency": org.name if org is not None else "",
        "period": f"{start.isoformat()} to {end.isoformat()}",
        "grouping": grouping,
        "threshold": threshold,
        "marker": marker(threshold),
        "generated_at": generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "software": f"advocase {__version__}",
        "tables": tables,
        "chart_counts": list(zip(kind_labels, [sum(row[j] for row in counts)
                                               for j in range(len(kinds))],
                                 contacts.column_totals or [], strict=True)),
    }


def to_csv(data: dict[str, Any]) -> bytes:
    """One line per shown value: table, row, column, value (hidden counts as ``<N``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["table", "row", "column", "value"])
    for table in data["tables"]:
        for i, row in enumerate(table.rows):
            for j, column in enumerate(table.columns):
                writer.writerow([table.key, row, column, table.shown_cells[i][j]])
            if table.row_totals is not None:
                writer.writerow([table.key, row, "Total", table.row_totals[i]])
        if table.column_totals is not None:
            for j, column in enumerate(table.columns):
                if table.column_totals[j] != "":
                    writer.writerow([table.key, "Total", column, table.column_totals[j]])
        if table.grand_total is not None:
            writer.writerow([table.key, "Total", "Total", table.grand_total])
    return _safe(out.getvalue()).encode("utf-8")


def _safe(text: str) -> str:
    """No cell starts like a spreadsheet formula (labels are ours, but be sure)."""
    return "\r\n".join(("'" + line) if line and line[0] in "=+-@" else line
                       for line in text.split("\r\n"))


def bar_chart_svg(data: dict[str, Any]) -> str:
    """Contacts by service type over the whole period as horizontal bars. A hidden total is
    drawn as no bar, labelled ``<N``: the picture shows nothing the tables hide."""
    entries = data["chart_counts"]
    width, left, right, bar, gap = 680, 170, 60, 16, 6
    height = 30 + len(entries) * (bar + gap)
    visible = [count for _, count, shown in entries if shown != data["marker"]]
    top = max(visible or [0]) or 1
    plot = width - left - right
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" '
             'aria-labelledby="chart-title chart-desc" font-family="DejaVu Sans, sans-serif">',
             '<title id="chart-title">Contacts by service type</title>']
    summary = ", ".join(f"{label}: {shown}" for label, _, shown in entries)
    parts.append(f'<desc id="chart-desc">{html.escape(summary)}</desc>')
    for index, (label, count, shown) in enumerate(entries):
        y = 10 + index * (bar + gap)
        parts.append(f'<text x="{left - 6}" y="{y + bar - 4}" font-size="10" '
                     f'text-anchor="end">{html.escape(label)}</text>')
        length = 0.0 if shown == data["marker"] else round(plot * count / top, 1)
        if length:
            parts.append(f'<rect x="{left}" y="{y}" width="{length}" height="{bar}" '
                         'fill="#4a4a4a"/>')
        parts.append(f'<text x="{left + length + 4}" y="{y + bar - 4}" font-size="10">'
                     f'{html.escape(shown)}</text>')
    parts.append(f'<line x1="{left}" y1="6" x2="{left}" y2="{height - 16}" stroke="#000" '
                 'stroke-width="1"/>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(data: dict[str, Any], *, chart: str, report_id: UUID) -> str:
    from markupsafe import Markup

    return court_summary._environment().get_template(TEMPLATE).render(
        report=data, chart=Markup(chart), report_id=str(report_id))  # noqa: S704 - ours


def render_pdf(document: str) -> bytes:
    return court_summary.render_pdf(document, {})
