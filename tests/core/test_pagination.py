"""Keyset pagination: complete, stable, and strict about cursors."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core.errors import InvalidCursor
from app.core.pagination import decode_cursor, encode_cursor
from app.system.models import WorkerHeartbeat
from tests.support.routes import router as extra_routes

URL = "/api/v1/_test/heartbeats"


@pytest.fixture
def api(make_app) -> Iterator[TestClient]:
    with TestClient(make_app(extra_routes), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def rows(db: Session) -> list[str]:
    now = datetime.now(UTC)
    # Many ties on the first key (beats) so the id tie-breaker matters.
    names = [f"worker-{i:03d}" for i in range(23)]
    for i, name in enumerate(names):
        db.add(WorkerHeartbeat(worker=name, last_seen_at=now - timedelta(seconds=i), beats=i % 4))
    db.commit()
    return names


def walk(api: TestClient, limit: int) -> tuple[list[str], int]:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = api.get(URL, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= limit
        seen += [item["worker"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages


@pytest.mark.parametrize("limit", [1, 5, 7, 23, 200])
def test_walks_every_row_once_in_order(api: TestClient, rows: list[str], limit: int) -> None:
    seen, pages = walk(api, limit)
    assert sorted(seen) == sorted(rows)
    assert len(seen) == len(set(seen))
    expected = sorted(rows, key=lambda name: (-(int(name[-3:]) % 4), name))
    assert seen == expected
    assert pages == max(1, -(-len(rows) // limit))


def test_empty_listing(api: TestClient) -> None:
    assert api.get(URL).json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten"])
def test_limit_out_of_range_is_422(api: TestClient, limit: str) -> None:
    response = api.get(URL, params={"limit": limit})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "limit"


@pytest.mark.parametrize(
    "cursor",
    ["garbage", "a.b", "....", "%%%", "eyJ9.AAAA", "x" * 1000, "W10.", "ünïcode.cursor"],
)
def test_malformed_cursor_is_400(api: TestClient, rows: list[str], cursor: str) -> None:
    response = api.get(URL, params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:advocase:problem:invalid-cursor"
    assert body["errors"][0]["field"] == "cursor"


def test_overlong_cursor_is_422(api: TestClient) -> None:
    assert api.get(URL, params={"cursor": "x" * 2000}).status_code == 422


def test_tampered_cursor_is_refused(api: TestClient, rows: list[str]) -> None:
    cursor = api.get(URL, params={"limit": 2}).json()["next_cursor"]
    payload, signature = cursor.split(".")
    values = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    values[0][1] = 99
    forged = base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")
    response = api.get(URL, params={"cursor": f"{forged}.{signature}"})
    assert response.status_code == 400


def test_cursor_from_another_listing_is_refused() -> None:
    cursor = encode_cursor("clients", (3, "worker-001"))
    assert decode_cursor("clients", cursor, 2) == (3, "worker-001")
    with pytest.raises(InvalidCursor):
        decode_cursor("referrals", cursor, 2)
    with pytest.raises(InvalidCursor):
        decode_cursor("clients", cursor, 3)


def test_cursor_round_trips_typed_values() -> None:
    from uuid import uuid4

    key = (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), uuid4(), "text", 7, True)
    assert decode_cursor("any", encode_cursor("any", key), 5) == key
