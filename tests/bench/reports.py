"""Benchmark: building a court summary of 500 incidents with 200 image exhibits, one worker.

    .venv/bin/python -m tests.bench.reports [--incidents 500] [--images 200] [--database-url URL]

Target (issue 9): the build takes under 20 s with one worker.

What a run does, in this process and on loopback only:

1. makes a throw-away var folder and migrates its database: the embedded SQLite by
   default, or a PostgreSQL database named by ``--database-url`` (its name must contain
   "bench": it is dropped and created again, and dropped at the end);
2. seeds one fictional agency, an advocate and one client, then ``--incidents`` incidents
   through the incidents service (the client's time zone, spread over the last year: 60 %
   exact times, 30 % dates, 10 % ranges; one to three categories; accounts, observations,
   sometimes witnesses and police; one in fifty corrected by a second revision), and
   ``--images`` image exhibits through the evidence service into real local storage (type
   check, SHA-256, Tink encryption, custody log): photo-like 1600×1200 pictures made with
   Pillow (gradients, shapes and noise) — three in four JPEG (about 300 KB), one in four
   a 256-colour PNG (about 330 KB) — spread over the incidents; then runs each upload's
   preview task (``app.evidence.previews``), as the workers do when files are received,
   one after another and timed apart from the build (``--previews-at-build`` skips them,
   and the build makes every preview itself);
3. requests a court summary of all of them through the reports service (standard
   redaction profile, a cover page) and builds it as one worker does:
   ``build.build_report`` in this process, real storage, real units of work (each step
   commits), the lease thread running, after one tiny PDF has loaded WeasyPrint and the
   fonts (what a worker pays once, on its first report: timed apart). The whole build is
   timed, and each step the build records as its progress (collecting,
   checking_exhibits, drawing_chart, rendering_pdf, signing, bundling, storing, then
   finishing), by timing the progress writes as they commit; within the steps, gathering
   the records, the image previews, the HTML and the PDF are timed too;
4. reads the PDF back through the reports service (page count) and removes what it made.

With ``--profile N`` a second report of the same records is built under cProfile after
the timed build, and the N entries with the most cumulative time are printed (paths
inside the repository or site-packages only). Every name is fictional; nothing is printed
but counts and figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from tests.bench.servers import ServerError, advocase_env, migrate

TARGET_S = 20.0
MIB = 1024 * 1024
IMAGE_SIZE = (1600, 1200)
TIME_ZONE = "Europe/London"
CHUNK = 50  # incidents (or images) a unit of work while seeding
CATEGORIES = ("physical", "emotional_verbal", "threats", "stalking", "technology_facilitated",
              "financial", "property_damage", "protective_order_violation", "child_related",
              "sexual")
BOUNDARY = "fictional-bench-boundary-9c1e"


def _use_env(env: dict[str, str]) -> None:
    for name in [k for k in os.environ if k.startswith("ADVOCASE_")]:
        del os.environ[name]
    os.environ.update(env)
    from app.settings import reset_settings_cache

    reset_settings_cache()


# --- pictures -----------------------------------------------------------------------------


def picture(seed: int) -> tuple[bytes, str]:
    """A photo-like 1600×1200 picture: two gradients, blurred noise and a dozen shapes;
    a JPEG (quality 85, a little grain) three times in four, else a 256-colour PNG."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)  # noqa: S311 - fictional pictures, not secrets
    width, height = IMAGE_SIZE
    red_span, green_span = rng.randint(60, 200), rng.randint(60, 200)
    red = Image.linear_gradient("L").rotate(rng.randint(0, 359)).resize(IMAGE_SIZE).point(
        lambda v: v * red_span // 255 + 30)
    green = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(
        IMAGE_SIZE).point(lambda v: v * green_span // 255 + 20)
    blue = Image.effect_noise(IMAGE_SIZE, 40).filter(ImageFilter.GaussianBlur(2))
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        draw.ellipse((x, y, x + rng.randint(50, 400), y + rng.randint(50, 300)),
                     fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    out = io.BytesIO()
    if seed % 4 == 3:
        image.quantize(256, dither=Image.Dither.NONE).save(out, "PNG")
        return out.getvalue(), "png"
    grain = Image.effect_noise(IMAGE_SIZE, 30).convert("RGB")
    Image.blend(image, grain, 0.15).save(out, "JPEG", quality=85)
    return out.getvalue(), "jpeg"


# --- seeding ------------------------------------------------------------------------------


def _occurrence(rng: random.Random, today: date) -> dict[str, Any]:
    day = today - timedelta(days=rng.randint(1, 360))
    roll = rng.random()
    if roll < 0.6:
        return {"precision": "exact", "time_zone": TIME_ZONE,
                "start": f"{day.isoformat()}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"}
    if roll < 0.9:
        return {"precision": "date", "start": day.isoformat(), "time_zone": TIME_ZONE}
    return {"precision": "range", "start": day.isoformat(), "time_zone": TIME_ZONE,
            "end": (day + timedelta(days=rng.randint(1, 3))).isoformat()}


def _incident_body(rng: random.Random, n: int, today: date) -> dict[str, Any]:
    categories = rng.sample(CATEGORIES, rng.choice((1, 1, 2, 3)))
    if "physical" not in categories and rng.random() < 0.3:
        categories[0] = "physical"
    account = " ".join(
        f"Fictional account {n}, part {p}: he came to the door again and shouted; I kept "
        "the chain on and called my sister." for p in range(rng.randint(1, 6)))
    body: dict[str, Any] = {
        "occurred": _occurrence(rng, today), "categories": categories,
        "place": rng.choice(("At home", "Outside the school", "At the bus stop",
                             "By phone", "In the car park of the Fictional Mart")),
        "client_account": account,
        "advocate_observations": (f"Fictional observation {n}: the client was shaken."
                                  if rng.random() < 0.5 else ""),
        "injuries": "Fictional bruise on the arm" if "physical" in categories else "",
        "children_present": rng.choice((True, False, None)),
        "weapons_involved": rng.choice((False, None)),
    }
    if rng.random() < 0.2:
        body["witnesses"] = [{"name": "Fictional Neighbour", "contact": "555-0142",
                              "note": "Heard it through the wall"}]
    if rng.random() < 0.25:
        body["police"] = {"involved": True, "agency": "Fictional Sampletown Police",
                          "report_number": f"FSP-2026-{n:06d}", "officer": "Fictional Officer"}
    return body


def _upload(db: Any, actor: Any, incident_id: UUID, content: bytes, n: int,
            storage: Any) -> UUID:
    """Through the evidence service as the API's upload route hands it a body."""
    from app.evidence import service as evidence_service

    target = evidence_service.start_upload(db, actor, incident_id)
    boundary = BOUNDARY.encode()
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="description"\r\n\r\n'
            + f"Fictional photo {n}".encode() + b"\r\n"
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="captured_by"'
            b"\r\n\r\nFictional client\r\n"
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
            b'filename="photo.bin"\r\n\r\n' + content + b"\r\n--" + boundary + b"--\r\n")
    made = evidence_service.receive_upload(
        db, actor, target, [body], content_type=f"multipart/form-data; boundary={BOUNDARY}",
        purpose=None, storage=storage, max_bytes=50 * MIB)
    return made.evidence.id


def seed(incidents: int, images: int, storage: Any) -> dict[str, Any]:
    from app.clients import service as clients
    from app.core import deferred
    from app.core.access import Actor
    from app.db import unit_of_work
    from app.evidence import previews
    from app.identity import service as identity
    from app.incidents import service as incident_service
    from app.incidents.schemas import IncidentCreate

    rng = random.Random(9)  # noqa: S311 - fictional data, not secrets
    today = datetime.now(UTC).date()
    started = time.perf_counter()
    with unit_of_work() as db:
        org = identity.create_org(db, name="Bench Report Agency (fictional)",
                                  slug="bench-reports")
        user = identity.create_user(
            db, None, org=org, email="bench.reports@bench.advocase.test",
            display_name="Bench Advocate (fictional)", role="advocate").user
        actor = Actor(kind="user", id=user.id, org_id=org.id, role="advocate")
        client_id = clients.create_client(db, actor, personal={
            "preferred_name": "Fictional Bench Client", "legal_name": "Fictional Bench Client",
            "contact_details": [{"kind": "phone", "value": "+44 7700 900417"}],
        }).client.id
    incident_ids: list[UUID] = []
    corrected = 0
    for lo in range(0, incidents, CHUNK):
        with unit_of_work() as db:
            for n in range(lo, min(lo + CHUNK, incidents)):
                body = _incident_body(rng, n, today)
                made = incident_service.record_incident(
                    db, actor, client_id, IncidentCreate.model_validate(body))
                incident_ids.append(made.incident.id)
                if n % 50 == 7:  # a few corrected by a second revision
                    body["place"] = f"{body['place']} (corrected)"
                    body["advocate_observations"] = f"Fictional corrected observation {n}."
                    incident_service.revise_incident(
                        db, actor, made.incident.id, IncidentCreate.model_validate(body),
                        reason="Fictional correction: the client remembered the place",
                        based_on_revision=1)
                    corrected += 1
    seeded_incidents = time.perf_counter() - started
    evidence_ids: list[UUID] = []
    sizes = {"jpeg": [0, 0], "png": [0, 0]}  # count, bytes
    making = 0.0
    sent: list[tuple[str, list[Any]]] = []  # what the uploads queue for a worker
    deferred.set_sender(lambda name, args, options: sent.append((name, args)))
    try:
        for lo in range(0, images, CHUNK):
            with unit_of_work() as db:
                for n in range(lo, min(lo + CHUNK, images)):
                    made_at = time.perf_counter()
                    content, kind = picture(n)
                    making += time.perf_counter() - made_at
                    sizes[kind][0] += 1
                    sizes[kind][1] += len(content)
                    incident = incident_ids[n * len(incident_ids) // images]
                    evidence_ids.append(_upload(db, actor, incident, content, n, storage))
    finally:
        deferred.set_sender(None)
    if sorted(args[0] for _, args in sent) != sorted(str(e) for e in evidence_ids) \
            or {name for name, _ in sent} - {previews.PREVIEW_TASK}:
        raise ServerError(f"the uploads queued {len(sent)} tasks, not one preview each")
    return {
        "org_id": org.id, "actor": actor, "client_id": client_id,
        "incident_ids": incident_ids, "evidence_ids": evidence_ids, "corrected": corrected,
        "sizes": sizes, "seed_incidents_s": seeded_incidents,
        "seed_images_s": time.perf_counter() - started - seeded_incidents,
        "make_images_s": making, "today": today,
    }


def make_previews(seeded: dict[str, Any], storage: Any) -> dict[str, Any]:
    """What the workers do as the images are received: each one's preview task, here one
    after another in this process (apart from the build, and timed apart)."""
    from app.evidence import previews

    started, cpu = time.perf_counter(), time.process_time()
    outcomes = [previews.make_preview(evidence_id, storage)
                for evidence_id in seeded["evidence_ids"]]
    if set(outcomes) != {"made"}:
        raise ServerError(f"preview tasks ended {sorted(set(outcomes))}, not all made")
    return {"count": len(outcomes), "seconds": round(time.perf_counter() - started, 2),
            "cpu_seconds": round(time.process_time() - cpu, 2)}


def request(seeded: dict[str, Any]) -> UUID:
    from app.core import deferred
    from app.db import unit_of_work
    from app.reports import service
    from app.reports.schemas import CourtSummaryCreate

    sent: list[tuple[str, list[Any]]] = []
    deferred.set_sender(lambda name, args, options: sent.append((name, args)))
    try:
        today = seeded["today"]
        body = {
            "kind": "court_summary", "client_id": str(seeded["client_id"]),
            "period": {"start": (today - timedelta(days=365)).isoformat(),
                       "end": today.isoformat()},
            "incident_ids": [str(i) for i in seeded["incident_ids"]],
            "evidence_ids": [str(e) for e in seeded["evidence_ids"]],
            "redaction_profile": "standard",
            "cover": {"court": "Fictional County Family Court", "case_number": "FC-2026-0417",
                      "parties": [{"role": "Petitioner", "from_record": "client_legal_name"},
                                  {"role": "Respondent", "name": "Fictional Respondent"}]}}
        with unit_of_work() as db:
            report = service.request_court_summary(db, seeded["actor"],
                                                   CourtSummaryCreate.model_validate(body))
            report_id = report.id
    finally:
        deferred.set_sender(None)
    if [name for name, _ in sent] != [service.BUILD_TASK]:
        raise ServerError(f"the request enqueued {sent!r}, not one build task")
    return report_id


# --- timing one build ---------------------------------------------------------------------


class Clock:
    """Times the build from outside: each progress write as it commits (the step the build
    is in), and the calls to the phases it makes through ``court_summary``."""

    MODULE = "court_summary"  # under app.reports: the module whose phases are timed
    WRAPPED = ("collect", "render_html", "render_pdf", "timeline_svg")
    PREVIEWS = ("read_preview", "reduce")  # app.evidence.previews: kept ones read, or made

    def __init__(self) -> None:
        self.steps: list[tuple[float, str, int]] = []
        self.calls: dict[str, list[float]] = {name: [0, 0.0]
                                              for name in (*self.WRAPPED, *self.PREVIEWS)}
        self._saved: list[tuple[Any, str, Any]] = []
        self._lock = threading.Lock()

    def _wrap(self, module: Any, name: str, wrapper: Callable[..., Any]) -> None:
        self._saved.append((module, name, getattr(module, name)))
        setattr(module, name, wrapper)

    def __enter__(self) -> Clock:
        import importlib

        from app.reports import service

        phases = importlib.import_module(f"app.reports.{self.MODULE}")
        progress = service.record_progress

        def record_progress(db: Any, claim: Any, percent: int, step: str) -> bool:
            done = progress(db, claim, percent, step)
            if done and (not self.steps or self.steps[-1][1] != step):
                self.steps.append((time.perf_counter(), step, percent))
            return done

        self._wrap(service, "record_progress", record_progress)
        for name in self.WRAPPED:
            self._wrap(phases, name, self._timed(name, getattr(phases, name)))
        from app.evidence import previews

        for name in self.PREVIEWS:
            self._wrap(previews, name, self._timed(name, getattr(previews, name)))
        return self

    def _timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.calls[name][0] += 1
                    self.calls[name][1] += time.perf_counter() - start

        return timed

    def __exit__(self, *exc: object) -> None:
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)

    def step_seconds(self, started: float, ended: float) -> dict[str, float]:
        marks = [(started, "claiming", 0), *self.steps, (ended, "end", 100)]
        seconds: dict[str, float] = {}
        for (at, step, _), (following, _, _) in zip(marks, marks[1:], strict=False):
            seconds[step] = round(seconds.get(step, 0.0) + following - at, 3)
        # after the last progress write: storing, sealing, the finishing transaction
        if self.steps:
            seconds["storing_and_finishing"] = seconds.pop(self.steps[-1][1])
        return seconds


def build_once(report_id: UUID, storage: Any) -> tuple[str, float, dict[str, float], Clock]:
    """One build as one worker makes it; returns the outcome, seconds, seconds per step."""
    from app.reports import build

    with Clock() as clock:
        started = time.perf_counter()
        outcome = build.build_report(report_id, storage=storage, keep_lease=True)
        ended = time.perf_counter()
    return outcome, ended - started, clock.step_seconds(started, ended), clock


def _where(filename: str) -> str:
    """A profile entry's file without the machine's paths."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    for marker in ("/app/", "/tests/", "/workers/"):
        if marker in filename:
            return marker.strip("/") + "/" + filename.split(marker, 1)[1]
    if "/lib/python3" in filename:
        return "stdlib/" + filename.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return os.path.basename(filename)


def profile_build(seeded: dict[str, Any], storage: Any, top: int) -> dict[str, Any]:
    return profile_report_build(request(seeded), storage, top)


def profile_report_build(report_id: Any, storage: Any, top: int) -> dict[str, Any]:
    """Build one requested report as a worker does, under cProfile; the ``top`` entries by
    cumulative time (the funder benchmark profiles its report with this too)."""
    from app.reports import build

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    outcome = build.build_report(report_id, storage=storage, keep_lease=True)
    profiler.disable()
    elapsed = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    entries = []
    for (filename, line, function), (_, calls, own, cumulative, _) in sorted(
            stats.stats.items(), key=lambda item: item[1][3], reverse=True)[:top]:  # type: ignore[attr-defined]
        entries.append({"function": f"{_where(filename)}:{line}({function})", "calls": calls,
                        "cumulative_s": round(cumulative, 3), "own_s": round(own, 3)})
    return {"outcome": outcome, "seconds_under_profiler": round(elapsed, 2), "top": entries}


def read_back(report_id: UUID, actor: Any, storage: Any) -> dict[str, Any]:
    import hashlib

    from pypdf import PdfReader

    from app.db import unit_of_work
    from app.reports import service
    from app.reports.models import Report

    with unit_of_work() as db:
        report = db.get(Report, report_id)
        assert report is not None
        status, failure = report.status, report.failure_code
        if status != "done":
            return {"status": status, "failure_code": failure}
        manifest = json.loads(report.manifest or "{}")
        download = service.open_download(db, actor, report_id, "pdf", storage=storage)
        pdf = b"".join(download.chunks)
        bundle_size = report.bundle_size
    if hashlib.sha256(pdf).hexdigest() != report.pdf_sha256:
        raise ServerError("the stored PDF does not match its recorded SHA-256")
    items = manifest.get("items", [])
    return {
        "status": status, "pdf_bytes": len(pdf), "pdf_pages": len(PdfReader(io.BytesIO(pdf)).pages),
        "bundle_bytes": bundle_size,
        "manifest_incident_revisions": sum(i["type"] == "incident_revision" for i in items),
        "manifest_exhibits": sum(i["type"] == "exhibit" for i in items),
    }


def warm_up() -> float:
    """What a worker pays once, on its first report: loading WeasyPrint, Pango and the
    fonts (a one-line PDF). Timed apart, so the build is measured as a running worker makes
    it."""
    from app.reports import court_summary

    started = time.perf_counter()
    court_summary.render_pdf("<p>Fictional warm-up page</p>", {})
    return time.perf_counter() - started


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=500)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL database whose name contains 'bench' (dropped and "
                        "created again); default: the embedded SQLite")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="build a second report under cProfile and print its top N "
                        "entries by cumulative time")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--previews-at-build", action="store_true",
                        help="skip the preview tasks of the uploads, so the build makes "
                        "every preview itself (as for images received before previews "
                        "were kept)")
    args = parser.parse_args(argv)
    if not 1 <= args.incidents <= 1000 or not 0 <= args.images <= 1000 \
            or args.images > args.incidents * 10 or not 0 <= args.profile <= 200:
        parser.error("--incidents 1..1000 (a report's limit), --images 0..1000, "
                     "--profile 0..200")
    folder = Path(tempfile.mkdtemp(prefix="advocase-bench-reports-"))
    var_dir = folder / "var"
    var_dir.mkdir()
    env = advocase_env(var_dir)
    if args.database_url:
        from tests.support import services

        name = sa.make_url(args.database_url).database or ""
        if "bench" not in name:
            parser.error("the database name must contain 'bench' (it is dropped)")
        services.recreate_postgres_database(args.database_url)
        env["ADVOCASE_DATABASE_URL"] = args.database_url
    try:
        migrate(env, var_dir)
        _use_env(env)
        from app.core.storage import get_storage
        from app.settings import get_settings

        storage = get_storage(get_settings())
        load_before_seed = _load()
        print(f"seeding {args.incidents:,} incidents and {args.images:,} images…", flush=True)
        seeded = seed(args.incidents, args.images, storage)
        kept_previews = None if args.previews_at_build else make_previews(seeded, storage)
        report_id = request(seeded)
        warm_up_s = warm_up()
        load_before_build = _load()
        print("building the court summary…", flush=True)
        outcome, elapsed, steps, clock = build_once(report_id, storage)
        load_after_build = _load()
        result = read_back(report_id, seeded["actor"], storage)
        if outcome != "done" or result["status"] != "done":
            raise ServerError(f"the build ended {outcome!r}: {result}")
        profiled = profile_build(seeded, storage, args.profile) if args.profile else None
    except ServerError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if "app.db" in sys.modules:  # the engine holds the database open
            sys.modules["app.db"].get_engine().dispose()
        if args.database_url:
            from tests.support import services

            services.drop_postgres_database(args.database_url)
        shutil.rmtree(folder, ignore_errors=True)
    sizes = seeded["sizes"]
    image_bytes = sizes["jpeg"][1] + sizes["png"][1]
    calls = {name: {"calls": int(count), "seconds": round(total, 3)}
             for name, (count, total) in clock.calls.items()}
    report = {
        "database": "postgresql" if args.database_url else "sqlite",
        "incidents": args.incidents, "corrected_incidents": seeded["corrected"],
        "images": args.images,
        "jpeg": {"count": sizes["jpeg"][0], "bytes": sizes["jpeg"][1],
                 "mean_kb": round(sizes["jpeg"][1] / max(1, sizes["jpeg"][0]) / 1000, 1)},
        "png": {"count": sizes["png"][0], "bytes": sizes["png"][1],
                "mean_kb": round(sizes["png"][1] / max(1, sizes["png"][0]) / 1000, 1)},
        "image_pixels": f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}",
        "image_bytes": image_bytes, "image_mb": round(image_bytes / 1e6, 1),
        "seed_incidents_s": round(seeded["seed_incidents_s"], 1),
        "seed_images_s": round(seeded["seed_images_s"], 1),
        "make_images_s": round(seeded["make_images_s"], 1),
        "previews_on_receipt": kept_previews or "not made (--previews-at-build)",
        "first_pdf_in_process_s": round(warm_up_s, 2),
        "build_s": round(elapsed, 2),
        "steps_s": steps,
        "within_steps": calls,
        "pdf_bytes": result["pdf_bytes"], "pdf_pages": result["pdf_pages"],
        "bundle_bytes": result["bundle_bytes"],
        "manifest_incident_revisions": result["manifest_incident_revisions"],
        "manifest_exhibits": result["manifest_exhibits"],
        "target_s": TARGET_S, "met": elapsed < TARGET_S,
        "load_average": {"before_seed": load_before_seed, "before_build": load_before_build,
                         "after_build": load_after_build},
        "cpus": os.cpu_count(),
    }
    if profiled is not None:
        report["profile"] = profiled
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if not report["met"]:
        print(f"build target of {TARGET_S:.0f} s missed: {elapsed:.1f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
