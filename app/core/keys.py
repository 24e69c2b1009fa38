"""The key hierarchy and field encryption for client data, on Google Tink.

::

    KEK (key-encryption key): the local master key, or later a cloud KMS / Vault key
     └─ org keyset (one per agency), wrapped by the KEK, in ``org_keyset``
         ├─ AEAD keyset (AES256_GCM)       wraps client data keys; rotated by `keys rotate`
         └─ PRF keyset (HMAC_SHA256_PRF)   blind indexes for exact-match search
          └─ client data key (one per client): AEAD keyset (AES256_GCM) wrapped by the
             org AEAD keyset, associated data = org id + client id, in ``client_data_key``
              └─ field ciphertexts: associated data = table, column, row id, client id

No keyset is ever stored in clear: each is serialised with
``tink.proto_keyset_format.serialize_encrypted`` under the key above it, with
associated data naming its owner, so a wrapped keyset copied to another org's or
client's row does not open. Field ciphertexts are text (``c1.`` + base64url of the
Tink ciphertext) for a Text column; a ciphertext moved to another row, column or
client raises :class:`DecryptionError`.

The KEK. :class:`LocalKekProvider` builds a Tink AES256_GCM keyset from 32 bytes that
HKDF-SHA256 derives from ``ADVOCASE_MASTER_KEY`` (``settings.master_key_value()``):
the same secret gives the same key in every process and after every restart, and
nothing about it is stored. Org keysets record which KEK wrapped them (``kek_id``, a
key id derived from the secret, never the key), so a wrong master key is reported as
a configuration error rather than as corrupt data. A cloud KMS or Vault replaces the
local key through the :class:`KekProvider` interface: an object with a ``kek_id`` and
an ``aead()`` returning a ``tink.aead.Aead`` whose ``encrypt``/``decrypt`` call the
KMS. Tink ships those AEADs (``tink.integration.gcpkms.GcpKmsClient(uri,
credentials).get_aead(uri)``, ``tink.integration.awskms.AwsKmsClient``,
``tink.integration.hcvault`` for Vault transit); wiring one means returning it from
:func:`kek_provider_from_settings` for its URI scheme in ``ADVOCASE_KMS_KEY_URI`` and
re-wrapping the org keysets once (only they are wrapped by the KEK, and they are
cached, so the KMS is called once per org per process and cache lifetime). Until
then any ``ADVOCASE_KMS_KEY_URI`` is refused with a ConfigurationError.

Caches. Unwrapped keysets are kept in two bounded, time-limited in-process LRU caches
keyed by (org or client id, version, wrapped bytes): a key is reused only for exactly
the row it was unwrapped from, so a rolled-back creation or a re-wrap can never serve
a stale key. Each session (one request, task or command) reads a client's or org's
key row once and remembers the answer in ``Session.info`` (forgotten on rollback): a
record of twenty fields costs one primary-key query and, in a warm process, no unwrap
at all; and a key shredded by another process is refused from that process's next
session on (a long-lived session keeps what it learnt until it ends or rolls back).

Crypto-shredding and its limits. :func:`shred_client_key` empties the client's
wrapped keyset and marks the row destroyed; every ciphertext of that client,
wherever it was copied (exports, replicas, later backups), is then noise, because
the client key existed nowhere else in the live system. What this cannot undo by
itself:

- a database backup (or replica snapshot, or PITR/WAL archive) taken BEFORE the shred
  still holds the wrapped client key, and the org keyset and the master key that
  open it. Restoring it restores the client. Mitigations: backups encrypted under a
  backup key and expired within the agency's retention window (the erasure is then
  complete when the last older backup expires), and a restore procedure that
  replays the erasures made since the backup from an erasure journal kept outside
  the database and its backups (client ids only, e.g. exported from the
  ``keys.client_key_destroyed`` audit events, which a restore would roll back too).
  ``advocase restore`` over the live database does this by itself: it reads the
  target's destroyed keys first and purges again every client the backup brings back
  (``app.ops.backup``); a restore where that database is lost cannot know them;
- PostgreSQL keeps the old row version until VACUUM reuses the space, and the WAL
  keeps it until recycled; SQLite is asked for ``secure_delete`` on the connection
  that shreds, but an un-checkpointed WAL frame may still hold the old page.

Rotation. :func:`rotate_org_keys` adds a new AES256_GCM key to an org's AEAD keyset
and makes it primary (Tink keyset rotation: old keys stay, so every wrapped client
key still opens), bumps the version, records a ``key_rotation`` row, and queues the
``keys.reencrypt_batch`` task that re-wraps the org's client keys under the new
primary, batch by batch (idempotent, resumable). Old keys are not retired yet:
removing them from the keyset once ``keys status`` shows no client key on an older
version is what would make a leaked old org key useless (a later change). The PRF
keyset is not rotated: a new PRF key changes every blind index, which needs the
plaintexts to recompute. Client keys are never rotated either (a suspected leak of one
would need its fields re-encrypted under a fresh key: not built yet).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import sqlalchemy as sa
import tink
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from google.protobuf.message import DecodeError
from sqlalchemy import event
from sqlalchemy.orm import Session
from tink import aead, prf, secret_key_access
from tink.proto import aes_gcm_pb2, tink_pb2

from app.core import audit
from app.core.deferred import enqueue_after_commit
from app.core.errors import NotFound
from app.core.key_models import ClientDataKey, KeyRotation, OrgKeyset
from app.db import utcnow
from app.settings import ConfigurationError, Settings, get_settings

aead.register()
prf.register()

REENCRYPT_TASK = "keys.reencrypt_batch"  # same name as workers.celery_app.KEYS_REENCRYPT_TASK
REWRAP_BATCH_SIZE = 500
CIPHERTEXT_PREFIX = "c1."
BLIND_INDEX_BYTES = 32

_AES_GCM_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmKey"
_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_MEMO_KEY = "advocase.keys"


class DecryptionError(Exception):
    """A ciphertext or wrapped key does not open here: moved, altered, or its key is missing."""


class KeyDestroyed(DecryptionError):
    """The client's data key was shredded: what it protected is gone for good (API: 404)."""


