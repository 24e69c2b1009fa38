"""A link into the dashboard (such as a reminder email's) survives signing in: the sign-in
page remembers the page asked for and returns to it after the password (and the code),
and nothing else — no other site, no API path, no query a person typed."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import pytest

from tests.dashboard.helpers import csrf_from, enable_mfa
from tests.support.identity import PASSWORD, make_org, make_user

UNSAFE = ["//evil.example/dashboard", "https://evil.example/dashboard", "javascript:alert(1)",
          "/dashboard/../api/v1/me", "/dashboard/./x", "/dashboard/%2e%2e/api",
          "/dashboard\\evil.example", "/dashboard//evil.example", "/api/v1/me",
          "/dashboard/login", "/dashboard/logout", "/dashboard/x?y=1", "/dashboard/x#y",
          "dashboard/reminders", "/dashboard/" + "a" * 400]


def sign_in_form(web: Any, email: str, next_path: str | None) -> Any:
    page = web.get("/dashboard/login", params={"next": next_path} if next_path else None)
    assert page.status_code == 200
    data = {"csrf_token": csrf_from(page.text), "email": email, "password": PASSWORD}
    if next_path is not None:
        data["next"] = next_path
    return web.post("/dashboard/login", data=data)


def query_of(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query)


@pytest.mark.parametrize("unsafe", UNSAFE)
def test_an_unsafe_return_address_is_dropped(web, db, unsafe) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    page = web.get("/dashboard/login", params={"next": unsafe})
    assert page.status_code == 200
    assert 'name="next"' not in page.text
    response = sign_in_form(web, user.email, unsafe)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"


def test_a_signed_out_visitor_comes_back_to_the_page_asked_for(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    wanted = f"/dashboard/reminders/{uuid4()}"
    refused = web.get(wanted)
    assert refused.status_code == 303
    location = refused.headers["location"]
    assert urlsplit(location).path == "/dashboard/login"
    assert query_of(location) == {"next": [wanted]}

    page = web.get(location)
    assert f'name="next" value="{wanted}"' in page.text
    response = sign_in_form(web, user.email, wanted)
    assert response.status_code == 303 and response.headers["location"] == wanted


def test_the_return_address_survives_the_code_step(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    totp, _ = enable_mfa(db, user)
    wanted = f"/dashboard/clients/{uuid4()}/court-dates"
    first = sign_in_form(web, user.email, wanted)
    assert first.status_code == 303
    assert urlsplit(first.headers["location"]).path == "/dashboard/login/mfa"
    assert query_of(first.headers["location"]) == {"next": [wanted]}
    form = web.get(first.headers["location"])
    assert f'name="next" value="{wanted}"' in form.text
    wrong = web.post("/dashboard/login/mfa", data={"csrf_token": csrf_from(form.text),
                                                   "code": "000000", "next": wanted})
    assert wrong.status_code == 400 and f'name="next" value="{wanted}"' in wrong.text
    right = web.post("/dashboard/login/mfa", data={"csrf_token": csrf_from(form.text),
                                                   "code": totp.now(), "next": wanted})
    assert right.status_code == 303 and right.headers["location"] == wanted


def test_only_the_path_is_remembered_never_the_query_or_a_post(web, db) -> None:
    response = web.get("/dashboard/resources", params={"q": "Fictional typed words"})
    assert query_of(response.headers["location"]) == {"next": ["/dashboard/resources"]}
    assert "Fictional" not in response.headers["location"]
    posted = web.post("/dashboard/notifications/read-all", data={"csrf_token": "x"})
    assert posted.status_code == 303
    assert posted.headers["location"] == "/dashboard/login"
    home = web.get("/dashboard")
    assert home.headers["location"] == "/dashboard/login"


def test_a_signed_in_visitor_of_the_sign_in_page_goes_on_to_the_page(web, db) -> None:
    user = make_user(db, make_org(db), "advocate")
    db.commit()
    assert sign_in_form(web, user.email, None).headers["location"] == "/dashboard"
    again = web.get("/dashboard/login", params={"next": "/dashboard/my-day"})
    assert again.status_code == 303 and again.headers["location"] == "/dashboard/my-day"
    unsafe = web.get("/dashboard/login", params={"next": "//evil.example/"})
    assert unsafe.headers["location"] == "/dashboard"
