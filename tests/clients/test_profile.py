"""Safe-contact preferences, the other party and the household: validated and encrypted."""

from __future__ import annotations

import sqlalchemy as sa

from tests.clients.test_api import agency, create  # noqa: F401 - fixture
from tests.support.identity import bearer
from tests.support.privacy import assert_not_stored

SAFE = {"time_zone": "Europe/London", "channels": [
    {"channel": "sms", "safe": True, "leave_message": False, "code_word": "bluebird",
     "windows": [{"days": ["mon", "wed"], "start": "09:00", "end": "12:30"}]},
    {"channel": "phone", "safe": False}]}
OTHER = {"name": "Fictional Other Person", "aliases": ["F.O."], "vehicle": "red hatchback",
         "known_addresses": ["9 Pretend Road"], "description": "tall, fictional"}


def test_new_clients_may_not_be_contacted_by_default(client, agency) -> None:  # noqa: F811
    _, _, tokens = agency
    created = create(client, tokens["advocate"])
    assert created["safe_contact"] == {"time_zone": "UTC", "channels": []}
    assert created["other_party"] is None


def test_safe_contact_and_other_party_round_trip_encrypted(client, agency, db) -> None:  # noqa: F811
    _, _, tokens = agency
    created = create(client, tokens["advocate"])
    url = f"/api/v1/clients/{created['id']}"
    patched = client.patch(url, json={"safe_contact": SAFE, "other_party": OTHER},
                           headers=bearer(tokens["advocate"]))
    assert patched.status_code == 200, patched.text
    assert patched.json()["safe_contact"]["channels"][0]["code_word"] == "bluebird"
    assert patched.json()["other_party"]["vehicle"] == "red hatchback"
    row = db.execute(sa.text("SELECT * FROM client WHERE case_number = :n"),
                     {"n": created["case_number"]}).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    assert_not_stored(stored, ("bluebird", "Pretend Road", "hatchback", "Europe/London"))


def test_invalid_safe_contact_is_refused_with_the_field(client, agency) -> None:  # noqa: F811
    _, _, tokens = agency
    created = create(client, tokens["advocate"])
    url = f"/api/v1/clients/{created['id']}"
    backwards = {"channels": [{"channel": "sms", "safe": True,
                               "windows": [{"days": ["mon"], "start": "12:00", "end": "09:00"}]}]}
    response = client.patch(url, json={"safe_contact": backwards},
                            headers=bearer(tokens["advocate"]))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "safe_contact.channels.0.windows.0.end"
    zone = client.patch(url, json={"safe_contact": {"time_zone": "Mars/Base"}},
                        headers=bearer(tokens["advocate"]))
    assert zone.status_code == 422
    assert zone.json()["errors"][0]["field"] == "safe_contact.time_zone"
    channel = client.patch(url, json={"safe_contact": {"channels": [{"channel": "pigeon"}]}},
                           headers=bearer(tokens["advocate"]))
    assert channel.status_code == 422


def test_household_is_replaced_whole_and_read_back(client, agency) -> None:  # noqa: F811
    _, _, tokens = agency
    created = create(client, tokens["advocate"])
    url = f"/api/v1/clients/{created['id']}/household"
    assert client.get(url, headers=bearer(tokens["advocate"])).json() == {"children": [],
                                                                         "pets": []}
    body = {"children": [{"first_name": "Fictional Kid", "age": 7}],
            "pets": [{"name": "Biscuit", "species": "dog", "notes": "needs a pet-friendly place"}]}
    assert client.put(url, json=body, headers=bearer(tokens["advocate"])).status_code == 200
    read = client.get(url, headers=bearer(tokens["advocate"])).json()
    assert read["children"][0]["first_name"] == "Fictional Kid"
    assert read["pets"][0]["species"] == "dog"
    assert client.put(url, json={"children": [{"age": 99}]},
                      headers=bearer(tokens["advocate"])).status_code == 422
    assert client.get(url, headers=bearer(tokens["colleague"])).status_code == 404
