"""A long court summary rendered in two processes side by side, then joined into one PDF.

WeasyPrint lays out and writes a document on one core; a report of 500 incidents and 200
exhibits takes it about 20 s. Split after an incident chosen so that both halves cost
about the same, the first part (cover, overview, the first incidents) is rendered in the
worker's own process while a child process (``python -m app.reports.parts``) renders the
second (the other incidents, the exhibits, the certification), and pikepdf joins them.

What the join keeps, so the PDF is the document a single render makes:

- the page numbers: each part lays out its pages, then, before WeasyPrint makes the page
  margins ("Page N of M"), the two processes exchange their page counts, so each part
  numbers its pages from its place in the whole and counts the whole;
- the tags: the second part's structure elements go under the first part's ``Document``
  element, its pages' ``/StructParents`` and parent-tree keys after the first part's;
- the bookmarks: the second part repeats, as bookmarks only, the headings its first
  bookmarks sit under ("Incident summary", "Incidents"); the join merges those into the
  first part's and adds the rest;
- the first part's catalogue: language, PDF/A-3b metadata, output intent, named
  destinations.

Anything unexpected in either part (a structure the join does not know, a child that
fails or is killed) makes the caller render the document whole, in one process, as
before: slower, never wrong.
"""

from __future__ import annotations

import io
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import pikepdf
import structlog

log = structlog.get_logger("app.reports.parts")

# Split only a document long enough to gain (ADVOCASE_REPORT_SPLIT_FROM_PAGES, 80 by
# default): below that a second process (its start and WeasyPrint's loading, about a
# second) costs more than it saves. Weights are in pages of rendering time, measured on the
# benchmark's report: an incident (about half a page) costs about 0.04 s, a correction of
# it about 0.025 s more, an exhibit (a page, its image passed through as it is) 0.055 s.
INCIDENT_WEIGHT = 0.55
REVISION_WEIGHT = 0.35
EXHIBIT_WEIGHT = 0.75
HEAD_WEIGHT = 3.0  # cover and overview
CHILD_TIMEOUT = 600.0  # seconds; the build's own limit is 900
CHILD_COMMAND = (sys.executable, "-m", "app.reports.parts")
PARENT_VARIABLE = "ADVOCASE_REPORT_PARTS_PARENT"


class PartsFailed(Exception):
    """The parts could not be rendered or joined: render the document whole instead."""


def plan(data: dict[str, Any], *, split_from: float) -> int | None:
    """How many incidents the first part shows, or None to render the report whole (a
    report estimated under ``split_from`` pages, or without incidents)."""
    incidents = data["incidents"]
    weights = [INCIDENT_WEIGHT + REVISION_WEIGHT * (len(i["revisions"]) - 1)
               for i in incidents]
    total = HEAD_WEIGHT + sum(weights) + EXHIBIT_WEIGHT * len(data["exhibits"])
    if total < split_from or not incidents:
        return None
    first, done = 0, HEAD_WEIGHT
    while first < len(incidents) and done + weights[first] / 2 < total / 2:
        done += weights[first]
        first += 1
    return max(1, first)


# --- numbering the pages across the parts --------------------------------------------------


@contextmanager
def _numbered(exchange: Callable[[int], tuple[int, int]]) -> Iterator[None]:
    """While WeasyPrint renders in this block, its page margins number the pages as part of
    a longer document: once the part's pages are laid out, ``exchange(pages)`` answers
    (this part's first page number minus one, the whole document's page count)."""
    import weasyprint.layout as layout

    original = layout.make_margin_boxes
    agreed: list[tuple[int, int]] = []

    def make_margin_boxes(context: Any, page: Any, state: Any) -> Any:
        counters = state[1]
        if not agreed:
            agreed.append(exchange(counters["pages"][0]))
        offset, total = agreed[0]
        counters["page"] = [counters["page"][0] + offset]
        counters["pages"] = [total]
        return original(context, page, state)

    layout.make_margin_boxes = make_margin_boxes
    try:
        yield
    finally:
        layout.make_margin_boxes = original


def _render(document: str, images: dict[int, bytes],
            exchange: Callable[[int], tuple[int, int]]) -> bytes:
    from app.reports import court_summary

    with _numbered(exchange):
        return court_summary.render_pdf(document, images)


# --- the child process -----------------------------------------------------------------------


def _write_frame(out: BinaryIO, data: bytes) -> None:
    out.write(struct.pack(">Q", len(data)))
    out.write(data)
    out.flush()


def _read_frame(source: BinaryIO) -> bytes:
    head = source.read(8)
    if len(head) != 8:
        raise PartsFailed("the other process ended early")
    (size,) = struct.unpack(">Q", head)
    data = source.read(size)
    if len(data) != size:
        raise PartsFailed("the other process ended early")
    return data


