"""Client pages in a real headless Chromium against a real server: opening a case,
ticking a go-bag item, recording a risk assessment. Every page the scenarios pass
through is checked with axe-core (no serious or critical violations)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import httpx

from tests.dashboard.browser import Server, follow, serious_violations, sign_in
from tests.support.identity import PASSWORD

CLIENT_URL = re.compile(r".*/dashboard/clients/([0-9a-f-]{36})\?done=client-created$")


def by_id(page: Any, element_id: str) -> Any:
    """An element by id; ids here are dotted paths, which a ``#`` selector would misread."""
    return page.locator(f'[id="{element_id}"]')


def open_case(page: Any, preferred_name: str) -> str:
    """Open a case from the caseload with only a preferred name; returns the client id."""
    follow(page.get_by_role("navigation", name="Main").get_by_role("link", name="Clients"))
    follow(page.get_by_role("link", name="Open a new case"))
    page.get_by_label("Preferred name or pseudonym").fill(preferred_name)
    follow(page.get_by_role("button", name="Open the case"))
    page.wait_for_url(CLIENT_URL)
    match = CLIENT_URL.match(page.url)
    assert match
    return match.group(1)


def api_token(server: Server, email: str) -> str:
    response = httpx.post(f"{server.url}/api/v1/auth/login",
                          json={"email": email, "password": PASSWORD}, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_an_advocate_opens_a_case(tab, server, axe_source) -> None:
    checked: dict[str, list[str]] = {}
    email = server.create_user("advocate", "Frankie Fictional-Advocate")
    sign_in(tab, email)
    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="Clients"))
    assert tab.title() == "Clients — advocase"
    checked["caseload (empty)"] = serious_violations(tab, axe_source)

    follow(tab.get_by_role("link", name="Open a new case"))
    checked["new client form"] = serious_violations(tab, axe_source)
    tab.get_by_label("Preferred name or pseudonym").fill("Jordan Fictional")
    tab.get_by_label("Legal name").fill("Jordan Fictional-Example")
    tab.get_by_label("Date of birth").fill("2999-01-01")
    by_id(tab, "contact_details.0.value").fill("+44 7700 900456")
    by_id(tab, "contact_details.0.label").fill("safe phone")
    tab.get_by_label("Phone call is safe to use").check()
    by_id(tab, "safe_contact.channels.0.code_word").fill("lighthouse")
    by_id(tab, "household.children.0.first_name").fill("Ali")
    by_id(tab, "household.children.0.age").fill("9")
    by_id(tab, "household.pets.0.name").fill("Whiskers")
    follow(tab.get_by_role("button", name="Open the case"))

    # A date of birth in the future: the form comes back with the message by the field.
    assert tab.get_by_role("alert").is_visible()
    assert by_id(tab, "date_of_birth-error").text_content() == "Error: out of range"
    assert by_id(tab, "date_of_birth").get_attribute("aria-invalid") == "true"
    assert tab.get_by_label("Preferred name or pseudonym").input_value() == "Jordan Fictional"
    assert tab.get_by_label("Phone call is safe to use").is_checked()
    checked["new client form with errors"] = serious_violations(tab, axe_source)
    summary = tab.get_by_role("alert")
    assert summary.get_by_role("heading").inner_text() == "The date of birth is not plausible."
    assert summary.get_by_role("link", name="out of range").get_attribute("href") == \
        "#date_of_birth"
    by_id(tab, "date_of_birth").fill("1991-02-03")
    follow(tab.get_by_role("button", name="Open the case"))
    tab.wait_for_url(CLIENT_URL)

    assert tab.get_by_role("status").inner_text() == "The case is open."
    assert tab.locator("#client-preferred-name").inner_text() == "Jordan Fictional"
    assert tab.locator("#client-assigned").inner_text() == "you"
    channels = tab.get_by_role("table", name=re.compile("Channels safe to use"))
    assert "lighthouse" in channels.inner_text() and "Phone call" in channels.inner_text()
    assert "Whiskers" in tab.content() and "Ali, 9" in tab.content()
    assert "Jordan" not in tab.url and "Jordan" not in tab.title()
    checked["client page"] = serious_violations(tab, axe_source)

    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="Clients"))
    row = tab.locator("#caseload tbody tr").filter(has_text="Jordan Fictional")
    assert row.count() == 1 and "Intake" in row.inner_text()
    checked["caseload"] = serious_violations(tab, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}


