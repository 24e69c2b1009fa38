"""The evidence allowlist, judged from content: each accepted format by its signature, and
look-alikes refused."""

from __future__ import annotations

import os

import pytest

from app.evidence import filetypes


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00\x00\x00\x08free"


def ogg(codec: bytes) -> bytes:
    # One page header with one segment, then the codec's identification packet.
    return b"OggS\x00\x02" + b"\x00" * 20 + b"\x01" + bytes([len(codec) + 20]) + codec + \
        b"\x00" * 20


EMAIL = (b"Return-Path: <fictional@example.test>\r\n"
         b"Received: from mail.example.test by mx.example.test; Sun, 1 Mar 2026 08:00:00\r\n"
         b"From: Fictional Sender <fictional@example.test>\r\n"
         b"To: Fictional Client <client@example.test>\r\n"
         b"Subject: you will regret this (fictional)\r\n"
         b"Date: Sun, 1 Mar 2026 08:15:00 +0100\r\n"
         b"Message-ID: <1@example.test>\r\n"
         b"MIME-Version: 1.0\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n"
         b"\r\n"
         b"Fictional message body.\r\n")

ACCEPTED = [
    (b"\xff\xd8\xff\xe1\x00\x18Exif\x00\x00", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
    (b"GIF89a\x01\x00\x01\x00", "image/gif"),
    (b"GIF87a\x01\x00\x01\x00", "image/gif"),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
    (ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
    (ftyp(b"mif1", b"mif1", b"heic"), "image/heic"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
    (b"\xff\xfb\x90\x64" + b"\x00" * 100, "audio/mpeg"),
    (ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "audio/mp4"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
    (ogg(b"\x01vorbis"), "audio/ogg"),
    (ogg(b"OpusHead"), "audio/ogg"),
    (ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), "video/mp4"),
    (ftyp(b"mp42", b"mp42", b"isom"), "video/mp4"),
    (ftyp(b"qt  ", b"qt  "), "video/quicktime"),
    (b"\x00\x00\x00\x08wide\x00\x00\x10\x00mdat", "video/quicktime"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
     b"\x42\x82\x84webm\x42\x87\x81\x04", "video/webm"),
    ("Fictional note — written on the bus, 21:40.\n".encode(), "text/plain"),
    ("\ufeffFictional note with a byte-order mark\n".encode(), "text/plain"),
    (b"The car was for free at the garage (fictional).\n", "text/plain"),  # not a MOV atom
    (b"Note: %PDF- is only text here\n", "text/plain"),
    (b"From: someone\nnot a header line\n", "text/plain"),
    (EMAIL, "message/rfc822"),
]


@pytest.mark.parametrize(("head", "media_type"), ACCEPTED)
def test_accepted_formats(head: bytes, media_type: str) -> None:
    found = filetypes.detect(head, complete=True)
    assert found is not None and found.media_type == media_type


REFUSED = [
    b"PK\x03\x04\x14\x00\x00\x00",                   # zip, docx, apk
    b"MZ\x90\x00\x03\x00\x00\x00",                   # Windows program
    b"\x7fELF\x02\x01\x01\x00",                      # Linux program
    ftyp(b"avif", b"avif", b"mif1"),                 # AVIF image (not on the list)
    ftyp(b"3gp5", b"3gp5"),                          # 3GPP video
    b"\x1a\x45\xdf\xa3\x9f\x42\x82\x88matroska",     # Matroska (not WebM)
    ogg(b"\x80theora"),                              # Ogg video
    b"\xff\xf1\x50\x80",                             # AAC in ADTS (not MP3)
    "Fictional note".encode("utf-16"),               # UTF-16 (NUL bytes)
    b"Fictional \x1b[31mterminal\x1b[0m output\n",    # control bytes
    b"\xc3\x28 invalid UTF-8 in the middle of the text",
    b"",
]


@pytest.mark.parametrize("head", REFUSED)
def test_refused_formats(head: bytes) -> None:
    assert filetypes.detect(head, complete=True) is None


def test_random_bytes_are_refused() -> None:
    refused = sum(filetypes.detect(os.urandom(8192), complete=False) is None
                  for _ in range(200))
    assert refused >= 195  # an MP3 frame header can start random bytes by chance


def test_a_character_cut_by_the_sniff_window_is_still_text() -> None:
    head = ("x" * (filetypes.SNIFF_BYTES - 1) + "é").encode()[: filetypes.SNIFF_BYTES]
    assert head[-1:] == b"\xc3"  # the first byte of a two-byte character
    found = filetypes.detect(head, complete=False)
    assert found is not None and found.media_type == "text/plain"
    assert filetypes.detect(head, complete=True) is None  # but not at the end of a file


def test_every_type_has_an_extension_for_the_download_name() -> None:
    assert len({t.extension for t in filetypes.ALLOWED}) == len(filetypes.ALLOWED)
    assert set(filetypes.BY_MEDIA_TYPE) == {t.media_type for t in filetypes.ALLOWED}
