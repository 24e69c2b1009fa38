"""Report pages in a real headless Chromium against a real server, with a real worker
process building the report: an advocate asks for a redacted court summary of a fictional
client from the client's page, watches the progress bar reach 100 % without a reload,
downloads the PDF, and checks the bundle on the verify page; a supervisor asks for the
agency's funder report, watches it finish and downloads its CSV. Every page passed through
is checked with axe-core, and no page may break its Content-Security-Policy."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.browser import (
    Server,
    enrol_mfa,
    follow,
    running_server,
    serious_violations,
    sign_in,
)
from tests.dashboard.test_casefile_browser import png
from tests.dashboard.test_clients_browser import api_token, by_id
from tests.test_cli import PROJECT

BUILD_TIMEOUT_MS = 180_000  # a busy machine renders a PDF slowly


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server of this module, with a worker of its own: the same settings, so the same
    database, embedded broker, data keys and file storage."""
    folder = tmp_path_factory.mktemp("reports-server")
    with running_server(folder) as running:
        with open(folder / "worker.log", "w") as log:
            worker = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "app.cli", "worker", "--concurrency", "1",
                 "--hostname", "reports-browser@localhost"],
                cwd=PROJECT, env=running.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield running
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


@pytest.fixture
def policy_breaks(tab: Any) -> list[str]:
    found: list[str] = []
    tab.on("console", lambda message: found.append(message.text)
           if "Content Security Policy" in message.text else None)
    tab.on("pageerror", lambda error: found.append(str(error)))
    return found


def seed_client(server: Server, email: str) -> str:
    """A fictional client with two incidents and a photo of the first, through the API."""
    headers = {"Authorization": f"Bearer {api_token(server, email)}"}
    api = f"{server.url}/api/v1"
    client = httpx.post(f"{api}/clients", headers=headers, timeout=30, json={
        "preferred_name": "Sasha Fictional", "legal_name": "Sasha Fictional-Example",
        "address": "7 Imaginary Close, Nowhere",
        "contact_details": [{"kind": "phone", "value": "+44 7700 900456"}]})
    assert client.status_code == 201, client.text
    client_id = client.json()["id"]
    incidents = []
    for day, account in ((20, "Fictional account: he shouted from the car at 7 Imaginary "
                               "Close and threw a cup."),
                         (10, "Fictional account: forty messages in one night.")):
        made = httpx.post(f"{api}/clients/{client_id}/incidents", headers=headers, timeout=30,
                          json={"occurred": {"precision": "date",
                                             "start": (date.today() - timedelta(days=day))
                                             .isoformat(), "time_zone": "UTC"},
                                "categories": ["threats"], "client_account": account})
        assert made.status_code == 201, made.text
        incidents.append(made.json()["id"])
    photo = httpx.post(f"{api}/incidents/{incidents[0]}/evidence", headers=headers,
                       timeout=60, data={"description": "Fictional photo of the broken cup"},
                       files={"file": ("cup.png", png(), "image/png")})
    assert photo.status_code == 201, photo.text
    return client_id


