"""Case-file pages in a real headless Chromium against a real server: recording and
correcting an incident, uploading evidence (with the page's script and without it),
protective orders, court dates and the timeline. Every page the scenarios pass through is
checked with axe-core (no serious or critical violations), and no page may break its
Content-Security-Policy."""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from datetime import date, timedelta
from typing import Any

import pytest

from tests.dashboard.browser import follow, serious_violations, sign_in
from tests.dashboard.test_clients_browser import by_id, open_case

INCIDENT_URL = re.compile(r".*/dashboard/clients/[0-9a-f-]{36}/incidents/([0-9a-f-]{36})"
                          r"\?done=incident-recorded$")
EVIDENCE_URL = re.compile(r".*/dashboard/clients/[0-9a-f-]{36}/evidence/[0-9a-f-]{36}"
                          r"\?done=evidence-uploaded$")


def png(width: int = 48, height: int = 32) -> bytes:
    """A small, valid PNG (a plain red picture): the browser must be able to show it."""
    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@pytest.fixture
def policy_breaks(tab: Any) -> list[str]:
    """Console messages about a refused script, style or image (the CSP at work)."""
    found: list[str] = []
    tab.on("console", lambda message: found.append(message.text)
           if "Content Security Policy" in message.text else None)
    tab.on("pageerror", lambda error: found.append(str(error)))
    return found


def record_incident(page: Any, checked: dict[str, list[str]], axe: str) -> str:
    """From the client page, record an incident (one field error on the way)."""
    follow(page.get_by_role("navigation", name="Case file").get_by_role(
        "link", name="Record an incident"))
    checked["incident form"] = serious_violations(page, axe)
    assert page.get_by_label("The client's time zone").input_value() == "UTC"
    page.get_by_label("At a known date and time").check()
    by_id(page, "occurred.start_date").fill("2026-03-01")
    page.get_by_label("Place").fill("Fictional flat, 4 Nowhere Row")
    page.get_by_label("The client's account").fill(
        "Fictional account: he threw the phone and broke the kitchen door.")
    page.get_by_label("Your observations").fill("Fictional: a bruise on the left forearm.")
    page.get_by_label("Physical", exact=True).check()
    page.get_by_label("Property damage").check()
    by_id(page, "police.involved-yes").check()
    page.get_by_label("Report number").fill("FCP-2026-000777")
    by_id(page, "children_present-no").check()
    follow(page.get_by_role("button", name="Record the incident"))

    # The time is missing for a known date and time: the form says so by the field.
    assert page.get_by_role("alert").is_visible()
    assert by_id(page, "occurred.start_time-error").text_content().startswith(
        "Error: give the time")
    assert by_id(page, "occurred.start_time").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Report number").input_value() == "FCP-2026-000777"
    assert page.get_by_label("Physical", exact=True).is_checked()
    checked["incident form with errors"] = serious_violations(page, axe)
    page.get_by_role("alert").get_by_role("link", name=re.compile("give the time")).click()
    by_id(page, "occurred.start_time").fill("21:30")
    follow(page.get_by_role("button", name="Record the incident"))
    page.wait_for_url(INCIDENT_URL)
    match = INCIDENT_URL.match(page.url)
    assert match
    return match.group(1)


def test_an_advocate_records_and_corrects_an_incident(tab, server, axe_source,
                                                     policy_breaks) -> None:
    checked: dict[str, list[str]] = {}
    sign_in(tab, server.create_user("advocate", "Indigo Fictional-Advocate"))
    open_case(tab, "Emery Fictional")
    record_incident(tab, checked, axe_source)

    assert tab.get_by_role("status").inner_text() == "The incident is recorded."
    assert tab.locator("#incident-when").inner_text() == "2026-03-01 at 21:30 (UTC)"
    assert tab.locator("#incident-categories").inner_text() == "Physical, Property damage"
    assert "broke the kitchen door" in tab.locator("#client-account").inner_text()
    assert "bruise" in tab.locator("#advocate-observations").inner_text()
    assert "FCP-2026" not in tab.url and "Emery" not in tab.title()
    checked["incident page"] = serious_violations(tab, axe_source)

    follow(tab.get_by_role("link", name="Correct this incident"))
    assert tab.get_by_label("Place").input_value() == "Fictional flat, 4 Nowhere Row"
    tab.get_by_label("Place").fill("Fictional flat, 6 Nowhere Row")
    tab.get_by_label("Reason for the correction").fill("The client gave the right number")
    checked["correction form"] = serious_violations(tab, axe_source)
    follow(tab.get_by_role("button", name="Save the correction"))
    tab.wait_for_url("**?done=incident-corrected")
    assert tab.locator("#incident-revision").inner_text().startswith("2")
    change = tab.locator("#changes-2 tbody tr")
    assert change.count() == 1
    assert change.get_by_role("rowheader").inner_text() == "Place"
    assert change.locator("del").inner_text() == "Fictional flat, 4 Nowhere Row"
    assert change.locator("ins").inner_text() == "Fictional flat, 6 Nowhere Row"
    checked["incident page with a correction"] = serious_violations(tab, axe_source)

    tab.get_by_label("Reason for retracting").fill("Fictional: recorded twice")
    follow(tab.get_by_role("button", name="Retract this incident"))
    tab.wait_for_url("**?done=incident-retracted")
    assert tab.locator("#retracted").is_visible()
    assert tab.get_by_role("link", name="Correct this incident").count() == 0
    checked["retracted incident"] = serious_violations(tab, axe_source)

    follow(tab.get_by_role("link", name=re.compile("Back to the incidents")))
    assert tab.locator("#incidents tbody tr.retracted").count() == 1
    checked["incident list"] = serious_violations(tab, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}
    assert policy_breaks == []