# --- the key-encryption key ---------------------------------------------------------------


class KekProvider(Protocol):
    """Where the key-encryption key lives. ``aead()`` wraps and unwraps org keysets only.

    ``kek_id`` names the key without revealing it ("local:<id>", or a KMS key URI); it
    is stored next to each wrapped org keyset. A KMS provider returns Tink's KMS AEAD
    (``GcpKmsClient(uri, credentials).get_aead(uri)`` and friends) from ``aead()``.
    """

    @property
    def kek_id(self) -> str: ...

    def aead(self) -> aead.Aead: ...


def _hkdf(secret: str, purpose: str, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"advocase-v1",
                info=purpose.encode()).derive(secret.encode())


class LocalKekProvider:
    """The KEK derived from the master secret: same secret, same key, in every process."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ConfigurationError("the master key is empty")
        key_value = _hkdf(secret, "advocase/kek/tink-aes256-gcm/v1", 32)
        key_id = int.from_bytes(_hkdf(secret, "advocase/kek/tink-key-id/v1", 4), "big")
        key_id = (key_id & 0x7FFFFFFF) or 1
        keyset = tink_pb2.Keyset(primary_key_id=key_id, key=[tink_pb2.Keyset.Key(
            key_data=tink_pb2.KeyData(
                type_url=_AES_GCM_TYPE_URL,
                value=aes_gcm_pb2.AesGcmKey(version=0, key_value=key_value).SerializeToString(),
                key_material_type=tink_pb2.KeyData.SYMMETRIC),
            status=tink_pb2.ENABLED, key_id=key_id, output_prefix_type=tink_pb2.TINK)])
        handle = tink.proto_keyset_format.parse(keyset.SerializeToString(),
                                                secret_key_access.TOKEN)
        self._aead = handle.primitive(aead.Aead)
        self._kek_id = f"local:{key_id:08x}"

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def aead(self) -> aead.Aead:
        return self._aead


# Schemes Tink has KMS clients for; advocase does not wire them yet.
_TINK_KMS_SCHEMES = {"gcp-kms": "tink.integration.gcpkms", "aws-kms": "tink.integration.awskms",
                     "hcvault": "tink.integration.hcvault"}


def kms_key_uri(settings: Settings) -> str | None:
    """``ADVOCASE_KMS_KEY_URI`` (a settings field once one is declared, else the environment)."""
    return getattr(settings, "kms_key_uri", None) or os.environ.get("ADVOCASE_KMS_KEY_URI") or None


def kek_provider_from_settings(settings: Settings | None = None) -> KekProvider:
    """The configured KEK: the local master key unless ``ADVOCASE_KMS_KEY_URI`` is set."""
    settings = settings or get_settings()
    uri = kms_key_uri(settings)
    if uri:
        # The URI itself is not echoed: configuration messages never carry values.
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if scheme in _TINK_KMS_SCHEMES:
            raise ConfigurationError(
                f"ADVOCASE_KMS_KEY_URI: {scheme}:// keys are supported by Tink "
                f"({_TINK_KMS_SCHEMES[scheme]}) but not wired into advocase yet; unset it to "
                "use the local master key (see KekProvider in app/core/keys.py)")
        raise ConfigurationError(
            "ADVOCASE_KMS_KEY_URI: unsupported key URI scheme; no KMS is wired into "
            "advocase yet, unset it to use the local master key")
    return LocalKekProvider(settings.master_key_value())


_provider_lock = threading.Lock()
_provider: KekProvider | None = None


def kek_provider() -> KekProvider:
    """The process's KEK provider, built from settings on first use."""
    global _provider
    if _provider is None:
        with _provider_lock:
            if _provider is None:
                _provider = kek_provider_from_settings()
    return _provider


def use_kek_provider(provider: KekProvider | None) -> None:
    """Replace the KEK provider (tests, a KMS wired at start-up); None: back to settings."""
    global _provider
    with _provider_lock:
        _provider = provider
    clear_key_caches()


# --- caches --------------------------------------------------------------------------------


class _KeyCache:
    """A small thread-safe LRU of unwrapped key primitives, each kept at most ``ttl`` s."""

    def __init__(self, maxsize: int, ttl: float) -> None:
        self.maxsize, self.ttl = maxsize, ttl
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def evict(self, owner: UUID) -> None:
        """Forget every entry of one org or client (keys are tuples starting with its id)."""
        with self._lock:
            for key in [k for k in self._entries if isinstance(k, tuple) and k[0] == owner]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_org_cache = _KeyCache(maxsize=256, ttl=600)
