"""The key hierarchy: field encryption, blind indexes, crypto-shredding and rotation.

Sceptical on purpose: ciphertexts moved between rows, columns, clients and orgs must
not open; a shredded key must stay gone through fresh caches and other sessions; a
copy of the key taken before the shred is shown to be exactly what a backup leaks.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
import tink
from sqlalchemy.engine import Engine
from sqlmodel import Session
from tink import secret_key_access
from tink.proto import aes_gcm_pb2, tink_pb2

import app.db
from app.core import deferred, keys
from app.core.audit import AuditEvent
from app.core.errors import NotFound
from app.core.key_models import ClientDataKey, KeyRotation, OrgKeyset
from app.db import unit_of_work
from app.identity.models import Org
from app.settings import ConfigurationError
from tests.support import services
from tests.support.identity import make_org

PROJECT = Path(__file__).resolve().parents[2]
TEXT = "Jane Fictional, 12 Example Lane"


@pytest.fixture(autouse=True)
def fresh_keys() -> Iterator[None]:
    keys.clear_key_caches()
    yield
    keys.use_kek_provider(None)


@pytest.fixture
def sent() -> Iterator[list[tuple[str, list[Any]]]]:
    log: list[tuple[str, list[Any]]] = []
    deferred.set_sender(lambda name, args, options: log.append((name, args)))
    yield log
    deferred.set_sender(None)


def place(org: Org | UUID, client_id: UUID, *, table: str = "client", column: str = "name",
          row_id: UUID | str | None = None) -> dict[str, Any]:
    org_id = org if isinstance(org, UUID) else org.id
    return {"org_id": org_id, "client_id": client_id, "table": table, "column": column,
            "row_id": row_id or client_id}


def forget_session_keys(db: Session) -> None:
    """What a new request's session knows about keys: nothing."""
    db.info.pop("advocase.keys", None)


def like_a_new_process(db: Session) -> None:
    keys.clear_key_caches()
    forget_session_keys(db)


def client_key_row(db: Session, client_id: UUID) -> sa.Row[Any]:
    table = ClientDataKey.__table__
    return db.execute(sa.select(table).where(table.c.client_id == client_id)).one()


def client_key_material(db: Session, org_id: UUID, client_id: UUID) -> bytes:
    """The raw AES key of a client (test-only: unwrapped by hand, serialised in clear)."""
    org = keys._org_keys(db, org_id)
    handle = tink.proto_keyset_format.parse_encrypted(
        client_key_row(db, client_id).wrapped_keyset, org.wrapping,
        keys._client_ad(org_id, client_id))
    keyset = tink_pb2.Keyset.FromString(
        tink.proto_keyset_format.serialize(handle, secret_key_access.TOKEN))
    return aes_gcm_pb2.AesGcmKey.FromString(keyset.key[0].key_data.value).key_value


# --- field encryption ----------------------------------------------------------------------


def test_fields_round_trip(db: Session) -> None:
    org, client = make_org(db), uuid4()
    for value in (TEXT, "", "Ünïcødé — 名前 🙂", "x" * 10_000):
        sealed = keys.encrypt_field(db, **place(org, client), plaintext=value)
        assert keys.decrypt_field(db, **place(org, client), ciphertext=sealed) == value
    value = {"children": ["A.", "B."], "pets": [{"kind": "dog", "shelter_ok": True}]}
    sealed = keys.encrypt_json(db, **place(org, client, column="household"), value=value)
    assert keys.decrypt_json(db, **place(org, client, column="household"),
                             ciphertext=sealed) == value
    assert keys.encrypt_field(db, **place(org, client), plaintext=None) is None
    assert keys.decrypt_field(db, **place(org, client), ciphertext=None) is None
    assert keys.encrypt_json(db, **place(org, client), value=None) is None


def test_a_ciphertext_is_not_the_plaintext_and_differs_every_time(db: Session) -> None:
    org, client = make_org(db), uuid4()
    first = keys.encrypt_field(db, **place(org, client), plaintext=TEXT)
    second = keys.encrypt_field(db, **place(org, client), plaintext=TEXT)
    assert first != second  # randomised AEAD: equal values are not recognisable
    for sealed in (first, second):
        assert sealed.startswith("c1.")
        raw = base64.urlsafe_b64decode(sealed[3:])
        assert TEXT not in sealed and TEXT.encode() not in raw
        assert b"Jane Fictional" not in raw
        assert base64.b64encode(TEXT.encode()).decode()[:12] not in sealed


