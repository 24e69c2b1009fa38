"""One check that plaintext did not reach storage.

Ciphertext is random base64 (and blind indexes are hex), so a short needle such as
"6pm" or "7700" turns up in it by chance every few hundred runs. Needles must be long
enough that a chance match is negligible: at 8 characters the odds in a few kilobytes
of base64 are below one in ten million.
"""

from __future__ import annotations

from collections.abc import Iterable

SHORTEST_NEEDLE = 8


def assert_not_stored(stored: str, secrets: Iterable[str], *, ignore_case: bool = False) -> None:
    haystack = stored.lower() if ignore_case else stored
    for secret in secrets:
        assert len(secret) >= SHORTEST_NEEDLE, (
            f"needle {secret!r} is too short to tell plaintext from chance in ciphertext")
        needle = secret.lower() if ignore_case else secret
        assert needle not in haystack, f"plaintext {secret!r} found in storage"
