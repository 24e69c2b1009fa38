"""CSV import (all or nothing, every bad row and column listed) and export (formula cells
guarded, imports back as it was)."""

from __future__ import annotations

import csv
import io
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Session

from app.core.audit import AuditEvent
from app.resources import directory_csv
from app.resources.models import Resource
from tests.resources.factories import Directory, count, make_resource

URL = "/api/v1/resources"
HEADER = ("name,categories,languages,time_zone,hours,phone,pets_accepted,min_age,max_age,"
          "address,address_confidential,beds_total,beds_available")
GOOD = [
    "Example Harbour Shelter,shelter; pet_friendly_shelter,en; pl,Europe/Dublin,24/7,"
    "+353 1 555 0100,yes,18,,\"1 Example Street, Sampletown\",,12,3",
    "Example Riverside Legal Clinic,legal_aid,en,Europe/Dublin,mon-fri 09:00-17:00,"
    "01 555 0101,,,,2 Sample Road,false,,",
]


def upload(client, headers, lines: list[str], header: str = HEADER):
    body = "\r\n".join([header, *lines]) + "\r\n"
    return client.post(f"{URL}/import", content=body.encode(),
                       headers=headers | {"Content-Type": "text/csv"})


def errors_by_cell(response) -> set[tuple[int, str]]:
    return {(e["row"], e["column"]) for e in response.json()["errors"]}


def test_one_bad_row_imports_nothing_and_names_every_bad_cell(client, db: Session,
                                                               directory: Directory) -> None:
    before = count(db, Resource)
    bad = [
        GOOD[0],
        "Example Bakery,soup_kitchen,en,,,,,,,,,,",  # row 3: category
        "Example Night Shelter,shelter,en,Mars/Base,mon 22:00-06:00,,perhaps,40,20,,,2,5",
        ",hotline,english!,Europe/Dublin,someday,=cmd|' /C calc'!A0,,,,,,,",  # row 5
        GOOD[1],
    ]
    response = upload(client, directory.headers("supervisor"), bad)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    cells = errors_by_cell(response)
    assert {(3, "categories"), (4, "time_zone"), (4, "pets_accepted"), (4, "max_age"),
            (4, "beds_available"), (5, "name"), (5, "languages"), (5, "hours"),
            (5, "phone")} <= cells, cells
    assert not any(row in (2, 6) for row, _ in cells)  # good rows are not blamed
    assert "Example Street" not in response.text and "calc" not in response.text
    assert count(db, Resource) == before


def test_file_level_problems(client, directory: Directory, db: Session) -> None:
    headers = directory.headers("supervisor")
    unknown = upload(client, headers, GOOD, header=HEADER + ",shoe_size")
    assert unknown.status_code == 422 and (1, "shoe_size") in errors_by_cell(unknown)
    missing = upload(client, headers, ["Example Clinic"], header="name")
    assert missing.status_code == 422 and (1, "categories") in errors_by_cell(missing)
    empty = upload(client, headers, [])
    assert empty.status_code == 422
    extra = upload(client, headers, [GOOD[1] + ",surplus"])
    assert extra.status_code == 422 and errors_by_cell(extra) == {(2, "name")}
    latin1 = client.post(f"{URL}/import", content="name,categories\r\nCaf\xe9,other\r\n"
                         .encode("latin-1"), headers=headers | {"Content-Type": "text/csv"})
    assert latin1.status_code == 422
    as_json = client.post(f"{URL}/import", json={"rows": []}, headers=headers)
    assert as_json.status_code == 415
    assert count(db, Resource) == 0


def test_a_good_file_imports_every_row(client, db: Session, directory: Directory) -> None:
    response = upload(client, directory.headers("supervisor"), GOOD)
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 2
    shelter = db.scalar(sa.select(Resource).where(Resource.name == "Example Harbour Shelter"))
    assert shelter is not None
    assert shelter.categories == ["shelter", "pet_friendly_shelter"]
    assert shelter.opening_hours == {"always_open": True, "weekly": []}
    assert shelter.address_confidential is True  # an empty cell is confidential
    assert (shelter.beds_total, shelter.beds_available, shelter.min_age) == (12, 3, 18)
    clinic = db.scalar(sa.select(Resource).where(Resource.name.like("%Riverside%")))
    assert clinic is not None and clinic.address_confidential is False
    assert len(clinic.opening_hours["weekly"]) == 5
    assert count(db, AuditEvent, AuditEvent.action == "resource.created",
                 AuditEvent.object_id.in_([str(shelter.id), str(clinic.id)])) == 2
    assert count(db, AuditEvent, AuditEvent.action == "resource.imported") == 1


def test_a_partner_imports_its_own_listings_from_a_form(client, db: Session,
                                                        directory: Directory) -> None:
    body = (HEADER + "\r\n" + GOOD[0] + "\r\n").encode("utf-8-sig")  # Excel's BOM
    response = client.post(f"{URL}/import", files={"file": ("listings.csv", body, "text/csv")},
                           headers=directory.headers("writer"))
    assert response.status_code == 201, response.text
    made = db.get(Resource, UUID(response.json()["ids"][0]))
    assert made is not None
    assert made.partner_app_id == directory.partners["writer"].app.id
    assert made.org_id == directory.org.id
    no_file = client.post(f"{URL}/import", files={"other": ("x.csv", body, "text/csv")},
                          headers=directory.headers("writer"))
    assert no_file.status_code == 422


def test_export_guards_formulas_and_imports_back(client, db: Session,
                                                 directory: Directory) -> None:
    make_resource(db, directory.actor("supervisor"), name="=HYPERLINK(\"http://x.example\")",
                  description="@SUM(1+1)", services=["-2+3", "+Counselling"],
                  opening_hours={"time_zone": "America/New_York", "always_open": False,
                                 "weekly": [{"day": "fri", "opens": "22:00",
                                             "closes": "06:00"}]},
                  address="3 Example Lane", address_confidential=False)
    db.commit()
    response = client.get(f"{URL}/export", headers=directory.headers("supervisor"))
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 1
    row = rows[0]
    for cell in row.values():
        assert not cell.startswith(("=", "+", "-", "@")), cell
    assert row["name"] == "'=HYPERLINK(\"http://x.example\")"
    assert row["phone"] == "'+353 1 555 0100"
    assert row["hours"] == "fri 22:00-06:00" and row["time_zone"] == "America/New_York"
    assert count(db, AuditEvent, AuditEvent.action == "resource.exported") == 1
    # The export's own file imports back to the same listing.
    again = client.post(f"{URL}/import", content=response.content,
                        headers=directory.headers("supervisor") | {"Content-Type": "text/csv"})
    assert again.status_code == 201, again.text
    copy = db.get(Resource, UUID(again.json()["ids"][0]))
    assert copy is not None
    assert copy.name == "=HYPERLINK(\"http://x.example\")"
    assert copy.services == ["-2+3", "+Counselling"] and copy.phone == "+353 1 555 0100"
    assert copy.address == "3 Example Lane" and copy.time_zone == "America/New_York"


def test_the_guard() -> None:
    for raw in ("=1+1", "+1", "-1", "@x", "\tx", "\rx"):
        assert directory_csv.guard(raw) == "'" + raw
        assert directory_csv.unguard(directory_csv.guard(raw)) == raw
    assert directory_csv.guard("Example") == "Example"
    assert directory_csv.unguard("'quoted on purpose") == "'quoted on purpose"
