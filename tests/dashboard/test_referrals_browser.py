"""The directory and a referral in a real headless Chromium against a real server: an
advocate finds a refuge of another agency in the directory, records the client's release
of contact details to it, refers the client, checks the preview of exactly what the
refuge will see and sends; the refuge's own partner app accepts with its own OAuth2
token, and a reload of the referral page shows the answer and its history. Every page is
checked with axe-core, and no page may break its Content-Security-Policy."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.dashboard.browser import (
    Server,
    enrol_mfa,
    follow,
    serious_violations,
    sign_in,
)
from tests.dashboard.test_clients_browser import by_id
from tests.test_cli import advocase

REFUGE = "Fictional Riverside Refuge"
REFUGE_ADDRESS = "3 Fictional Willow Walk, Example Town"
PHONE = "+44 7700 900123"
SAFE_WORD = "Fictional kingfisher"
REFERRAL_URL = re.compile(r".*/dashboard/clients/([0-9a-f-]{36})/referrals/([0-9a-f-]{36})")


@pytest.fixture
def policy_breaks(tab: Any) -> list[str]:
    found: list[str] = []
    tab.on("console", lambda message: found.append(message.text)
           if "Content Security Policy" in message.text else None)
    tab.on("pageerror", lambda error: found.append(str(error)))
    return found


def refuge_app(server: Server) -> dict[str, str]:
    """Another agency (made with the CLI) whose own partner app keeps its listing, and
    that app's OAuth2 access token (client credentials, as the app itself would)."""
    org = advocase("create-org", "--name", "Fictional Riverside Trust", "--json",
                   env=server.env)
    assert org.returncode == 0, org.stderr
    made = advocase("create-partner-app", "--org", json.loads(org.stdout)["slug"], "--name",
                    "Fictional Riverside Software", "--scopes",
                    "referrals:read referrals:write resources:read resources:write",
                    "--json", env=server.env)
    assert made.returncode == 0, made.stderr
    app = json.loads(made.stdout)
    response = httpx.post(f"{server.url}/oauth/token", timeout=30,
                          data={"grant_type": "client_credentials",
                                "scope": "referrals:read referrals:write resources:write"},
                          auth=(app["client_id"], app["client_secret"]))
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    listing = httpx.post(f"{server.url}/api/v1/resources", headers=headers, timeout=30, json={
        "name": REFUGE, "categories": ["shelter", "pet_friendly_shelter"],
        "description": "Fictional refuge by the river; dogs welcome.",
        "languages": ["en", "pl"], "phone": "+44 7700 900555",
        "eligibility": {"pets_accepted": True}, "address": REFUGE_ADDRESS,
        "opening_hours": {"time_zone": "Europe/London", "always_open": True},
        "capacity": {"beds_total": 10, "beds_available": 4}})
    assert listing.status_code == 201, listing.text
    return headers


