"""Handing messages to an SMTP server (smtplib): STARTTLS or TLS, login, one connection
reused for a whole run, and a steady rate so that a large campaign does not trip the
server's limits."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import time
from email.message import EmailMessage
from types import TracebackType

from touchpoints.activate.email_settings import EmailSettings
from touchpoints.errors import TouchpointsError

__all__ = ["MailError", "Mailer", "MessageRefused"]


class MailError(TouchpointsError):
    """The mail server could not be reached or refused a message."""

    code = "mail_unavailable"


class MessageRefused(MailError):
    """The server refused this one message (its recipient or content), not all mail."""


class Mailer:
    """An SMTP session that sends at most `rate_per_second` messages a second."""

    def __init__(self, settings: EmailSettings, tls_context: ssl.SSLContext | None = None):
        self.settings = settings
        self.tls_context = tls_context or ssl.create_default_context(cafile=settings.ca_file)
        self._smtp: smtplib.SMTP | None = None
        self._next_at = 0.0

    def __enter__(self) -> Mailer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            if s.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout_seconds, context=self.tls_context
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
                if s.security == "starttls":
                    smtp.starttls(context=self.tls_context)
            if s.username:
                smtp.login(s.username, s.password or "")
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(
                f"the mail server {s.host}:{s.port} ({s.security}) refused the connection: {exc}",
                field="host",
            ) from exc
        return smtp

    def send(self, message: EmailMessage) -> None:
        """Hand one message over; returns once the server accepted it (MailError if not).
        A dropped connection is reopened once."""
        wait = self._next_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._next_at = max(self._next_at, time.monotonic()) + 1.0 / self.settings.rate_per_second
        for attempt in (1, 2):
            if self._smtp is None:
                self._smtp = self._connect()
            try:
                refused = self._smtp.send_message(message)
            except smtplib.SMTPServerDisconnected as exc:
                self._smtp = None
                if attempt == 2:
                    raise MailError(f"the mail server hung up: {exc}") from exc
                continue
            except (
                smtplib.SMTPRecipientsRefused,
                smtplib.SMTPDataError,
                smtplib.SMTPSenderRefused,
            ) as exc:
                raise MessageRefused(f"the mail server refused the message: {exc}") from exc
            except smtplib.SMTPException as exc:
                raise MailError(f"the mail server failed: {exc}") from exc
            if refused:
                raise MessageRefused(f"the mail server refused the recipient: {sorted(refused)}")
            return

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._smtp = None