def test_evidence_is_uploaded_with_progress_and_its_sha256_shown(tab, server, axe_source,
                                                                 policy_breaks) -> None:
    checked: dict[str, list[str]] = {}
    sign_in(tab, server.create_user("advocate", "Jules Fictional-Advocate"))
    open_case(tab, "Finley Fictional")
    record_incident(tab, {}, axe_source)

    follow(tab.get_by_role("link", name="Add evidence"))
    checked["evidence upload form"] = serious_violations(tab, axe_source)
    picture = png()
    tab.get_by_label("What the file shows").fill("Fictional photo of the broken door")
    by_id(tab, "captured_on").fill("2026-03-02")
    by_id(tab, "captured_time").fill("08:15")
    tab.get_by_label("The file", exact=True).set_input_files(
        {"name": "fictional-door.png", "mimeType": "image/png", "buffer": picture})
    tab.get_by_role("button", name="Add the file").click()

    # The script sent it: the page stays, the progress bar is full, the SHA-256 is shown.
    result = tab.locator("#upload-result")
    result.wait_for(state="visible")
    assert tab.locator("#upload-sha256").inner_text() == hashlib.sha256(picture).hexdigest()
    assert tab.locator("#upload-status").inner_text() == "Upload complete."
    assert tab.locator("#upload-progress").evaluate("bar => bar.value") == 100
    assert "/incidents/" in tab.url and "done=" not in tab.url
    checked["evidence upload form, uploaded"] = serious_violations(tab, axe_source)

    follow(tab.get_by_role("link", name="Open the evidence"))
    assert tab.locator("#evidence-sha256").inner_text() == hashlib.sha256(picture).hexdigest()
    image = tab.get_by_role("img", name="Fictional photo of the broken door")
    image.wait_for(state="visible")
    # decode() waits for the image to load (a busy machine may not have it yet).
    assert image.evaluate("img => img.decode().then(() => img.naturalWidth)") == 48
    custody = tab.locator("#custody tbody")
    assert "Uploaded" in custody.inner_text() and "Viewed" in custody.inner_text()
    checked["evidence page"] = serious_violations(tab, axe_source)

    # A file of a refused type: explained next to the file input, nothing kept.
    tab.go_back()
    tab.get_by_label("The file", exact=True).set_input_files(
        {"name": "fictional.bin", "mimeType": "application/octet-stream",
         "buffer": b"\x00\x01\x02\x03" * 2048})
    tab.get_by_role("button", name="Add the file").click()
    status = tab.locator("#upload-status")
    status.get_by_role("link", name=re.compile("file type not accepted")).wait_for()
    assert tab.get_by_label("The file", exact=True).get_attribute("aria-invalid") == "true"
    checked["evidence upload form with an error"] = serious_violations(tab, axe_source)
    tab.reload()
    assert tab.locator("#evidence-files tbody tr").count() == 1
    assert {name: found for name, found in checked.items() if found} == {}
    assert policy_breaks == []


