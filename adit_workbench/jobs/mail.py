"""The "job finished" mail to the owner, over plain SMTP.

The server and sender are the settings ``smtp_host``, ``smtp_port`` and ``smtp_from``
(port 0: mail off). The text names the job, its kind, status and message, never a
patient: job messages are built without PHI.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from sqlalchemy import update

from ..config import Settings, get_settings
from ..store import Database
from ..store.jobs import Job

__all__ = ["recipient", "send_finished_mail"]


def recipient(owner: str, settings: Settings | None = None) -> str:
    """The owner's address: the name itself if it is one, else name@mail_domain."""
    domain = (settings or get_settings()).mail_domain
    return owner if "@" in owner else f"{owner}@{domain}"


def send_finished_mail(database: Database, job_id: int, settings: Settings | None = None) -> bool:
    """Mail the owner once if the job asked for it; True if a mail was sent now."""
    settings = settings or get_settings()
    if not settings.smtp_port:
        return False
    with database.session() as session:
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.send_finished_mail.is_(True), Job.mail_sent.is_(False))
            .values(mail_sent=True)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return False
        job = session.get(Job, job_id)
        assert job is not None
        mail = EmailMessage()
        mail["From"] = settings.smtp_from
        mail["To"] = recipient(job.owner, settings)
        mail["Subject"] = f"adit-workbench: job {job.id} finished: {job.status}"
        mail.set_content(
            f"Your {job.kind.replace('_', ' ')} job {job.id} has finished.\n\n"
            f"Status: {job.status}\n"
            f"Message: {job.message}\n"
            + (f"Project: {job.project_name}\n" if job.project_name else "")
            + "\nSee it with: adit-workbench jobs show "
            + str(job.id)
            + "\n"
        )
        # Inside the transaction: if the server refuses, mail_sent rolls back with it.
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
            smtp.send_message(mail)
    return True
