"""Every table of the service, imported in one place for Alembic and the schema test."""

from sqlmodel import SQLModel

from app.core.audit import AuditAnchor, AuditChainHead, AuditEvent
from app.identity.models import (
    AuthSession,
    Org,
    PartnerApp,
    PartnerToken,
    RecoveryCode,
    RefreshToken,
    StaffUser,
)
from app.system.models import WorkerHeartbeat

metadata = SQLModel.metadata

__all__ = [
    "AuditAnchor", "AuditChainHead", "AuditEvent", "AuthSession", "Org", "PartnerApp",
    "PartnerToken", "RecoveryCode", "RefreshToken", "StaffUser", "WorkerHeartbeat", "metadata",
]