def test_an_advocate_refers_a_client_and_sees_the_answer_arrive(tab, server, axe_source,
                                                                policy_breaks) -> None:
    checked: dict[str, list[str]] = {}
    partner = refuge_app(server)
    sign_in(tab, server.create_user("advocate", "Harper Fictional-Advocate"))

    # The directory: search, open the refuge; its address is not this agency's to see.
    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="Directory"))
    checked["directory"] = serious_violations(tab, axe_source)
    tab.get_by_label("Words to look for").fill("riverside")
    tab.get_by_label("Shelter", exact=True).check()
    follow(tab.get_by_role("button", name="Search"))
    assert "q=riverside" in tab.url
    results = tab.locator("#resources tbody tr")
    assert results.count() == 1
    assert "4 of 10" in results.inner_text()
    checked["directory search"] = serious_violations(tab, axe_source)
    follow(tab.get_by_role("link", name=REFUGE))
    assert tab.title() == f"Directory: {REFUGE} — advocase"
    assert tab.locator("#resource-address").inner_text() == (
        "Withheld: this address is confidential")
    assert REFUGE_ADDRESS not in tab.content()
    assert tab.locator("#resource-pets").inner_text() == "Accepted"
    checked["listing"] = serious_violations(tab, axe_source)

    # A client with a phone number and a safe-contact code word.
    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="Clients"))
    follow(tab.get_by_role("link", name="Open a new case"))
    tab.get_by_label("Preferred name or pseudonym").fill("Robin Fictional")
    by_id(tab, "contact_details.0.value").fill(PHONE)
    tab.get_by_label("Phone call is safe to use").check()
    by_id(tab, "safe_contact.channels.0.code_word").fill(SAFE_WORD)
    follow(tab.get_by_role("button", name="Open the case"))
    tab.wait_for_url(re.compile(r".*/dashboard/clients/[0-9a-f-]{36}\?done=client-created$"))

    # The client's written release of contact details to the refuge, as the directory names it.
    tab.get_by_label("Receiving agency").fill(REFUGE)
    tab.get_by_label("What the information is for").fill("Fictional: arrange a bed tonight")
    by_id(tab, "consent.categories-contact_details").check()
    tab.get_by_label("Ends on").fill((date.today() + timedelta(days=60)).isoformat())
    follow(tab.get_by_role("button", name="Record the release"))
    tab.wait_for_url("**?done=consent-recorded#consents")

    # Refer: find the refuge, share what the release covers, write the handoff.
    follow(tab.get_by_role("navigation", name="Case file").get_by_role(
        "link", name="Refer to a service"))
    checked["refer: choose a service"] = serious_violations(tab, axe_source)
    tab.get_by_label("Words to look for").fill("riverside refuge")
    follow(tab.get_by_role("button", name="Search"))
    follow(tab.get_by_role("link", name=f"Refer here to {REFUGE}"))
    assert tab.locator("#chosen-service").inner_text().startswith("Shelter")
    # Only contact details can be chosen: the one category the release covers.
    assert tab.locator('input[name="categories"]').count() == 1
    assert "Covered by the release to" in tab.locator("#categories").inner_text()
    checked["refer: what to share"] = serious_violations(tab, axe_source)
    tab.get_by_label("Contact details", exact=True).check()
    follow(tab.get_by_role("button", name="Save and preview"))
    assert tab.get_by_role("alert").is_visible()  # the reason is missing
    assert by_id(tab, "reason").get_attribute("aria-invalid") == "true"
    assert tab.get_by_label("Contact details", exact=True).is_checked()
    checked["refer: form with errors"] = serious_violations(tab, axe_source)
    tab.get_by_label("Why you are referring").fill("Fictional: needs a pet-friendly bed")
    tab.get_by_label("Code word for the call").fill("Fictional heron")
    tab.get_by_label("Note for the recipient").fill("Expect a call this evening.")
    follow(tab.get_by_role("button", name="Save and preview"))
    tab.wait_for_url("**/preview?done=draft-saved")
    match = REFERRAL_URL.match(tab.url)
    assert match
    referral_id = match.group(2)

    # The preview: exactly what the refuge will see — the phone, not the code word.
    seen = tab.locator("#as-recipient-sees")
    assert tab.locator("#seen-shared").inner_text() == "Contact details"
    assert PHONE in tab.locator("#seen-contact-details").inner_text()
    assert "Fictional heron" in tab.locator("#seen-handoff").inner_text()
    assert SAFE_WORD not in seen.inner_text() and SAFE_WORD not in tab.content()
    assert "Robin" not in seen.inner_text()  # identity is not covered
    assert "Robin" not in tab.title()
    checked["preview"] = serious_violations(tab, axe_source)
    follow(tab.get_by_role("button", name="Send the referral"))
    tab.wait_for_url("**?done=referral-sent")
    assert tab.locator("#referral-status").inner_text() == "Sent"
    assert tab.locator("#referral-shared").inner_text() == "Contact details"
    checked["referral (sent)"] = serious_violations(tab, axe_source)

    # The refuge's app reads it from its inbox and accepts, with its own token.
    inbox = httpx.get(f"{server.url}/api/v1/referrals", headers=partner, timeout=30).json()
    assert [item["id"] for item in inbox["items"]] == [referral_id]
    read = httpx.get(f"{server.url}/api/v1/referrals/{referral_id}", headers=partner,
                     timeout=30).json()
    assert read["shared_categories"] == ["contact_details"]
    assert read["client"]["contact_details"]["contact_details"][0]["value"] == PHONE
    assert read["client"]["identity"] is None and SAFE_WORD not in json.dumps(read)
    accepted = httpx.post(f"{server.url}/api/v1/referrals/{referral_id}/accept",
                          headers=partner, json={"reason": "Fictional: a room is ready"},
                          timeout=30)
    assert accepted.status_code == 200, accepted.text

    # A plain reload shows the answer and who gave it.
    tab.reload()
    assert tab.locator("#referral-status").inner_text() == "Accepted"
    history = tab.locator("#referral-history tbody tr")
    assert history.count() == 3
    assert history.nth(1).inner_text().startswith("Draft → Sent")
    last = history.nth(2).inner_text()
    assert last.startswith("Sent → Accepted") and "the receiving service" in last
    assert "Fictional: a room is ready" in last
    checked["referral (accepted)"] = serious_violations(tab, axe_source)

    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="Referrals"))
    tab.get_by_label("Status").select_option("accepted")
    follow(tab.get_by_role("button", name="Show"))
    assert tab.locator("#referrals tbody tr").count() == 1
    assert REFUGE in tab.locator("#referrals").inner_text()
    checked["agency referrals"] = serious_violations(tab, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}
    assert policy_breaks == []


