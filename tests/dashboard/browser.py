"""Browser-test machinery shared by the dashboard's browser tests.

The server is ``python -m app.cli serve`` on the embedded defaults in a temporary
folder; accounts are made with the CLI, as an operator would. Playwright drives
Debian's chromium (it cannot download its own browsers here). Accessibility is
checked with axe-core fetched from the npm registry at a pinned version. The
fixtures are registered in ``conftest.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pyotp
import pytest
from sqlmodel import Session

from tests.support import services
from tests.support.identity import PASSWORD
from tests.test_cli import PROJECT, advocase, embedded_env, free_port

CHROMIUM = Path("/usr/bin/chromium")
# --no-sandbox: CI runs as root. The rest keep a machine without internet quiet.
LAUNCH_ARGS = ["--no-sandbox", "--headless=new", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-gpu"]
AXE_VERSION = "4.14.1"
AXE_INTEGRITY = ("sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuF"
                 "ooJpZe37OgudVGtQ==")
TIMEOUT_MS = 15_000


def missing(reason: str) -> None:
    if services.in_ci():
        pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(reason)


# --- a real server -----------------------------------------------------------------------


@dataclass
class Server:
    url: str
    env: dict[str, str]
    org: str

    def create_user(self, role: str, name: str) -> str:
        """A staff account made with the CLI (password on stdin); returns its email."""
        email = f"{role}-{uuid4().hex[:8]}@example.test"
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "app.cli", "create-user", "--org", self.org, "--email", email,
             "--role", role, "--name", name, "--json"],
            cwd=PROJECT, env=self.env, input=PASSWORD + "\n", capture_output=True, text=True,
            timeout=120)
        assert result.returncode == 0, result.stderr
        return email

    @contextmanager
    def database(self) -> Iterator[Session]:
        """A unit of work on the server's own database (committed on leaving), for what a
        test puts there directly, as a worker would. Nothing in it may need the server's
        data keys: this process does not hold them."""
        import app.models  # noqa: F401 - every table mapped, so foreign keys resolve
        from app.db import create_db_engine, unit_of_work

        engine = create_db_engine(
            f"sqlite:///{Path(self.env['ADVOCASE_VAR_DIR']) / 'advocase.sqlite'}")
        try:
            with unit_of_work(engine) as db:
                yield db
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("dashboard-server")) as running:
        yield running


@contextmanager
def running_server(folder: Path, settings: dict[str, str] | None = None) -> Iterator[Server]:
    """``advocase serve`` on the embedded defaults in ``folder``, with extra ``ADVOCASE_``
    settings if given (a module's own ``server`` fixture can ask for them)."""
    env = embedded_env(folder) | (settings or {})
    migrated = advocase("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    created = advocase("create-org", "--name", "Fictional Harbour Shelter", "--json", env=env)
    assert created.returncode == 0, created.stderr
    port = free_port()
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=PROJECT,
            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (folder / "server.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start in 30 s"
            time.sleep(0.2)
        yield Server(url, env, json.loads(created.stdout)["slug"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- a real browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS,
                                             headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def tab(chromium: Any, server: Server) -> Iterator[Any]:
    """A fresh browser profile (no cookies) with one page open."""
    context = chromium.new_context(base_url=server.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def fresh_step(totp: pyotp.TOTP) -> None:
    """Wait out the last seconds of a time step, so a code is still current on arrival."""
    left = totp.interval - time.time() % totp.interval
    if left < 3:
        time.sleep(left + 0.1)


def follow(target: Any) -> None:
    """Click a link or a submit button that loads a page, and return once that page has
    loaded. Playwright's ``click()`` returns as soon as the click is dispatched, so what a
    test reads straight after it (a title, a count, axe's verdict) could come from the page
    being left or from a page half parsed."""
    with target.page.expect_event("load"):
        target.click()


def sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    page.goto("/dashboard/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    follow(page.get_by_role("button", name="Sign in"))


def enrol_mfa(page: Any, *, use_previous_step: bool = False) -> pyotp.TOTP:
    """Set up MFA from the enrolment page (the person reads the key off the page)."""
    follow(page.get_by_role("button", name="Start set-up"))
    secret = page.locator("#mfa-secret").inner_text().strip()
    assert page.get_by_role("img", name="QR code that adds advocase to an authenticator app")
    totp = pyotp.TOTP(secret)
    fresh_step(totp)
    # The previous step's code is accepted too; using it leaves the current one unspent
    # for the next sign-in.
    moment = time.time() - (totp.interval if use_previous_step else 0)
    page.get_by_label("Code from the app").fill(totp.at(moment))
    follow(page.get_by_role("button", name="Turn on two-step sign-in"))
    assert page.locator("#recovery-codes li").count() == 10
    return totp


def nav_links(page: Any) -> list[str]:
    nav = page.get_by_role("navigation", name="Main")
    return [text.strip() for text in nav.get_by_role("link").all_inner_texts()]


def sign_out(page: Any) -> None:
    follow(page.get_by_role("button", name="Sign out"))
    page.wait_for_url("**/dashboard/login?note=signed-out")


# --- accessibility (axe-core) ------------------------------------------------------------


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _fetch_axe(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        missing("npm is not installed, so axe-core cannot be fetched")
    with tempfile.TemporaryDirectory() as folder:
        packed = subprocess.run(  # noqa: S603
            [str(npm), "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", folder,
             "--silent"], capture_output=True, text=True, timeout=180, cwd=folder)
        if packed.returncode != 0:
            missing(f"npm pack axe-core failed: {packed.stderr.strip()[-300:]}")
        tarball = Path(folder) / f"axe-core-{AXE_VERSION}.tgz"
        assert _integrity(tarball.read_bytes()) == AXE_INTEGRITY, "axe-core tarball changed"
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/axe.min.js")
            assert member is not None
            partial = target.with_suffix(f".{os.getpid()}.part")
            partial.write_bytes(member.read())
    partial.replace(target)  # atomic: parallel workers never read half a file


@pytest.fixture(scope="module")
def axe_source(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> str:
    cache = getattr(request.config, "cache", None)
    folder = (cache.mkdir(f"axe-core-{AXE_VERSION}") if cache is not None
              else tmp_path_factory.mktemp("axe-core"))
    target = Path(folder) / "axe.min.js"
    if not target.exists():
        _fetch_axe(target)
    return target.read_text()


def serious_violations(page: Any, axe: str) -> list[str]:
    # evaluate() runs through DevTools, outside the page's CSP (which refuses inline scripts).
    page.evaluate(axe)
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(node["target"][0] for node in v["nodes"][:3])
            for v in result["violations"] if v["impact"] in ("serious", "critical")]
