"""A long court summary rendered in two processes and joined reads as one document: every
page numbered in the whole, the bookmarks in one tree, the tags in one structure, the same
text in the same order as a single render; a second part that fails or hangs makes the
build render the document whole instead."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pikepdf
import pytest
from pypdf import PdfReader

from app.reports import court_summary, parts
from app.settings import Settings, get_settings
from tests.reports.conftest import Case
from tests.reports.test_court_summary import HIDDEN_BY_STANDARD, built


def outline(pdf: bytes) -> list[Any]:
    def walk(items: Any) -> list[Any]:
        return [(str(i.title), walk(i.children)) for i in items]

    with pikepdf.open(io.BytesIO(pdf)) as opened, opened.open_outline() as tree:
        return walk(tree.root)


def page_numbers(pdf: bytes) -> list[tuple[int, int] | None]:
    reader = PdfReader(io.BytesIO(pdf))
    found = []
    for page in reader.pages:
        match = re.search(r"Page (\d+) of (\d+)", page.extract_text() or "")
        found.append((int(match.group(1)), int(match.group(2))) if match else None)
    return found


def headings(text: str) -> list[str]:
    return re.findall(r"(?:Incident \d+: |Exhibit \d+ Description|Exhibit list|"
                      r"Certification of records|Protective orders|Court dates)", text)


def check_tags(pdf: bytes) -> None:
    """One structure tree: each page's marked content maps to elements naming that page."""
    reader = PdfReader(io.BytesIO(pdf))
    root = reader.trailer["/Root"]
    assert bool(root["/MarkInfo"]["/Marked"])
    metadata = root["/Metadata"].get_object().get_data()
    assert b'pdfaid:part="3"' in metadata or b"<pdfaid:part>3</pdfaid:part>" in metadata
    tree = root["/StructTreeRoot"]
    assert len(tree["/K"]) == 1
    document = tree["/K"][0].get_object()
    assert document["/S"] == "/Document"
    pages = [page.indirect_reference.idnum for page in reader.pages]
    nums = tree["/ParentTree"]["/Nums"]
    mapped = dict(zip(nums[::2], nums[1::2], strict=True))
    assert len(set(page["/StructParents"] for page in reader.pages)) == len(pages)
    for index, page in enumerate(reader.pages):
        elements = mapped[page["/StructParents"]]
        assert len(elements) > 0, index
        for element in elements:
            assert element.get_object().raw_get("/Pg").idnum == pages[index], index
    for kid in document["/K"]:
        assert kid.get_object().raw_get("/P").idnum == tree["/K"][0].idnum


