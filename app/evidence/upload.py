"""Reading a multipart/form-data upload as it streams in, never holding the file.

python-multipart's incremental parser is fed the request body chunk by chunk; the file
part's bytes go straight to a sink (type check, hash, encryption), the few text fields
are collected with a small size limit each. Problems name the field, never its value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.core.errors import BadRequest, DomainError, Invalid, PayloadTooLarge
from app.evidence import filetypes

FIELD_MAX_BYTES = 16 * 1024
MAX_PARTS = 16
PART_HEADER_MAX_BYTES = 8 * 1024
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{1,70}$")


class UnsupportedEvidence(DomainError):
    """415: the body is not multipart, or the file is not of an accepted type."""

    status, kind, title = 415, "unsupported-media-type", "Unsupported media type"


def _field_error(name: str, message: str, kind: str, location: str = "body") -> dict[str, str]:
    return {"field": name, "location": location, "message": message, "type": kind}


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary from a Content-Type header (415 when it is not multipart)."""
    media, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary", b"").decode("latin-1")
    if media != b"multipart/form-data" or not _BOUNDARY.match(boundary):
        raise UnsupportedEvidence(
            "Send the file as multipart/form-data (a part named 'file', and optional "
            "description, captured_at, captured_by, capture_device and source_notes fields).",
            errors=[_field_error("content-type", "expected multipart/form-data with a boundary",
                                 "content_type", "header")])
    return boundary.encode("latin-1")


def limited(chunks: Iterable[bytes], max_bytes: int) -> Iterator[bytes]:
    """The chunks, refusing (413) as soon as more than ``max_bytes`` have arrived."""
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received > max_bytes:
            raise PayloadTooLarge(max_bytes)
        yield chunk


class FileSink:
    """Takes the file's bytes in order: checks the type on the first bytes, hashes the
    original bytes and writes them on to ``out`` (the encrypting stream)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._head = bytearray()
        self.file_type: filetypes.FileType | None = None
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.sha256.update(data)
        self.size += len(data)
        if self.file_type is None:
            self._head += data
            if len(self._head) < filetypes.SNIFF_BYTES:
                return
            self._decide(complete=False)
            return
        self._out.write(data)

    def finish(self) -> None:
        if self.size == 0:
            raise Invalid("The file is empty.", errors=[
                _field_error("file", "the file is empty", "empty")])
        if self.file_type is None:
            self._decide(complete=True)

    def _decide(self, *, complete: bool) -> None:
        head = bytes(self._head[: filetypes.SNIFF_BYTES])
        self.file_type = filetypes.detect(head, complete=complete)
        if self.file_type is None:
            raise UnsupportedEvidence(
                "This kind of file is not accepted as evidence. Accepted: "
                f"{filetypes.allowed_description()}.",
                errors=[_field_error("file", "file type not accepted (judged from its "
                                             "content)", "file_type")])
        self._out.write(bytes(self._head))
        self._head = bytearray()


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    has_file: bool = False


def _part_name_and_filename(disposition: bytes) -> tuple[str | None, str | None]:
    try:
        text = disposition.decode("utf-8")
    except UnicodeDecodeError:
        text = disposition.decode("latin-1")
    header = Message()
    header["content-disposition"] = text
    if header.get_content_disposition() != "form-data":
        return None, None
    name = header.get_param("name", header="content-disposition")
    filename = header.get_filename()
    if isinstance(name, tuple):  # an RFC 2231 encoded name
        name = name[2]
    return (str(name) if name is not None else None,
            str(filename) if filename is not None else None)


class _Reader:
    """The callbacks of python-multipart's parser, for one form."""

    def __init__(self, file_field: str, text_fields: frozenset[str],
                 open_file: Callable[[], FileSink]) -> None:
        self.file_field, self.text_fields, self.open_file = file_field, text_fields, open_file
        self.form = Form()
        self.ended = False
        self._parts = 0
        self._headers: dict[bytes, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._current: str | None = None
        self._value = bytearray()
        self._sink: FileSink | None = None

    def callbacks(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
            "on_headers_finished", "on_part_data", "on_part_end", "on_end")}

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise Invalid("The form has too many parts.", errors=[
                _field_error("body", f"at most {MAX_PARTS} parts", "too_many_parts")])
        self._headers, self._header_bytes = {}, 0
        self._current, self._value = None, bytearray()

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > PART_HEADER_MAX_BYTES:
            raise BadRequest("A part of the form has oversized headers.",
                             kind="malformed-multipart", title="Malformed form")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        name, filename = _part_name_and_filename(self._headers.get(b"content-disposition", b""))
        if name is None:
            raise BadRequest("Each part of the form needs a Content-Disposition with a name.",
                             kind="malformed-multipart", title="Malformed form")
        if name == self.file_field:
            if self.form.has_file:
                raise Invalid("Send one file per upload.", errors=[
                    _field_error(name, "more than one file", "duplicate")])
            self.form.has_file = True
            self.form.filename = filename
            self._sink = self.open_file()
        elif name in self.text_fields:
            if name in self.form.fields:
                raise Invalid(f"The field {name} was sent twice.", errors=[
                    _field_error(name, "sent more than once", "duplicate")])
        else:
            raise Invalid(f"Unknown form field {name[:40]!r}.", errors=[
                _field_error(name[:40], "not a field of this form", "extra_forbidden")])
        self._current = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current == self.file_field:
            assert self._sink is not None
            self._sink.write(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > FIELD_MAX_BYTES:
            raise Invalid(f"The field {self._current} is too long.", errors=[
                _field_error(str(self._current), f"at most {FIELD_MAX_BYTES} bytes",
                             "too_long")])

    def on_part_end(self) -> None:
        if self._current == self.file_field:
            assert self._sink is not None
            self._sink.finish()
        elif self._current is not None:
            try:
                self.form.fields[self._current] = self._value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise Invalid(f"The field {self._current} is not UTF-8 text.", errors=[
                    _field_error(self._current, "not UTF-8 text", "encoding")]) from exc
        self._current = None

    def on_end(self) -> None:
        self.ended = True


def read_form(chunks: Iterable[bytes], boundary: bytes, *, file_field: str,
              text_fields: frozenset[str], open_file: Callable[[], FileSink]) -> Form:
    """Parse a multipart body as it arrives. The file part is passed to the sink returned
    by ``open_file`` (called when that part starts); a body that ends before the closing
    boundary is refused (nothing of it is kept)."""
    reader = _Reader(file_field, text_fields, open_file)
    parser = MultipartParser(boundary, reader.callbacks())
    try:
        for chunk in chunks:
            parser.write(chunk)
            if reader.ended:
                break
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequest("The form could not be read as multipart/form-data.",
                         kind="malformed-multipart", title="Malformed form") from exc
    if not reader.ended:
        raise BadRequest("The upload ended before the form was complete; nothing was kept.",
                         kind="upload-incomplete", title="Upload incomplete")
    if not reader.form.has_file:
        raise Invalid("Attach the file in a part named 'file'.", errors=[
            _field_error(file_field, "missing", "missing")])
    return reader.form
