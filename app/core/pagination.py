"""Cursor (keyset) pagination for the ``{"items": [...], "next_cursor": ...}`` shape.

A cursor is opaque to callers: the sort-key values of the last row returned,
bound to the listing it came from and signed with the server's secret, so a
cursor cannot be forged, edited or replayed against another listing. A cursor
that fails any check is a 400 problem, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

import sqlalchemy as sa
from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.core.errors import InvalidCursor
from app.settings import get_settings

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 1024
_SIGNATURE_BYTES = 16


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_LENGTH, description="next_cursor of the previous page"),
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor or None)


PageParamsDep = Annotated[PageParams, Depends(page_params)]


def _encode_value(value: Any) -> list[Any]:
    if isinstance(value, UUID):
        return ["u", str(value)]
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, str):
        return ["s", value]
    raise TypeError(f"cannot page on a value of type {type(value).__name__}")


def _decode_value(tagged: Any) -> Any:
    if not (isinstance(tagged, list) and len(tagged) == 2 and isinstance(tagged[0], str)):
        raise ValueError("bad value")
    tag, raw = tagged
    if tag == "u" and isinstance(raw, str):
        return UUID(raw)
    if tag == "t" and isinstance(raw, str):
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        return parsed
    if tag == "b" and isinstance(raw, bool):
        return raw
    if tag == "i" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if tag == "s" and isinstance(raw, str):
        return raw
    raise ValueError("bad value")


def _sign(payload: bytes, listing: str) -> bytes:
    secret = get_settings().secret_key_value().encode()
    key = hashlib.sha256(b"advocase/cursor\x00" + secret).digest()
    return hmac.new(key, listing.encode() + b"\x00" + payload, hashlib.sha256).digest()[
        :_SIGNATURE_BYTES
    ]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(listing: str, values: tuple[Any, ...]) -> str:
    payload = json.dumps([_encode_value(v) for v in values], separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_sign(payload, listing))}"


def decode_cursor(listing: str, cursor: str, arity: int) -> tuple[Any, ...]:
    """The key values inside ``cursor``; ``InvalidCursor`` unless it is ours for ``listing``."""
    try:
        payload_part, signature_part = cursor.split(".", 1)
        payload = _unb64(payload_part)
        signature = _unb64(signature_part)
    except ValueError as exc:
        raise _invalid() from exc
    if not hmac.compare_digest(signature, _sign(payload, listing)):
        raise _invalid()
    try:
        raw = json.loads(payload)
        if not isinstance(raw, list) or len(raw) != arity:
            raise ValueError("wrong arity")
        return tuple(_decode_value(item) for item in raw)
    except (ValueError, TypeError) as exc:
        raise _invalid() from exc


def _invalid() -> InvalidCursor:
    return InvalidCursor(
        "The cursor is not valid for this listing. Start again without a cursor.",
        errors=[{"field": "cursor", "location": "query", "message": "invalid cursor",
                 "type": "cursor"}],
    )


@dataclass(frozen=True)
class SortKey:
    column: Any
    descending: bool = False


def _after(keys: list[SortKey], values: tuple[Any, ...]) -> sa.ColumnElement[bool]:
    """Rows strictly after ``values`` in the order ``keys`` (mixed directions allowed)."""
    clauses = []
    for i, key in enumerate(keys):
        equal_prefix = [keys[j].column == values[j] for j in range(i)]
        column, value = key.column, values[i]
        if isinstance(value, bool):  # SQL booleans have no order: compare them as 0/1
            column, value = sa.cast(column, sa.Integer), int(value)
        step = column < value if key.descending else column > value
        clauses.append(sa.and_(*equal_prefix, step))
    return sa.or_(*clauses)


def paginate(
    db: Session,
    statement: sa.Select[Any],
    *,
    listing: str,
    keys: list[SortKey],
    params: PageParams,
    as_rows: bool = False,
) -> tuple[list[Any], str | None]:
    """Run ``statement`` one page at a time in the order of ``keys``.

    The last key must be unique (an id) so the order is total. Returns the rows
    (scalars; with ``as_rows``, whole rows of a statement of several columns, each
    sort key among them by name) of this page and the cursor of the next one, or None
    at the end.
    """
    if params.cursor:
        values = decode_cursor(listing, params.cursor, len(keys))
        statement = statement.where(_after(keys, values))
    order = [k.column.desc() if k.descending else k.column.asc() for k in keys]
    statement = statement.order_by(*order).limit(params.limit + 1)
    rows = list(db.execute(statement) if as_rows else db.scalars(statement))
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        last = rows[-1]
        next_cursor = encode_cursor(
            listing, tuple(getattr(last, k.column.key) for k in keys)
        )
    return rows, next_cursor
