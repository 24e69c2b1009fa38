"""What a request costs: the SQL statements it sends and the fields it decrypts, counted as a
fresh request would see them. For the listing-cost tests (a page must cost the same few
statements whatever its size)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.core import keys

# Transaction control (the test's savepoints), not work the request asks for.
CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN", "COMMIT",
           "ROLLBACK")


@dataclass
class Cost:
    texts: list[str] = field(default_factory=list)  # each statement, whitespace folded
    decrypted: int = 0

    @property
    def statements(self) -> int:
        return len(self.texts)


@contextmanager
def counting(engine: Engine, db: Session, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cost]:
    """The SQL statements and field decryptions of what runs inside, as a fresh request
    would see them (what the test's session learnt about keys is forgotten)."""
    cost = Cost()
    db.info.pop(keys._MEMO_KEY, None)
    keys.clear_key_caches()

    def statement(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        if not text.lstrip().upper().startswith(CONTROL):
            cost.texts.append(" ".join(text.split()))

    opening = keys.decrypt_field

    def decrypt(*args: Any, **kwargs: Any) -> Any:
        cost.decrypted += 1
        return opening(*args, **kwargs)

    monkeypatch.setattr(keys, "decrypt_field", decrypt)
    event.listen(engine, "before_cursor_execute", statement)
    try:
        yield cost
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        monkeypatch.setattr(keys, "decrypt_field", opening)