def child_main() -> int:
    """The second part: its HTML and images on stdin; its page count out, the numbering
    in, then the PDF out (frames of 8-byte lengths)."""
    _die_with_parent()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    document, images = pickle.loads(_read_frame(stdin))  # noqa: S301 - our own parent

    def exchange(pages: int) -> tuple[int, int]:
        _write_frame(stdout, str(pages).encode("ascii"))
        offset, total = (int(v) for v in _read_frame(stdin).split())
        return offset, total

    _write_frame(stdout, _render(document, images, exchange))
    return 0


def _die_with_parent() -> None:
    """A worker killed in the middle of a build takes its child with it (Linux); set by
    the child itself (a ``preexec_fn`` is not safe in the worker's threaded process)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(os.environ.get(PARENT_VARIABLE, "0") or 0):
        sys.exit(1)  # the parent died before the request took effect


class _Child:
    """The child rendering the second part, talked to from threads so no pipe fills up."""

    def __init__(self, document: str, images: dict[int, bytes]) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own module, no shell
            list(CHILD_COMMAND), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=os.environ | {PARENT_VARIABLE: str(os.getpid())})
        self.frames: queue.Queue[bytes | BaseException] = queue.Queue()
        self.errors = b""
        payload = pickle.dumps((document, images), protocol=pickle.HIGHEST_PROTOCOL)
        self._sender = threading.Thread(target=self._send, args=(payload,), daemon=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._stderr = threading.Thread(target=self._drain, daemon=True)
        for thread in (self._sender, self._reader, self._stderr):
            thread.start()

    def _send(self, payload: bytes) -> None:
        assert self.process.stdin is not None
        try:
            _write_frame(self.process.stdin, payload)
        except OSError:
            pass  # the child died: the reader says so

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for _ in range(2):
                self.frames.put(_read_frame(self.process.stdout))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.frames.put(exc)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        self.errors = self.process.stderr.read()[-2000:]

    def next_frame(self) -> bytes:
        try:
            frame = self.frames.get(timeout=CHILD_TIMEOUT)
        except queue.Empty as exc:
            raise PartsFailed("the second part took too long") from exc
        if isinstance(frame, BaseException):
            raise PartsFailed("the second part's process failed") from frame
        return frame

    def tell(self, offset: int, total: int) -> None:
        self._sender.join(timeout=CHILD_TIMEOUT)
        assert self.process.stdin is not None
        try:
            _write_frame(self.process.stdin, f"{offset} {total}".encode("ascii"))
            self.process.stdin.close()
        except OSError as exc:
            raise PartsFailed("the second part's process is gone") from exc

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def render_in_parts(first: str, second: str, images: dict[int, bytes]) -> bytes:
    """Render the two parts side by side (the second in a child process) and join them."""
    child = _Child(second, images)
    try:
        counts: dict[str, int] = {}

        def exchange(pages: int) -> tuple[int, int]:
            counts["first"] = pages
            counts["second"] = int(child.next_frame())
            total = pages + counts["second"]
            child.tell(pages, total)
            return 0, total

        started = time.perf_counter()
        first_pdf = _render(first, images, exchange)
        if "second" not in counts:  # a WeasyPrint that made no margins through the hook
            raise PartsFailed("the page counts were never exchanged")
        first_done = time.perf_counter()
        second_pdf = child.next_frame()
        second_done = time.perf_counter()
        if child.process.wait(timeout=CHILD_TIMEOUT) != 0:
            raise PartsFailed("the second part's process failed")
    except BaseException:
        # The child's last error line names its exception; its message is not logged (it
        # could quote the report).
        last = child.errors.decode("utf-8", "replace").strip().splitlines()[-1:]
        log.warning("report_parts_failed",
                    child_error=last[0].split(":", 1)[0][:80] if last else None)
        raise
    finally:
        child.close()
    joined = join(first_pdf, second_pdf, counts["first"])
    log.info("report_rendered_in_parts", pages=[counts["first"], counts["second"]],
             first_s=round(first_done - started, 2),
             second_later_s=round(second_done - first_done, 2),
             join_s=round(time.perf_counter() - second_done, 2))
    return joined


# --- the join --------------------------------------------------------------------------------


def join(first_pdf: bytes, second_pdf: bytes, first_pages: int) -> bytes:
    """One PDF of the two parts (see the module's docstring for what is kept)."""
    try:
        with pikepdf.open(io.BytesIO(first_pdf)) as pdf, \
                pikepdf.open(io.BytesIO(second_pdf)) as other:
            if len(pdf.pages) != first_pages:
                raise PartsFailed("the first part's page count changed")
            second_outline = _outline_of(other)
            pdf.pages.extend(other.pages)
            _join_structure(pdf, other, first_pages)
            _join_outline(pdf, second_outline, first_pages)
            out = io.BytesIO()
            # Object streams made afresh: the second part's copied objects (its tags,
            # mostly) would otherwise be written one by one, about 3 MB more here.
            pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate,
                     compress_streams=True)
            return out.getvalue()
    except (pikepdf.PdfError, KeyError, AttributeError, ValueError, TypeError) as exc:
        raise PartsFailed("the parts could not be joined") from exc


