"""Previews of image evidence: queued by id when an image is received, made once by a
worker from bytes that match the recorded SHA-256, sealed under the evidence's keyset with
their own associated data, and swept when no row names them."""

from __future__ import annotations

import io
from datetime import timedelta
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from app.clients import service as clients_service
from app.core.storage import LocalStorage, decrypting_reader
from app.evidence import previews, service
from app.evidence.models import Evidence, EvidencePreview
from tests.evidence.conftest import Agency, jpeg, upload, uploaded
from tests.evidence.test_integrity import alter_one_byte, tasks  # noqa: F401 - a fixture


def photo(size: tuple[int, int] = (1800, 1000)) -> bytes:
    """A fictional photo with EXIF saying where it was taken (what a preview must drop)."""
    from PIL import Image

    image = Image.new("RGB", size, (90, 140, 60))
    exif = Image.Exif()
    exif[0x010F] = "Fictional camera maker"  # Make
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}  # GPS
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def evidence_row(db: Session, body: dict) -> Evidence:
    row = db.get(Evidence, UUID(body["id"]))
    assert row is not None
    return row


def kept(db: Session, storage: LocalStorage, row: Evidence) -> bytes | None:
    key = previews.kept_previews(db, [row.id]).get(row.id)
    return previews.read_preview(storage, row, key, service.open_keyset(db, row))


def preview_files(storage: LocalStorage, org_id: UUID) -> list[str]:
    return sorted(o.key for o in storage.objects(f"{previews.PREVIEW_PREFIX}{org_id}/"))


def test_only_an_image_queues_a_preview_and_only_by_id(client, agency: Agency,
                                                       sent_tasks) -> None:
    assert upload(client, agency, b"Fictional plain-text note\n" * 10,
                  filename="fictional-note.txt").status_code == 201
    assert sent_tasks == []
    body = uploaded(client, agency, photo())
    assert sent_tasks == [(previews.PREVIEW_TASK, [body["id"]])]


def test_a_preview_is_made_once_reduced_without_metadata_and_sealed(
        client, agency: Agency, db: Session, storage: LocalStorage, bound_work, sent_tasks) -> None:
    from PIL import Image

    row = evidence_row(db, uploaded(client, agency, photo()))
    assert kept(db, storage, row) is None
    assert previews.make_preview(row.id, storage, work=bound_work) == "made"
    [key] = preview_files(storage, agency.org.id)
    data = kept(db, storage, row)
    assert data is not None
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (1400, 778)
        assert not image.getexif()  # no maker, no place
    assert b"Fictional camera" not in data
    # Stored as ciphertext, not as a JPEG.
    with storage.open(key) as stored:
        raw = stored.read()
    assert not raw.startswith(b"\xff\xd8") and data not in raw

    # Again (a redelivered task): nothing new is made.
    assert previews.make_preview(row.id, storage, work=bound_work) == "exists"
    assert preview_files(storage, agency.org.id) == [key]
    assert db.scalar(sa.select(sa.func.count()).select_from(EvidencePreview).where(
        EvidencePreview.evidence_id == row.id)) == 1


def test_a_preview_does_not_open_as_the_original_nor_for_another_evidence(
        client, agency: Agency, db: Session, storage: LocalStorage, bound_work, sent_tasks) -> None:
    import tink

    row = evidence_row(db, uploaded(client, agency, photo()))
    other = evidence_row(db, uploaded(client, agency, photo((900, 900))))
    assert previews.make_preview(row.id, storage, work=bound_work) == "made"
    key = previews.kept_previews(db, [row.id])[row.id]
    keyset = service.open_keyset(db, row)
    with pytest.raises(tink.TinkError), decrypting_reader(
            storage, key, keyset, service.content_associated_data(row.id)) as reader:
        reader.read()
    # Named as the other evidence's preview: neither its keyset nor this one's opens it.
    assert previews.read_preview(storage, other, key, service.open_keyset(db, other)) is None
    assert previews.read_preview(storage, other, key, keyset) is None
    # And the original does not pass for a preview.
    assert previews.read_preview(storage, row, row.storage_key, keyset) is None


def test_no_preview_from_a_file_that_does_not_match_its_record(
        client, agency: Agency, db: Session, storage: LocalStorage, bound_work, sent_tasks) -> None:
    row = evidence_row(db, uploaded(client, agency, photo()))
    alter_one_byte(storage.root / row.storage_key, 1_000)
    assert previews.make_preview(row.id, storage, work=bound_work) == "unreadable"
    assert preview_files(storage, agency.org.id) == []
    assert previews.kept_previews(db, [row.id]) == {}