def test_ticking_a_go_bag_item_is_kept_as_a_new_plan_version(tab, server, axe_source) -> None:
    checked: dict[str, list[str]] = {}
    email = server.create_user("advocate", "Gale Fictional-Advocate")
    sign_in(tab, email)
    client_id = open_case(tab, "Casey Fictional")

    follow(tab.get_by_role("link", name="Write a safety plan"))
    checked["plan form"] = serious_violations(tab, axe_source)
    by_id(tab, "content.safe_places.0.place").fill("A fictional friend's flat")
    by_id(tab, "content.safe_places.0.how_to_get_there").fill("Bus 12 from the corner")
    tab.get_by_label("Code word or signal").fill("sunflower")
    tab.get_by_label("Review the plan by").fill((date.today() + timedelta(days=30)).isoformat())
    tab.get_by_label("What changed").fill("First plan with the client")
    follow(tab.get_by_role("button", name="Save as a new version"))
    tab.wait_for_url("**?done=plan-saved#safety-plan")
    assert tab.locator("#plan-version").inner_text().startswith("Version 1,")

    passports = tab.get_by_label("Passports", exact=True)
    assert not passports.is_checked()
    # By keyboard: Space ticks the box, Enter on the button saves.
    passports.focus()
    tab.keyboard.press("Space")
    tab.get_by_role("button", name="Save the checklist").focus()
    tab.keyboard.press("Enter")
    tab.wait_for_url("**?done=go-bag-saved#safety-plan")
    assert tab.get_by_role("status").inner_text().startswith("The go-bag checklist is saved")
    tab.reload()
    assert tab.get_by_label("Passports", exact=True).is_checked()
    assert not tab.get_by_label("Cash", exact=True).is_checked()
    assert tab.locator("#plan-version").inner_text().startswith("Version 2,")
    checked["client page with a plan"] = serious_violations(tab, axe_source)

    headers = {"Authorization": f"Bearer {api_token(server, email)}"}
    base = f"{server.url}/api/v1/clients/{client_id}/safety-plans"
    current = httpx.get(f"{base}/current", headers=headers, timeout=30).json()
    assert current["version"] == 2
    assert current["change_note"] == "Go-bag item marked ready"
    ready = {item["item"]: item["ready"] for item in current["content"]["go_bag"]}
    assert ready["Passports"] is True and ready["Cash"] is False
    listed = httpx.get(base, headers=headers, timeout=30).json()["items"]
    assert [v["version"] for v in listed] == [2, 1]
    first = httpx.get(f"{base}/1", headers=headers, timeout=30).json()
    assert {i["item"]: i["ready"] for i in first["content"]["go_bag"]}["Passports"] is False

    follow(tab.get_by_role("link", name="Changes from version 1 to 2"))
    assert tab.locator("#plan-changes").get_by_role("rowheader").inner_text() == \
        "Go-bag checklist › item 3 › ready"
    checked["plan diff"] = serious_violations(tab, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}


def test_recording_an_assessment_shows_its_level_in_the_risk_history(tab, server,
                                                                     axe_source) -> None:
    checked: dict[str, list[str]] = {}
    sign_in(tab, server.create_user("advocate", "Harper Fictional-Advocate"))
    open_case(tab, "Drew Fictional")

    follow(tab.get_by_role("link", name="Record a risk assessment"))
    # The only instrument on file is chosen already; its questions are on the page.
    assert tab.get_by_label("Instrument", exact=True).input_value() == "example-safety-screen:1.0"
    checked["assessment form"] = serious_violations(tab, axe_source)
    for item in ("threatened_to_kill", "weapon_access", "weapon_threat",
                 "threats_to_children_or_pets", "controlling_behaviour", "substance_misuse"):
        by_id(tab, f"answers.{item}-no").check()
    by_id(tab, "answers.breathing_restricted-yes").check()  # critical: the highest level
    by_id(tab, "answers.violence_trend-same").check()
    by_id(tab, "answers.separation-recent").check()
    by_id(tab, "answers.followed_or_watched-turns_up").check()
    by_id(tab, "answers.service_contacts").fill("2")
    follow(tab.get_by_role("button", name="Record the assessment"))

    # One question was left out: it is marked, the answers given stay ticked.
    assert by_id(tab, "answers.own_fear-error").text_content() == "Error: is required"
    assert by_id(tab, "answers.breathing_restricted-yes").is_checked()
    checked["assessment form with errors"] = serious_violations(tab, axe_source)
    by_id(tab, "answers.own_fear-quite").check()
    follow(tab.get_by_role("button", name="Record the assessment"))
    tab.wait_for_url("**?done=assessment-recorded#risk")

    history = tab.locator("#risk-history tbody tr")
    assert history.count() == 1
    assert "Severe" in history.first.inner_text()
    assert "Example safety screen" in history.first.inner_text()
    assert tab.locator("#risk-latest").inner_text().startswith("Latest: Severe")
    assert tab.locator("#client-urgent").is_visible()  # the highest level marks urgent
    assert tab.get_by_role("img", name="Risk level over time").is_visible()
    assert tab.locator("svg rect.bar").count() == 1
    checked["client page with risk history"] = serious_violations(tab, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}
