"""Password hashing (Argon2id, NFKC) and the NIST-style password policy."""

from __future__ import annotations

import re
import unicodedata

import pytest
from argon2 import PasswordHasher, Type

from app.core import passwords
from app.core.errors import Invalid
from app.core.passwords import (
    burn_verify_time,
    common_passwords,
    hash_password,
    needs_rehash,
    password_problems,
    require_acceptable_password,
    verify_password,
)

PASSWORD = "Correct Horse 9 battery"
# The same password typed with full-width characters (an East Asian input method).
FULLWIDTH = "Ｃｏｒｒｅｃｔ Ｈｏｒｓｅ ９ ｂａｔｔｅｒｙ"
EMAIL = "Maria.Lopez@Example.org"


@pytest.fixture(scope="module")
def stored() -> str:
    """One hash for the whole module: each costs tens of milliseconds."""
    return hash_password(PASSWORD)


def test_round_trip(stored: str) -> None:
    assert stored != PASSWORD and PASSWORD not in stored
    assert verify_password(stored, PASSWORD)


def test_wrong_password_is_false(stored: str) -> None:
    assert not verify_password(stored, PASSWORD + "!")


@pytest.mark.parametrize(
    "garbled",
    ["", "not a hash", "$argon2id$v=19$m=19456,t=2,p=1$abc", "$argon2x$v=19$m=1,t=1,p=1$a$b",
     "é$argon2id", "$2b$12$abcdefghijklmnopqrstuuJ6nJ0g3Qm2xqzU0Q9cE4bAo1XrG6Wue"],
)
def test_garbled_hash_is_false_not_an_error(garbled: str) -> None:
    assert verify_password(garbled, PASSWORD) is False
    assert needs_rehash(garbled) is True


def test_tampered_hash_is_false(stored: str) -> None:
    tampered = stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB")
    assert verify_password(tampered, PASSWORD) is False


def test_hash_is_argon2id_with_owasp_parameters(stored: str) -> None:
    match = re.fullmatch(
        r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)", stored
    )
    assert match, "not an Argon2id hash"
    memory, time_cost, lanes = (int(match.group(i)) for i in (1, 2, 3))
    assert memory >= 19456
    assert time_cost >= 2
    assert lanes == 1
    # Salt 16 bytes and hash 32 bytes, base64 without padding.
    assert len(match.group(4)) == 22
    assert len(match.group(5)) == 43


def test_needs_rehash(stored: str) -> None:
    assert needs_rehash(stored) is False
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    old = weaker.hash(PASSWORD)
    assert needs_rehash(old) is True
    # Old hashes still verify: the login code rehashes them after a success.
    assert verify_password(old, PASSWORD)


def test_nfkc_equivalent_input_verifies(stored: str) -> None:
    assert FULLWIDTH != PASSWORD
    assert verify_password(stored, FULLWIDTH)


def test_composed_and_decomposed_accents_match() -> None:
    composed = "Café olé tous les matins"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert verify_password(hash_password(decomposed), composed)


def test_burn_verify_time_makes_the_dummy_hash_once() -> None:
    burn_verify_time()
    first = passwords._dummy_hash()
    burn_verify_time()
    assert passwords._dummy_hash() is first
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


# Policy


def test_common_password_list() -> None:
    common = common_passwords()
    assert len(common) >= 10_000
    assert "password" in common and "123456" in common
    assert all(entry == entry.lower() and not entry.startswith("#") for entry in common)
    assert common_passwords() is common


def test_length_is_counted_after_nfkc() -> None:
    assert "Use at least 12 characters." in password_problems("Tq7!mZ2#pLx")
    assert password_problems("Tq7!mZ2#pLxw") == []
    too_long = ("Tq7!mZ2#pLxw" * 11)[:129]
    assert password_problems(too_long) == ["Use at most 128 characters."]
    assert password_problems(too_long[:128]) == []
    # "ﬃ" is one character that NFKC turns into three.
    assert password_problems("ﬃ" * 4 + "Zq7") == []


def test_common_password_refused_case_insensitively() -> None:
    long_common = sorted(p for p in common_passwords() if len(p) >= 12)
    assert len(long_common) >= 50, "the list should hold passwords of 12+ characters"
    assert "1qaz2wsx3edc" in long_common
    for candidate in ("1qaz2wsx3edc", "1QAZ2WSX3EDC", long_common[-1]):
        problems = password_problems(candidate)
        assert any("commonly used" in p for p in problems), candidate


def test_email_and_local_part_refused() -> None:
    for candidate in ("maria.lopez@example.org", "MARIA.LOPEZ@EXAMPLE.ORG", "Maria.Lopez"):
        problems = password_problems(candidate, email=EMAIL)
        assert any("email address" in p for p in problems), candidate
    assert password_problems("Maria.Lopez.sings", email=EMAIL) == []


def test_single_repeated_character_refused() -> None:
    problems = password_problems("ZZZZZZZZZZZZZZ")
    assert "The password must not be a single character repeated." in problems


def test_invalid_text_refused() -> None:
    assert password_problems("\ud800" * 12) == [
        "The password contains characters that are not valid text."
    ]


def test_require_acceptable_password_raises_invalid_without_the_password() -> None:
    secret = "maria.lopez@example.org"
    with pytest.raises(Invalid) as caught:
        require_acceptable_password(secret, field="new_password", email=EMAIL)
    error = caught.value
    assert error.status == 422
    assert error.errors
    for item in error.errors:
        assert item["field"] == "new_password"
        assert item["location"] == "body"
        assert item["type"] == "password_policy"
    body = error.to_response().body.decode()
    assert secret not in body.lower() and "maria" not in body.lower()
    require_acceptable_password("Maria.Lopez.sings", email=EMAIL)


@pytest.mark.parametrize(
    "candidate",
    ["short1", "1qaz2wsx3edc", "maria.lopez@example.org", "ZZZZZZZZZZZZZZ", "x" * 200],
)
def test_messages_never_contain_the_password(candidate: str) -> None:
    problems = password_problems(candidate, email=EMAIL)
    assert problems
    for message in problems:
        assert candidate.lower() not in message.lower()