_client_cache = _KeyCache(maxsize=4096, ttl=600)


def clear_key_caches() -> None:
    """Forget every unwrapped key of this process (a fresh process, as far as keys go)."""
    _org_cache.clear()
    _client_cache.clear()


def _memo(db: Session) -> dict[tuple[str, UUID], Any]:
    return db.info.setdefault(_MEMO_KEY, {})


@event.listens_for(Session, "after_soft_rollback")
def _forget_memo(session: Session, previous_transaction: Any) -> None:
    # What this session learnt about key rows may have been rolled back with it.
    session.info.pop(_MEMO_KEY, None)


_DESTROYED = object()


@dataclass(frozen=True)
class _OrgKeys:
    org_id: UUID
    version: int
    wrapping: aead.Aead
    prf_set: prf.PrfSet


@dataclass(frozen=True)
class _ClientKey:
    org_id: UUID
    aead: aead.Aead


# --- associated data -----------------------------------------------------------------------


def _ad(*parts: object) -> bytes:
    # Each part prefixed with its length: unambiguous whatever the parts contain.
    texts = [str(part) for part in parts]
    return "".join(f"{len(text)}:{text}" for text in texts).encode()


def _org_ad(org_id: UUID, purpose: str) -> bytes:
    return _ad("advocase/org-keyset/v1", purpose, org_id)


def _client_ad(org_id: UUID, client_id: UUID) -> bytes:
    return _ad("advocase/client-key/v1", org_id, client_id)


def _field_ad(table: str, column: str, row_id: object, client_id: UUID) -> bytes:
    return _ad("advocase/field/v1", table, column, row_id, client_id)


# --- org keysets ---------------------------------------------------------------------------


def _insert(db: Session) -> Any:
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _wrap(handle: tink.KeysetHandle, wrapping: aead.Aead, associated_data: bytes) -> bytes:
    return tink.proto_keyset_format.serialize_encrypted(handle, wrapping, associated_data)


def _check_kek(provider: KekProvider, kek_id: str) -> None:
    if kek_id != provider.kek_id:
        raise ConfigurationError(
            f"org keys were wrapped by key-encryption key {kek_id}, but the configured one is "
            f"{provider.kek_id}: is ADVOCASE_MASTER_KEY the one this database was created with?")


def _create_org_keyset(db: Session, org_id: UUID) -> None:
    provider = kek_provider()
    kek = provider.aead()
    aead_handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    prf_handle = tink.new_keyset_handle(prf.prf_key_templates.HMAC_SHA256)
    table = OrgKeyset.__table__
    result = db.execute(_insert(db)(table).values(
        org_id=org_id, version=1, kek_id=provider.kek_id, created_at=utcnow(),
        wrapped_aead_keyset=_wrap(aead_handle, kek, _org_ad(org_id, "aead")),
        wrapped_prf_keyset=_wrap(prf_handle, kek, _org_ad(org_id, "prf")),
    ).on_conflict_do_nothing(index_elements=["org_id"]).returning(table.c.org_id))
    if result.first() is not None:  # (rowcount is not reliable here on psycopg)
        audit.append(db, action="keys.org_keyset_created", org_id=org_id,
                     object_type="org_keyset", object_id=org_id)


_ORG_COLUMNS = [OrgKeyset.__table__.c[name] for name in
                ("version", "wrapped_aead_keyset", "wrapped_prf_keyset", "kek_id")]


def _org_row(db: Session, org_id: UUID, *, for_update: bool = False) -> sa.Row[Any] | None:
    query = sa.select(*_ORG_COLUMNS).where(OrgKeyset.__table__.c.org_id == org_id)
    if for_update:
        query = query.with_for_update()
    return db.execute(query).first()


def _org_keys(db: Session, org_id: UUID, *, create: bool = True) -> _OrgKeys:
    memo = _memo(db)
    known = memo.get(("org", org_id))
    if known is not None:
        return known
    row = _org_row(db, org_id)
    if row is None:
        if not create:
            raise DecryptionError("this org has no keys")
        _create_org_keyset(db, org_id)
        row = _org_row(db, org_id)
        assert row is not None
    cache_key = (org_id, row.version, row.wrapped_aead_keyset, row.wrapped_prf_keyset)
    keys = _org_cache.get(cache_key)
    if keys is None:
        provider = kek_provider()
        _check_kek(provider, row.kek_id)
        try:
            aead_handle = tink.proto_keyset_format.parse_encrypted(
                row.wrapped_aead_keyset, provider.aead(), _org_ad(org_id, "aead"))
            prf_handle = tink.proto_keyset_format.parse_encrypted(
                row.wrapped_prf_keyset, provider.aead(), _org_ad(org_id, "prf"))
        except tink.TinkError as exc:
            raise DecryptionError("the org keyset does not open: altered or moved") from exc
        keys = _OrgKeys(org_id, row.version, aead_handle.primitive(aead.Aead),
                        prf_handle.primitive(prf.PrfSet))
        _org_cache.put(cache_key, keys)
    memo[("org", org_id)] = keys
    return keys