@pytest.mark.parametrize(("content", "name", "outcome"), [
    (jpeg(), "fictional-photo.jpg", "not_previewable"),  # a JPEG signature, then noise
    (b"Fictional plain-text note\n" * 10, "fictional-note.txt", "not_an_image"),
])
def test_what_is_not_a_picture_gets_none(client, agency: Agency, db: Session,
                                         storage: LocalStorage, bound_work, sent_tasks,
                                         content: bytes, name: str, outcome: str) -> None:
    response = upload(client, agency, content, filename=name)
    assert response.status_code == 201, response.text
    row = evidence_row(db, response.json())
    assert previews.make_preview(row.id, storage, work=bound_work) == outcome
    assert preview_files(storage, agency.org.id) == []


def test_a_shredded_client_or_unknown_id_is_gone(client, agency: Agency, db: Session,
                                                 storage: LocalStorage, bound_work,
                                                 sent_tasks) -> None:
    from uuid import uuid4

    from app.core import keys

    row = evidence_row(db, uploaded(client, agency, photo()))
    assert previews.make_preview(uuid4(), storage, work=bound_work) == "gone"
    clients_service.purge_client(db, agency.actor("supervisor"), agency.client_id)
    db.commit()
    keys.clear_key_caches()
    assert previews.make_preview(row.id, storage, work=bound_work) == "gone"
    assert preview_files(storage, agency.org.id) == []


def test_two_workers_at_once_keep_one_preview(client, agency: Agency, db: Session,
                                              storage: LocalStorage, bound_work, sent_tasks,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    row = evidence_row(db, uploaded(client, agency, photo()))
    reduce = previews.reduce
    outcomes: list[str] = []

    def while_another_finishes(content: bytes) -> bytes | None:
        # The other worker reads, reduces and keeps its preview while this one reduces.
        monkeypatch.setattr(previews, "reduce", reduce)
        outcomes.append(previews.make_preview(row.id, storage, work=bound_work))
        return reduce(content)

    monkeypatch.setattr(previews, "reduce", while_another_finishes)
    outer = previews.make_preview(row.id, storage, work=bound_work)
    assert (outer, outcomes) == ("exists", ["made"])
    [key] = preview_files(storage, agency.org.id)  # the loser's object is gone
    assert previews.kept_previews(db, [row.id]) == {row.id: key}
    assert kept(db, storage, row) is not None


def test_the_sweep_removes_a_preview_no_row_names_and_keeps_the_rest(
        client, agency: Agency, db: Session, storage: LocalStorage, bound_work, sent_tasks) -> None:
    row = evidence_row(db, uploaded(client, agency, photo()))
    assert previews.make_preview(row.id, storage, work=bound_work) == "made"
    [key] = preview_files(storage, agency.org.id)
    orphan = previews.storage_key(agency.org.id, row.id)
    with storage.create(orphan) as out:
        out.write(b"fictional leftover of a preview made twice")
    assert sorted(preview_files(storage, agency.org.id)) == sorted([key, orphan])
    removed = service.sweep_storage(db, storage, older_than=timedelta(seconds=-60))
    assert removed["orphans_removed"] >= 1
    assert preview_files(storage, agency.org.id) == [key]
    assert storage.exists(row.storage_key)


def test_the_worker_task_makes_it(client, agency: Agency, db: Session, storage: LocalStorage,
                                  bound_work, sent_tasks, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import tasks as module

    monkeypatch.setattr(previews, "unit_of_work", bound_work)
    body = uploaded(client, agency, photo())
    [(name, args)] = sent_tasks
    assert name == module.make_evidence_preview.name
    assert module.make_evidence_preview(*args) == "made"
    assert kept(db, storage, evidence_row(db, body)) is not None


def test_the_daily_check_queues_a_preview_for_an_intact_image_that_has_none(
        client, agency: Agency, db: Session, storage: LocalStorage, bound_work, sent_tasks,
        tasks, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import time

    with_one = evidence_row(db, uploaded(client, agency, photo()))
    without = evidence_row(db, uploaded(client, agency, photo((600, 400))))
    altered = evidence_row(db, uploaded(client, agency, photo((700, 500))))
    note = upload(client, agency, b"Fictional plain-text note\n" * 10,
                  filename="fictional-note.txt").json()
    assert previews.make_preview(with_one.id, storage, work=bound_work) == "made"
    alter_one_byte(storage.root / altered.storage_key, 1_000)
    sent_tasks.clear()  # the uploads' own preview tasks, lost (say)
    monkeypatch.setattr(tasks, "EVIDENCE_CHECK_BATCH", 1000)
    tasks.check_evidence_hashes(int(time.time()))
    queued = {args[0] for name, args in sent_tasks if name == previews.PREVIEW_TASK}
    assert str(without.id) in queued
    assert not queued & {str(with_one.id), str(altered.id), note["id"]}