def test_only_text_is_accepted(db: Session) -> None:
    org = make_org(db)
    with pytest.raises(TypeError):
        keys.encrypt_field(db, **place(org, uuid4()), plaintext={"a": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("moved_to", ["row", "column", "table", "client", "client of another org"])
def test_a_ciphertext_moved_elsewhere_does_not_open(db: Session, moved_to: str) -> None:
    org, other_org = make_org(db), make_org(db)
    client, other_client, foreign_client = uuid4(), uuid4(), uuid4()
    sealed = keys.encrypt_field(db, **place(org, client), plaintext=TEXT)
    keys.create_client_key(db, org_id=org.id, client_id=other_client)
    keys.create_client_key(db, org_id=other_org.id, client_id=foreign_client)
    elsewhere = {
        "row": place(org, client, row_id=uuid4()),
        "column": place(org, client, column="address"),
        "table": place(org, client, table="incident"),
        "client": place(org, other_client, row_id=client),
        "client of another org": place(other_org, foreign_client, row_id=client),
    }[moved_to]
    with pytest.raises(keys.DecryptionError) as caught:
        keys.decrypt_field(db, **elsewhere, ciphertext=sealed)
    assert not isinstance(caught.value, keys.KeyDestroyed)
    assert TEXT not in str(caught.value)
    # Where it belongs it still opens.
    assert keys.decrypt_field(db, **place(org, client), ciphertext=sealed) == TEXT


def test_the_client_key_is_bound_to_its_org(db: Session) -> None:
    org, other_org, client = make_org(db), make_org(db), uuid4()
    sealed = keys.encrypt_field(db, **place(org, client), plaintext=TEXT)
    with pytest.raises(keys.DecryptionError, match="another org"):
        keys.decrypt_field(db, **place(other_org, client), ciphertext=sealed)
    with pytest.raises(keys.DecryptionError):
        keys.encrypt_field(db, **place(other_org, client), plaintext=TEXT)
    # A wrapped client key copied into another client's row does not open there.
    victim = uuid4()
    keys.create_client_key(db, org_id=org.id, client_id=victim)
    table = ClientDataKey.__table__
    db.execute(sa.update(table).where(table.c.client_id == victim)
               .values(wrapped_keyset=client_key_row(db, client).wrapped_keyset))
    like_a_new_process(db)
    with pytest.raises(keys.DecryptionError, match="does not open"):
        keys.decrypt_field(db, **place(org, victim, row_id=client), ciphertext=sealed)


@pytest.mark.parametrize("tamper", ["flip", "truncate", "prefix", "not base64", "empty"])
def test_an_altered_ciphertext_does_not_open(db: Session, tamper: str) -> None:
    org, client = make_org(db), uuid4()
    sealed = keys.encrypt_field(db, **place(org, client), plaintext=TEXT)
    body = bytearray(base64.urlsafe_b64decode(sealed[3:]))
    body[-1] ^= 1
    altered = {
        "flip": "c1." + base64.urlsafe_b64encode(bytes(body)).decode(),
        "truncate": sealed[:-8],
        "prefix": "v1." + sealed[3:],
        "not base64": sealed[:10] + "!*" + sealed[12:],
        "empty": "",
    }[tamper]
    with pytest.raises(keys.DecryptionError):
        keys.decrypt_field(db, **place(org, client), ciphertext=altered)


def test_keysets_are_stored_wrapped_never_in_clear(db: Session) -> None:
    org, client = make_org(db), uuid4()
    keys.encrypt_field(db, **place(org, client), plaintext=TEXT)
    material = client_key_material(db, org.id, client)
    assert len(material) == 32
    row = client_key_row(db, client)
    assert material not in row.wrapped_keyset
    org_row = db.execute(sa.select(OrgKeyset.__table__)
                         .where(OrgKeyset.__table__.c.org_id == org.id)).one()
    for wrapped in (org_row.wrapped_aead_keyset, org_row.wrapped_prf_keyset):
        assert material not in wrapped
        with pytest.raises(tink.TinkError):  # only the KEK opens it, and only for this org
            tink.proto_keyset_format.parse(wrapped, secret_key_access.TOKEN)
    assert org_row.kek_id.startswith("local:")


def test_a_client_without_a_key_is_not_given_one_by_reading(db: Session) -> None:
    org, client = make_org(db), uuid4()
    with pytest.raises(keys.DecryptionError, match="no data key"):
        keys.decrypt_field(db, **place(org, client), ciphertext="c1.AAAA")
    assert db.get(ClientDataKey, client) is None


# --- caches --------------------------------------------------------------------------------


class Counter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, db: Session) -> None:
        self.unwraps = self.queries = 0
        real = tink.proto_keyset_format.parse_encrypted

        def counting(*args: Any) -> Any:
            self.unwraps += 1
            return real(*args)

        monkeypatch.setattr(tink.proto_keyset_format, "parse_encrypted", counting)
        sa.event.listen(db.connection(), "before_cursor_execute", self._query)
        self.connection = db.connection()

    def _query(self, *args: Any) -> None:
        self.queries += 1

    def reset(self) -> None:
        self.unwraps = self.queries = 0

    def close(self) -> None:
        sa.event.remove(self.connection, "before_cursor_execute", self._query)


def test_a_record_costs_one_key_lookup_and_a_warm_process_no_unwrap(
        db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    org, client = make_org(db), uuid4()
    fields = {f"field_{i}": f"value {i}" for i in range(20)}
    sealed = {name: keys.encrypt_field(db, **place(org, client, column=name), plaintext=value)
              for name, value in fields.items()}
    counter = Counter(monkeypatch, db)
    try:
        like_a_new_process(db)
        opened = {name: keys.decrypt_field(db, **place(org, client, column=name), ciphertext=c)
                  for name, c in sealed.items()}
        assert opened == fields
        # A cold process: one row read for the client and one for the org, two keysets
        # for the org (AEAD and PRF) and one client key unwrapped, for twenty fields.
        assert (counter.queries, counter.unwraps) == (2, 3)
        counter.reset()
        forget_session_keys(db)  # the next request of the same process
        for name, c in sealed.items():
            keys.decrypt_field(db, **place(org, client, column=name), ciphertext=c)
        assert (counter.queries, counter.unwraps) == (1, 0)
    finally:
        counter.close()


def test_the_caches_are_bounded_and_expire() -> None:
    cache = keys._KeyCache(maxsize=3, ttl=60)
    ids = [uuid4() for _ in range(5)]
    for owner in ids:
        cache.put((owner, 1, b"w"), owner)
    assert len(cache) == 3
    assert cache.get((ids[0], 1, b"w")) is None and cache.get((ids[4], 1, b"w")) == ids[4]
    cache.evict(ids[4])
    assert cache.get((ids[4], 1, b"w")) is None
    expiring = keys._KeyCache(maxsize=3, ttl=-1)
    expiring.put((ids[0], 1, b"w"), "key")
    assert expiring.get((ids[0], 1, b"w")) is None


def test_a_rolled_back_key_is_not_served_from_a_cache(db: Session) -> None:
    org, client = make_org(db), uuid4()
    savepoint = db.begin_nested()
    lost = keys.encrypt_field(db, **place(org, client), plaintext="written, then rolled back")
    savepoint.rollback()
    assert db.get(ClientDataKey, client) is None
    # The same client gets a new key; the rolled-back one must not be reused for it.
    sealed = keys.encrypt_field(db, **place(org, client), plaintext=TEXT)
    like_a_new_process(db)
    assert keys.decrypt_field(db, **place(org, client), ciphertext=sealed) == TEXT
    with pytest.raises(keys.DecryptionError):
        keys.decrypt_field(db, **place(org, client), ciphertext=lost)


# --- the master key ------------------------------------------------------------------------


def _encrypt_in_another_process(secret: str) -> tuple[str, bytes]:
    script = (
        "import base64, sys\n"
        "from app.core.keys import LocalKekProvider\n"
        "p = LocalKekProvider(sys.argv[1])\n"
        "print(p.kek_id)\n"
        "print(base64.b64encode(p.aead().encrypt(b'org keyset', b'ad')).decode())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVOCASE_")}
    result = subprocess.run([sys.executable, "-c", script, secret], cwd=PROJECT, env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    kek_id, sealed = result.stdout.split()
    return kek_id, base64.b64decode(sealed)


def test_two_processes_derive_the_same_master_key_and_another_secret_cannot_open() -> None:
    kek_id, sealed = _encrypt_in_another_process("the agency's master secret")
    here = keys.LocalKekProvider("the agency's master secret")
    assert here.kek_id == kek_id
    assert here.aead().decrypt(sealed, b"ad") == b"org keyset"
    other = keys.LocalKekProvider("another secret")
    assert other.kek_id != kek_id
    with pytest.raises(tink.TinkError):
        other.aead().decrypt(sealed, b"ad")
    with pytest.raises(tink.TinkError):
        here.aead().decrypt(sealed, b"other associated data")


def test_fresh_caches_read_what_was_written_and_a_wrong_master_key_reads_nothing(
        db: Session) -> None:
    keys.use_kek_provider(keys.LocalKekProvider("secret one"))
    org, client = make_org(db), uuid4()
    sealed = keys.encrypt_field(db, **place(org, client), plaintext=TEXT)
    index = keys.blind_index(db, org_id=org.id, kind="client-name", value="Jane")

    keys.use_kek_provider(keys.LocalKekProvider("secret one"))  # a restart, same secret
    forget_session_keys(db)
    assert keys.decrypt_field(db, **place(org, client), ciphertext=sealed) == TEXT
    assert keys.blind_index(db, org_id=org.id, kind="client-name", value="Jane") == index

    keys.use_kek_provider(keys.LocalKekProvider("secret two"))
    forget_session_keys(db)
    with pytest.raises(ConfigurationError, match="ADVOCASE_MASTER_KEY") as caught:
        keys.decrypt_field(db, **place(org, client), ciphertext=sealed)
    assert "secret" not in str(caught.value)
    # Even told that its key is the right one, the other secret opens nothing.
    table = OrgKeyset.__table__
    db.execute(sa.update(table).where(table.c.org_id == org.id)
               .values(kek_id=keys.kek_provider().kek_id))
    forget_session_keys(db)
    with pytest.raises(keys.DecryptionError):
        keys.decrypt_field(db, **place(org, client), ciphertext=sealed)


def test_the_default_provider_uses_the_configured_master_key(db: Session, settings) -> None:
    expected = keys.LocalKekProvider(settings.master_key_value()).kek_id
    assert keys.kek_provider().kek_id == expected
    assert keys.kek_provider_from_settings(settings).kek_id == expected


@pytest.mark.parametrize("uri, message", [
    ("gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "gcp-kms:// keys are supported"),
    ("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/abc", "aws-kms:// keys are supported"),
    ("hcvault://vault.example:8200/transit/keys/advocase", "hcvault:// keys are supported"),
    ("file:///etc/advocase/kek", "unsupported key URI scheme"),
    ("not a uri", "unsupported key URI scheme"),
])
def test_a_kms_key_uri_is_refused_clearly_until_wired(settings, monkeypatch: pytest.MonkeyPatch,
                                                      uri: str, message: str) -> None:
    monkeypatch.setenv("ADVOCASE_KMS_KEY_URI", uri)
    with pytest.raises(ConfigurationError, match=message) as caught:
        keys.kek_provider_from_settings(settings)
    assert uri not in str(caught.value) and "ADVOCASE_KMS_KEY_URI" in str(caught.value)


# --- blind indexes -------------------------------------------------------------------------


def test_blind_indexes_are_deterministic_per_org_and_forgiving_of_spelling(db: Session) -> None:
    org, other = make_org(db), make_org(db)
    index = keys.blind_index(db, org_id=org.id, kind="client-name", value="Jane Fictional")
    assert len(index) == 64 and int(index, 16) >= 0
    for spelling in ("jane fictional", "  JANE   Fictional ", "Jane\tFictional\n",
                     "Ｊａｎｅ Ｆｉｃｔｉｏｎａｌ", "Jane\u00a0Fictional"):
        assert keys.blind_index(db, org_id=org.id, kind="client-name", value=spelling) == index
    assert keys.blind_index(db, org_id=org.id, kind="client-name", value="Jane Fictionals") \
        != index
    assert keys.blind_index(db, org_id=org.id, kind="client-phone", value="Jane Fictional") \
        != index
    assert keys.blind_index(db, org_id=other.id, kind="client-name", value="Jane Fictional") \
        != index
    assert "jane" not in index and "fictional" not in index
    assert keys.normalise_for_index("Straße") == keys.normalise_for_index("STRASSE")
    like_a_new_process(db)
    assert keys.blind_index(db, org_id=org.id, kind="client-name", value="JANE FICTIONAL") \
        == index


@pytest.mark.parametrize("kind, value", [("client-name", "   "), ("Client Name", "Jane"),
                                         ("", "Jane")])
def test_a_blind_index_needs_a_value_and_a_plain_kind(db: Session, kind: str, value: str) -> None:
    with pytest.raises(ValueError):
        keys.blind_index(db, org_id=make_org(db).id, kind=kind, value=value)


# --- crypto-shredding ----------------------------------------------------------------------


def test_shredding_destroys_the_key_for_good(db: Session) -> None:
    org, client, neighbour = make_org(db), uuid4(), uuid4()
    sealed = {column: keys.encrypt_field(db, **place(org, client, column=column),
                                         plaintext=f"{column} of a client")
              for column in ("name", "address", "phone")}
    neighbours = keys.encrypt_field(db, **place(org, neighbour), plaintext="neighbour")
    index = keys.blind_index(db, org_id=org.id, kind="client-name", value="Jane")

    assert keys.shred_client_key(db, client) is True
    for column, ciphertext in sealed.items():
        with pytest.raises(keys.KeyDestroyed):
            keys.decrypt_field(db, **place(org, client, column=column), ciphertext=ciphertext)
    with pytest.raises(keys.KeyDestroyed):
        keys.encrypt_field(db, **place(org, client), plaintext="written after the erasure")
    assert issubclass(keys.KeyDestroyed, keys.DecryptionError)

    row = client_key_row(db, client)
    assert row.wrapped_keyset is None and row.destroyed_at is not None
    like_a_new_process(db)
    with pytest.raises(keys.KeyDestroyed):
        keys.decrypt_field(db, **place(org, client), ciphertext=sealed["name"])
    with pytest.raises(keys.KeyDestroyed):
        keys.create_client_key(db, org_id=org.id, client_id=client)
    assert keys.shred_client_key(db, client) is False  # once is enough, and it stays a tombstone
    assert keys.shred_client_key(db, uuid4()) is False
    # Nobody else is affected.
    assert keys.decrypt_field(db, **place(org, neighbour), ciphertext=neighbours) == "neighbour"
    assert keys.blind_index(db, org_id=org.id, kind="client-name", value="jane") == index
    events = db.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "keys.client_key_destroyed", AuditEvent.org_id == org.id)).scalars()
    assert [e.object_id for e in events] == [str(client)]


def test_a_shred_elsewhere_wins_over_this_process_s_warm_cache(db: Session) -> None:
    org, client = make_org(db), uuid4()
    sealed = keys.encrypt_field(db, **place(org, client), plaintext=TEXT)
    assert keys.decrypt_field(db, **place(org, client), ciphertext=sealed) == TEXT  # warm
    # Another process shreds: only the row changes; this process's cache still holds the key.
    table = ClientDataKey.__table__
    db.execute(sa.update(table).where(table.c.client_id == client)
               .values(wrapped_keyset=None, destroyed_at=app.db.utcnow()))
    forget_session_keys(db)  # this process's next request
    with pytest.raises(keys.KeyDestroyed):
        keys.decrypt_field(db, **place(org, client), ciphertext=sealed)


def test_a_backup_taken_before_the_shred_is_the_only_way_back(db: Session) -> None:
    """What the module docstring warns about, demonstrated.

    After the shred, nothing left in the database opens the client's data: not the org
    keyset, not the master key. A copy of the wrapped client key taken before the shred
    (which is what any earlier database backup contains) opens it again — so backups
    must expire within the retention window, or restores must replay erasures.
    """
    org, client = make_org(db), uuid4()
    sealed = keys.encrypt_field(db, **place(org, client), plaintext=TEXT)
    backup_of_the_key_row = client_key_row(db, client)._asdict()

    keys.shred_client_key(db, client)
    like_a_new_process(db)
    with pytest.raises(keys.KeyDestroyed):
        keys.decrypt_field(db, **place(org, client), ciphertext=sealed)
    # Everything that survives the shred, tried directly on the ciphertext: nothing opens it.
    raw = base64.urlsafe_b64decode(sealed[3:])
    associated = keys._field_ad("client", "name", client, client)
    for survivor in (keys._org_keys(db, org.id).wrapping, keys.kek_provider().aead()):
        with pytest.raises(tink.TinkError):
            survivor.decrypt(raw, associated)

    # Restoring the old key row from the "backup" brings the client back.
    table = ClientDataKey.__table__
    db.execute(sa.update(table).where(table.c.client_id == client).values(
        wrapped_keyset=backup_of_the_key_row["wrapped_keyset"], destroyed_at=None))
    like_a_new_process(db)
    assert keys.decrypt_field(db, **place(org, client), ciphertext=sealed) == TEXT


# --- rotation ------------------------------------------------------------------------------


def statuses(db: Session) -> dict[UUID, keys.OrgKeyStatus]:
    return {status.org_id: status for status in keys.key_status(db)}


def test_rotation_keeps_old_data_readable_and_rewraps_every_client_key(db: Session,
                                                                       sent) -> None:
    org, bystander = make_org(db), make_org(db)
    clients = sorted(uuid4() for _ in range(5))
    sealed = {client: keys.encrypt_field(db, **place(org, client), plaintext=f"n {i}")
              for i, client in enumerate(clients)}
    keys.create_client_key(db, org_id=bystander.id, client_id=uuid4())
    index = keys.blind_index(db, org_id=org.id, kind="client-name", value="Jane")
    keys.shred_client_key(db, clients[0])
    before = statuses(db)[org.id]
    assert (before.version, before.aead_keys, before.on_current_version, before.destroyed) \
        == (1, 1, 4, 1)

    rotation = keys.rotate_org_keys(db, org.id)
    assert (rotation.from_version, rotation.to_version) == (1, 2)
    assert deferred.pending_tasks(db) == [(keys.REENCRYPT_TASK, [str(org.id), None], {})]
    status = statuses(db)[org.id]
    assert (status.version, status.aead_keys, status.prf_keys) == (2, 2, 1)
    assert (status.on_current_version, status.on_older_versions, status.destroyed) == (0, 4, 1)
    assert status.rotation_pending and status.rotated_at is not None
    assert statuses(db)[bystander.id].version == 1  # one org's rotation is its own

    # Meanwhile: old client keys open through the rotated keyset; new ones use v2.
    like_a_new_process(db)
    for client in clients[1:]:
        assert keys.decrypt_field(db, **place(org, client), ciphertext=sealed[client])
    newcomer = uuid4()
    keys.create_client_key(db, org_id=org.id, client_id=newcomer)
    assert client_key_row(db, newcomer).key_version == 2
    assert keys.blind_index(db, org_id=org.id, kind="client-name", value="Jane") == index

    first = keys.rewrap_client_keys(db, org_id=org.id, limit=3)
    assert (first.rewrapped, first.done) == (3, False)
    second = keys.rewrap_client_keys(db, org_id=org.id, after_client_id=first.next_after,
                                      limit=3)
    assert (second.rewrapped, second.done) == (1, True)
    assert keys.rewrap_client_keys(db, org_id=org.id).rewrapped == 0  # idempotent

    status = statuses(db)[org.id]
    assert (status.on_current_version, status.on_older_versions, status.destroyed) == (5, 0, 1)
    assert not status.rotation_pending
    done = db.execute(sa.select(KeyRotation).where(KeyRotation.org_id == org.id)).scalar_one()
    assert done.rewrapped == 4 and done.completed_at is not None
    like_a_new_process(db)
    for client in clients[1:]:
        assert keys.decrypt_field(db, **place(org, client), ciphertext=sealed[client])
    with pytest.raises(keys.KeyDestroyed):
        keys.decrypt_field(db, **place(org, clients[0]), ciphertext=sealed[clients[0]])
    actions = set(db.execute(sa.select(AuditEvent.action).where(
        AuditEvent.org_id == org.id)).scalars())
    assert {"keys.org_keyset_created", "keys.org_keyset_rotated"} <= actions


def test_a_key_written_under_the_old_version_behind_the_cursor_is_not_missed(
        db: Session) -> None:
    org = make_org(db)
    clients = sorted(uuid4() for _ in range(3))
    for client in clients[1:]:
        keys.create_client_key(db, org_id=org.id, client_id=client)
    keys.rotate_org_keys(db, org.id, enqueue_rewrap=False)
    first = keys.rewrap_client_keys(db, org_id=org.id, limit=1)
    assert first.next_after == clients[1]
    # A transaction that began before the rotation wraps a key under version 1, with an
    # id before the cursor.
    keys.create_client_key(db, org_id=org.id, client_id=clients[0])
    table = ClientDataKey.__table__
    db.execute(sa.update(table).where(table.c.client_id == clients[0]).values(key_version=1))
    second = keys.rewrap_client_keys(db, org_id=org.id, after_client_id=first.next_after,
                                     limit=1)
    assert second.rewrapped == 1 and not second.done and second.next_after == clients[2]
    third = keys.rewrap_client_keys(db, org_id=org.id, after_client_id=second.next_after,
                                    limit=1)
    assert third.rewrapped == 0 and not third.done and third.next_after is None
    assert keys.rewrap_client_keys(db, org_id=org.id, limit=1).rewrapped == 1
    assert keys.rewrap_client_keys(db, org_id=org.id, limit=1).done


def test_rotating_twice_and_every_org(db: Session) -> None:
    orgs = [make_org(db) for _ in range(2)]
    sealed = {}
    for org in orgs:
        client = uuid4()
        sealed[org.id] = (client, keys.encrypt_field(db, **place(org, client), plaintext=TEXT))
    rotations = keys.rotate_all_org_keys(db, enqueue_rewrap=False)
    assert {r.org_id for r in rotations} >= {org.id for org in orgs}
    keys.rotate_org_keys(db, orgs[0].id, enqueue_rewrap=False)
    status = statuses(db)
    assert (status[orgs[0].id].version, status[orgs[0].id].aead_keys) == (3, 3)
    like_a_new_process(db)
    for org in orgs:
        client, ciphertext = sealed[org.id]
        assert keys.decrypt_field(db, **place(org, client), ciphertext=ciphertext) == TEXT
    with pytest.raises(NotFound):
        keys.rotate_org_keys(db, make_org(db).id)


# --- the Celery task, called directly, on its own database ---------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def own_database(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A migrated database of its own, which tasks and concurrent units of work commit to."""
    with services.own_engine(request.param, tmp_path, "keys") as engine:
        monkeypatch.setattr(app.db, "get_engine", lambda settings=None: engine)
        yield engine


def test_concurrent_first_uses_agree_on_one_org_keyset_and_one_client_key(
        own_database: Engine) -> None:
    with unit_of_work(own_database) as db:
        org_id = make_org(db).id
    client = uuid4()
    start = threading.Barrier(4)
    sealed: list[str] = []
    errors: list[BaseException] = []

    def first_use(i: int) -> None:
        try:
            start.wait(timeout=10)
            with unit_of_work(own_database) as db:
                sealed.append(keys.encrypt_field(db, **place(org_id, client), plaintext=f"v{i}"))
                keys.blind_index(db, org_id=org_id, kind="client-name", value="Jane")
        except BaseException as exc:  # reported below, with the thread's own failure
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(sealed) == 4
    keys.clear_key_caches()
    with unit_of_work(own_database) as db:
        assert sorted(keys.decrypt_field(db, **place(org_id, client), ciphertext=c)
                      for c in sealed) == ["v0", "v1", "v2", "v3"]
        assert db.scalar(sa.select(sa.func.count()).select_from(OrgKeyset.__table__)) == 1
        assert db.scalar(sa.select(sa.func.count()).select_from(ClientDataKey.__table__)) == 1
        created = db.scalar(sa.select(sa.func.count()).select_from(AuditEvent.__table__)
                            .where(AuditEvent.action == "keys.org_keyset_created"))
        assert created == 1


def test_the_reencrypt_task_rewraps_in_batches_and_is_idempotent(
        own_database: Engine, sent, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.celery_app import KEYS_REENCRYPT_TASK
    from workers.tasks import reencrypt_batch

    assert KEYS_REENCRYPT_TASK == keys.REENCRYPT_TASK
    monkeypatch.setattr(keys, "REWRAP_BATCH_SIZE", 2)
    with unit_of_work(own_database) as db:
        org = make_org(db)
        org_id = org.id
        sealed = {}
        for i in range(5):
            client = uuid4()
            sealed[client] = keys.encrypt_field(db, **place(org_id, client), plaintext=f"n{i}")
    with unit_of_work(own_database) as db:
        keys.rotate_org_keys(db, org_id)
    assert sent == [(KEYS_REENCRYPT_TASK, [str(org_id), None])]

    batches = []
    while sent:
        _, args = sent.pop(0)
        json.dumps(args)  # ids only: they travel through the broker
        batches.append(reencrypt_batch(*args))
    assert batches == [2, 2, 1]
    assert reencrypt_batch(str(org_id), None) == 0 and sent == []  # a redelivery does nothing

    keys.clear_key_caches()
    with unit_of_work(own_database) as db:
        status = statuses(db)[org_id]
        assert (status.version, status.on_current_version, status.on_older_versions) == (2, 5, 0)
        assert not status.rotation_pending
        for client, ciphertext in sealed.items():
            assert keys.decrypt_field(db, **place(org_id, client), ciphertext=ciphertext)


# --- the command line ----------------------------------------------------------------------


def advocase(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_keys_status_rotate_and_rewrap_commands(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADVOCASE_")}
    env |= {"ADVOCASE_VAR_DIR": str(tmp_path / "var"), "ADVOCASE_LOG_LEVEL": "WARNING"}
    assert advocase(env, "migrate").returncode == 0
    assert json.loads(advocase(env, "keys", "status", "--json").stdout) == {"orgs": []}
    created = json.loads(advocase(env, "create-org", "--name", "Fictional Shelter",
                                  "--json").stdout)
    script = (
        "import sys, uuid\n"
        "from app.core import keys\n"
        "from app.db import unit_of_work\n"
        "org = uuid.UUID(sys.argv[1])\n"
        "with unit_of_work() as db:\n"
        "    for _ in range(3):\n"
        "        c = uuid.uuid4()\n"
        "        keys.encrypt_field(db, org_id=org, client_id=c, table='t', column='c',\n"
        "                           row_id=c, plaintext='x')\n"
    )
    subprocess.run([sys.executable, "-c", script, created["id"]], cwd=PROJECT, env=env,
                   check=True, timeout=60)

    status = json.loads(advocase(env, "keys", "status", "--json").stdout)["orgs"]
    assert [(o["slug"], o["version"], o["on_current_version"]) for o in status] \
        == [("fictional-shelter", 1, 3)]

    rotated = advocase(env, "keys", "rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout) == {"rotated": [
        {"org_id": created["id"], "from_version": 1, "to_version": 2}]}
    (org,) = json.loads(advocase(env, "keys", "status", "--json").stdout)["orgs"]
    assert (org["version"], org["aead_keys"], org["on_older_versions"], org["rotation_pending"]) \
        == (2, 2, 3, True)
    text = advocase(env, "keys", "status").stdout
    assert "fictional-shelter: keyset v2" in text and "3 older" in text

    rewrapped = advocase(env, "keys", "rewrap", "--json")
    assert json.loads(rewrapped.stdout) == {"rewrapped": {created["id"]: 3}}
    (org,) = json.loads(advocase(env, "keys", "status", "--json").stdout)["orgs"]
    assert (org["on_current_version"], org["on_older_versions"], org["rotation_pending"]) \
        == (3, 0, False)
    assert "Traceback" not in rotated.stderr + rewrapped.stderr


# --- bulk reads ------------------------------------------------------------------------------


def _bulk_row(db: Session, client_id: UUID, ciphertext: str | None,
              key_of: UUID | None = None) -> Any:
    """A row as a bulk query selects it: the client's field beside its key row (or none)."""
    from types import SimpleNamespace

    table = ClientDataKey.__table__
    key = db.execute(sa.select(*keys.CLIENT_KEY_COLUMNS).where(
        table.c.client_id == (key_of or client_id))).first()
    columns = key._asdict() if key is not None else {
        c.name: None for c in keys.CLIENT_KEY_COLUMNS}
    return SimpleNamespace(client_id=client_id, ciphertext=ciphertext, **columns)


def test_a_bulk_read_opens_each_clients_field_and_remembers_no_key(db: Session) -> None:
    org, other_org = make_org(db), make_org(db)
    clients = [uuid4() for _ in range(3)]
    sealed = [keys.encrypt_field(db, **place(org, c, column="date_of_birth"),
                                 plaintext=f"19{80 + n}-01-0{n + 1}")
              for n, c in enumerate(clients)]
    keys.encrypt_field(db, **place(org, uuid4()), plaintext=TEXT)  # another client's key
    assert keys.shred_client_key(db, clients[2])
    like_a_new_process(db)

    def read(rows: list[Any]) -> list[tuple[UUID, str | None]]:
        return list(keys.decrypt_client_column(db, org_id=org.id, table="client",
                                               column="date_of_birth", rows=rows))

    rows = [_bulk_row(db, clients[0], sealed[0]), _bulk_row(db, clients[1], None),
            _bulk_row(db, clients[2], sealed[2])]
    assert read(rows) == [(clients[0], "1980-01-01"), (clients[1], None), (clients[2], None)]
    # The clients' keys were opened and dropped, not remembered (the org's is).
    assert [k for k in db.info.get("advocase.keys", {}) if k[0] == "client"] == []

    # A field moved to another client, another column, or a client with no key row, or a
    # key row of another org: refused, as decrypt_field refuses them.
    with pytest.raises(keys.DecryptionError):
        read([_bulk_row(db, clients[1], sealed[0])])
    with pytest.raises(keys.DecryptionError):
        list(keys.decrypt_client_column(db, org_id=org.id, table="client", column="address",
                                        rows=[_bulk_row(db, clients[0], sealed[0])]))
    with pytest.raises(keys.DecryptionError, match="no data key"):
        read([_bulk_row(db, uuid4(), sealed[0])])
    stranger = uuid4()
    keys.encrypt_field(db, **place(other_org, stranger), plaintext=TEXT)
    with pytest.raises(keys.DecryptionError, match="another org"):
        read([_bulk_row(db, stranger, sealed[0])])
    with pytest.raises(keys.DecryptionError):
        read([_bulk_row(db, clients[0], sealed[0][:-4] + "AAAA")])


def test_a_bulk_read_decrypts_as_tink_does_and_other_keysets_go_through_tink(
        db: Session) -> None:
    """The bulk read opens the usual client keyset (one AES-GCM key, Tink prefix) without
    making a Tink primitive: what it reads must be exactly what Tink reads, a changed byte
    anywhere must fail as in Tink, and any other keyset must still open through Tink."""
    from tink import aead

    wrapping = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM).primitive(
        aead.Aead)
    key_ad, field_ad = b"fictional key ad", b"fictional field ad"
    for template in (aead.aead_key_templates.AES256_GCM, aead.aead_key_templates.AES128_GCM,
                     aead.aead_key_templates.AES256_GCM_RAW,
                     aead.aead_key_templates.AES256_CTR_HMAC_SHA256):
        handle = tink.new_keyset_handle(template)
        wrapped = tink.proto_keyset_format.serialize_encrypted(handle, wrapping, key_ad)
        for plain in (b"", b"1984-02-29", "Ünïcødé".encode() * 50):
            sealed = handle.primitive(aead.Aead).encrypt(plain, field_ad)
            assert keys._decrypt_once(wrapped, wrapping, key_ad, sealed, field_ad) == plain
            for at in (0, 4, 5, len(sealed) // 2, len(sealed) - 1):
                changed = sealed[:at] + bytes([sealed[at] ^ 0x01]) + sealed[at + 1:]
                with pytest.raises(tink.TinkError):
                    keys._decrypt_once(wrapped, wrapping, key_ad, changed, field_ad)
            with pytest.raises(tink.TinkError):
                keys._decrypt_once(wrapped, wrapping, key_ad, sealed, b"another field")
            with pytest.raises(tink.TinkError):
                keys._decrypt_once(wrapped, wrapping, b"another key ad", sealed, field_ad)
            with pytest.raises(tink.TinkError):
                keys._decrypt_once(wrapped, wrapping, key_ad, sealed[:20], field_ad)
    # The usual client keyset opens without Tink's keyset parser (and so its primitive).
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    wrapped = tink.proto_keyset_format.serialize_encrypted(handle, wrapping, key_ad)
    sealed = handle.primitive(aead.Aead).encrypt(b"1990-01-01", field_ad)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tink.proto_keyset_format, "parse_encrypted",
                      lambda *args: pytest.fail("a Tink primitive was made"))
        assert keys._decrypt_once(wrapped, wrapping, key_ad, sealed, field_ad) == \
            b"1990-01-01"
    # A keyset with a second key (rotated): both keys' ciphertexts open, through Tink.
    manager = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    old = manager.primitive(aead.Aead).encrypt(b"old", field_ad)
    keyset = tink_pb2.Keyset.FromString(
        tink.proto_keyset_format.serialize(manager, secret_key_access.TOKEN))
    extra = tink_pb2.Keyset.FromString(tink.proto_keyset_format.serialize(
        tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM), secret_key_access.TOKEN))
    keyset.key.append(extra.key[0])
    keyset.primary_key_id = extra.key[0].key_id
    rotated = tink.proto_keyset_format.parse(keyset.SerializeToString(),
                                             secret_key_access.TOKEN)
    new = rotated.primitive(aead.Aead).encrypt(b"new", field_ad)
    wrapped = tink.proto_keyset_format.serialize_encrypted(rotated, wrapping, key_ad)
    assert keys._decrypt_once(wrapped, wrapping, key_ad, old, field_ad) == b"old"
    assert keys._decrypt_once(wrapped, wrapping, key_ad, new, field_ad) == b"new"
    with pytest.raises(tink.TinkError):
        keys._decrypt_once(b"not a keyset", wrapping, key_ad, new, field_ad)
