"""Tables of the key hierarchy (see ``app.core.keys``): every keyset is stored wrapped.

- ``org_keyset``: one row per org, its AEAD keyset (wraps client keys) and PRF keyset
  (blind indexes), each encrypted under the key-encryption key (KEK).
- ``client_data_key``: one row per client, the client's AEAD keyset encrypted under the
  org's AEAD keyset. Shredding empties ``wrapped_keyset`` and keeps the row as a
  tombstone (``destroyed_at``), so no key is ever created again for that client.
- ``key_rotation``: one row per rotation of an org keyset, completed once every client
  key of the org has been re-wrapped under the new primary key.

``org_id`` columns carry no foreign key, as in the audit log: ``app.core`` refers to no
domain's table (a process that loads these models without ``app.identity`` must still
flush), and ``client_id`` has none because the clients table comes later.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class OrgKeyset(SQLModel, table=True):
    """An org's keysets, wrapped by the KEK. ``version`` counts AEAD primary keys (1, 2, …)."""

    __tablename__ = "org_keyset"

    org_id: UUID = Field(primary_key=True)
    version: int = Field(default=1)
    wrapped_aead_keyset: bytes = Field(sa_type=sa.LargeBinary)
    wrapped_prf_keyset: bytes = Field(sa_type=sa.LargeBinary)
    # Which KEK wrapped the keysets ("local:<key id>", later a KMS key URI): a wrong
    # master key is then named as such instead of failing as a corrupt keyset.
    kek_id: str = Field(max_length=300)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    rotated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ClientDataKey(SQLModel, table=True):
    """A client's data key, wrapped by the org keyset version ``key_version``."""

    __tablename__ = "client_data_key"
    __table_args__ = (
        sa.Index("ix_client_data_key_org_id_key_version", "org_id", "key_version"),
    )

    client_id: UUID = Field(primary_key=True)
    org_id: UUID
    wrapped_keyset: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    key_version: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    destroyed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class KeyRotation(SQLModel, table=True):
    """One rotation of an org keyset and the progress of re-wrapping its client keys."""

    __tablename__ = "key_rotation"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    org_id: UUID = Field(index=True)
    from_version: int
    to_version: int
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    rewrapped: int = Field(default=0)
