"""A confidential address reaches only the owning agency's own staff: never a partner
app (not even the listing's own), another agency, an export or a printout."""

from __future__ import annotations

import csv
import io

from sqlmodel import Session

from app.resources import service
from tests.resources.factories import SHELTER_ADDRESS, Directory, make_resource

URL = "/api/v1/resources"


def test_a_partner_never_receives_a_confidential_address(client, db: Session,
                                                         directory: Directory) -> None:
    headers = directory.headers("writer")  # the partner app whose listing this is
    created = client.post(URL, json={"name": "Example Harbour Shelter",
                                     "categories": ["shelter"], "address": SHELTER_ADDRESS,
                                     "capacity": {"beds_total": 8, "beds_available": 2}},
                          headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["address_confidential"] is True  # confidential unless said
    resource_id = created.json()["id"]
    answers = [
        created,
        client.get(f"{URL}/{resource_id}", headers=headers),
        client.get(URL, headers=headers),
        client.get(URL, params={"q": "harbour"}, headers=headers),
        client.patch(f"{URL}/{resource_id}", json={"description": "Fictional update"},
                     headers=headers),
        client.patch(f"{URL}/{resource_id}/capacity", json={"beds_available": 1},
                     headers=headers),
        client.get(f"{URL}/export", headers=headers),
        client.get(f"{URL}/{resource_id}", headers=directory.headers("reader")),
        client.get(f"{URL}/{resource_id}", headers=directory.headers("stranger")),
    ]
    for answer in answers:
        assert answer.status_code == 200 or answer.status_code == 201, answer.text
        assert "Example Street" not in answer.text
    # The agency's own staff see it on screen.
    own = client.get(f"{URL}/{resource_id}", headers=directory.headers("advocate")).json()
    assert own["address"] == SHELTER_ADDRESS


def test_another_agencys_staff_do_not_see_it(client, db: Session,
                                             directory: Directory) -> None:
    resource = make_resource(db, directory.actor("supervisor"))
    db.commit()
    theirs = client.get(f"{URL}/{resource.id}", headers=directory.headers("stranger"))
    assert theirs.status_code == 200 and theirs.json()["address"] is None
    assert theirs.json()["address_confidential"] is True
    assert "Example Street" not in client.get(URL, headers=directory.headers("stranger")).text
    ours = client.get(f"{URL}/{resource.id}", headers=directory.headers("supervisor"))
    assert ours.json()["address"] == SHELTER_ADDRESS


def test_an_export_never_holds_a_confidential_address(client, db: Session,
                                                      directory: Directory) -> None:
    make_resource(db, directory.actor("supervisor"))
    make_resource(db, directory.actor("supervisor"), name="Example Open Office Legal Aid",
                  categories=["legal_aid"], address="2 Sample Road, Sampletown",
                  address_confidential=False)
    db.commit()
    for caller in ("supervisor", "admin", "advocate", "writer", "stranger"):
        response = client.get(f"{URL}/export", headers=directory.headers(caller))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert "Example Street" not in response.text, caller
        rows = {row["name"]: row for row in csv.DictReader(io.StringIO(response.text))}
        assert rows["Example Harbour Shelter"]["address"] == ""
        assert rows["Example Harbour Shelter"]["address_confidential"] == "true"
        # An address the listing allows is exported and shown to everyone.
        assert rows["Example Open Office Legal Aid"]["address"] == "2 Sample Road, Sampletown"


def test_the_one_decision(db: Session, directory: Directory) -> None:
    resource = make_resource(db, directory.actor("supervisor"))
    own_staff = directory.actor("advocate")
    assert service.may_see_address(own_staff, resource) is True
    for purpose in ("export", "print"):
        assert service.may_see_address(own_staff, resource, purpose=purpose) is False
    for outsider in (directory.actor("stranger"), directory.actor("writer"),
                     directory.actor("reader"), None):
        assert service.may_see_address(outsider, resource) is False
    resource.address_confidential = False
    assert service.may_see_address(None, resource, purpose="print") is True


def test_making_an_address_confidential_withdraws_it(client, db: Session,
                                                     directory: Directory) -> None:
    resource = make_resource(db, directory.actor("supervisor"), address_confidential=False)
    db.commit()
    url = f"{URL}/{resource.id}"
    assert client.get(url, headers=directory.headers("reader")).json()["address"] == \
        SHELTER_ADDRESS
    response = client.patch(url, json={"address_confidential": True},
                            headers=directory.headers("supervisor"))
    assert response.status_code == 200 and response.json()["address"] == SHELTER_ADDRESS
    assert client.get(url, headers=directory.headers("reader")).json()["address"] is None
