"""The mailer's contracts: what it was asked to send (commands), what happened to each mail
(events, never the body), and the temporary credentials it issues (only their argon2id hash).

- `NotifyEventPublished` and `ContactReporter` come from the event-sharing part of the platform
  (outside this repository) on `misp.mailer.commands.v1`; the command id is the idempotency key.
  `SendPasswordReset` comes from identity (a user's "forgot password") on the same topic.
- `MailSent` / `MailFailed` on `misp.mailer.mail.v1` feed the audit log (`email` / `admin_email`).
- `TemporaryPasswordIssued` on `misp.mailer.credential.v1` carries the argon2id hash of a password
  the mailer generated and mailed; identity sets it as the user's password (see
  services/mailer/README.md). The password itself never crosses Kafka.
- `PasswordResetLinkIssued` on the same topic: the mailer mailed a single-use reset link (a user's
  "forgot password"); it carries only the sha256 of the link's token, which identity keeps to
  recognise the link. The token itself never crosses Kafka.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from misp_contracts.events.base import DomainEvent, register

MAILER_COMMANDS_TOPIC = "misp.mailer.commands.v1"
MAIL_TOPIC = "misp.mailer.mail.v1"
CREDENTIAL_TOPIC = "misp.mailer.credential.v1"

# What a mail was (MISP's Log action: `admin_email` for an administrator's message to users,
# `email` for mail the platform sends by itself).
MailKind = Literal["custom", "welcome", "password_reset", "alert", "contact_reporter",
                   "forgot_password", "authkey_expiry", "other"]


class PublishedEvent(BaseModel):
    """The part of a MISP event an alert mail shows (no attribute values: the sharing part
    renders `summary` for the users who may see it)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    uuid: str
    info: str
    threat_level_id: int = 4  # 1 High, 2 Medium, 3 Low, 4 Undefined
    analysis: int = 0
    date: str | None = None  # "YYYY-MM-DD"
    distribution: int = 0
    orgc_id: int = 0
    orgc_name: str = ""
    org_id: int = 0
    tags: list[str] = Field(default_factory=list)
    attribute_count: int = 0


@register
class NotifyEventPublished(DomainEvent):
    """An event was published: alert the `autoalert` users of the orgs that may see it."""

    type: ClassVar[str] = "misp.mailer.commands.notify-event-published.v1"
    topic: ClassVar[str] = MAILER_COMMANDS_TOPIC
    event: PublishedEvent
    # The orgs whose users may see the event; None: every org (distribution 2 and 3).
    visible_org_ids: list[int] | None = None
    # The event's text as the sharing part renders it (may be empty).
    summary: str = ""


@register
class ContactReporter(DomainEvent):
    """A user asked to get in touch with the organisation that reported an event."""

    type: ClassVar[str] = "misp.mailer.commands.contact-reporter.v1"
    topic: ClassVar[str] = MAILER_COMMANDS_TOPIC
    event: PublishedEvent
    message: str
    requester_user_id: int
    requester_email: str
    requester_org_name: str = ""
    # MISP's `person`: only the event's creator instead of the org's `contactalert` users.
    creator_only: bool = False
    creator_user_id: int | None = None



@register
class SendPasswordReset(DomainEvent):
    """A user who forgot their password asked for a new one (identity's `users/forgot`, with
    `Security.allow_password_forgotten` on): the mailer mails a single-use link that sets a new
    password (`PasswordResetLinkIssued`, only the token's hash). No secret in the command."""

    type: ClassVar[str] = "misp.mailer.commands.send-password-reset.v1"
    topic: ClassVar[str] = MAILER_COMMANDS_TOPIC
    user_id: int
    email: str  # the address identity knew; the mailer mails only if its copy still matches
    # Identity's copy of the user when it asked, at `version` of the user's stream: the mailer
    # mails it when its own projection has not reached that version yet (a user created or
    # changed a moment before), else its projection decides. None from older producers.
    org_id: int | None = None
    gpgkey: str | None = None
    version: int | None = None

class _MailEvent(DomainEvent):
    topic: ClassVar[str] = MAIL_TOPIC
    mail_id: str  # the mail's stream id (uuid)
    message_id: str  # the RFC 5322 Message-ID it was (or would have been) sent with
    request_id: str  # the API request or command it came from (idempotency key)
    kind: MailKind
    action: str  # MISP's Log action: "admin_email" or "email"
    email: str  # recipient
    user_id: int | None = None  # recipient user, None for a future user
    subject: str
    encrypted: bool = False
    signed: bool = False
    attempts: int = 1


@register
class MailSent(_MailEvent):
    """The SMTP server accepted the mail."""

    type: ClassVar[str] = "misp.mailer.mail.emailed.v1"


@register
class MailFailed(_MailEvent):
    """The mail could not be delivered: a permanent refusal, or retries exhausted."""

    type: ClassVar[str] = "misp.mailer.mail.failed.v1"
    error: str
    permanent: bool = True


@register
class TemporaryPasswordIssued(DomainEvent):
    """The mailer mailed the user a temporary password; identity sets its hash as the password
    (with `change_pw`), idempotently per `credential_id`."""

    type: ClassVar[str] = "misp.mailer.credential.issued.v1"
    topic: ClassVar[str] = CREDENTIAL_TOPIC
    credential_id: str
    user_id: int
    email: str
    password_hash: str  # argon2id (PHC string); never the password
    change_pw: bool = True
    reason: Literal["password_reset", "welcome", "forgot_password"] = "password_reset"


@register
class PasswordResetLinkIssued(DomainEvent):
    """The mailer mailed the user a single-use password reset link; identity keeps `token_hash`
    as the user's one live link (a newer link replaces an older one), idempotently per
    `credential_id`, until `expires_at` or its use.

    `token_hash` is the hex sha256 of the token (`secrets.token_urlsafe(32)`, 256 random bits):
    a slow hash guards guessable secrets such as passwords; nobody can search 2**256 tokens, so a
    fast one-way hash is as safe and lets identity find a link by the hash of what it is given."""

    type: ClassVar[str] = "misp.mailer.credential.reset-link-issued.v1"
    topic: ClassVar[str] = CREDENTIAL_TOPIC
    credential_id: str
    user_id: int
    email: str
    token_hash: str  # hex sha256 of the token; never the token
    expires_at: datetime
