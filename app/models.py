"""Every table of the service, imported in one place for Alembic and the schema test."""

from sqlmodel import SQLModel

from app.clients.models import BreakGlassGrant, CaseNumberCounter, Client, ClientAssignment
from app.consents.models import ReleaseOfInformation
from app.core.audit import AuditAnchor, AuditChainHead, AuditEvent
from app.core.key_models import ClientDataKey, KeyRotation, OrgKeyset
from app.evidence.models import CustodyEvent, Evidence, EvidencePreview
from app.identity.models import (
    AuthSession,
    Org,
    PartnerApp,
    PartnerToken,
    RecoveryCode,
    RefreshToken,
    StaffUser,
)
from app.incidents.models import Incident, IncidentRevision, IncidentRevisionCategory
from app.legal.models import CourtDate, ProtectiveOrder
from app.notifications.models import Notification
from app.referrals.models import Referral, ReferralNote, ReferralTransition
from app.reminders.models import (
    NotificationPreference,
    Reminder,
    ReminderDelivery,
    ReminderSettings,
)
from app.reports.models import Report, ReportSigningKey
from app.resources.models import Resource, ResourceFacet, ResourceOpening
from app.risk.models import AgencyInstrument, RiskAssessment
from app.safety_plans.models import SafetyPlanVersion
from app.service_log.models import ServiceContact
from app.system.models import WorkerHeartbeat
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent

metadata = SQLModel.metadata

__all__ = [
    "AgencyInstrument", "RiskAssessment",
    "BreakGlassGrant", "CaseNumberCounter", "Client", "ClientAssignment", "Notification",
    "AuditAnchor", "AuditChainHead", "AuditEvent", "AuthSession", "ClientDataKey",
    "KeyRotation", "Org", "OrgKeyset", "PartnerApp", "PartnerToken", "RecoveryCode",
    "RefreshToken", "StaffUser", "WorkerHeartbeat", "metadata",
    "ReleaseOfInformation", "SafetyPlanVersion", "ServiceContact",
    "CourtDate", "ProtectiveOrder",
    "NotificationPreference", "Reminder", "ReminderDelivery", "ReminderSettings",
    "Incident", "IncidentRevision", "IncidentRevisionCategory",
    "CustodyEvent", "Evidence", "EvidencePreview",
    "WebhookAttempt", "WebhookDelivery", "WebhookEndpoint", "WebhookEvent",
    "Resource", "ResourceFacet", "ResourceOpening",
    "Referral", "ReferralNote", "ReferralTransition",
    "Report", "ReportSigningKey",
]