# --- client data keys ----------------------------------------------------------------------


_CLIENT_COLUMNS = [ClientDataKey.__table__.c[name] for name in
                   ("org_id", "wrapped_keyset", "key_version", "destroyed_at")]


def _client_row(db: Session, client_id: UUID, *, for_update: bool = False) -> sa.Row[Any] | None:
    query = sa.select(*_CLIENT_COLUMNS).where(ClientDataKey.__table__.c.client_id == client_id)
    if for_update:
        query = query.with_for_update()
    return db.execute(query).first()


def create_client_key(db: Session, *, org_id: UUID, client_id: UUID) -> None:
    """Give a client a data key now (``encrypt_field`` also does it on first use)."""
    _client_key(db, org_id=org_id, client_id=client_id, create=True)


def _new_client_key(db: Session, org_id: UUID, client_id: UUID) -> None:
    org = _org_keys(db, org_id)
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    db.execute(_insert(db)(ClientDataKey.__table__).values(
        client_id=client_id, org_id=org_id, key_version=org.version, created_at=utcnow(),
        wrapped_keyset=_wrap(handle, org.wrapping, _client_ad(org_id, client_id)),
    ).on_conflict_do_nothing(index_elements=["client_id"]))


def _remember_client_key(db: Session, org_id: UUID, client_id: UUID,
                         row: sa.Row[Any]) -> _ClientKey | None:
    """Open the client key ``row`` holds and remember it for the session; None (also
    remembered) when the key was destroyed."""
    memo = _memo(db)
    if row.destroyed_at is not None or row.wrapped_keyset is None:
        memo[("client", client_id)] = _DESTROYED
        _client_cache.evict(client_id)
        return None
    if row.org_id != org_id:
        raise DecryptionError("this client's data key belongs to another org")
    cache_key = (client_id, row.key_version, row.wrapped_keyset)
    known: _ClientKey | None = _client_cache.get(cache_key)
    if known is None:
        org = _org_keys(db, org_id, create=False)
        try:
            handle = tink.proto_keyset_format.parse_encrypted(
                row.wrapped_keyset, org.wrapping, _client_ad(org_id, client_id))
        except tink.TinkError as exc:
            raise DecryptionError("the client's data key does not open: altered or "
                                  "moved") from exc
        known = _ClientKey(org_id, handle.primitive(aead.Aead))
        _client_cache.put(cache_key, known)
    memo[("client", client_id)] = known
    return known


def _client_key(db: Session, *, org_id: UUID, client_id: UUID, create: bool) -> aead.Aead:
    memo = _memo(db)
    known = memo.get(("client", client_id))
    if known is _DESTROYED:
        raise KeyDestroyed("this client's data key was destroyed")
    if known is None:
        row = _client_row(db, client_id)
        if row is None:
            if not create:
                raise DecryptionError("this client has no data key")
            _new_client_key(db, org_id, client_id)
            row = _client_row(db, client_id)
            assert row is not None
        known = _remember_client_key(db, org_id, client_id, row)
        if known is None:
            raise KeyDestroyed("this client's data key was destroyed")
    if known.org_id != org_id:
        raise DecryptionError("this client's data key belongs to another org")
    return known.aead


CLIENT_KEY_COLUMNS = tuple(c.label(f"key_{c.name}") for c in _CLIENT_COLUMNS)
"""A client's key row, to select beside the client's own row (outer join on
``client_data_key.client_id``) for :func:`decrypt_client_column`."""


def decrypt_client_column(db: Session, *, org_id: UUID, table: str, column: str,
                          rows: Iterable[Any]) -> Iterator[tuple[UUID, str | None]]:
    """A bulk read of one encrypted column of many clients' own rows (the row id is the
    client id): each row has ``client_id``, ``ciphertext`` and ``CLIENT_KEY_COLUMNS``, so
    one streamed query serves any number of clients. Yields the client id and the
    plaintext, None where there is none or the client's key was destroyed. Keys are opened
    and dropped, not remembered: a report over 100,000 clients would otherwise hold
    100,000 of them. A missing, altered or moved key or field raises
    :class:`DecryptionError`, as :func:`decrypt_field` does."""
    wrapping: aead.Aead | None = None
    for row in rows:
        client_id = row.client_id
        if row.ciphertext is None:
            yield client_id, None
            continue
        if row.key_org_id is None:
            raise DecryptionError("this client has no data key")
        if row.key_destroyed_at is not None or row.key_wrapped_keyset is None:
            yield client_id, None
            continue
        if row.key_org_id != org_id:
            raise DecryptionError("this client's data key belongs to another org")
        if not row.ciphertext.startswith(CIPHERTEXT_PREFIX):
            raise DecryptionError("not an advocase field ciphertext")
        try:
            known: _ClientKey | None = _client_cache.get(
                (client_id, row.key_key_version, row.key_wrapped_keyset))
            if wrapping is None and known is None:
                wrapping = _org_keys(db, org_id, create=False).wrapping
            sealed = base64.b64decode(row.ciphertext[len(CIPHERTEXT_PREFIX):], altchars=b"-_",
                                      validate=True)
            field_ad = _field_ad(table, column, str(client_id), client_id)
            if known is not None:
                plain = known.aead.decrypt(sealed, field_ad)
            else:
                assert wrapping is not None
                plain = _decrypt_once(row.key_wrapped_keyset, wrapping,
                                      _client_ad(org_id, client_id), sealed, field_ad)
            yield client_id, plain.decode()
        except (binascii.Error, tink.TinkError, UnicodeDecodeError) as exc:
            raise DecryptionError("a client's key or field does not open: altered, or "
                                  "moved") from exc


