"""What an evidence file is, judged from its first bytes, against a fixed allowlist.

A small table rather than a general "magic" library: the allowlist is short, each of its
formats has a fixed, documented signature, and a general detector ranks hundreds of
guesses where we need a yes or a no. Plain text and e-mail have no magic number at all;
they are recognised by their content (UTF-8 without control bytes; RFC 822 header lines).
The name and the Content-Type a browser sent are never trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SNIFF_BYTES = 8192


@dataclass(frozen=True)
class FileType:
    media_type: str
    extension: str
    label: str


JPEG = FileType("image/jpeg", "jpg", "JPEG image")
PNG = FileType("image/png", "png", "PNG image")
GIF = FileType("image/gif", "gif", "GIF image")
WEBP = FileType("image/webp", "webp", "WebP image")
HEIC = FileType("image/heic", "heic", "HEIC image")
PDF = FileType("application/pdf", "pdf", "PDF document")
MP3 = FileType("audio/mpeg", "mp3", "MP3 audio")
M4A = FileType("audio/mp4", "m4a", "M4A audio")
WAV = FileType("audio/wav", "wav", "WAV audio")
OGG = FileType("audio/ogg", "ogg", "Ogg audio")
MP4 = FileType("video/mp4", "mp4", "MP4 video")
MOV = FileType("video/quicktime", "mov", "QuickTime video")
WEBM = FileType("video/webm", "webm", "WebM video")
TEXT = FileType("text/plain", "txt", "plain text")
EML = FileType("message/rfc822", "eml", "e-mail message")

ALLOWED = (JPEG, PNG, GIF, WEBP, HEIC, PDF, MP3, M4A, WAV, OGG, MP4, MOV, WEBM, TEXT, EML)
BY_MEDIA_TYPE = {t.media_type: t for t in ALLOWED}

# ISO base media file format brands (the "ftyp" box) → type.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_GENERIC = {b"mif1", b"msf1"}  # also used by AVIF: decided by the compatible brands
_M4A_BRANDS = {b"M4A ", b"M4B "}
_MOV_BRANDS = {b"qt  "}
_MP4_BRANDS = {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso8", b"iso9",
               b"mp41", b"mp42", b"avc1", b"dash", b"mmp4", b"M4V ", b"M4VH", b"M4VP",
               b"MSNV", b"f4v ", b"hvc1"}
# QuickTime files from older cameras start with an atom, not "ftyp".
_MOV_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}

# Headers that open an e-mail message as saved by mail programs (case-insensitive).
_MAIL_HEADERS = {"from", "to", "cc", "subject", "date", "received", "message-id",
                 "mime-version", "return-path", "delivered-to", "reply-to", "sender",
                 "content-type", "x-mailer", "dkim-signature", "arc-seal", "authentication-results",
                 "x-received", "thread-topic", "in-reply-to", "references"}
_MAIL_CORE = {"from", "date", "subject", "message-id", "received", "to"}
_HEADER_LINE = re.compile(rb"^([!-9;-~]+):[ \t]?")  # RFC 5322 field name, then ':'


def _iso_bmff(head: bytes) -> FileType | None:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    major = head[8:12]
    end = min(len(head), box_size if 16 <= box_size <= 4096 else 16)
    compatible = {head[i:i + 4] for i in range(16, end - 3, 4)}
    brands = {major} | compatible
    if major in _HEIF_BRANDS or (major in _HEIF_GENERIC and brands & _HEIF_BRANDS):
        return HEIC
    if major in _M4A_BRANDS:
        return M4A
    if major in _MOV_BRANDS:
        return MOV
    if major in _MP4_BRANDS or (brands & _MP4_BRANDS and not brands & _HEIF_GENERIC):
        return MP4
    return None


def _mp3_frame(head: bytes) -> bool:
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 0x3
    layer = (head[1] >> 1) & 0x3
    bitrate = head[2] >> 4
    sample_rate = (head[2] >> 2) & 0x3
    # Layer III only (0b01); reserved version, bitrate and sample-rate values refused.
    return version != 0b01 and layer == 0b01 and bitrate not in (0, 0xF) and sample_rate != 3


def _ogg_audio(head: bytes) -> bool:
    if not head.startswith(b"OggS") or len(head) < 36:
        return False
    segments = head[26]
    first = head[27 + segments: 27 + segments + 8]
    return first.startswith((b"\x01vorbis", b"OpusHead", b"\x7fFLAC", b"Speex   "))


def _webm(head: bytes) -> bool:
    return head.startswith(b"\x1a\x45\xdf\xa3") and b"\x42\x82\x84webm" in head[:64]


def _text(head: bytes, complete: bool) -> str | None:
    """The text if ``head`` is UTF-8 text (a character cut at the end of the sniffed bytes
    is allowed unless the file ended there), else None."""
    if b"\x00" in head:
        return None
    data = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if complete or exc.start < len(data) - 3:
            return None
        text = data[: exc.start].decode("utf-8")
    if any(ord(c) < 32 and c not in "\t\n\r\f" or c == "\x7f" for c in text):
        return None
    return text


def _email(head: bytes) -> bool:
    """RFC 822/5322 header lines from the first byte up to a blank line (or the end of the
    sniffed bytes), with at least two of the fields every delivered message has."""
    names: set[str] = set()
    lines = head.split(b"\n")
    for number, raw in enumerate(lines):
        line = raw.rstrip(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t") and number > 0:
            continue  # a folded continuation of the previous header
        match = _HEADER_LINE.match(line)
        if match is None:
            if number == len(lines) - 1:
                break  # cut off by the sniff window
            return False
        names.add(match.group(1).decode("ascii").lower())
    return len(names & _MAIL_CORE) >= 2 and len(names - _MAIL_HEADERS) <= len(names) // 2


def detect(head: bytes, *, complete: bool) -> FileType | None:
    """The allowed type of a file whose first bytes are ``head`` (``complete``: the file is
    no longer than that), or None when it is not one we accept."""
    if not head:
        return None
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return WAV
    if head.startswith(b"%PDF-"):
        return PDF
    found = _iso_bmff(head)
    if found is not None:
        return found
    if _webm(head):
        return WEBM
    if _ogg_audio(head):
        return OGG
    if head.startswith(b"ID3") or _mp3_frame(head):
        return MP3
    if _text(head, complete) is not None:
        return EML if _email(head) else TEXT
    # Binary from here on (text was decided above), where weaker signatures are safe.
    if len(head) >= 8 and head[0] == 0 and head[4:8] in _MOV_ATOMS \
            and int.from_bytes(head[:4], "big") >= 8:
        return MOV
    if b"%PDF-" in head[:1024]:  # readers accept a PDF header within the first KiB
        return PDF
    return None


def allowed_description() -> str:
    return ", ".join(t.label for t in ALLOWED)
