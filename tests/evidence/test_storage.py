"""The storage interface and its local backend: atomic writes, no overwrite, ranges, listing,
clean-up of abandoned writes, streaming encryption, and deletion on rollback."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import tink
from sqlmodel import Session

from app.core.storage import (
    LocalStorage,
    ObjectExists,
    ObjectMissing,
    check_key,
    decrypting_reader,
    delete_on_rollback,
    encrypting_writer,
    new_object_keyset,
)


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_an_object_appears_only_when_its_write_completes(local) -> None:
    key = "evidence/org/ab/object-1"
    with local.create(key) as out:
        out.write(b"first part ")
        assert not local.exists(key)
        [temporary] = files(local.root)
        assert Path(temporary).name.startswith(".incomplete-")
        out.write(b"second part")
    assert files(local.root) == [key]
    assert local.open(key).read() == b"first part second part"
    assert local.size(key) == 22
    mode = (local.root / key).stat().st_mode & 0o777
    assert mode == 0o600


def test_a_failed_write_leaves_nothing(local) -> None:
    with pytest.raises(RuntimeError), local.create("evidence/org/ab/failed") as out:
        out.write(b"x" * 100_000)
        raise RuntimeError("fictional failure mid-write")
    assert files(local.root) == []


def test_an_object_is_never_replaced(local) -> None:
    key = "evidence/org/ab/original"
    with local.create(key) as out:
        out.write(b"original bytes")
    with pytest.raises(ObjectExists), local.create(key) as out:
        out.write(b"replacement")
    assert local.open(key).read() == b"original bytes"
    assert files(local.root) == [key]


def test_ranges_listing_and_delete(local) -> None:
    for name in ("b", "a", "c"):
        with local.create(f"evidence/org/{name}") as out:
            out.write(bytes(range(256)))
    with local.create("reports/org/x") as out:
        out.write(b"report")
    assert local.open("evidence/org/a", start=10, length=5).read() == bytes(range(10, 15))
    assert local.open("evidence/org/a", start=250).read() == bytes(range(250, 256))
    listed = list(local.objects("evidence/"))
    assert [o.key for o in listed] == ["evidence/org/a", "evidence/org/b", "evidence/org/c"]
    assert all(o.size == 256 for o in listed)
    assert local.delete("evidence/org/b") is True
    assert local.delete("evidence/org/b") is False
    assert not local.exists("evidence/org/b")
    with pytest.raises(ObjectMissing):
        local.open("evidence/org/b")
    with pytest.raises(ObjectMissing):
        local.size("evidence/org/b")


def test_abandoned_writes_are_discarded_once_old(local) -> None:
    folder = local.root / "evidence" / "org"
    folder.mkdir(parents=True)
    old, fresh = folder / ".incomplete-a.1", folder / ".incomplete-b.2"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    then = time.time() - 7200
    os.utime(old, (then, then))
    assert local.discard_incomplete(timedelta(hours=1)) == 1
    assert not old.exists() and fresh.exists()
    assert list(local.objects()) == []  # incomplete writes are never listed


@pytest.mark.parametrize("key", ["../escape", "/absolute", "evidence/../../x", "Evidence/X",
                                 "evidence//x", "", "evidence/name with space"])
def test_keys_are_ids_only(local, key) -> None:
    with pytest.raises(ValueError):
        check_key(key)
    with pytest.raises(ValueError), local.create(key):
        pass


def test_streaming_encryption_round_trip_and_binding(local) -> None:
    keyset = new_object_keyset()
    plaintext = os.urandom(3 * 1024 * 1024 + 17)
    with encrypting_writer(local, "evidence/org/enc", keyset, b"evidence-id-1") as out:
        for start in range(0, len(plaintext), 100_000):
            out.write(plaintext[start:start + 100_000])
    ciphertext = (local.root / "evidence/org/enc").read_bytes()
    assert plaintext[:64] not in ciphertext and len(ciphertext) > len(plaintext)
    with decrypting_reader(local, "evidence/org/enc", keyset, b"evidence-id-1") as reader:
        assert reader.read() == plaintext
    with pytest.raises(tink.TinkError), \
            decrypting_reader(local, "evidence/org/enc", keyset, b"evidence-id-2") as reader:
        reader.read()
    with pytest.raises(tink.TinkError), \
            decrypting_reader(local, "evidence/org/enc", new_object_keyset(),
                              b"evidence-id-1") as reader:
        reader.read()


def test_a_truncated_ciphertext_does_not_open(local) -> None:
    keyset = new_object_keyset()
    with encrypting_writer(local, "evidence/org/t", keyset, b"ad") as out:
        out.write(os.urandom(2 * 1024 * 1024))
    path = local.root / "evidence/org/t"
    path.write_bytes(path.read_bytes()[: 1024 * 1024 + 100])
    with pytest.raises(tink.TinkError), decrypting_reader(local, "evidence/org/t", keyset,
                                                          b"ad") as reader:
        reader.read()


def test_an_encrypted_write_that_fails_leaves_nothing(local) -> None:
    with pytest.raises(RuntimeError), encrypting_writer(local, "evidence/org/f",
                                                        new_object_keyset(), b"ad") as out:
        out.write(os.urandom(1_500_000))
        raise RuntimeError("fictional failure")
    assert files(local.root) == []


def test_delete_on_rollback(db: Session, local) -> None:
    for name in ("kept", "savepoint", "rolled-back"):
        with local.create(f"evidence/org/{name}") as out:
            out.write(b"ciphertext")
    delete_on_rollback(db, local, "evidence/org/kept")
    db.commit()
    delete_on_rollback(db, local, "evidence/org/rolled-back")
    nested = db.begin_nested()
    nested.rollback()  # a savepoint inside the unit of work: it goes on
    assert local.exists("evidence/org/rolled-back")
    db.rollback()
    assert local.exists("evidence/org/kept")
    assert not local.exists("evidence/org/rolled-back")
