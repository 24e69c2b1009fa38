"""Staff password hashing (Argon2id) and the password policy.

Hashing follows OWASP's minimum for Argon2id (19 MiB of memory, two passes, one
lane); a stored hash carries its own parameters, so raising them later only needs
:func:`needs_rehash` at the next successful login.

The policy follows NIST SP 800-63B: length matters, composition rules do not. A
password is refused when it is shorter than 12 or longer than 128 characters, one
of the most common passwords, the account's email address (or its local part), or a
single character repeated. Lengths are counted, and passwords hashed, after Unicode
NFKC normalisation, so the same password typed on another keyboard or input method
(full-width letters, composed or decomposed accents) still matches.

Nothing here ever puts a password in a message, a log line or an exception.
"""

from __future__ import annotations

import secrets
import unicodedata
from functools import lru_cache
from importlib import resources
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from app.core.errors import Invalid

# Argon2id parameters: OWASP Password Storage Cheat Sheet, first recommended option.
ARGON2_MEMORY_COST = 19456  # KiB (19 MiB)
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
ARGON2_HASH_LEN = 32
ARGON2_SALT_LEN = 16

MIN_LENGTH = 12
MAX_LENGTH = 128
COMMON_PASSWORDS_FILE = "data/common-passwords.txt"

_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_COST,
    parallelism=ARGON2_PARALLELISM,
    hash_len=ARGON2_HASH_LEN,
    salt_len=ARGON2_SALT_LEN,
    type=Type.ID,
)

# Only its cost matters: burn_verify_time never expects it to match.
_DUMMY_PASSWORD = secrets.token_urlsafe(24)


def normalise_password(password: str) -> str:
    """NFKC form: what is hashed, and what the length rules count."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    """Argon2id hash of the NFKC-normalised password, with a fresh random salt.

    Raises ``ValueError`` for text that is not valid Unicode (lone surrogates);
    :func:`password_problems` refuses such passwords first.
    """
    return _hasher.hash(normalise_password(password))


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches; False, never an exception, for a garbled hash.

    A damaged or foreign value in the database must look like a wrong password to
    the login code, not like a server error that tells the account exists.
    """
    try:
        return _hasher.verify(stored_hash, normalise_password(password))
    except (VerificationError, InvalidHashError, UnicodeError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether a hash was made with other parameters than today's.

    Called after a successful verification, when the plain password is at hand to
    hash again; an unreadable hash also answers True, so it gets replaced.
    """
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except (InvalidHashError, UnicodeError):
        return True


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(_DUMMY_PASSWORD)


def burn_verify_time() -> None:
    """Spend the time of one password verification, for an email that has no account.

    Without it a login for an unknown email answers ~40 ms sooner than a wrong
    password, which tells an attacker which emails belong to staff. The dummy hash
    is made once per process, with the current parameters, on first use.
    """
    verify_password(_dummy_hash(), _DUMMY_PASSWORD + "!")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The common-password list shipped with the package, lowercase, loaded once."""
    text = resources.files("app.core").joinpath(COMMON_PASSWORDS_FILE).read_text("utf-8")
    return frozenset(
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def _is_valid_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def password_problems(password: str, *, email: str | None = None) -> list[str]:
    """Everything wrong with a new password, as messages fit to show the person.

    The messages are fixed sentences: they never quote the password or the email.
    An empty list means the password is acceptable.
    """
    if not _is_valid_text(password):
        return ["The password contains characters that are not valid text."]
    normalised = normalise_password(password)
    problems: list[str] = []
    length = len(normalised)
    if length < MIN_LENGTH:
        problems.append(f"Use at least {MIN_LENGTH} characters.")
    elif length > MAX_LENGTH:
        problems.append(f"Use at most {MAX_LENGTH} characters.")
    folded = normalised.casefold()
    if folded in common_passwords() or normalised.lower() in common_passwords():
        problems.append("This is one of the most commonly used passwords; choose another.")
    if email:
        address = unicodedata.normalize("NFKC", email).strip().casefold()
        local_part = address.rpartition("@")[0] if "@" in address else address
        if folded in {part for part in (address, local_part) if part}:
            problems.append("The password must not be your email address or part of it.")
    if length > 1 and len(set(normalised)) == 1:
        problems.append("The password must not be a single character repeated.")
    return problems


def require_acceptable_password(
    password: str, *, field: str = "password", email: str | None = None
) -> None:
    """Raise ``Invalid`` (422) listing every policy problem, for the field named."""
    problems = password_problems(password, email=email)
    if problems:
        errors: list[dict[str, Any]] = [
            {"field": field, "location": "body", "message": message, "type": "password_policy"}
            for message in problems
        ]
        raise Invalid("The password does not meet the password policy.", errors=errors)
