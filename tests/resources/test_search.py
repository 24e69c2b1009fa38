"""Full-text search and filters, on SQLite (FTS5) and PostgreSQL (GIN expression index)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.core.access import Actor
from app.core.pagination import PageParams
from app.identity import service as identity
from app.resources import service
from app.resources.models import Resource
from app.resources.schemas import ResourceUpdate
from tests.resources.factories import Directory, ids, listing, make_resource
from tests.support import services

URL = "/api/v1/resources"


def seed(db: Session, actor: Actor) -> dict[str, Resource]:
    """Four plainly fictional listings with distinct words in each searchable field."""
    made = {
        "shelter": make_resource(db, actor, languages=["en", "pt-BR"],
                                 eligibility={"pets_accepted": True,
                                              "children_accepted": True}),
        "clinic": make_resource(
            db, actor, name="Example Riverside Legal Clinic", categories=["legal_aid"],
            description="Fictional free advice on protection orders and custody.",
            services=["Court accompaniment"], languages=["pl"], regions=["Samplevale"],
            service_area="North of the Example River",
            eligibility={"pets_accepted": False, "children_accepted": False}),
        "hotline": make_resource(
            db, actor, name="Example Night Hotline", categories=["hotline"],
            description="Fictional listening line.", services=["Crisis counselling"],
            languages=["ga"], service_area=None, regions=[], address=None),
        "vet": make_resource(
            db, actor, name="Example Paws Foster Scheme", categories=["pet_friendly_shelter"],
            description="Fictional temporary foster homes for pets of people in refuge.",
            services=["Pet fostering"], languages=[], regions=["Sampleshire"]),
    }
    db.flush()
    return made


def found(db: Session, actor: Actor, **filters) -> set[str]:
    rows, _ = service.search(db, actor, service.DirectoryFilters(**filters),
                             PageParams(100, None))
    return {r.name for r in rows}


SHELTER, CLINIC = "Example Harbour Shelter", "Example Riverside Legal Clinic"
HOTLINE, PAWS = "Example Night Hotline", "Example Paws Foster Scheme"


def check_text_search(db: Session, actor: Actor) -> None:
    assert found(db, actor, q="harbour") == {SHELTER}  # name
    assert found(db, actor, q="HARB") == {SHELTER}  # case and prefix
    assert found(db, actor, q="custody") == {CLINIC}  # description
    assert found(db, actor, q="counselling") == {HOTLINE}  # services
    assert found(db, actor, q="accompaniment court") == {CLINIC}  # every word, any order
    assert found(db, actor, q="river") == {CLINIC}  # service area
    assert found(db, actor, q="sampleshire") == {SHELTER, PAWS}  # regions
    assert found(db, actor, q="legal harbour") == set()
    assert found(db, actor, q="Example") == {SHELTER, CLINIC, HOTLINE, PAWS}
    # Query syntax of either engine is only words here: no error, no injection.
    assert found(db, actor, q='harbour" OR "*') == set()
    assert found(db, actor, q="harbour:* | clinic") == set()
    assert found(db, actor, q='")(*&|!:') == {SHELTER, CLINIC, HOTLINE, PAWS}
    # The address is not searchable: it must not be findable by those who cannot see it.
    assert found(db, actor, q="Sampletown Example Street") == set()


def check_filters_and_changes(db: Session, actor: Actor, made: dict[str, Resource]) -> None:
    assert found(db, actor, q="example", categories=("legal_aid", "hotline")) == {CLINIC,
                                                                                 HOTLINE}
    assert found(db, actor, languages=("pt",)) == {SHELTER}  # pt finds pt-BR
    assert found(db, actor, languages=("pt-BR", "pl")) == {SHELTER, CLINIC}
    assert found(db, actor, pets_accepted=True) == {SHELTER}
    assert found(db, actor, pets_accepted=False, children_accepted=False) == {CLINIC}
    # A change is searchable at once, and the old words are gone.
    service.update_resource(db, actor, made["hotline"].id,
                            ResourceUpdate(name="Example Lighthouse Helpline"))
    assert found(db, actor, q="lighthouse") == {"Example Lighthouse Helpline"}
    assert found(db, actor, q="night hotline") == set()
    service.archive_resource(db, actor, made["vet"].id)
    assert found(db, actor, q="foster") == set()


def test_search_and_filters_on_the_suite_database(db: Session, directory: Directory) -> None:
    actor = directory.actor("supervisor")
    made = seed(db, actor)
    check_text_search(db, actor)
    check_filters_and_changes(db, actor, made)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_of(request, tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated database of each kind (on CI, a missing PostgreSQL fails the test)."""
    with services.own_engine(request.param, tmp_path, "resources") as engine:
        yield engine


