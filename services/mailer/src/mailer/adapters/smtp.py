"""SMTP delivery with the standard library (in a thread): one connection per batch, STARTTLS and
AUTH when configured, and each failure classified as transient (retry) or permanent."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["sent", "retry", "failed"]


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    starttls: bool = False
    username: str = ""
    password: str = ""
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    error: str | None = None


def classify(exc: BaseException) -> Result:
    """4xx and connection trouble are transient; 5xx is a permanent refusal."""
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
    if code is not None and 500 <= code < 600 and not isinstance(exc, smtplib.SMTPConnectError):
        return Result("failed", text)
    return Result("retry", text)


class Connection:
    """One SMTP session, opened on first use and reopened after any error."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        c = self.config
        smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
        try:
            smtp.ehlo()
            if c.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if c.username:
                smtp.login(c.username, c.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, sender: str, recipient: str, raw: bytes) -> Result:
        try:
            if self._smtp is None:
                self._smtp = self._open()
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
