"""Every error is an RFC 9457 problem document: never a 500 for bad input, never a trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.system.models import WorkerHeartbeat
from tests.support.routes import router as extra_routes

PROBLEM = "application/problem+json"


@pytest.fixture
def api(make_app) -> Iterator[TestClient]:
    with TestClient(make_app(extra_routes), raise_server_exceptions=False) as client:
        yield client


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


def test_malformed_json_is_400_naming_the_body(api: TestClient) -> None:
    response = api.post("/api/v1/_test/echo", content=b'{"name": "x", ',
                        headers={"content-type": "application/json"})
    body = assert_problem(response, 400)
    assert body["type"] == "urn:advocase:problem:malformed-json"
    assert body["errors"][0]["field"] == "body"


def test_wrong_content_type_is_415(api: TestClient) -> None:
    response = api.post("/api/v1/_test/echo", content=b"name=x&count=1",
                        headers={"content-type": "text/plain"})
    body = assert_problem(response, 415)
    assert body["errors"][0]["field"] == "content-type"


def test_body_without_content_type_is_415(api: TestClient) -> None:
    response = api.post("/api/v1/_test/echo", content=b'{"name": "x", "count": 1}')
    assert_problem(response, 415)


def test_validation_names_each_field_and_never_echoes_input(api: TestClient) -> None:
    response = api.post("/api/v1/_test/echo",
                        json={"name": "", "count": -1, "role": "admin-fictional-value"})
    body = assert_problem(response, 422)
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"name", "count", "role"}
    assert all(error["location"] == "body" for error in body["errors"])
    assert "admin-fictional-value" not in response.text


def test_missing_body_is_422(api: TestClient) -> None:
    response = api.post("/api/v1/_test/echo", headers={"content-type": "application/json"})
    assert_problem(response, 422)


def test_valid_request_passes(api: TestClient) -> None:
    response = api.post("/api/v1/_test/echo", json={"name": "Test", "count": 1})
    assert response.status_code == 200
    assert response.json() == {"ok": True, "length": 4}


def test_unknown_route_is_404_problem(api: TestClient) -> None:
    body = assert_problem(api.get("/api/v1/no-such-thing"), 404)
    assert body["type"] == "about:blank"


def test_domain_not_found_is_404_problem(api: TestClient) -> None:
    body = assert_problem(api.get("/api/v1/_test/missing"), 404)
    assert body["type"] == "urn:advocase:problem:not-found"


def test_wrong_method_is_405_with_allow(api: TestClient) -> None:
    response = api.delete("/healthz")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


def test_declared_oversize_body_is_413_before_reading(api: TestClient, settings) -> None:
    response = api.post("/api/v1/_test/echo", content=b"x" * (settings.max_body_bytes + 1),
                        headers={"content-type": "application/json"})
    body = assert_problem(response, 413)
    assert body["max_bytes"] == settings.max_body_bytes


def test_streamed_oversize_body_is_413(api: TestClient, settings) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"y" * 65536

    # A generator body is sent chunked, with no Content-Length to check up front.
    response = api.post("/api/v1/_test/stream", content=chunks())
    assert_problem(response, 413)


def test_body_within_limit_streams_through(api: TestClient) -> None:
    response = api.post("/api/v1/_test/stream", content=iter([b"a" * 1000, b"b" * 1000]))
    assert response.json() == {"received": 2000}


def test_unhandled_error_is_500_problem_with_request_id_and_no_detail(api: TestClient) -> None:
    response = api.get("/api/v1/_test/boom", headers={"x-request-id": "support-ticket-0001"})
    body = assert_problem(response, 500)
    assert body["request_id"] == "support-ticket-0001"
    assert response.headers["x-request-id"] == "support-ticket-0001"
    assert "Example Street" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


def test_failed_request_rolls_back_its_writes(api: TestClient, db: Session) -> None:
    response = api.post("/api/v1/_test/write-then-fail")
    assert_problem(response, 500)
    assert db.get(WorkerHeartbeat, "write-then-fail") is None


def test_request_id_generated_when_absent_or_unsafe(api: TestClient) -> None:
    generated = api.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    unsafe = api.get("/healthz", headers={"x-request-id": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


def test_security_headers_on_every_response(api: TestClient) -> None:
    for response in (api.get("/healthz"), api.get("/nowhere"), api.get("/openapi.json")):
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert "x-request-id" in headers
        assert "server" not in headers


def test_openapi_and_docs_are_served(api: TestClient) -> None:
    spec = api.get("/openapi.json")
    assert spec.status_code == 200
    assert "/healthz" in spec.json()["paths"]
    assert api.get("/docs").status_code == 200


def test_openapi_declares_the_bearer_scheme_on_exactly_the_authenticated_operations(
        api: TestClient) -> None:
    """The actor dependencies read the bearer header themselves; the document must still
    tell a partner's developer which operations take a token and which do not."""
    spec = api.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer",
        "description": "Staff access token or partner-app token"}

    def security(path: str, method: str) -> list[dict[str, list[str]]] | None:
        return spec["paths"][path][method].get("security")

    bearer = [{"HTTPBearer": []}]
    for path, method in (("/api/v1/me", "get"), ("/api/v1/clients", "post"),
                         ("/api/v1/auth/logout", "post"), ("/api/v1/me/mfa", "post"),
                         ("/api/v1/partner-apps", "get"), ("/api/v1/reports", "post")):
        assert security(path, method) == bearer, (method, path)
    for path, method in (("/healthz", "get"), ("/api/v1/auth/login", "post"),
                         ("/api/v1/auth/refresh", "post"), ("/oauth/token", "post"),
                         ("/oauth/jwks", "get")):
        assert security(path, method) is None, (method, path)
    assert sum(1 for operations in spec["paths"].values() for operation in operations.values()
               if operation.get("security") == bearer) > 100
