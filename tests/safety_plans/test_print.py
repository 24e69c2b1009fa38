"""The client's printable copy of a plan: refused for a bad format and outside reach first;
then the page and the PDF carry the plan and nothing that names the agency, are never
cached, load nothing, and every copy is audited."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from uuid import UUID

import pytest
import sqlalchemy as sa
from pypdf import PdfReader
from sqlmodel import Session

from app.clients.models import Client
from app.core.audit import AuditEvent
from tests.safety_plans.test_safety_plans import (
    REASON,
    SECRET_PLACE,
    SECRET_WORD,
    body,
    plan,
    post,
)
from tests.support.identity import bearer

# Words that would tell whoever finds the paper what kind of service made it.
GIVEAWAYS = ("advocase", "domestic", "violence", "abuse", "shelter", "agency", "case")


def printed(db: Session) -> list[AuditEvent]:
    return list(db.scalars(sa.select(AuditEvent).where(
        AuditEvent.action == "safety_plan.printed").order_by(AuditEvent.seq)))


def pdf_text(pdf: bytes) -> str:
    """Every page's text, whitespace folded (pypdf: no Debian tool needed for `make test`)."""
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() or "" for page in reader.pages).split())


def pdf_info(pdf: bytes) -> str:
    """The document information dictionary as "Key: value" lines, like pdfinfo prints it."""
    metadata = PdfReader(io.BytesIO(pdf)).metadata or {}
    return "\n".join(f"{str(key).lstrip('/')}: {value}" for key, value in metadata.items())


def names_nothing(text: str, db: Session, org, client_id: str) -> None:
    """Neither the agency, nor the kind of service, nor the case is named."""
    case_number = db.scalar(sa.select(Client.case_number).where(Client.id == UUID(client_id)))
    lowered = text.lower()
    assert org.name.lower() not in lowered and org.slug not in lowered
    assert case_number.lower() not in lowered and client_id not in lowered
    for word in GIVEAWAYS:
        assert word not in lowered, word


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docx", "PDF", "", "html,pdf"])
def test_an_unknown_format_is_refused_naming_it(client, agency, client_id, db, fmt) -> None:
    _, _, tokens = agency
    post(client, tokens["advocate"], client_id, body())
    for leaf in ("current", "1"):
        response = client.get(f"/api/v1/clients/{client_id}/safety-plans/{leaf}/print",
                              params={"format": fmt}, headers=bearer(tokens["advocate"]))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert {e["field"] for e in response.json()["errors"]} == {"format"}
        assert SECRET_PLACE not in response.text
    assert printed(db) == []


