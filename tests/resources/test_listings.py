"""Listings through the API: adding, reading, changing, capacity, archiving, and the audit
trail of each write."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.core.errors import NotFound
from app.resources import service
from app.resources.models import Resource, ResourceFacet
from tests.resources.factories import SHELTER_ADDRESS, Directory, count, listing, make_resource

URL = "/api/v1/resources"


def events(db: Session, action: str, object_id: object) -> list[AuditEvent]:
    return list(db.scalars(sa.select(AuditEvent).where(AuditEvent.action == action,
                                                       AuditEvent.object_id == str(object_id))))


def test_staff_add_a_listing(client, db: Session, directory: Directory, monkeypatch) -> None:
    monkeypatch.setattr(service, "clock", lambda: datetime(2026, 1, 2, 12, tzinfo=UTC))
    response = client.post(URL, json=listing(languages=["PT-br", "en", "pl", "en"],
                                             categories=["shelter", "hotline", "shelter"]),
                           headers=directory.headers("supervisor"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["org_id"] == str(directory.org.id) and body["partner_app_id"] is None
    assert body["languages"] == ["pt-BR", "en", "pl"]  # canonical case, no repeats
    assert body["categories"] == ["shelter", "hotline"]
    assert body["eligibility"] == {"genders_served": ["women"], "min_age": 18,
                                   "max_age": None, "children_accepted": True,
                                   "pets_accepted": False}
    assert body["opening_hours"]["always_open"] is True and body["open_now"] is True
    assert body["address"] == SHELTER_ADDRESS
    assert body["capacity"]["beds_available"] == 3
    assert body["capacity"]["updated_at"] is not None
    [event] = events(db, "resource.created", body["id"])
    assert event.actor_id == str(directory.people["supervisor"].id)
    assert "Example" not in str(event.details)  # ids and flags only
    facets = set(db.execute(sa.select(ResourceFacet.facet, ResourceFacet.value).where(
        ResourceFacet.resource_id == UUID(body["id"]))).all())
    assert ("language", "pt") in facets and ("language", "pt-br") in facets
    assert ("category", "hotline") in facets


def test_change_a_listing(client, db: Session, directory: Directory) -> None:
    resource = make_resource(db, directory.actor("supervisor"))
    db.commit()
    response = client.patch(f"{URL}/{resource.id}",
                            json={"description": "Fictional new description",
                                  "phone": None, "opening_hours": None},
                            headers=directory.headers("admin"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["description"] == "Fictional new description" and body["phone"] is None
    assert body["opening_hours"] is None and body["open_now"] is None
    assert body["name"] == "Example Harbour Shelter"  # left out, left alone
    [event] = events(db, "resource.updated", resource.id)
    assert event.details == {"fields": "description,opening_hours,phone,time_zone"}


def test_staff_hand_a_listing_to_their_partner_app(client, db: Session,
                                                   directory: Directory) -> None:
    resource = make_resource(db, directory.actor("supervisor"))
    db.commit()
    partner = directory.partners["writer"]
    url = f"{URL}/{resource.id}/capacity"
    assert client.patch(url, json={"beds_available": 1},
                        headers=partner.headers).status_code == 404
    handed = client.patch(f"{URL}/{resource.id}", json={"partner_app_id": str(partner.app.id)},
                          headers=directory.headers("supervisor"))
    assert handed.status_code == 200 and handed.json()["partner_app_id"] == str(partner.app.id)
    response = client.patch(url, json={"beds_available": 0}, headers=partner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["capacity"]["beds_available"] == 0
    # A partner app cannot give its listing away.
    other = directory.partners["stranger"].app.id
    assert client.patch(f"{URL}/{resource.id}", json={"partner_app_id": str(other)},
                        headers=partner.headers).status_code == 422


def test_capacity_updates(client, db: Session, directory: Directory) -> None:
    resource = make_resource(db, directory.actor("writer"), capacity=None)
    db.commit()
    url = f"{URL}/{resource.id}/capacity"
    headers = directory.headers("writer")
    first = client.patch(url, json={"beds_available": 4}, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["capacity"]["beds_total"] is None  # not known, not invented
    second = client.patch(url, json={"beds_available": 2, "beds_total": 10},
                          headers=directory.headers("supervisor"))
    assert second.json()["capacity"] == {"beds_total": 10, "beds_available": 2,
                                         "updated_at": second.json()["capacity"]["updated_at"]}
    assert second.json()["capacity"]["updated_at"] >= first.json()["capacity"]["updated_at"]
    third = client.patch(url, json={"beds_available": 9}, headers=headers)
    assert third.status_code == 200 and third.json()["capacity"]["beds_total"] == 10
    assert len(events(db, "resource.capacity_updated", resource.id)) == 3


def test_archive(client, db: Session, directory: Directory) -> None:
    resource = make_resource(db, directory.actor("writer"))
    db.commit()
    assert client.delete(f"{URL}/{resource.id}",
                         headers=directory.headers("writer")).status_code == 204
    assert resource.id not in {UUID(i["id"]) for i in client.get(
        URL, headers=directory.headers("advocate")).json()["items"]}
    assert len(events(db, "resource.archived", resource.id)) == 1
    assert count(db, Resource, Resource.id == resource.id) == 1  # kept for its referrals


def test_get_resource_for_referrals(db: Session, directory: Directory) -> None:
    """The stable contract another domain builds on."""
    resource = make_resource(db, directory.actor("stranger"))
    for reader in ("advocate", "reader", "stranger"):
        assert service.get_resource(db, directory.actor(reader), resource.id) is resource
    with pytest.raises(NotFound):
        service.get_resource(db, directory.actor("advocate"), uuid4())
    service.archive_resource(db, directory.actor("stranger"), resource.id)
    with pytest.raises(NotFound):
        service.get_resource(db, directory.actor("advocate"), resource.id)
    assert service.get_resource(db, directory.actor("advocate"), resource.id,
                                include_archived=True) is resource


@pytest.mark.parametrize(("tag", "canonical"), [
    ("en", "en"), ("PT-br", "pt-BR"), ("zh-hant-tw", "zh-Hant-TW"), ("sgn-IE", "sgn-IE"),
    ("es-419", "es-419"), ("de-CH-1996", "de-CH-1996"), ("en-x-Plain", "en-x-plain"),
    ("english", "english"),  # well-formed (5 to 8 letters), though not registered
    ("e", None), ("en--gb", None), ("12", None), ("en-gb-", None), ("x", None),
])
def test_language_tags(tag: str, canonical: str | None) -> None:
    assert service.canonical_language(tag) == canonical
