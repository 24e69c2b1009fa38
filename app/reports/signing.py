"""The agency's Ed25519 key for report manifests (``cryptography``).

One current key per agency, made on first use. The private key is kept sealed like the
agency's other secrets (AES-256-GCM under a subkey of the master key, bound to its table,
column and row: ``app.core.crypto.seal``), so a copied row or a database dump alone signs
nothing. The public key is published (``GET /api/v1/orgs/{org_id}/report-key``) and is
all a court needs to check a manifest's signature offline.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from uuid import UUID, uuid4

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlmodel import Session

from app.core import audit, crypto
from app.db import utcnow
from app.reports.models import ReportSigningKey

TABLE = "report_signing_key"


@dataclass(frozen=True)
class Signer:
    key_id: UUID
    private_key: Ed25519PrivateKey

    def sign(self, message: bytes) -> str:
        """The base64 (standard alphabet) Ed25519 signature of ``message``."""
        return base64.b64encode(self.private_key.sign(message)).decode("ascii")


def _insert(db: Session) -> object:
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _current(db: Session, org_id: UUID) -> ReportSigningKey | None:
    return db.scalar(sa.select(ReportSigningKey).where(
        ReportSigningKey.org_id == org_id, ReportSigningKey.retired_at.is_(None)))


def signer_for(db: Session, org_id: UUID) -> Signer:
    """The agency's current signing key, made (and audited) on first use. Two workers that
    make one at once: the partial unique index keeps the first, both use it."""
    row = _current(db, org_id)
    if row is None:
        private = Ed25519PrivateKey.generate()
        key_id = uuid4()
        raw = private.private_bytes(serialization.Encoding.Raw,
                                    serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        sealed = crypto.seal(base64.b64encode(raw).decode(), table=TABLE,
                             column="sealed_private_key", row_id=str(key_id))
        insert = _insert(db)
        made = db.execute(insert(ReportSigningKey.__table__).values(  # type: ignore[operator]
            id=key_id, org_id=org_id, algorithm="Ed25519", public_key=public,
            sealed_private_key=sealed, created_at=utcnow()).on_conflict_do_nothing()
            .returning(ReportSigningKey.__table__.c.id)).first()
        if made is not None:
            audit.append(db, action="report_key.created", org_id=org_id,
                         object_type=TABLE, object_id=key_id)
        row = _current(db, org_id)
        assert row is not None
    raw = base64.b64decode(crypto.unseal(row.sealed_private_key, table=TABLE,
                                         column="sealed_private_key", row_id=str(row.id)))
    return Signer(row.id, Ed25519PrivateKey.from_private_bytes(raw))


def public_keys(db: Session, org_id: UUID) -> list[ReportSigningKey]:
    """Every key the agency has signed manifests with, current first."""
    return list(db.scalars(sa.select(ReportSigningKey).where(ReportSigningKey.org_id == org_id)
                           .order_by(ReportSigningKey.retired_at.is_not(None),
                                     ReportSigningKey.created_at.desc())))


def verify_signature(public_key_pem: str, message: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64) is the key's Ed25519 signature of ``message``."""
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            return False
        key.verify(base64.b64decode(signature.strip(), validate=True), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