_AES_GCM_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmKey"
_TINK_PREFIX = b"\x01"
_GCM_IV, _GCM_TAG = 12, 16


def _decrypt_once(wrapped: bytes, wrapping: aead.Aead, key_ad: bytes, sealed: bytes,
                  field_ad: bytes) -> bytes:
    """Decrypt one ciphertext with a wrapped client keyset used once (bulk reads).

    Making a Tink primitive costs about four times the decryption itself, so the usual
    client keyset — one enabled AES-GCM key with Tink's output prefix, the only kind
    advocase makes — is opened by Tink's own wrapping AEAD and then used directly: the
    ciphertext is Tink's AES-GCM format (``0x01``, the 4-byte key id, a 12-byte IV, the
    ciphertext and its 16-byte tag), decrypted by ``cryptography``'s AES-GCM with the same
    associated data. Any other keyset (several keys, another prefix or key type) goes
    through Tink's primitive. Raises ``tink.TinkError`` where Tink would."""
    try:
        encrypted = tink_pb2.EncryptedKeyset.FromString(wrapped)
        keyset = tink_pb2.Keyset.FromString(wrapping.decrypt(encrypted.encrypted_keyset,
                                                             key_ad))
    except DecodeError as exc:
        raise tink.TinkError("the wrapped keyset does not parse") from exc
    only = keyset.key[0] if len(keyset.key) == 1 else None
    if (only is not None and only.status == tink_pb2.ENABLED
            and only.output_prefix_type == tink_pb2.TINK
            and only.key_id == keyset.primary_key_id
            and only.key_data.type_url == _AES_GCM_TYPE_URL
            and only.key_data.key_material_type == tink_pb2.KeyData.SYMMETRIC):
        key = aes_gcm_pb2.AesGcmKey.FromString(only.key_data.value)
        prefix = _TINK_PREFIX + only.key_id.to_bytes(4, "big")
        if key.version == 0 and len(key.key_value) in (16, 32):
            if len(sealed) < len(prefix) + _GCM_IV + _GCM_TAG or not sealed.startswith(prefix):
                raise tink.TinkError("decryption failed: not this key's ciphertext")
            body = sealed[len(prefix):]
            try:
                return AESGCM(key.key_value).decrypt(body[:_GCM_IV], body[_GCM_IV:], field_ad)
            except InvalidTag as exc:
                raise tink.TinkError("decryption failed") from exc
    handle = tink.proto_keyset_format.parse_encrypted(wrapped, wrapping, key_ad)
    return handle.primitive(aead.Aead).decrypt(sealed, field_ad)  # type: ignore[no-any-return]


def load_client_keys(db: Session, *, org_id: UUID, client_ids: list[UUID]) -> set[UUID]:
    """Read the data keys of many clients of one org in one query (a page of a listing),
    so opening their fields next costs no query per client. Returns the clients whose key
    was destroyed; a client with no key row, or a row of another org, is left to the field
    that needs it (which raises :class:`DecryptionError`, as it would without this)."""
    memo = _memo(db)
    wanted = [client_id for client_id in dict.fromkeys(client_ids)
              if ("client", client_id) not in memo]
    table = ClientDataKey.__table__
    if wanted:
        rows = db.execute(sa.select(table.c.client_id, *_CLIENT_COLUMNS).where(
            table.c.client_id.in_(wanted), table.c.org_id == org_id))
        for row in rows:
            _remember_client_key(db, org_id, row.client_id, row)
    return {client_id for client_id in client_ids
            if memo.get(("client", client_id)) is _DESTROYED}


# --- field encryption ----------------------------------------------------------------------


def encrypt_field(db: Session, *, org_id: UUID, client_id: UUID, table: str, column: str,
                  row_id: UUID | str | int, plaintext: str | None) -> str | None:
    """Encrypt one personal field under the client's key, bound to its table, column and row."""
    if plaintext is None:
        return None
    if not isinstance(plaintext, str):
        raise TypeError("encrypt_field takes text; use encrypt_json for lists and objects")
    key = _client_key(db, org_id=org_id, client_id=client_id, create=True)
    sealed = key.encrypt(plaintext.encode(), _field_ad(table, column, row_id, client_id))
    return CIPHERTEXT_PREFIX + base64.urlsafe_b64encode(sealed).decode()