def test_bad_versions_and_missing_plans(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    headers = bearer(tokens["advocate"])
    base = f"/api/v1/clients/{client_id}/safety-plans"
    assert client.get(f"{base}/current/print", headers=headers).status_code == 404
    post(client, tokens["advocate"], client_id, body())
    assert client.get(f"{base}/2/print", headers=headers).status_code == 404
    for bad in ("0", "abc", "1000001", "-1"):
        response = client.get(f"{base}/{bad}/print", headers=headers)
        assert response.status_code == 422, bad
        assert {e["field"] for e in response.json()["errors"]} == {"version"}
    assert client.get(f"/api/v1/clients/{UUID(int=7)}/safety-plans/current/print",
                      headers=headers).status_code == 404
    assert printed(db) == []


def test_outside_reach_is_not_found(client, agency, client_id, db) -> None:
    _, _, tokens = agency
    post(client, tokens["advocate"], client_id, body())
    base = f"/api/v1/clients/{client_id}/safety-plans"
    paths = [f"{base}/{leaf}/print?format={fmt}" for leaf in ("current", "1")
             for fmt in ("html", "pdf")]
    # The colleague (other caseload), another agency and the admin find nothing at all.
    for who in ("colleague", "stranger", "admin"):
        for path in paths:
            response = client.get(path, headers=bearer(tokens[who]))
            assert response.status_code == 404, (who, path)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert SECRET_PLACE not in response.text
    for path in paths:
        assert client.get(path, headers=bearer(tokens["auditor"])).status_code == 403
        assert client.get(path).status_code == 401
    assert printed(db) == []


# --- the copy -----------------------------------------------------------------------------


def test_html_copy_is_plain_uncached_and_loads_nothing(client, agency, client_id,
                                                       db) -> None:
    org, _, tokens = agency
    post(client, tokens["advocate"], client_id, body())
    response = client.get(f"/api/v1/clients/{client_id}/safety-plans/current/print",
                          params={"format": "html"}, headers=bearer(tokens["advocate"]))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"] == 'inline; filename="plan.html"'
    html = response.text

    # The plan is there, every section that has something in it.
    for text in (SECRET_PLACE, "Fictional: bus 12", SECRET_WORD, "Fictional neighbour",
                 "18:30", "Passport", "Medication", "Fictional hotline", "+1 555 0100",
                 "Fictional: school pick-up by grandmother only", "Passwords changed",
                 "Fictional: separate account opened", "Fictional: via lawyer",
                 "Only in writing, and only about practical arrangements.", REASON):
        assert text.replace("'", "&#39;") in html, text
    assert re.search(r"<title>My plan</title>", html)
    assert html.count('aria-label="ready"') == 1 and html.count('aria-label="not ready yet"') == 2

    # Nothing names the agency or the service; no script, nothing fetched from anywhere.
    names_nothing(html, db, org, client_id)
    assert "<script" not in html.lower() and "src=" not in html and "href=" not in html
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "script-src" not in csp  # default-src 'none' already forbids every script
    # The one inline stylesheet is allowed by its exact hash.
    [css] = re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp


def test_html_copy_is_the_default_and_escapes_what_was_typed(client, agency, client_id
                                                             ) -> None:
    _, _, tokens = agency
    hostile = plan(go_bag=[{"item": "<script>alert(1)</script>", "ready": False}],
                   notes='<img src="https://example.test/x.png">')
    post(client, tokens["advocate"], client_id, body(hostile))
    response = client.get(f"/api/v1/clients/{client_id}/safety-plans/current/print",
                          headers=bearer(tokens["advocate"]))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<script" not in response.text and "<img" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


def test_pdf_copy_carries_the_plan_and_not_the_agency(client, agency, client_id, db) -> None:
    org, people, tokens = agency
    post(client, tokens["advocate"], client_id, body())
    response = client.get(f"/api/v1/clients/{client_id}/safety-plans/current/print",
                          params={"format": "pdf"}, headers=bearer(tokens["advocate"]))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"] == 'inline; filename="plan.pdf"'
    assert response.content.startswith(b"%PDF-")

    text = pdf_text(response.content)
    for expected in ("My plan", SECRET_PLACE, SECRET_WORD, "Fictional neighbour", "18:30",
                     "Passport", "Medication", "Spare keys", "Fictional hotline",
                     "+1 555 0100", "Stalkerware checked", REASON):
        assert expected in text, expected
    names_nothing(text, db, org, client_id)
    assert people["advocate"].display_name not in text
    # The document's own metadata is as plain as its pages.
    info = pdf_info(response.content)
    assert re.search(r"^Title:\s+My plan$", info, flags=re.M)
    assert "Author:" not in info
    names_nothing(info.replace("Producer:", ""), db, org, client_id)


def test_an_earlier_version_prints_as_it_was(client, agency, client_id) -> None:
    _, _, tokens = agency
    post(client, tokens["advocate"], client_id, body())
    post(client, tokens["advocate"], client_id,
         body(plan(safe_places=[{"place": "Fictional second place", "how_to_get_there": ""}])))
    base = f"/api/v1/clients/{client_id}/safety-plans"
    headers = bearer(tokens["supervisor"])
    first = client.get(f"{base}/1/print?format=pdf", headers=headers)
    assert first.status_code == 200
    first_text = pdf_text(first.content)
    assert SECRET_PLACE in first_text and "Fictional second place" not in first_text
    assert "Version 1" in first_text
    current = client.get(f"{base}/current/print", headers=headers).text
    assert "Fictional second place" in current and SECRET_PLACE not in current
    assert "Version 2" in current


def test_an_empty_plan_still_prints(client, agency, client_id) -> None:
    _, _, tokens = agency
    post(client, tokens["advocate"], client_id, body({}))
    response = client.get(f"/api/v1/clients/{client_id}/safety-plans/1/print?format=pdf",
                          headers=bearer(tokens["advocate"]))
    assert response.status_code == 200
    text = pdf_text(response.content)
    assert "My plan" in text and "No contact." in text


def test_every_copy_is_audited_without_plan_text(client, agency, client_id, db) -> None:
    _, people, tokens = agency
    post(client, tokens["advocate"], client_id, body())
    base = f"/api/v1/clients/{client_id}/safety-plans"
    client.get(f"{base}/current/print?format=pdf", headers=bearer(tokens["advocate"]))
    client.get(f"{base}/1/print", headers=bearer(tokens["supervisor"]))
    events = printed(db)
    assert [(e.actor_id, e.object_type, e.details) for e in events] == [
        (str(people["advocate"].id), "safety_plan_version",
         {"client_id": client_id, "version": 1, "format": "pdf"}),
        (str(people["supervisor"].id), "safety_plan_version",
         {"client_id": client_id, "version": 1, "format": "html"}),
    ]
    assert SECRET_PLACE not in str([e.details for e in events])


def test_the_pdf_renderer_reads_no_file_and_no_url(tmp_path) -> None:
    """Even if a page asked for a resource, the renderer would not fetch it: a stylesheet
    on disk that would add a word to the page is not applied."""
    from app.safety_plans import printing

    sheet = tmp_path / "sheet.css"
    sheet.write_text('h1::after { content: " LEAKED"; }')
    page = (f'<html><head><link rel="stylesheet" href="{sheet.as_uri()}"></head>'
            "<body><h1>My plan</h1></body></html>")
    text = pdf_text(printing.render_pdf(page))
    assert "My plan" in text and "LEAKED" not in text