def test_an_advocate_requests_watches_downloads_and_verifies_a_court_summary(
        tab, server, axe_source, policy_breaks, tmp_path: Path) -> None:
    checked: dict[str, list[str]] = {}
    email = server.create_user("advocate", "Rory Fictional-Advocate")
    client_id = seed_client(server, email)
    sign_in(tab, email)
    tab.goto(f"/dashboard/clients/{client_id}")
    follow(tab.get_by_role("navigation", name="Case file").get_by_role(
        "link", name="Prepare a court summary"))
    checked["request form"] = serious_violations(tab, axe_source)
    assert "Sasha" not in tab.title()

    # Nothing chosen: the form says so by the incidents, and keeps what was typed.
    by_id(tab, "cover.court").fill("Fictional County Family Court")
    follow(tab.get_by_role("button", name="Prepare the court summary"))
    assert tab.get_by_role("alert").is_visible()
    assert by_id(tab, "incident_ids-error").is_visible()
    assert by_id(tab, "cover.court").input_value() == "Fictional County Family Court"
    checked["request form with errors"] = serious_violations(tab, axe_source)

    boxes = tab.locator('#incident_ids input[type="checkbox"]')
    assert boxes.count() == 2
    for index in range(2):
        boxes.nth(index).check()
    tab.get_by_label("Fictional photo of the broken cup", exact=False).check()
    tab.get_by_label("Strict", exact=False).check()
    by_id(tab, "cover.case_number").fill("FC-2026-0456")
    by_id(tab, "cover.parties.0.role").fill("Petitioner")
    by_id(tab, "cover.parties.0.from_record").select_option("client_legal_name")
    follow(tab.get_by_role("button", name="Prepare the court summary"))
    tab.wait_for_url("**/dashboard/reports/*")
    assert "Sasha" not in tab.url and "Sasha" not in tab.title()
    report_url = tab.url

    # The bar moves without a reload: a mark left on this page survives until 100 %.
    tab.evaluate("() => { window.samePage = true; }")
    checked["report page, building"] = serious_violations(tab, axe_source)
    tab.wait_for_function("() => document.getElementById('report-bar').value === 100",
                          timeout=BUILD_TIMEOUT_MS)
    assert tab.evaluate("() => window.samePage === true")
    assert tab.locator("#report-percent").inner_text() == "100%"
    assert tab.locator("#report-status").inner_text() == "Ready"
    ready = tab.locator("#report-ready")
    ready.wait_for(state="visible")
    follow(ready.get_by_role("link"))
    assert tab.url == report_url
    checked["report page, ready"] = serious_violations(tab, axe_source)

    with tab.expect_download() as pdf_download:
        tab.locator("#download-pdf").click()
    pdf = Path(pdf_download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF")
    with tab.expect_download() as bundle_download:
        tab.locator("#download-bundle").click()
    bundle = tmp_path / "bundle.zip"
    bundle_download.value.save_as(bundle)
    assert bundle.read_bytes().startswith(b"PK\x03\x04")

    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="Reports"))
    checked["your reports"] = serious_violations(tab, axe_source)
    assert tab.locator(f'a[href="{report_url.removeprefix(server.url)}"]').count() == 1
    follow(tab.get_by_role("link", name="check a report file"))
    checked["verify page"] = serious_violations(tab, axe_source)
    tab.get_by_label("The file to check").set_input_files(str(bundle))
    follow(tab.get_by_role("button", name="Check the file"))
    verdict = tab.locator("#verify-verdict")
    assert verdict.inner_text().startswith(
        "Verified: this is exactly what advocase produced, and every exhibit matches")
    assert tab.locator("#verify-kind").inner_text() == "a bundle"
    checked["verify page with a result"] = serious_violations(tab, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}
    assert policy_breaks == []


def test_a_supervisor_asks_for_the_funder_report_watches_it_and_downloads_the_csv(
        tab, server, axe_source, policy_breaks) -> None:
    checked: dict[str, list[str]] = {}
    sign_in(tab, server.create_user("supervisor", "Jordan Fictional-Supervisor"))
    enrol_mfa(tab)
    tab.goto("/dashboard")
    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="Reports"))
    follow(tab.get_by_role("link", name="Ask for a funder report"))
    checked["funder form"] = serious_violations(tab, axe_source)

    # A period that ends before it starts: said by the field, what was typed kept.
    today = date.today()
    by_id(tab, "period.start").fill(today.isoformat())
    by_id(tab, "period.end").fill((today - timedelta(days=90)).isoformat())
    follow(tab.get_by_role("button", name="Ask for the funder report"))
    assert tab.get_by_role("alert").is_visible()
    assert by_id(tab, "period.start-error").is_visible()
    assert by_id(tab, "period.start").input_value() == today.isoformat()
    checked["funder form with errors"] = serious_violations(tab, axe_source)

    by_id(tab, "period.start").fill((today - timedelta(days=90)).isoformat())
    by_id(tab, "period.end").fill(today.isoformat())
    tab.get_by_label("A row for each month").check()
    follow(tab.get_by_role("button", name="Ask for the funder report"))
    tab.wait_for_url("**/dashboard/reports/*")
    assert "Funder report" in tab.title()
    report_url = tab.url
    tab.wait_for_function("() => document.getElementById('report-bar').value === 100",
                          timeout=BUILD_TIMEOUT_MS)
    assert tab.locator("#report-status").inner_text() == "Ready"
    ready = tab.locator("#report-ready")
    ready.wait_for(state="visible")
    follow(ready.get_by_role("link"))
    checked["funder report, ready"] = serious_violations(tab, axe_source)
    assert tab.locator("#download-bundle").count() == 0

    with tab.expect_download() as csv_download:
        tab.locator("#download-csv").click()
    content = Path(csv_download.value.path()).read_bytes().decode("utf-8")
    assert content.startswith("table,row,column,value\r\n")
    assert "clients_served,Total,Clients served," in content

    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="Reports"))
    link = tab.locator(f'a[href="{report_url.removeprefix(server.url)}"]')
    assert "Fictional Harbour Shelter — funder report" in link.inner_text()
    checked["your reports with a funder report"] = serious_violations(tab, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}
    assert policy_breaks == []
