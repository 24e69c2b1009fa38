"""What the court summary says: every chosen incident in order with its revisions, the
client's account apart from the advocate's observations, the exhibits with their hashes
re-checked at export and their custody, the orders and court dates, the chart, the
certification — and nothing a redaction profile hides."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any
from uuid import UUID

import pytest
from pypdf import PdfReader
from sqlmodel import Session

from app.evidence.models import Evidence
from tests.reports.conftest import (
    CHILD_NAME,
    CLIENT_ADDRESS,
    CLIENT_PHONE,
    CORRECTED_REPORT_NUMBER,
    CORRECTION_REASON,
    FIRST_REPORT_NUMBER,
    RETRACTION_REASON,
    SHELTER_ADDRESS,
    WITNESS_CONTACT,
    WITNESS_NAME,
    Case,
    pdf_text,
    png,
    upload_evidence,
)


def built(client, case: Case, run_build, **changes: Any) -> dict[str, Any]:
    response = client.post("/api/v1/reports", json=case.body(**changes), headers=case.headers())
    assert response.status_code == 202, response.text
    report_id = response.json()["id"]
    assert run_build(report_id) == "done"
    status = client.get(f"/api/v1/reports/{report_id}", headers=case.headers()).json()
    pdf = client.get(status["downloads"]["pdf"], headers=case.headers()).content
    bundle = client.get(status["downloads"]["bundle"], headers=case.headers()).content
    return {"id": report_id, "status": status, "pdf": pdf, "bundle": bundle,
            "text": pdf_text(pdf)}


# Values the standard profile hides, as typed into the record.
HIDDEN_BY_STANDARD = [CLIENT_ADDRESS, "12 Example Street", CLIENT_PHONE, CHILD_NAME,
                      SHELTER_ADDRESS, "99 Fictional Refuge Lane", "555-0142",
                      "marguerite@example.org"]


def test_a_redacted_value_appears_nowhere_in_the_pdf_nor_the_bundle(
        client, case: Case, sent_tasks, run_build) -> None:
    report = built(client, case, run_build)  # the standard profile
    text = report["text"].casefold()
    for value in HIDDEN_BY_STANDARD:
        assert value.casefold() not in text, value
    assert "[address withheld]" in report["text"]
    assert "[child's name withheld]" in report["text"]
    assert "[location withheld]" in report["text"]
    # Neither in the raw PDF (no compressed stream to hide it either: pypdf read it all) nor
    # in the manifest, the signature or the bundle's own files (the original exhibits are
    # the client's evidence as received and are compared by hash, not read here).
    with zipfile.ZipFile(io.BytesIO(report["bundle"])) as bundle:
        for name in ("manifest.json", "manifest.sig", "README.txt"):
            content = bundle.read(name).decode().casefold()
            for value in HIDDEN_BY_STANDARD:
                assert value.casefold() not in content, (name, value)
    # The witness stays named (the standard profile hides contact details, not names).
    assert WITNESS_NAME in report["text"]


def test_without_redaction_the_same_values_are_found(client, case: Case, sent_tasks,
                                                     run_build) -> None:
    """The check above can see these values when they are there."""
    text = built(client, case, run_build, redaction_profile="none")["text"]
    for value in (CLIENT_ADDRESS, CLIENT_PHONE, CHILD_NAME, SHELTER_ADDRESS,
                  "marguerite@example.org"):
        assert value in text, value
    assert "withheld]" not in text


def test_the_strict_profile_also_hides_witness_names(client, case: Case, sent_tasks,
                                                     run_build) -> None:
    text = built(client, case, run_build, redaction_profile="strict")["text"]
    assert WITNESS_NAME not in text and "Marguerite" not in text
    assert "Witness 1 [name withheld]" in text


def test_every_chosen_incident_in_order_with_its_revisions(client, case: Case, sent_tasks,
                                                           run_build) -> None:
    # Chosen out of order: the report puts them in the order they happened.
    report = built(client, case, run_build,
                   incident_ids=[str(i) for i in reversed(case.incidents)])
    text = report["text"]
    headings = ["Incident 1: 10 January 2026, 21:30 (Europe/London)",
                "Incident 2: 3 February 2026 (time not known, Europe/London)",
                "Incident 3: between 20 February 2026 and 22 February 2026"]
    positions = [text.find(h) for h in headings]
    missing = [h for h, p in zip(headings, positions, strict=True) if p < 0]
    assert not missing, missing
    assert positions == sorted(positions)
    # The correction is a dated revision with its reason, before and after side by side.
    first = text[positions[0]:positions[1]]
    assert "Revision 1, recorded" in first and "Revision 2, saved" in first
    assert CORRECTION_REASON in first
    assert f"{FIRST_REPORT_NUMBER} → {CORRECTED_REPORT_NUMBER}" in first
    # The client's account is kept apart from the advocate's observations.
    account = first.index("In the client's own words")
    observations = first.index("The advocate's observations")
    assert account < first.index("took my phone") < observations
    assert observations < first.index("bruising visible on the left forearm")
    assert "Fictional Sampletown Police" in first and "Fictional Officer Dale" in first
    # The retraction is shown, with its reason, and the incident stays in.
    third = text[positions[2]:]
    assert "Retracted on" in third and RETRACTION_REASON in third
    assert "retracting the incident" in third
    # Not chosen: not there.
    assert "Fictional account from last year" not in text


def test_every_exhibit_hash_matches_and_its_custody_is_listed(client, case: Case, db: Session,
                                                              sent_tasks, run_build) -> None:
    report = built(client, case, run_build)
    with zipfile.ZipFile(io.BytesIO(report["bundle"])) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
        exhibits = [i for i in manifest["items"] if i["type"] == "exhibit"]
        assert [e["number"] for e in exhibits] == [1, 2, 3]
        assert {UUID(e["evidence_id"]) for e in exhibits} == set(case.evidence.values())
        for item in exhibits:
            evidence = db.get(Evidence, UUID(item["evidence_id"]))
            assert evidence is not None
            original = bundle.read(item["file"])
            assert hashlib.sha256(original).hexdigest() == item["sha256"] == evidence.sha256
            assert item["size_bytes"] == evidence.size_bytes == len(original)
            # In the PDF: the hash at upload and re-checked at export, found identical.
            assert report["text"].count(evidence.sha256) >= 2
        pdf = bundle.read("court-summary.pdf")
    assert pdf == report["pdf"]
    assert manifest["document"]["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert manifest["software"] == {"name": "advocase", "version": "0.1.0"}
    assert manifest["redaction"]["profile"] == "standard"
    revisions = [i for i in manifest["items"] if i["type"] == "incident_revision"]
    assert [(i["incident_number"], i["revision"]) for i in revisions] == \
        [(1, 1), (1, 2), (2, 1), (3, 1), (3, 2)]
    assert {i["type"] for i in manifest["items"]} >= {"protective_order", "court_date"}
    text = report["text"]
    assert "Identical: the stored file has not changed since it was received." in text
    assert "Chain of custody" in text and "Received" in text
    assert text.count("Exhibit 1") >= 1 and "Fictional photo of the forearm" in text


def test_images_are_embedded_without_their_metadata(client, case: Case, sent_tasks,
                                                    run_build) -> None:
    report = built(client, case, run_build)
    reader = PdfReader(io.BytesIO(report["pdf"]))
    images = {image.data: image for page in reader.pages for image in page.images}
    assert len(images) == 2  # the photo and the drawing; the text file is listed only
    for image in images.values():
        assert b"Fictional photo taken at the refuge" not in image.data
    # The original photo in the bundle is the evidence as received, metadata and all.
    with zipfile.ZipFile(io.BytesIO(report["bundle"])) as bundle:
        photo = next(n for n in bundle.namelist() if n.startswith("exhibits/001-"))
        assert b"Fictional photo taken at the refuge" in bundle.read(photo)


def test_a_preview_kept_when_the_image_was_received_is_used_not_made_again(
        client, case: Case, db: Session, storage, sent_tasks, run_build, bound_work,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.evidence import previews
    from app.evidence import service as evidence_service
    from app.evidence.models import Evidence

    made = {evidence_id: previews.make_preview(evidence_id, storage, work=bound_work)
            for evidence_id in case.evidence.values()}
    assert sorted(made.values()) == ["made", "made", "not_an_image"]
    kept = previews.kept_previews(db, list(case.evidence.values()))
    expected = set()
    for evidence_id, key in kept.items():
        row = db.get(Evidence, evidence_id)
        assert row is not None
        expected.add(previews.read_preview(storage, row, key,
                                           evidence_service.open_keyset(db, row)))

    def made_again(content: bytes) -> bytes | None:
        raise AssertionError("a kept preview was made again")

    monkeypatch.setattr(previews, "reduce", made_again)
    report = built(client, case, run_build)
    reader = PdfReader(io.BytesIO(report["pdf"]))
    embedded = set()
    for page in reader.pages:
        for ref in page["/Resources"].get("/XObject", {}).values():
            image = ref.get_object()
            if image.get("/Filter") == "/DCTDecode":
                embedded.add(image._data)  # the stream as stored: a JPEG, not re-encoded
    assert embedded == expected


def test_a_kept_preview_that_no_longer_opens_is_made_again(
        client, case: Case, db: Session, storage, sent_tasks, run_build, bound_work) -> None:
    from app.evidence import previews

    for evidence_id in case.evidence.values():
        previews.make_preview(evidence_id, storage, work=bound_work)
    for key in previews.kept_previews(db, list(case.evidence.values())).values():
        storage.delete(key)  # lost from storage (a partial restore, say)
    report = built(client, case, run_build)
    reader = PdfReader(io.BytesIO(report["pdf"]))
    assert len({image.data for page in reader.pages for image in page.images}) == 2


def test_the_pdf_is_tagged_archival_with_fonts_embedded(client, case: Case, sent_tasks,
                                                        run_build) -> None:
    report = built(client, case, run_build)
    reader = PdfReader(io.BytesIO(report["pdf"]))
    root = reader.trailer["/Root"]
    assert bool(root["/MarkInfo"]["/Marked"])
    assert "/StructTreeRoot" in root
    metadata = root["/Metadata"].get_object().get_data()
    assert b"<pdfaid:part>3</pdfaid:part>" in metadata or b'pdfaid:part="3"' in metadata
    fonts = []
    for page in reader.pages:
        for font in (page["/Resources"].get("/Font") or {}).values():
            fonts.append(font.get_object())
    assert fonts
    for font in fonts:
        descendant = font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font \
            else font
        descriptor = descendant["/FontDescriptor"].get_object()
        assert any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3"))
    assert reader.metadata is not None and reader.metadata.title.startswith("Incident summary")


def test_cover_chart_orders_and_certification(client, case: Case, sent_tasks,
                                              run_build) -> None:
    report = built(client, case, run_build)
    text = report["text"]
    for expected in ("Incident summary", "Fictional County Family Court", "FC-2026-0099",
                     "Petitioner Fictional Client Rowan Example",
                     "Respondent Fictional Respondent Blake",
                     "1 January 2026 to 31 March 2026", "Prepared by Test advocate",
                     "Protective orders", "Temporary", "granted", "15 January 2026",
                     "15 July 2026",
                     "No contact with the petitioner", "Court dates",
                     "Protective order hearing held", "Timeline",
                     "Certification of records", "902(11), 902(13) and 902(14)",
                     "made at or near the time", "regularly conducted activity",
                     "were compared and are identical",
                     "under penalty of perjury", "Signature", "Printed name",
                     "is for the court to decide"):
        assert expected in text, expected
    # The chart is a picture (vector drawing), with its numbers as text.
    assert "Incidents per month" in text and "Jan 2026" in text and "Feb 2026" in text


@pytest.mark.parametrize("also_hide", [["respondent_identifiers", "witness_names"]])
def test_also_hide_adds_to_a_profile(client, case: Case, sent_tasks, run_build,
                                     also_hide: list[str]) -> None:
    text = built(client, case, run_build, redaction_profile="safe_location",
                 also_hide=also_hide)["text"]
    assert WITNESS_NAME not in text
    # safe_location keeps witness contacts: the profile's own list still applies.
    assert "555-0142" in text and WITNESS_CONTACT.split(", ")[1] in text


def test_long_unbroken_values_wrap_inside_the_page(client, case: Case, sent_tasks, run_build,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The tables have a fixed layout (their columns are not sized by their content), so a
    # value with no place to break — a long case number, a court's name typed without
    # spaces, a hash — must wrap within its column rather than run off the page.
    from weasyprint import HTML
    from weasyprint.formatting_structure import boxes

    from app.reports import court_summary

    rendered: list[tuple[str, dict[int, bytes]]] = []
    render_pdf = court_summary.render_pdf

    def keeping(document: str, images: dict[int, bytes]) -> bytes:
        rendered.append((document, images))
        return render_pdf(document, images)

    monkeypatch.setattr(court_summary, "render_pdf", keeping)
    case_number = "FC" + "0123456789" * 9
    court = "FictionalCountyFamilyCourtOfSampletown" * 7
    report = built(client, case, run_build, cover={
        "court": court, "case_number": case_number,
        "parties": [{"role": "Petitioner", "from_record": "client_legal_name"}]})
    unbroken = "".join(report["text"].split())
    assert case_number in unbroken and court in unbroken
    document, images = rendered[0]
    pages = HTML(string=document,
                 url_fetcher=court_summary.ExhibitImages(images).fetcher()).render().pages
    outside = []
    for number, page in enumerate(pages, start=1):
        page_box = page._page_box
        right = page_box.content_box_x() + page_box.width
        for root in page_box.children:
            if isinstance(root, boxes.MarginBox):
                continue
            for box in root.descendants():
                if isinstance(box, boxes.TextBox | boxes.ReplacedBox) \
                        and box.position_x + box.margin_width() > right + 0.5:
                    outside.append((number, getattr(box, "text", box.element_tag)[:30]))
    assert not outside, outside


def test_each_exhibit_shows_its_own_preview_made_a_few_at_a_time(
        client, case: Case, db: Session, storage, sent_tasks, run_build,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The previews are made by a small pool of threads while the next exhibits stream:
    # each must still land on its own exhibit, and only a few originals may be held at once.
    import threading

    from app.evidence import previews
    from app.reports import build, court_summary

    monkeypatch.setattr(build, "PREVIEW_THREADS", 2)
    sizes = {f"Fictional sketch {n}": (200 + 10 * n, 100 + 7 * n) for n in range(8)}
    added = [upload_evidence(db, case.actor(), case.incidents[0], png((20 * n, 80, 160), size),
                             description=description, storage=storage)
             for n, (description, size) in enumerate(sizes.items())]
    db.commit()
    rendered: list[tuple[str, dict[int, bytes]]] = []
    render_pdf = court_summary.render_pdf
    monkeypatch.setattr(court_summary, "render_pdf", lambda document, images: (
        rendered.append((document, images)), render_pdf(document, images))[1])
    shown: dict[int, str] = {}
    render_html = court_summary.render_html

    def keeping_numbers(data: dict[str, Any], **options: Any) -> str:
        shown.update({e["number"]: e["description"] for e in data["exhibits"]})
        return render_html(data, **options)

    monkeypatch.setattr(court_summary, "render_html", keeping_numbers)
    held, most, lock = 0, 0, threading.Lock()
    preview = previews.reduce

    def counting(content: bytes) -> bytes | None:
        nonlocal held, most
        with lock:
            held += 1
            most = max(most, held)
        try:
            return preview(content)
        finally:
            with lock:
                held -= 1

    monkeypatch.setattr(previews, "reduce", counting)
    report = built(client, case, run_build, evidence_ids=[
        *(str(e) for e in case.evidence.values()), *(str(e) for e in added)])
    assert report["status"]["status"] == "done"
    _, images = rendered[0]
    from PIL import Image

    for number, description in shown.items():
        if description in sizes:
            with Image.open(io.BytesIO(images[number])) as image:
                assert image.size == sizes[description], (number, description)
    assert sum(d in sizes for d in shown.values()) == len(sizes)
    assert 1 <= most <= 2


def test_every_tagged_text_names_the_page_it_is_on(client, case: Case, sent_tasks,
                                                   run_build) -> None:
    # The structure tree maps each page's marked content to its elements, and each element
    # names its page (/Pg): a screen reader follows these to read the document in order.
    report = built(client, case, run_build)
    reader = PdfReader(io.BytesIO(report["pdf"]))
    pages = [page.indirect_reference.idnum for page in reader.pages]
    assert len(pages) >= 4
    nums = reader.trailer["/Root"]["/StructTreeRoot"]["/ParentTree"]["/Nums"]
    mapped = dict(zip(nums[::2], nums[1::2], strict=True))
    for index, page in enumerate(reader.pages):
        elements = mapped[page["/StructParents"]]
        assert len(elements) > 0, index
        for element in elements:
            assert element.get_object().raw_get("/Pg").idnum == pages[index], index


def test_page_references_are_kept_until_a_page_is_added() -> None:
    import pydyf

    from app.reports import court_summary

    court_summary._read_page_references_once()
    court_summary._read_page_references_once()  # installed once
    pdf = pydyf.PDF()
    pages = []
    for _ in range(3):
        page = pydyf.Dictionary({"Type": "/Page"})
        pdf.add_page(page)
        pages.append(page)
        assert pdf.page_references == tuple(f"{p.number} 0 R".encode() for p in pages)
    assert pdf.page_references is pdf.page_references


def test_pdf_streams_are_compressed_at_zlibs_default_level() -> None:
    import zlib

    import pydyf

    from app.reports import court_summary

    court_summary._compress_at_default_level_once()
    court_summary._compress_at_default_level_once()  # installed once
    text = b"0 0 0 rg 72 720 Td (Fictional line of a report) Tj\n" * 2000
    stream = pydyf.Stream([text], compress=True)
    data = stream.data
    compressed = data[data.index(b"stream\n") + 7:data.rindex(b"\nendstream")]
    assert zlib.decompress(compressed) == text
    assert compressed == zlib.compress(text, zlib.Z_DEFAULT_COMPRESSION)
    assert pydyf.zlib.crc32(b"x") == zlib.crc32(b"x")  # the rest is zlib's own