def test_full_text_search_on_each_database(engine_of: sa.Engine) -> None:
    with Session(engine_of, expire_on_commit=False) as db:
        org = identity.create_org(db, name="Fictional Search Agency", slug="search-agency")
        actor = Actor(kind="user", id=uuid4(), org_id=org.id, role="supervisor")
        made = seed(db, actor)
        db.commit()
        check_text_search(db, actor)
        check_filters_and_changes(db, actor, made)
        db.commit()
        if engine_of.dialect.name == "postgresql":
            # The query uses the migration's index (the expressions must be identical).
            # On a table this small the planner prefers any other index: take the
            # listing-order one away for this (rolled back) transaction.
            db.execute(sa.text("SET LOCAL enable_seqscan = off"))
            db.execute(sa.text("DROP INDEX ix_resource_archived_at_name_id"))
            query = service.search_query(db, actor, service.DirectoryFilters(q="harbour"))
            sql = query.compile(dialect=engine_of.dialect,
                                compile_kwargs={"literal_binds": True})
            plan = "\n".join(db.scalars(sa.text(f"EXPLAIN {sql}")))
            assert "ix_resource_fts" in plan, plan
            db.rollback()
        else:
            # The FTS5 index holds one row per live listing.
            count = db.scalar(sa.text("SELECT count(*) FROM resource_fts"))
            assert count == 3


def test_search_through_the_api_with_cursor_pages(client, db: Session,
                                                  directory: Directory) -> None:
    made = seed(db, directory.actor("supervisor"))
    db.commit()
    headers = directory.headers("reader")  # a partner app of the agency
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": "example", "limit": 2} | ({"cursor": cursor} if cursor else {})
        response = client.get(URL, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted([SHELTER, CLINIC, HOTLINE, PAWS])
    # A cursor belongs to its search.
    first = client.get(URL, params={"q": "example", "limit": 1}, headers=headers).json()
    other = client.get(URL, params={"q": "harbour", "cursor": first["next_cursor"]},
                       headers=headers)
    assert other.status_code == 400
    response = client.get(URL, params={"category": "legal_aid", "language": "pl"},
                          headers=headers)
    assert ids(response.json()) == {made["clinic"].id}


@pytest.mark.parametrize("params", [{"category": "soup_kitchen"}, {"language": "english!"},
                                    {"limit": 500}, {"q": "x" * 201}, {"pets": "maybe"}])
def test_bad_filters_are_refused(client, directory: Directory, params) -> None:
    response = client.get(URL, params=params, headers=directory.headers("advocate"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_listing_from_another_agency_is_in_the_directory(client, db: Session,
                                                           directory: Directory) -> None:
    theirs = make_resource(db, directory.actor("stranger"), **listing(name="Example Far Shelter"))
    db.commit()
    response = client.get(URL, params={"q": "far shelter"}, headers=directory.headers("advocate"))
    assert ids(response.json()) == {theirs.id}
    mine = client.get(URL, params={"mine": "true"}, headers=directory.headers("supervisor"))
    assert theirs.id not in ids(mine.json())
    theirs_only = client.get(URL, params={"mine": "true"}, headers=directory.headers("stranger"))
    assert ids(theirs_only.json()) == {theirs.id}
