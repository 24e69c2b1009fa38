"""The dashboard's sign-in and account pages in a real headless Chromium, against a
real server process (see ``tests/dashboard/browser.py``)."""

from __future__ import annotations

from tests.dashboard.browser import (
    enrol_mfa,
    follow,
    fresh_step,
    nav_links,
    serious_violations,
    sign_in,
    sign_out,
)
from tests.support.identity import PASSWORD

# --- scenarios ---------------------------------------------------------------------------


def test_an_admin_is_made_to_enrol_mfa_then_reaches_the_shell(tab, server) -> None:
    email = server.create_user("admin", "Ada Fictional-Admin")
    tab.goto("/dashboard")
    assert tab.url.endswith("/dashboard/login")  # anonymous: sent to sign in
    sign_in(tab, email)
    assert tab.url.endswith("/dashboard/security/mfa")
    assert "Your role must use two-step sign-in" in tab.content()
    tab.goto("/dashboard/users")  # nothing else opens before MFA is on
    assert tab.url.endswith("/dashboard/security/mfa")

    enrol_mfa(tab)
    codes = tab.locator("#recovery-codes li").all_inner_texts()
    assert len(set(codes)) == 10
    follow(tab.get_by_role("link", name="I have saved them — continue to the dashboard"))
    tab.wait_for_url("**/dashboard")
    assert tab.locator("#signed-in-name").inner_text() == "Ada Fictional-Admin"
    assert tab.locator("#signed-in-role").inner_text() == "Admin"
    # "Reports": the agency's funder reports (an admin reads no client's report).
    assert nav_links(tab) == ["Home", "Reports", "Directory", "My sessions", "Security",
                              "Users", "Partner apps"]
    assert tab.title() == "Home — advocase"

    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="Users"))
    assert tab.get_by_role("cell", name=email).is_visible()

    sign_out(tab)
    assert tab.get_by_role("status").inner_text() == "You have signed out."
    tab.goto("/dashboard")
    assert tab.url.endswith("/dashboard/login")


def test_an_advocate_with_mfa_signs_in_with_password_then_code(tab, server) -> None:
    email = server.create_user("advocate", "Avery Fictional-Advocate")
    sign_in(tab, email)
    assert tab.url.endswith("/dashboard")  # advocates are not forced to enrol
    follow(tab.get_by_role("navigation", name="Main").get_by_role("link", name="Security"))
    follow(tab.get_by_role("link", name="Set up two-step sign-in"))
    totp = enrol_mfa(tab, use_previous_step=True)
    tab.goto("/dashboard")
    sign_out(tab)

    sign_in(tab, email)
    assert tab.url.endswith("/dashboard/login/mfa")
    fresh_step(totp)
    tab.get_by_label("Code").fill(totp.now())
    follow(tab.get_by_role("button", name="Continue"))
    tab.wait_for_url("**/dashboard")
    assert tab.locator("#signed-in-name").inner_text() == "Avery Fictional-Advocate"
    assert tab.locator("#signed-in-role").inner_text() == "Advocate"
    assert nav_links(tab) == ["Home", "My day", "Clients", "Referrals", "Reports",
                              "Directory", "My sessions", "Security"]
    assert tab.locator('a[href="/dashboard/users"]').count() == 0
    assert tab.locator('a[href="/dashboard/partner-apps"]').count() == 0
    assert tab.goto("/dashboard/users").status == 404


def test_a_form_posted_without_its_csrf_token_is_refused(tab, server) -> None:
    email = server.create_user("advocate", "Casey Fictional-Advocate")
    sign_in(tab, email)
    tab.goto("/dashboard/security")
    tab.get_by_label("Current password").fill(PASSWORD)
    tab.get_by_label("New password", exact=True).fill("another fictional passphrase 2026")
    tab.get_by_label("New password again").fill("another fictional passphrase 2026")
    tab.evaluate("""() => document
        .querySelector('form[action="/dashboard/security/password"] input[name="csrf_token"]')
        .remove()""")
    with tab.expect_response("**/dashboard/security/password") as answer:
        follow(tab.get_by_role("button", name="Change password"))
    assert answer.value.status == 403
    assert "This form could not be accepted" in tab.content()

    # Nothing changed: the old password still signs in.
    sign_out(tab)
    sign_in(tab, email)
    assert tab.url.endswith("/dashboard")


def test_pages_have_no_serious_accessibility_violations(tab, server, axe_source) -> None:
    checked: dict[str, list[str]] = {}
    tab.goto("/dashboard/login")
    checked["login"] = serious_violations(tab, axe_source)
    tab.get_by_label("Email address").fill("nobody@example.test")
    tab.get_by_label("Password").fill("not the password")
    follow(tab.get_by_role("button", name="Sign in"))
    assert tab.get_by_role("alert").is_visible()
    checked["login with error"] = serious_violations(tab, axe_source)

    sign_in(tab, server.create_user("admin", "Robin Fictional-Admin"))
    checked["mfa enrolment"] = serious_violations(tab, axe_source)
    follow(tab.get_by_role("button", name="Start set-up"))
    checked["mfa key"] = serious_violations(tab, axe_source)
    tab.goto("/dashboard/security/mfa")
    enrol_mfa(tab)
    checked["recovery codes"] = serious_violations(tab, axe_source)
    for name, path in [("shell", "/dashboard"), ("sessions", "/dashboard/sessions"),
                       ("security", "/dashboard/security"), ("users", "/dashboard/users"),
                       ("partner apps", "/dashboard/partner-apps")]:
        tab.goto(path)
        checked[name] = serious_violations(tab, axe_source)
    tab.goto("/dashboard/users")
    follow(tab.get_by_role("row").nth(1).get_by_role("link"))
    checked["user detail"] = serious_violations(tab, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}
