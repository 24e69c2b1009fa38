"""The cyclic garbage collector is paused for a long render and always comes back."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from app.core.gcpause import cyclic_gc_paused


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_inside_and_running_again_after_even_on_error() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), cyclic_gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("the render failed")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with cyclic_gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_the_collector_runs_again_only_when_the_last_thread_leaves() -> None:
    gc.enable()
    first_in, first_may_leave = threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with cyclic_gc_paused():
            first_in.set()
            first_may_leave.wait(timeout=10)
        seen["after the first left"] = gc.isenabled()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(timeout=10)
    with cyclic_gc_paused():  # the second comes in while the first is still inside
        first_may_leave.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert not gc.isenabled()
    assert seen == {"after the first left": False}
    assert gc.isenabled()


def test_the_court_summary_is_rendered_with_the_collector_paused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import weasyprint

    from app.reports import court_summary

    seen: list[bool] = []
    original = weasyprint.HTML.write_pdf

    def write_pdf(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(gc.isenabled())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(weasyprint.HTML, "write_pdf", write_pdf)
    gc.enable()
    pdf = court_summary.render_pdf("<p>Fictional one-line report</p>", {})
    assert pdf.startswith(b"%PDF-")
    assert seen == [False]
    assert gc.isenabled()
