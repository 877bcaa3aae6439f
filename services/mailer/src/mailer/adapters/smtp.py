"""SMTP delivery with the standard library (in a thread): one connection per batch, TLS (STARTTLS
or implicit, the server's certificate verified against the system's CAs or a CA file) and AUTH
when configured, and each failure classified as transient (retry) or permanent."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["sent", "retry", "failed"]


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    starttls: bool = False
    implicit_tls: bool = False  # SMTPS (usually port 465): TLS from the first byte
    ca_file: str = ""  # the CAs the server's certificate is checked against (empty: the system's)
    username: str = ""
    password: str = field(default="", repr=False)  # never in a log line or a traceback
    timeout_s: float = 10.0

    def tls_context(self) -> ssl.SSLContext:
        """Certificate and host name always verified; a private CA comes in `ca_file`."""
        return ssl.create_default_context(cafile=self.ca_file or None)


def open_session(config: SmtpConfig, *, timeout_s: float | None = None) -> smtplib.SMTP:
    """A greeted session: EHLO, then TLS and login as configured (closed again on failure)."""
    timeout = config.timeout_s if timeout_s is None else timeout_s
    smtp = (smtplib.SMTP_SSL(config.host, config.port, timeout=timeout,
                             context=config.tls_context()) if config.implicit_tls
            else smtplib.SMTP(config.host, config.port, timeout=timeout))
    try:
        smtp.ehlo()
        if config.starttls and not config.implicit_tls:
            smtp.starttls(context=config.tls_context())
            smtp.ehlo()
        if config.username:
            smtp.login(config.username, config.password)
    except BaseException:
        smtp.close()
        raise
    return smtp


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    error: str | None = None


def classify(exc: BaseException) -> Result:
    """4xx and connection trouble are transient; 5xx is a permanent refusal, except a refused
    login: that is the relay's configuration, not the mail (Postfix's default soft bounce), so
    the mail waits, within its attempts, for an operator to fix the credentials."""
    code: int | None = None
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [c for c, _ in exc.recipients.values()]
        code = max(codes) if codes else None
        text = "; ".join(f"{r}: {c} {m.decode('utf-8', 'replace') if isinstance(m, bytes) else m}"
                         for r, (c, m) in exc.recipients.items())
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        error = exc.smtp_error
        text = f"{code} {error.decode('utf-8', 'replace') if isinstance(error, bytes) else error}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = text[:500]
    if code is not None and 500 <= code < 600 and not isinstance(
            exc, smtplib.SMTPConnectError | smtplib.SMTPAuthenticationError):
        return Result("failed", text)
    return Result("retry", text)


class Connection:
    """One SMTP session, opened on first use and reopened after any error."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def send(self, sender: str, recipient: str, raw: bytes) -> Result:
        try:
            if self._smtp is None:
                self._smtp = open_session(self.config)
            self._smtp.sendmail(sender, [recipient], raw)
            return Result("sent")
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            return classify(exc)

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
