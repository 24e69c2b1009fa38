"""The dashboard's caseload page costs the same SQL statements whatever its size and opens
only the preferred name of each client (the API's listing is covered in
tests/clients/test_listing_cost.py)."""

from __future__ import annotations

from app.dashboard import clients as pages
from tests.clients.test_api import agency  # noqa: F401 - fixture
from tests.clients.test_listing_cost import open_cases, page_cost
from tests.dashboard.helpers import sign_in


def test_the_dashboard_caseload_costs_the_same_statements_at_5_and_25(
        web, agency, db, engine, monkeypatch) -> None:  # noqa: F811
    _, people, _ = agency
    open_cases(db, people["advocate"], 25)
    sign_in(web, db, people["advocate"])
    costs = {}
    for size in (5, 25):
        monkeypatch.setattr(pages, "CASELOAD_SIZE", size)
        cost, page = page_cost(engine, db, monkeypatch, lambda: web.get("/dashboard/clients"))
        assert page.status_code == 200
        assert page.text.count("Fictional 0") == size
        assert page.text.count("<td>you</td>") == size  # who works with each client
        costs[size] = cost
    assert costs[5].statements == costs[25].statements, costs
    assert (costs[5].decrypted, costs[25].decrypted) == (5, 25)
