"""Benchmark: field encryption, decryption and blind indexes with warm key caches.

    .venv/bin/python -m tests.bench.crypto [--rounds 20000]

Runs in-process against a fresh, migrated SQLite database in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from uuid import uuid4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="advocase-bench-crypto-"))
    for name in [k for k in os.environ if k.startswith("ADVOCASE_")]:
        del os.environ[name]
    os.environ.update({"ADVOCASE_VAR_DIR": str(folder / "var"), "ADVOCASE_LOG_LEVEL": "WARNING"})
    try:
        from app.cli import run_migrations
        from app.core import keys
        from app.db import unit_of_work

        run_migrations()
        with unit_of_work() as db:
            from app.identity.service import create_org

            org_id = create_org(db, name="Bench Fictional", slug="bench").id
        client_id = uuid4()
        place = {"org_id": org_id, "client_id": client_id, "table": "client",
                 "column": "notes", "row_id": str(client_id)}
        text = "A short fictional note of about sixty characters, for timing."
        results: dict[str, float] = {}
        with unit_of_work() as db:
            sealed = keys.encrypt_field(db, plaintext=text, **place)  # creates and caches keys
            keys.blind_index(db, org_id=org_id, kind="client-name", value="Warm Up")

            def timed(name: str, fn: object) -> None:
                start = time.perf_counter()
                for _ in range(args.rounds):
                    fn()  # type: ignore[operator]
                results[name] = (time.perf_counter() - start) / args.rounds * 1e6

            timed("encrypt_us", lambda: keys.encrypt_field(db, plaintext=text, **place))
            timed("decrypt_us", lambda: keys.decrypt_field(db, ciphertext=sealed, **place))
            timed("blind_index_us", lambda: keys.blind_index(
                db, org_id=org_id, kind="client-name", value="Jordan Q. Fictional"))
        print(json.dumps({k: round(v, 1) for k, v in results.items()} |
                         {"rounds": args.rounds, "field_chars": len(text)}, indent=2))
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