def decrypt_field(db: Session, *, org_id: UUID, client_id: UUID, table: str, column: str,
                  row_id: UUID | str | int, ciphertext: str | None) -> str | None:
    """The plaintext of what :func:`encrypt_field` produced for the same place.

    Raises :class:`KeyDestroyed` after the client was shredded and
    :class:`DecryptionError` for a ciphertext altered or moved from elsewhere.
    """
    if ciphertext is None:
        return None
    key = _client_key(db, org_id=org_id, client_id=client_id, create=False)
    if not ciphertext.startswith(CIPHERTEXT_PREFIX):
        raise DecryptionError("not an advocase field ciphertext")
    try:
        sealed = base64.b64decode(ciphertext[len(CIPHERTEXT_PREFIX):], altchars=b"-_",
                                  validate=True)
        return key.decrypt(sealed, _field_ad(table, column, row_id, client_id)).decode()
    except (binascii.Error, tink.TinkError, UnicodeDecodeError) as exc:
        raise DecryptionError("the field does not open here: altered, or moved from another "
                              "row, column or client") from exc


def encrypt_json(db: Session, *, org_id: UUID, client_id: UUID, table: str, column: str,
                 row_id: UUID | str | int, value: Any) -> str | None:
    """:func:`encrypt_field` for a JSON value (a list, an object); None stays None."""
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return encrypt_field(db, org_id=org_id, client_id=client_id, table=table, column=column,
                         row_id=row_id, plaintext=text)


def decrypt_json(db: Session, *, org_id: UUID, client_id: UUID, table: str, column: str,
                 row_id: UUID | str | int, ciphertext: str | None) -> Any:
    """The JSON value :func:`encrypt_json` stored."""
    text = decrypt_field(db, org_id=org_id, client_id=client_id, table=table, column=column,
                         row_id=row_id, ciphertext=ciphertext)
    return None if text is None else json.loads(text)


# --- blind indexes -------------------------------------------------------------------------


