"""Refusals first: bad vocabulary, bad hours, bad contact details, and every caller who
may not change a listing."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.resources.models import Resource
from tests.resources.factories import Directory, count, fields, listing, make_resource

URL = "/api/v1/resources"


def hours(*weekly: tuple[str, str, str], zone: str = "Europe/Dublin",
          always_open: bool = False) -> dict:
    return {"time_zone": zone, "always_open": always_open,
            "weekly": [{"day": d, "opens": o, "closes": c} for d, o, c in weekly]}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"categories": ["soup_kitchen"]}, "categories.0"),
    ({"categories": []}, "categories"),
    ({"categories": None}, "categories"),
    ({"name": "   "}, "name"),
    ({"languages": ["english!"]}, "languages.0"),
    ({"languages": ["e"]}, "languages.0"),
    ({"accessibility": ["lift_to_the_moon"]}, "accessibility.0"),
    ({"eligibility": {"genders_served": ["everyone"]}}, "eligibility.genders_served.0"),
    ({"eligibility": {"min_age": 30, "max_age": 18}}, "eligibility.max_age"),
    ({"eligibility": {"min_age": -1}}, "eligibility.min_age"),
    ({"phone": "call us maybe"}, "phone"),
    ({"website": "javascript:alert(1)"}, "website"),
    ({"website": "ftp://files.example.org"}, "website"),
    ({"capacity": {"beds_total": 2, "beds_available": 5}}, "capacity.beds_available"),
    ({"opening_hours": hours(("mon", "09:00", "17:00"), zone="Mars/Olympus_Mons")},
     "opening_hours.time_zone"),
    ({"opening_hours": hours(("mon", "09:00", "17:00"), zone="")}, "opening_hours.time_zone"),
    ({"opening_hours": hours(("funday", "09:00", "17:00"))}, "opening_hours.weekly.0.day"),
    ({"opening_hours": hours(("mon", "9am", "17:00"))}, "opening_hours.weekly.0.opens"),
    ({"opening_hours": hours(("mon", "24:00", "17:00"))}, "opening_hours.weekly.0.opens"),
    ({"opening_hours": hours(("mon", "09:00", "25:00"))}, "opening_hours.weekly.0.closes"),
    ({"opening_hours": hours(("mon", "09:00", "09:00"))}, "opening_hours.weekly.0"),
    ({"opening_hours": hours(("mon", "09:00", "17:00"), ("mon", "16:00", "20:00"))},
     "opening_hours.weekly.1"),
    # Sunday night runs into Monday morning, where another range has already begun.
    ({"opening_hours": hours(("mon", "05:00", "12:00"), ("sun", "22:00", "06:00"))},
     "opening_hours.weekly.0"),
    ({"opening_hours": hours(("mon", "09:00", "17:00"), always_open=True)},
     "opening_hours.weekly"),
    ({"owner_org_id": "00000000-0000-0000-0000-000000000000"}, "owner_org_id"),
])
def test_an_invalid_listing_names_the_field(client, directory: Directory, db: Session,
                                            overrides, field) -> None:
    before = count(db, Resource)
    response = client.post(URL, json=listing(**overrides),
                           headers=directory.headers("supervisor"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in fields(response), response.json()
    assert "Example Street" not in response.text  # no input echoed back
    assert count(db, Resource) == before


def test_an_invalid_patch_changes_nothing(client, directory: Directory, db: Session) -> None:
    resource = make_resource(db, directory.actor("supervisor"))
    db.commit()
    for body in ({"categories": ["bakery"]}, {"name": None},
                 {"opening_hours": hours(("tue", "10:00", "10:00"))},
                 {"eligibility": {"min_age": 70, "max_age": 20}}):
        response = client.patch(f"{URL}/{resource.id}", json=body,
                                headers=directory.headers("supervisor"))
        assert response.status_code == 422, response.text
    db.refresh(resource)
    assert resource.categories == ["shelter"] and resource.name == "Example Harbour Shelter"


def test_capacity_cannot_exceed_the_beds(client, directory: Directory, db: Session) -> None:
    resource = make_resource(db, directory.actor("writer"))
    db.commit()
    url = f"{URL}/{resource.id}/capacity"
    headers = directory.headers("writer")
    assert client.patch(url, json={"beds_available": 13}, headers=headers).status_code == 422
    assert client.patch(url, json={"beds_available": -1}, headers=headers).status_code == 422
    assert client.patch(url, json={"beds_available": 5, "beds_total": 4},
                        headers=headers).status_code == 422
    assert client.patch(url, json={}, headers=headers).status_code == 422


# --- who may not ----------------------------------------------------------------------------


def test_a_partner_without_the_write_scope_is_refused(client, directory: Directory,
                                                      db: Session) -> None:
    own = make_resource(db, directory.actor("writer"))
    db.commit()
    headers = directory.headers("reader")
    assert client.post(URL, json=listing(), headers=headers).status_code == 403
    assert client.patch(f"{URL}/{own.id}", json={"description": "x"},
                        headers=headers).status_code == 403
    assert client.patch(f"{URL}/{own.id}/capacity", json={"beds_available": 1},
                        headers=headers).status_code == 403
    assert client.delete(f"{URL}/{own.id}", headers=headers).status_code == 403
    assert client.post(f"{URL}/import", content=b"name,categories\r\nX,hotline\r\n",
                       headers=headers | {"Content-Type": "text/csv"}).status_code == 403
    # Reading stays open to it.
    assert client.get(f"{URL}/{own.id}", headers=headers).status_code == 200
    denied = count(db, AuditEvent, AuditEvent.action == "access.denied",
                   AuditEvent.actor_id == str(directory.partners["reader"].app.id))
    assert denied >= 5


def test_a_partner_without_the_read_scope_cannot_search(client, db: Session,
                                                        directory: Directory) -> None:
    from tests.resources.factories import make_partner

    referrals_only = make_partner(db, directory.org, "referrals:read referrals:write")
    db.commit()
    assert client.get(URL, headers=referrals_only.headers).status_code == 403
    assert client.get(f"{URL}/export", headers=referrals_only.headers).status_code == 403


def test_a_partner_cannot_touch_another_partners_listing(client, directory: Directory,
                                                         db: Session) -> None:
    theirs = make_resource(db, directory.actor("stranger"), name="Example Other Shelter")
    ours_by_staff = make_resource(db, directory.actor("supervisor"), name="Example Staff Clinic")
    db.commit()
    headers = directory.headers("writer")
    for resource in (theirs, ours_by_staff):  # another agency's, and its own agency's staff's
        for method, path, body in (("PATCH", "", {"description": "Fictional takeover"}),
                                   ("PATCH", "/capacity", {"beds_available": 0}),
                                   ("DELETE", "", None)):
            response = client.request(method, f"{URL}/{resource.id}{path}", json=body,
                                      headers=headers)
            assert response.status_code == 404, (method, path, response.text)
    db.refresh(theirs)
    assert theirs.description.startswith("Fictional emergency") and theirs.archived_at is None


def test_staff_of_another_agency_cannot_change_a_listing(client, directory: Directory,
                                                         db: Session) -> None:
    resource = make_resource(db, directory.actor("supervisor"))
    db.commit()
    headers = directory.headers("stranger")  # a supervisor of the other agency
    assert client.get(f"{URL}/{resource.id}", headers=headers).status_code == 200
    for method, path, body in (("PATCH", "", {"name": "Fictional Takeover"}),
                               ("PATCH", "/capacity", {"beds_available": 0}),
                               ("DELETE", "", None)):
        response = client.request(method, f"{URL}/{resource.id}{path}", json=body,
                                  headers=headers)
        assert response.status_code == 404, (method, path, response.text)
    db.refresh(resource)
    assert resource.name == "Example Harbour Shelter"


def test_advocates_and_auditors(client, directory: Directory, db: Session) -> None:
    resource = make_resource(db, directory.actor("supervisor"))
    db.commit()
    advocate, auditor = directory.headers("advocate"), directory.headers("auditor")
    assert client.get(f"{URL}/{resource.id}", headers=advocate).status_code == 200
    assert client.patch(f"{URL}/{resource.id}", json={"name": "X"},
                        headers=advocate).status_code == 403
    assert client.post(URL, json=listing(), headers=advocate).status_code == 403
    # Auditors read the audit trail only.
    assert client.get(URL, headers=auditor).status_code == 403
    assert client.get(f"{URL}/{resource.id}", headers=auditor).status_code == 403


def test_a_partner_keeps_only_its_own_listings(client, directory: Directory,
                                               db: Session) -> None:
    other_app = directory.partners["stranger"].app.id
    response = client.post(URL, json=listing(partner_app_id=str(other_app)),
                           headers=directory.headers("writer"))
    assert response.status_code == 422 and "partner_app_id" in fields(response)
    # Staff may hand a listing only to a partner app of their own agency.
    response = client.post(URL, json=listing(partner_app_id=str(other_app)),
                           headers=directory.headers("supervisor"))
    assert response.status_code == 422 and "partner_app_id" in fields(response)


def test_unknown_and_archived_listings_are_not_found(client, directory: Directory,
                                                     db: Session) -> None:
    resource = make_resource(db, directory.actor("supervisor"))
    db.commit()
    headers = directory.headers("supervisor")
    assert client.get(f"{URL}/00000000-0000-4000-8000-000000000000",
                      headers=headers).status_code == 404
    assert client.get(f"{URL}/not-a-uuid", headers=headers).status_code == 422
    assert client.delete(f"{URL}/{resource.id}", headers=headers).status_code == 204
    assert client.get(f"{URL}/{resource.id}", headers=headers).status_code == 404
    assert client.delete(f"{URL}/{resource.id}", headers=headers).status_code == 404