def test_a_supervisor_adds_a_listing_and_keeps_its_bed_count(tab, server, axe_source,
                                                             policy_breaks) -> None:
    checked: dict[str, list[str]] = {}
    sign_in(tab, server.create_user("supervisor", "Quinn Fictional-Supervisor"))
    enrol_mfa(tab)
    tab.goto("/dashboard/resources")
    follow(tab.get_by_role("link", name="Add a listing"))
    checked["listing form"] = serious_violations(tab, axe_source)
    tab.get_by_label("Name", exact=True).fill("Fictional Lakeside House")
    tab.get_by_label("Languages").fill("en, ga")
    tab.get_by_label("These hours each week").check()
    tab.get_by_label("Time zone of the hours").fill("Europe/Dublin")
    by_id(tab, "opening_hours.weekly.0.day").select_option("fri")
    by_id(tab, "opening_hours.weekly.0.opens").fill("22:00")
    by_id(tab, "opening_hours.weekly.0.closes").fill("06:00")
    tab.get_by_label("Street address").fill("5 Fictional Lakeside, Example Town")
    follow(tab.get_by_role("button", name="Add the listing"))

    # No kind of service ticked: said by the field, what was typed kept.
    assert tab.get_by_role("alert").is_visible()
    assert by_id(tab, "categories-error").is_visible()
    assert tab.get_by_label("Street address").input_value() == (
        "5 Fictional Lakeside, Example Town")
    assert by_id(tab, "opening_hours.weekly.0.opens").input_value() == "22:00"
    checked["listing form with errors"] = serious_violations(tab, axe_source)
    tab.get_by_label("Shelter", exact=True).check()
    follow(tab.get_by_role("button", name="Add the listing"))
    tab.wait_for_url(re.compile(r".*/dashboard/resources/[0-9a-f-]{36}\?done=listing-created$"))
    assert tab.title() == "Directory: Fictional Lakeside House — advocase"
    assert tab.locator("#resource-hours").inner_text().startswith(
        "fri 22:00-06:00 (Europe/Dublin)")
    # Their own agency's address, marked confidential.
    assert "5 Fictional Lakeside" in tab.locator("#resource-address").inner_text()
    assert "never give it out" in tab.locator("#resource-address").inner_text()
    checked["own listing"] = serious_violations(tab, axe_source)

    tab.get_by_label("Beds free", exact=True).fill("3")
    tab.get_by_label("Beds in all").fill("2")
    follow(tab.get_by_role("button", name="Save the bed count"))
    assert by_id(tab, "beds_available-error").is_visible()
    checked["bed count with errors"] = serious_violations(tab, axe_source)
    tab.get_by_label("Beds in all").fill("6")
    follow(tab.get_by_role("button", name="Save the bed count"))
    tab.wait_for_url("**?done=capacity-updated")
    assert tab.locator("#resource-beds").inner_text().startswith("3 free of 6")

    follow(tab.get_by_role("link", name="Edit the listing"))
    assert tab.get_by_label("Shelter", exact=True).is_checked()
    checked["edit form"] = serious_violations(tab, axe_source)
    tab.get_by_label("Open 24 hours, every day").check()
    follow(tab.get_by_role("button", name="Save the listing"))
    tab.wait_for_url("**?done=listing-updated")
    assert tab.locator("#resource-hours").inner_text().startswith("24/7 (Europe/Dublin)")
    assert {name: found for name, found in checked.items() if found} == {}
    assert policy_breaks == []
