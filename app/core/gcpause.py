"""Pausing Python's cyclic garbage collector around one long, allocation-heavy step.

Laying out and writing a long PDF makes millions of small objects that live until the
document is written. Each time enough of them have been made, the collector walks every
object still alive looking for reference cycles; with a large document alive that walk is
most of the cost, and it finds almost nothing: WeasyPrint's objects are freed by reference
counting. Measured on the court summary of 500 incidents and 200 images
(docs/benchmarks.md): about a fifth of the rendering time, and the same peak memory with
the collector paused.

Reference counting goes on freeing memory while the collector is paused; only cycles wait
until it runs again. The pause is process-wide, so it is counted: with several threads in
such a step at once, the collector runs again when the last one leaves, and only if it
was running when the first one came in.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
