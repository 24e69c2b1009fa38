"""HTTP benchmark harness for advocase: ``python -m tests.bench`` (what ``make bench`` runs).

Why a harness of its own rather than a pytest plugin: a throughput figure needs real
server processes (uvicorn with several workers) driven by an external load generator
(``wrk``), which is slow, noisy and machine-dependent; it must never run as part of
the test suite (pytest skips ``tests/bench`` through ``norecursedirs``).

Layout:

- ``scenarios.py``: what is measured (name, server, path, headers, setup hook);
  add new scenarios there.
- ``servers.py``: starting and stopping the servers under test, on loopback only,
  with a throw-away var folder.
- ``wrk.py``: making sure ``wrk`` is installed, running it, parsing its output.
- ``baseline.py``: the minimal Starlette app every figure is compared with.
- ``__main__.py``: command line, run order and the report.
"""