def split_always(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every court summary is split (the seeded case is short), and each split counted."""
    used: list[int] = []
    render = parts.render_in_parts

    def counted(first: str, second: str, images: dict[int, bytes]) -> bytes:
        used.append(1)
        return render(first, second, images)

    monkeypatch.setattr(get_settings(), "report_split_from_pages", 0.0)
    monkeypatch.setattr(parts, "render_in_parts", counted)
    return used


def test_a_short_report_is_not_split_and_a_long_one_is_split_where_halves_cost_alike(
        ) -> None:
    def report(incidents: int, exhibits: int, revised: int = 0) -> dict[str, Any]:
        return {"incidents": [{"revisions": [1, 2] if n < revised else [1]}
                              for n in range(incidents)],
                "exhibits": [{} for _ in range(exhibits)]}

    split_from = Settings.model_fields["report_split_from_pages"].default
    assert parts.plan(report(20, 10), split_from=split_from) is None
    assert parts.plan(report(0, 300), split_from=0) is None  # nothing for the first part
    assert parts.plan(report(3, 1), split_from=0) is not None
    for incidents, exhibits, revised in ((500, 200, 10), (300, 0, 0), (60, 300, 30)):
        data = report(incidents, exhibits, revised)
        first = parts.plan(data, split_from=split_from)
        assert first is not None and 1 <= first <= incidents
        weights = [parts.INCIDENT_WEIGHT + parts.REVISION_WEIGHT * (len(i["revisions"]) - 1)
                   for i in data["incidents"]]
        front = parts.HEAD_WEIGHT + sum(weights[:first])
        back = sum(weights[first:]) + parts.EXHIBIT_WEIGHT * exhibits
        assert abs(front - back) <= max(weights) + 1e-9 or first == incidents, (front, back)


def test_a_split_report_reads_as_one_document(client, case: Case, sent_tasks, run_build,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    whole = built(client, case, run_build)
    used = split_always(monkeypatch)
    split = built(client, case, run_build)
    assert used == [1]

    numbers = page_numbers(split["pdf"])
    total = len(numbers)
    assert numbers == [(n, total) for n in range(1, total + 1)]
    assert outline(split["pdf"]) == outline(whole["pdf"])
    assert headings(split["text"]) == headings(whole["text"])
    assert len(headings(split["text"])) >= 8
    check_tags(split["pdf"])
    for value in HIDDEN_BY_STANDARD:
        assert value.casefold() not in split["text"].casefold(), value
    # The bundle's manifest names the joined PDF, and the agency's verification accepts it.
    verified = client.post("/api/v1/reports/verify", files={"file": (
        "court-summary.pdf", split["pdf"], "application/octet-stream")},
        headers=case.headers())
    assert verified.status_code == 200, verified.text
    assert (verified.json()["file_kind"], verified.json()["ok"]) == ("pdf", True)
    assert verified.json()["report_id"] == split["id"]


@pytest.mark.parametrize("command", [
    (sys.executable, "-c", "import sys; sys.exit(3)"),                # fails at once
    (sys.executable, "-c", "import sys; sys.stdin.buffer.read(8); print('x')"),  # garbage
    (sys.executable, "-c", "import time; time.sleep(60)"),            # hangs
])
def test_a_second_part_that_fails_or_hangs_is_rendered_whole(
        client, case: Case, sent_tasks, run_build, monkeypatch: pytest.MonkeyPatch,
        command: tuple[str, ...]) -> None:
    monkeypatch.setattr(get_settings(), "report_split_from_pages", 0.0)
    monkeypatch.setattr(parts, "CHILD_COMMAND", command)
    monkeypatch.setattr(parts, "CHILD_TIMEOUT", 1.5)
    whole_renders: list[int] = []
    render_pdf = court_summary.render_pdf

    def counted(document: str, images: dict[int, bytes]) -> bytes:
        whole_renders.append(1)
        return render_pdf(document, images)

    monkeypatch.setattr(court_summary, "render_pdf", counted)
    report = built(client, case, run_build)
    numbers = page_numbers(report["pdf"])
    assert numbers == [(n, len(numbers)) for n in range(1, len(numbers) + 1)]
    assert len(whole_renders) == 2  # the first part, then the whole document
    check_tags(report["pdf"])


def test_join_refuses_parts_it_does_not_know() -> None:
    first = court_summary.render_pdf("<h1>Fictional first part</h1>", {})
    with pytest.raises(parts.PartsFailed):
        parts.join(first, b"not a PDF", 1)
    with pytest.raises(parts.PartsFailed):
        parts.join(first, first, 2)  # the first part has 1 page, not 2


def test_a_weasyprint_that_skips_the_numbering_hook_is_rendered_whole(
        client, case: Case, sent_tasks, run_build, monkeypatch: pytest.MonkeyPatch) -> None:
    # As if a later WeasyPrint made its page margins some other way: no page counts are
    # exchanged, and the report is rendered whole rather than numbered wrongly.
    monkeypatch.setattr(get_settings(), "report_split_from_pages", 0.0)
    monkeypatch.setattr(parts, "CHILD_TIMEOUT", 5.0)

    @contextmanager
    def never_called(exchange: Any) -> Iterator[None]:
        yield

    monkeypatch.setattr(parts, "_numbered", never_called)
    report = built(client, case, run_build)
    numbers = page_numbers(report["pdf"])
    assert numbers == [(n, len(numbers)) for n in range(1, len(numbers) + 1)]
