"""Dashboard test fixtures: a fresh login throttle, a client that shows redirects, and the
browser tests' server, chromium and axe-core."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core import ratelimit

# The browser tests' fixtures: a real server and chromium (per module), axe-core, a tab.
from tests.dashboard.browser import axe_source, chromium, server, tab  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_throttle() -> Iterator[None]:
    ratelimit.reset_stores()
    yield
    ratelimit.reset_stores()


@pytest.fixture
def web(app: FastAPI) -> Iterator[TestClient]:
    """A browser-like client on the real app that shows every redirect to the test.

    Each test comes from its own address (documentation range), so per-address login
    throttling never carries over from one test to the next when limits live in Redis."""
    address = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}::1"
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False,
                    client=(address, 50000)) as client:
        yield client