def test_evidence_can_be_uploaded_without_the_script(chromium, server) -> None:
    context = chromium.new_context(base_url=server.url, java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, server.create_user("advocate", "Kai Fictional-Advocate"))
        open_case(page, "Gray Fictional")
        follow(page.get_by_role("navigation", name="Case file").get_by_role(
            "link", name="Record an incident"))
        by_id(page, "occurred.precision-date").check()
        by_id(page, "occurred.start_date").fill("2026-02-14")
        page.get_by_label("Threats").check()
        follow(page.get_by_role("button", name="Record the incident"))
        page.wait_for_url(INCIDENT_URL)
        follow(page.get_by_role("link", name="Add evidence"))
        content = b"Fictional message kept as text: I know where you are tonight.\n" * 40
        page.get_by_label("The file", exact=True).set_input_files(
            {"name": "fictional-message.txt", "mimeType": "text/plain", "buffer": content})
        follow(page.get_by_role("button", name="Add the file"))
        page.wait_for_url(EVIDENCE_URL)
        assert page.locator("#evidence-sha256").inner_text() == \
            hashlib.sha256(content).hexdigest()
        assert page.locator("#evidence-type").inner_text() == "plain text"
        assert page.get_by_role("img").count() == 0  # other types are downloaded
    finally:
        context.close()


def test_orders_court_dates_and_the_timeline(tab, server, axe_source, policy_breaks) -> None:
    checked: dict[str, list[str]] = {}
    sign_in(tab, server.create_user("advocate", "Lane Fictional-Advocate"))
    open_case(tab, "Harley Fictional")
    case_file = tab.get_by_role("navigation", name="Case file")

    follow(case_file.get_by_role("link", name="Protective orders"))
    checked["protective orders (none)"] = serious_violations(tab, axe_source)
    follow(tab.get_by_role("link", name="Record a protective order"))
    checked["protective order form"] = serious_violations(tab, axe_source)
    tab.get_by_label("Type of order").select_option("temporary")
    tab.get_by_label("Status").select_option("granted")
    by_id(tab, "court").fill("Fictional County Court")
    tab.get_by_label("Conditions").fill("Stay 100 metres away\nNo contact by phone")
    follow(tab.get_by_role("button", name="Record the order"))
    assert by_id(tab, "issued_on-error").text_content() == "Error: required when granted"
    checked["protective order form with errors"] = serious_violations(tab, axe_source)
    issued = date.today() - timedelta(days=2)
    tab.get_by_label("Issued on").fill(issued.isoformat())
    tab.get_by_label("Expires on").fill((date.today() + timedelta(days=90)).isoformat())
    follow(tab.get_by_role("button", name="Record the order"))
    tab.wait_for_url("**?done=order-recorded")
    row = tab.locator("#orders tbody tr")
    assert row.count() == 1 and "In force" in row.inner_text()
    assert "No contact by phone" in row.inner_text()
    checked["protective orders"] = serious_violations(tab, axe_source)

    follow(tab.get_by_role("link", name="Court dates").first)
    checked["court dates (none)"] = serious_violations(tab, axe_source)
    follow(tab.get_by_role("link", name="Record a court date"))
    checked["court date form"] = serious_violations(tab, axe_source)
    hearing_day = date.today() + timedelta(days=21)
    tab.get_by_label("Kind of hearing").select_option("protective_order_hearing")
    tab.get_by_label("Date", exact=True).fill(hearing_day.isoformat())
    tab.get_by_label("Time", exact=True).fill("09:30")
    tab.get_by_label("The court's time zone").fill("Europe/London")
    tab.get_by_label("About a protective order").select_option(index=1)
    follow(tab.get_by_role("button", name="Record the court date"))
    tab.wait_for_url("**?done=court-date-recorded")
    hearings = tab.locator("#court-dates tbody tr")
    assert hearings.count() == 1
    assert f"{hearing_day.isoformat()} 09:30" in hearings.inner_text()
    assert "Europe/London" in hearings.inner_text()
    checked["court dates"] = serious_violations(tab, axe_source)

    follow(tab.get_by_role("link", name=re.compile("Back to client")))
    follow(tab.get_by_role("navigation", name="Case file").get_by_role("link", name="Timeline"))
    entries = tab.locator("#timeline tbody tr")
    kinds = [text.strip() for text in entries.locator("td:nth-child(2)").all_inner_texts()]
    assert [k.split(",")[0].strip() for k in kinds] == ["Protective order issued", "Court date",
                                                "Protective order expiry"]
    checked["timeline"] = serious_violations(tab, axe_source)
    tab.get_by_label("Court date", exact=True).check()
    follow(tab.get_by_role("button", name="Show"))
    assert tab.locator("#timeline tbody tr").count() == 1
    assert "kind=court_date" in tab.url
    checked["timeline, filtered"] = serious_violations(tab, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}
    assert policy_breaks == []
