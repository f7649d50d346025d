"""Outgoing mail: SMTP in production, ``var/outbox`` files in development.

Messages never contain personal data about the young people followed: only links and
notices that something awaits the recipient in Maillon.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from hub.config import Config


def build_message(config: Config, *, to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text message from the configured sender."""
    message = EmailMessage()
    message["From"] = config.mail_sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="maillon.invalid")
    message.set_content(body)
    return message


def deliver(config: Config, message: EmailMessage) -> None:
    """Send through SMTP when configured, else write an ``.eml`` file to the outbox."""
    if config.mail_server:
        with smtplib.SMTP(config.mail_server, config.mail_port, timeout=30) as smtp:
            if config.mail_use_tls:
                smtp.starttls(context=ssl.create_default_context())
            if config.mail_username:
                smtp.login(config.mail_username, config.mail_password)
            smtp.send_message(message)
        return
    outbox = config.mail_outbox
    outbox.mkdir(parents=True, exist_ok=True)
    name = str(message["Message-ID"]).strip("<>").replace("@", "_")
    path = outbox / f"{name}.eml"
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(message.as_bytes())
    os.replace(temporary, path)  # whole files only: readers never see half a message
