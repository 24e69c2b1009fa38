"""A worker keeps one SMTP session between messages, and never trusts a stale one: a
session the server dropped is noticed (NOOP) and opened again, a failed send drops the
session without sending again, and a session is never used across a fork."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from app.reminders import delivery
from tests.reminders.conftest import SmtpServer, free_port, smtp_settings


class CountingServer(SmtpServer):
    """Counts the sessions (EHLO) it saw; refuses DATA while ``refuse`` is set."""

    def __init__(self, port: int) -> None:
        super().__init__(port=port)
        self.sessions = 0
        self.refuse = False

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any,  # noqa: N802
                          hostname: str, responses: list[str]) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.refuse:
            return "554 refused by the test"
        return await super().handle_DATA(server, session, envelope)


class Running:
    def __init__(self, handler: CountingServer) -> None:
        self.handler = handler
        self.controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
        self.controller.start()

    def restart(self) -> None:
        """The server goes away and comes back on the same port (its sessions are gone)."""
        self.controller.stop()
        self.controller = Controller(self.handler, hostname="127.0.0.1",
                                     port=self.handler.port)
        self.controller.start()


@pytest.fixture
def counting() -> Iterator[tuple[CountingServer, Running]]:
    handler = CountingServer(free_port())
    running = Running(handler)
    delivery.close_smtp()
    try:
        yield handler, running
    finally:
        delivery.close_smtp()
        running.controller.stop()


def message(n: int) -> EmailMessage:
    made = EmailMessage()
    made["From"], made["To"] = "reminders@example.test", "advocate@example.test"
    made["Subject"], made["Message-ID"] = "Due: a reminder", f"<session-test-{n}@example.test>"
    made.set_content("Fictional: something is due.\n")
    return made


def test_a_failed_send_drops_the_session_and_is_not_repeated(counting, settings) -> None:
    server, _ = counting
    configured = smtp_settings(settings, server.port)
    server.refuse = True
    with pytest.raises(delivery.smtplib.SMTPDataError):
        delivery.smtp_send(message(1), configured)
    assert server.messages == [] and delivery._links.link is None
    server.refuse = False
    delivery.smtp_send(message(2), configured)
    assert [m["Message-ID"] for m in server.messages] == ["<session-test-2@example.test>"]
    assert server.sessions == 2  # a new session after the failure


def test_a_session_the_server_closed_is_noticed_and_opened_again(counting, settings,
                                                                 monkeypatch) -> None:
    server, running = counting
    configured = smtp_settings(settings, server.port)
    delivery.smtp_send(message(1), configured)
    running.restart()  # as after a server restart or its idle timeout
    monkeypatch.setattr(delivery, "SMTP_IDLE_CHECK_S", 0.0)
    delivery.smtp_send(message(2), configured)
    assert len(server.messages) == 2 and server.sessions == 2


def test_messages_share_one_session(counting, settings) -> None:
    server, _ = counting
    configured = smtp_settings(settings, server.port)
    for n in range(5):
        delivery.smtp_send(message(n), configured)
    assert len(server.messages) == 5
    assert server.sessions == 1


def test_a_forked_process_opens_its_own_session(counting, settings) -> None:
    server, _ = counting
    configured = smtp_settings(settings, server.port)
    delivery.smtp_send(message(1), configured)
    assert delivery._links.link is not None
    delivery._links.link.pid = -1  # as a forked child sees its parent's session
    delivery.smtp_send(message(2), configured)
    delivery.smtp_send(message(3), configured)
    assert len(server.messages) == 3
    assert server.sessions == 2  # the child's own, then reused


def test_threads_never_share_a_session(counting, settings) -> None:
    """Celery's threads pool runs tasks side by side: each thread has its own session."""
    server, _ = counting
    configured = smtp_settings(settings, server.port)
    errors: list[BaseException] = []

    def send_many(first: int) -> None:
        try:
            for n in range(first, first + 20):
                delivery.smtp_send(message(n), configured)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            delivery.close_smtp()

    threads = [threading.Thread(target=send_many, args=(i * 100,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(server.message_ids()) == 60
    assert server.sessions == 3
