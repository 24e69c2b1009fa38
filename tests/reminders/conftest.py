"""Reminder test support: a local SMTP server (aiosmtpd), fictional staff and clients."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any
from uuid import UUID

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session

from app.clients import service as clients_service
from app.core.access import Actor
from app.db import utcnow
from app.identity.models import Org, StaffUser
from app.reminders.models import Reminder
from tests.support.identity import make_org, make_user

# Plainly fictional client data the emails must never carry.
CLIENT_NAME = "Fictional Robin Example"
CLIENT_ADDRESS = "12 Imaginary Lane, Nowhere Town"
CLIENT_EMAIL = "robin.fictional@example.test"
NOTE = "Fictional narrative: the other party waited outside the school."


def actor_of(user: StaffUser) -> Actor:
    return Actor(kind="user", id=user.id, org_id=user.org_id, role=user.role)


def make_due_reminder(db: Session) -> Reminder:
    """A fictional agency's one manual reminder, due a second ago (the caller commits)."""
    org = make_org(db)
    advocate = make_user(db, org, "advocate")
    reminder = Reminder(org_id=org.id, assignee_id=advocate.id, kind="manual",
                        due_at=utcnow() - timedelta(seconds=1), note="Fictional reminder")
    db.add(reminder)
    db.flush()
    return reminder


@dataclass
class Agency:
    org: Org
    advocate: StaffUser
    colleague: StaffUser
    supervisor: StaffUser
    client_id: UUID  # in the advocate's caseload
    other_client_id: UUID  # in the colleague's caseload


def make_agency(db: Session, *, safe_contact: dict[str, Any] | None = None) -> Agency:
    org = make_org(db)
    advocate, colleague = make_user(db, org, "advocate"), make_user(db, org, "advocate")
    supervisor = make_user(db, org, "supervisor")
    personal = {"preferred_name": CLIENT_NAME, "address": CLIENT_ADDRESS,
                "contact_details": [{"kind": "email", "value": CLIENT_EMAIL}]}
    if safe_contact is not None:
        personal["safe_contact"] = safe_contact
    own = clients_service.create_client(db, actor_of(advocate), personal=personal).client
    other = clients_service.create_client(db, actor_of(colleague), personal={
        "preferred_name": "Fictional Sam Other"}).client
    db.commit()
    return Agency(org, advocate, colleague, supervisor, own.id, other.id)


@pytest.fixture
def agency(db: Session) -> Agency:
    return make_agency(db)


# --- a local SMTP server -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SmtpServer:
    """Messages accepted, in order. ``hang_at`` (1-based) makes that message's DATA wait
    until ``release`` is set; a message whose client vanished meanwhile is not accepted
    (as a server that could not send its final reply)."""

    port: int = 0
    messages: list[Message] = field(default_factory=list)
    hang_at: int | None = None
    received: int = 0
    hanging: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        import asyncio

        with self.lock:
            self.received += 1
            number = self.received
        if number == self.hang_at:
            self.hanging.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
            if server.transport is None or server.transport.is_closing():
                return "421 client gone"
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def message_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(m["Message-ID"]) for m in self.messages)


@pytest.fixture
def smtp_server() -> Any:
    handler = SmtpServer(port=free_port())
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        handler.release.set()
        controller.stop()


def smtp_settings(settings: Any, port: int) -> Any:
    return settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port,
                                       "smtp_starttls": False,
                                       "smtp_from": "reminders@example.test"})
