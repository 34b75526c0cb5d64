"""The finished mail, sent once, to a tiny SMTP debugging server written here."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message

import pytest

from adit_workbench.access import Access
from adit_workbench.config import get_settings
from adit_workbench.jobs.kinds import selective_transfer
from adit_workbench.jobs.mail import send_finished_mail

from .conftest import FakeTransfer, Harness


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO, MAIL, RCPT, DATA, QUIT."""

    def _send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self._send("220 test SMTP")
        sender, recipients = "", []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            verb = raw.decode(errors="replace").strip().upper()
            if verb.startswith(("EHLO", "HELO")):
                self._send("250 test")
            elif verb.startswith("MAIL FROM"):
                sender = raw.decode().split(":", 1)[1].strip(" <>\r\n")
                self._send("250 OK")
            elif verb.startswith("RCPT TO"):
                recipients.append(raw.decode().split(":", 1)[1].strip(" <>\r\n"))
                self._send("250 OK")
            elif verb == "DATA":
                self._send("354 go on")
                body = b""
                while (line := self.rfile.readline()) not in (b".\r\n", b""):
                    body += line[1:] if line.startswith(b"..") else line
                self.server.messages.append((sender, recipients, message_from_bytes(body)))  # type: ignore[attr-defined]
                self._send("250 queued")
            elif verb == "QUIT":
                self._send("221 bye")
                return
            else:
                self._send("250 OK")


class SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.messages: list[tuple[str, list[str], Message]] = []


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    server = SmtpServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("ADIT_WB_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ADIT_WB_SMTP_PORT", str(server.server_address[1]))
    monkeypatch.setenv("ADIT_WB_SMTP_FROM", "workbench@hospital.example")
    monkeypatch.setenv("ADIT_WB_MAIL_DOMAIN", "hospital.example")
    get_settings.cache_clear()
    yield server
    get_settings.cache_clear()  # the environment is restored after this teardown
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_finished_mail_reaches_the_owner_once(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer, smtp: SmtpServer
) -> None:
    jobs = harness.manager(alice)
    job = selective_transfer(
        jobs, ["1.2.3.4"], source="SANDBOX", destination="OUT", pseudonym="P",
        send_finished_mail=True, project_name="Lung study",
    )  # fmt: skip
    harness.drain()
    job.wait(10, progress=False)
    [(sender, recipients, mail)] = smtp.messages
    assert sender == "workbench@hospital.example" and recipients == ["alice@hospital.example"]
    assert mail["Subject"] == f"adit-workbench: job {job.id} finished: SUCCESS"
    text = mail.get_payload()
    assert "All tasks succeeded." in str(text) and "Lung study" in str(text)
    assert not send_finished_mail(harness.database, job.id)  # never twice
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_no_mail_unless_asked(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer, smtp: SmtpServer
) -> None:
    job = selective_transfer(
        harness.manager(alice), ["1.2.3.4"], source="SANDBOX", destination="OUT", pseudonym="P"
    )
    harness.drain()
    job.wait(10, progress=False)
    assert smtp.messages == []