def _join_structure(pdf: pikepdf.Pdf, other: pikepdf.Pdf, first_pages: int) -> None:
    root, second_root = pdf.Root.StructTreeRoot, other.Root.StructTreeRoot
    if "/Kids" in root.ParentTree or "/Kids" in second_root.ParentTree \
            or len(root.K) != 1 or len(second_root.K) != 1:
        raise PartsFailed("a structure tree of another shape")
    document, second_document = root.K[0], second_root.K[0]
    if document.S != pikepdf.Name.Document or second_document.S != pikepdf.Name.Document:
        raise PartsFailed("a structure tree of another shape")
    nums = root.ParentTree.Nums
    shift = max([int(nums[i]) for i in range(0, len(nums), 2)], default=-1) + 1
    joined = _as_array(document.K)
    for kid in _as_array(second_document.K):
        copied = _copied(pdf, kid)
        if isinstance(copied, pikepdf.Dictionary):
            copied.P = document
        joined.append(copied)
    document.K = joined
    second_nums = second_root.ParentTree.Nums
    for i in range(0, len(second_nums), 2):
        nums.append(int(second_nums[i]) + shift)
        nums.append(_copied(pdf, second_nums[i + 1]))
    for page in pdf.pages[first_pages:]:
        if "/StructParents" in page.obj:
            page.obj.StructParents = int(page.obj.StructParents) + shift
        for annotation in page.obj.get("/Annots", []):
            if "/StructParent" in annotation:
                annotation.StructParent = int(annotation.StructParent) + shift
    if "/ParentTreeNextKey" in root or "/ParentTreeNextKey" in second_root:
        root.ParentTreeNextKey = shift + int(second_root.get("/ParentTreeNextKey", 0))


def _as_array(value: Any) -> pikepdf.Array:
    return value if isinstance(value, pikepdf.Array) else pikepdf.Array([value])


def _copied(pdf: pikepdf.Pdf, value: Any) -> Any:
    """``value`` of the other part in ``pdf``: an indirect object copied (once: qpdf maps
    each object of a source to one copy, so references to its pages land on the pages
    already appended), a direct array item by item."""
    if getattr(value, "is_indirect", False):
        return pdf.copy_foreign(value)
    if isinstance(value, pikepdf.Array):
        return pikepdf.Array([_copied(pdf, item) for item in value])
    return value


def _outline_of(other: pikepdf.Pdf) -> list[tuple[str, int | None, list[Any], list[Any]]]:
    """The second part's bookmarks as (title, page index, XYZ arguments, children)."""
    pages = {page.obj.objgen: index for index, page in enumerate(other.pages)}

    def item(entry: Any) -> tuple[str, int | None, list[Any], list[Any]]:
        destination = entry.destination
        index, where = None, []
        if destination is not None and len(destination) >= 2:
            index = pages.get(destination[0].objgen)
            where = [float(v) if v is not None and not hasattr(v, "objgen") else None
                     for v in list(destination)[2:5]] if str(destination[1]) == "/XYZ" \
                else []
        return (str(entry.title), index, where, [item(child) for child in entry.children])

    with other.open_outline() as outline:
        return [item(entry) for entry in outline.root]


def _join_outline(pdf: pikepdf.Pdf, second: list[tuple[str, int | None, list[Any], list[Any]]],
                  first_pages: int) -> None:
    def made(entry: tuple[str, int | None, list[Any], list[Any]]) -> Any:
        title, index, where, children = entry
        if index is None:
            new = pikepdf.OutlineItem(title)
        elif len(where) == 3:
            left, top, zoom = where
            new = pikepdf.OutlineItem(title, first_pages + index, "XYZ",
                              left=left, top=top, zoom=zoom)
        else:
            new = pikepdf.OutlineItem(title, first_pages + index)
        new.children.extend(made(child) for child in children)
        return new

    def merge(into: list[Any], entries: list[Any]) -> None:
        for entry in entries:
            title, _, _, children = entry
            if into and str(into[-1].title) == title and children:
                merge(into[-1].children, children)  # a heading the parts share
            else:
                into.append(made(entry))

    with pdf.open_outline() as outline:
        merge(outline.root, second)


if __name__ == "__main__":  # the child process of render_in_parts
    sys.exit(child_main())