def normalise_for_index(value: str) -> str:
    """What two spellings of one value have in common: NFKC, case folded, spaces collapsed."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    return " ".join(folded.split())


def blind_index(db: Session, *, org_id: UUID, kind: str, value: str) -> str:
    """A keyed, deterministic digest of ``value`` for exact-match search within one org.

    ``kind`` (e.g. ``"client-name"``) separates indexes of different facts. Hex, 64 chars.
    """
    if not _KIND.match(kind):
        raise ValueError("blind index kind must be a short lower-case identifier")
    normalised = normalise_for_index(value)
    if not normalised:
        raise ValueError("nothing to index: the value is empty")
    keys = _org_keys(db, org_id)
    data = _ad("advocase/blind-index/v1", kind, normalised)
    return keys.prf_set.primary().compute(data, BLIND_INDEX_BYTES).hex()


# --- crypto-shredding ----------------------------------------------------------------------


def shred_client_key(db: Session, client_id: UUID) -> bool:
    """Destroy a client's data key: every ciphertext of the client becomes unreadable.

    Returns False when there was no live key. The row stays as a tombstone so no new
    key is made for the client. See the module docstring for what backups still hold.
    """
    row = _client_row(db, client_id, for_update=True)
    _client_cache.evict(client_id)
    if row is None or row.destroyed_at is not None:
        return False
    if db.get_bind().dialect.name == "sqlite":
        # Freed bytes of the page are zeroed instead of left behind in the file.
        db.execute(sa.text("PRAGMA secure_delete = ON"))
    table = ClientDataKey.__table__
    db.execute(sa.update(table).where(table.c.client_id == client_id)
               .values(wrapped_keyset=None, destroyed_at=utcnow()))
    _memo(db)[("client", client_id)] = _DESTROYED
    audit.append(db, action="keys.client_key_destroyed", org_id=row.org_id,
                 object_type="client", object_id=client_id)
    return True


# --- rotation ------------------------------------------------------------------------------


def _rotated_keyset(handle: tink.KeysetHandle) -> tink.KeysetHandle:
    """The keyset plus a fresh AES256_GCM key made primary (old keys stay, for decryption).

    The keyset is in clear in this process's memory only, as it is whenever it is used.
    """
    keyset = tink_pb2.Keyset.FromString(
        tink.proto_keyset_format.serialize(handle, secret_key_access.TOKEN))
    fresh = tink_pb2.Keyset.FromString(tink.proto_keyset_format.serialize(
        tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM), secret_key_access.TOKEN))
    new_key = fresh.key[0]
    taken = {key.key_id for key in keyset.key}
    while new_key.key_id in taken:
        new_key.key_id = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF or 1
    keyset.key.append(new_key)
    keyset.primary_key_id = new_key.key_id
    return tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)


def rotate_org_keys(db: Session, org_id: UUID, *, enqueue_rewrap: bool = True) -> KeyRotation:
    """Add a new primary key to an org's AEAD keyset; client keys are re-wrapped in the
    background (``keys.reencrypt_batch``, queued on commit) and stay readable meanwhile."""
    row = _org_row(db, org_id, for_update=True)
    if row is None:
        raise NotFound("this org has no keys yet (they are created on first use)")
    provider = kek_provider()
    _check_kek(provider, row.kek_id)
    try:
        handle = tink.proto_keyset_format.parse_encrypted(
            row.wrapped_aead_keyset, provider.aead(), _org_ad(org_id, "aead"))
    except tink.TinkError as exc:
        raise DecryptionError("the org keyset does not open: altered or moved") from exc
    rotated = _rotated_keyset(handle)
    now = utcnow()
    table = OrgKeyset.__table__
    db.execute(sa.update(table).where(table.c.org_id == org_id).values(
        version=row.version + 1, rotated_at=now,
        wrapped_aead_keyset=_wrap(rotated, provider.aead(), _org_ad(org_id, "aead"))))
    rotation = KeyRotation(org_id=org_id, from_version=row.version, to_version=row.version + 1,
                           started_at=now)
    db.add(rotation)
    db.flush()
    _memo(db).pop(("org", org_id), None)
    _org_cache.evict(org_id)
    audit.append(db, action="keys.org_keyset_rotated", org_id=org_id, object_type="org_keyset",
                 object_id=org_id, details={"from_version": row.version,
                                            "to_version": row.version + 1})
    if enqueue_rewrap:
        enqueue_after_commit(db, REENCRYPT_TASK, org_id, None)
    return rotation


def rotate_all_org_keys(db: Session, *, enqueue_rewrap: bool = True) -> list[KeyRotation]:
    """Rotate the keyset of every org that has one (``advocase keys rotate``)."""
    org_ids = db.execute(sa.select(OrgKeyset.__table__.c.org_id)
                         .order_by(OrgKeyset.__table__.c.org_id)).scalars().all()
    return [rotate_org_keys(db, org_id, enqueue_rewrap=enqueue_rewrap) for org_id in org_ids]


@dataclass(frozen=True)
class RewrapBatch:
    org_id: UUID
    rewrapped: int
    done: bool
    next_after: UUID | None  # where the next batch starts (None: from the beginning)


def rewrap_client_keys(db: Session, *, org_id: UUID, after_client_id: UUID | None = None,
                       limit: int | None = None) -> RewrapBatch:
    """Re-wrap up to ``limit`` client keys still on an older org key version, in client id
    order after ``after_client_id``. Idempotent: rows already current are left alone."""
    limit = limit or REWRAP_BATCH_SIZE
    _memo(db).pop(("org", org_id), None)  # the version must be the committed one
    org = _org_keys(db, org_id, create=False)
    table = ClientDataKey.__table__
    pending = sa.and_(table.c.org_id == org_id, table.c.key_version < org.version,
                      table.c.wrapped_keyset.is_not(None), table.c.destroyed_at.is_(None))
    query = sa.select(table.c.client_id, table.c.wrapped_keyset, table.c.key_version) \
        .where(pending).order_by(table.c.client_id).limit(limit).with_for_update()
    if after_client_id is not None:
        query = query.where(table.c.client_id > after_client_id)
    rows = db.execute(query).all()
    for row in rows:
        associated = _client_ad(org_id, row.client_id)
        try:
            handle = tink.proto_keyset_format.parse_encrypted(row.wrapped_keyset, org.wrapping,
                                                              associated)
        except tink.TinkError as exc:
            raise DecryptionError("a client's data key does not open: altered or moved") from exc
        db.execute(sa.update(table).where(table.c.client_id == row.client_id,
                                          table.c.key_version == row.key_version)
                   .values(wrapped_keyset=_wrap(handle, org.wrapping, associated),
                           key_version=org.version))
        _memo(db).pop(("client", row.client_id), None)
    # ORM-enabled updates, so a KeyRotation already loaded in this session stays current.
    of_org = KeyRotation.org_id == org_id  # type: ignore[arg-type]
    if rows:
        db.execute(sa.update(KeyRotation)
                   .where(of_org, KeyRotation.to_version == org.version)  # type: ignore[arg-type]
                   .values(rewrapped=KeyRotation.rewrapped + len(rows)))
    if len(rows) == limit:
        return RewrapBatch(org_id, len(rows), False, rows[-1].client_id)
    # End of the id range: keys written under the old version by a transaction that
    # overlapped the rotation may sit behind the cursor; start over until none is left.
    if db.scalar(sa.select(sa.func.count()).select_from(table).where(pending)):
        return RewrapBatch(org_id, len(rows), False, None)
    unfinished = KeyRotation.completed_at.is_(None)  # type: ignore[union-attr]
    db.execute(sa.update(KeyRotation).where(of_org, unfinished).values(completed_at=utcnow()))
    return RewrapBatch(org_id, len(rows), True, None)


# --- status --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgKeyStatus:
    org_id: UUID
    version: int
    aead_keys: int | None  # None: the configured KEK does not open the keyset
    prf_keys: int | None
    kek_current: bool
    client_keys: int  # live (not destroyed)
    on_current_version: int
    on_older_versions: int
    destroyed: int
    rotated_at: datetime | None
    rotation_pending: bool

    def as_dict(self) -> dict[str, Any]:
        return {name: (str(value) if isinstance(value, UUID) else
                       value.isoformat() if isinstance(value, datetime) else value)
                for name, value in self.__dict__.items()}


def _key_count(provider: KekProvider, wrapped: bytes, associated_data: bytes) -> int | None:
    """Keys in a wrapped keyset (None when the configured KEK does not open it)."""
    try:
        handle = tink.proto_keyset_format.parse_encrypted(wrapped, provider.aead(),
                                                          associated_data)
    except tink.TinkError:
        return None
    return len(handle.keyset_info().key_info)


def key_status(db: Session) -> list[OrgKeyStatus]:
    """Per org: keyset versions and how many client keys are on the current one."""
    provider = kek_provider()
    orgs = OrgKeyset.__table__
    clients = ClientDataKey.__table__
    rotations = KeyRotation.__table__
    versions = dict(db.execute(sa.select(orgs.c.org_id, orgs.c.version)).all())
    destroyed = clients.c.destroyed_at.is_not(None)
    counts: dict[UUID, dict[str, int]] = {}
    for org_id, key_version, is_destroyed, number in db.execute(
        sa.select(clients.c.org_id, clients.c.key_version, destroyed, sa.func.count())
        .group_by(clients.c.org_id, clients.c.key_version, destroyed)
    ):
        bucket = counts.setdefault(org_id, {"current": 0, "older": 0, "destroyed": 0})
        if is_destroyed:
            bucket["destroyed"] += number
        elif key_version == versions.get(org_id):
            bucket["current"] += number
        else:
            bucket["older"] += number
    pending = set(db.execute(sa.select(rotations.c.org_id)
                             .where(rotations.c.completed_at.is_(None))).scalars())
    report = []
    for row in db.execute(sa.select(orgs).order_by(orgs.c.org_id)):
        bucket = counts.get(row.org_id, {"current": 0, "older": 0, "destroyed": 0})
        report.append(OrgKeyStatus(
            org_id=row.org_id, version=row.version,
            aead_keys=_key_count(provider, row.wrapped_aead_keyset, _org_ad(row.org_id, "aead")),
            prf_keys=_key_count(provider, row.wrapped_prf_keyset, _org_ad(row.org_id, "prf")),
            kek_current=row.kek_id == provider.kek_id,
            client_keys=bucket["current"] + bucket["older"],
            on_current_version=bucket["current"], on_older_versions=bucket["older"],
            destroyed=bucket["destroyed"], rotated_at=row.rotated_at,
            rotation_pending=row.org_id in pending))
    return report


# --- keysets sealed under a client's key (evidence files) ---------------------------------
# A blob too large for one AEAD call (an evidence file) gets a streaming keyset of its own;
# that keyset is kept sealed under the client's data key, bound to org, client, purpose and
# the object it protects. Shredding the client key therefore makes the blob unreadable too.


def _sealed_keyset_ad(org_id: UUID, client_id: UUID, purpose: str, bound_to: object) -> bytes:
    return _ad("advocase/client-sealed-keyset/v1", purpose, org_id, client_id, bound_to)


def seal_keyset_for_client(db: Session, *, org_id: UUID, client_id: UUID, purpose: str,
                           bound_to: UUID | str, keyset: tink.KeysetHandle) -> bytes:
    """Encrypt ``keyset`` under the client's data key (created on first use), bound to org,
    client, ``purpose`` (a short identifier such as ``"evidence"``) and ``bound_to`` (the id
    of what it protects)."""
    if not _KIND.match(purpose):
        raise ValueError("the purpose must be a short lower-case identifier")
    key = _client_key(db, org_id=org_id, client_id=client_id, create=True)
    return _wrap(keyset, key, _sealed_keyset_ad(org_id, client_id, purpose, bound_to))


def open_keyset_for_client(db: Session, *, org_id: UUID, client_id: UUID, purpose: str,
                           bound_to: UUID | str, sealed: bytes) -> tink.KeysetHandle:
    """The keyset :func:`seal_keyset_for_client` sealed for the same place. Raises
    :class:`KeyDestroyed` after the client was shredded and :class:`DecryptionError` for a
    sealed keyset altered or moved from another object, client or org."""
    key = _client_key(db, org_id=org_id, client_id=client_id, create=False)
    try:
        return tink.proto_keyset_format.parse_encrypted(
            sealed, key, _sealed_keyset_ad(org_id, client_id, purpose, bound_to))
    except tink.TinkError as exc:
        raise DecryptionError("the sealed keyset does not open here: altered, or moved from "
                              "another object or client") from exc


def _org_sealed_keyset_ad(org_id: UUID, purpose: str, bound_to: object) -> bytes:
    return _ad("advocase/org-sealed-keyset/v1", purpose, org_id, bound_to)


def seal_keyset_for_org(db: Session, *, org_id: UUID, purpose: str, bound_to: UUID | str,
                        keyset: tink.KeysetHandle) -> bytes:
    """Encrypt ``keyset`` under the org's key-wrapping keyset (for what belongs to the
    agency as a whole, not to one client), bound to org, ``purpose`` and ``bound_to``."""
    if not _KIND.match(purpose):
        raise ValueError("the purpose must be a short lower-case identifier")
    return _wrap(keyset, _org_keys(db, org_id).wrapping,
                 _org_sealed_keyset_ad(org_id, purpose, bound_to))


def open_keyset_for_org(db: Session, *, org_id: UUID, purpose: str, bound_to: UUID | str,
                        sealed: bytes) -> tink.KeysetHandle:
    """The keyset :func:`seal_keyset_for_org` sealed for the same place; raises
    :class:`DecryptionError` for one altered or moved from another object or org."""
    try:
        return tink.proto_keyset_format.parse_encrypted(
            sealed, _org_keys(db, org_id, create=False).wrapping,
            _org_sealed_keyset_ad(org_id, purpose, bound_to))
    except tink.TinkError as exc:
        raise DecryptionError("the sealed keyset does not open here: altered, or moved from "
                              "another object or org") from exc
