"""What to send to whom: contact requests, the texts and subjects MISP sends, temporary
passwords, and who is eligible for a mail under the GnuPG settings. Pure: no I/O."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mailer.domain.errors import MailRequestError, MissingFieldError
from misp_contracts.numbers import whole_number

Action = Literal["custom", "welcome", "password_reset"]
RecipientMode = Literal["all", "one", "new"]

# MISP's `User.email` rule (UsersController / User::$validate), case-insensitive.
EMAIL_RE = re.compile(
    r"^[\w!#$%&'*+/=?^`{|}~-]+(\.[\w!#$%&'*+/=?^`{|}~-]+)*@[a-z0-9_\-.]+$", re.IGNORECASE)

ACTIONS: dict[str, Action] = {
    "0": "custom", "custom": "custom", "1": "welcome", "welcome": "welcome",
    "2": "password_reset", "reset": "password_reset", "password_reset": "password_reset"}
RECIPIENTS: dict[str, RecipientMode] = {"0": "all", "all": "all", "1": "one", "one": "one",
                                        "2": "new", "new": "new"}
THREAT_LEVELS = {1: "High", 2: "Medium", 3: "Low", 4: "Undefined"}
OBSCURED_SUBJECT = "MISP notification"
LINE_BREAK = re.compile(r"[\r\n]")  # a header is one line: a break would start another
SUBJECT_LINE_BREAK = "A subject is one line: it cannot hold a line break."


@dataclass(frozen=True)
class ContactRequest:
    """`admin/users/email` or `quickEmail`, validated."""

    action: Action
    recipients: RecipientMode
    subject: str
    body: str
    custom_message: bool
    user_id: int | None = None
    new_email: str | None = None
    new_gpgkey: str | None = None


@dataclass(frozen=True)
class Recipient:
    email: str
    user_id: int | None
    org_id: int | None
    gpgkey: str | None
    disabled: bool = False


@dataclass(frozen=True)
class MailSettings:
    """The server settings the mailer obeys (latest published values over the defaults)."""

    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.values.get(name)

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        return value is True or (isinstance(value, str | int) and str(value) in ("1", "true"))

    @property
    def org(self) -> str:
        return str(self.get("MISP.org") or "ORGNAME")

    @property
    def sender(self) -> str:
        return str(self.get("MISP.email") or "email@example.com")

    @property
    def contact(self) -> str:
        return str(self.get("MISP.contact") or "")

    @property
    def baseurl(self) -> str:
        return str(self.get("MISP.external_baseurl") or self.get("MISP.baseurl") or "")

    @property
    def sender_name(self) -> str:
        return f"{self.org} MISP"


def _text(data: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = data.get(name)
        if value is not None and not isinstance(value, dict | list):
            return str(value)
    return ""


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true", "on", "yes")


def parse_contact_request(data: Mapping[str, Any]) -> ContactRequest:
    """The `admin/users/email` form (MISP's field names, flat or wrapped in `User`)."""
    action = ACTIONS.get(_text(data, "action").strip().lower() or "0")
    if action is None:
        raise MailRequestError({"action": ["Invalid action."]})
    mode = RECIPIENTS.get(_text(data, "recipient").strip().lower() or "0")
    if mode is None:
        raise MailRequestError({"recipient": ["Invalid recipient."]})
    subject = _text(data, "subject").strip()
    body = _text(data, "body", "message")
    custom = _flag(data.get("customMessage", action == "custom"))
    errors: dict[str, list[str]] = {}
    if action == "custom" and not subject:
        errors["subject"] = ["A subject is required for a custom message."]
    if LINE_BREAK.search(subject):
        errors["subject"] = [SUBJECT_LINE_BREAK]
    if (action == "custom" or custom) and not body.strip():
        errors["body"] = ["A message is required."]
    user_id = None
    new_email = new_key = None
    if mode == "one":
        raw = _text(data, "recipientEmailList", "user_id", "recipient_id").strip()
        user_id = whole_number(raw)
        if user_id is None:
            errors["recipientEmailList"] = ["Select a user."]
    elif mode == "new":
        new_email = _text(data, "recipientEmail", "email").strip()
        if not EMAIL_RE.fullmatch(new_email):
            errors["recipientEmail"] = ["Invalid e-mail address."]
        new_key = _text(data, "gpg", "gpgkey").strip() or None
        if action == "password_reset":
            errors["action"] = ["A future user has no account whose password could be reset."]
    if errors:
        raise MailRequestError(errors)
    return ContactRequest(action=action, recipients=mode, subject=subject, body=body,
                          custom_message=custom, user_id=user_id, new_email=new_email,
                          new_gpgkey=new_key)


def parse_quick_email(data: Mapping[str, Any], user_id: int) -> ContactRequest:
    """`quickEmail/{id}`: both fields are required (MISP answers 405 otherwise)."""
    subject = _text(data, "subject").strip()
    body = _text(data, "body")
    if not subject or not body.strip():
        raise MissingFieldError({"subject" if not subject else "body": ["Missing field."]})
    if LINE_BREAK.search(subject):
        raise MailRequestError({"subject": [SUBJECT_LINE_BREAK]})
    return ContactRequest(action="custom", recipients="one", subject=subject, body=body,
                          custom_message=True, user_id=user_id)


def temporary_password(length: int = 24) -> str:
    """Random, and within MISP's default policy (upper, lower, digit, and >= 16 characters)."""
    alphabet = string.ascii_letters + string.digits
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        if (any(c.isupper() for c in candidate) and any(c.islower() for c in candidate)
                and any(c.isdigit() for c in candidate)):
            return candidate


def signature(settings: MailSettings) -> str:
    lines = ["", "", "Best regards,", f"The {settings.org} support team"]
    if settings.contact:
        lines.append(f"Contact: {settings.contact}")
    return "\n".join(lines) + "\n"


def default_subject(action: Action, settings: MailSettings) -> str:
    if action == "welcome":
        return f"[{settings.org} MISP] New user registration"
    if action == "password_reset":
        return f"[{settings.org} MISP] Password reset"
    return f"[{settings.org} MISP] Message"


def compose_body(request: ContactRequest, settings: MailSettings, email: str,
                 password: str | None) -> str:
    """The message: the admin's text (or a generated one), then the credential, then the
    support team's signature."""
    url = settings.baseurl or "this MISP instance"
    if request.custom_message or request.action == "custom":
        text = request.body.rstrip()
    elif request.action == "welcome":
        text = (f"Hello,\n\nan account was created for you on the MISP instance of "
                f"{settings.org} ({url}). Your username is {email}.")
    else:
        text = (f"Hello,\n\na password reset was requested for your account {email} on the MISP "
                f"instance of {settings.org} ({url}).")
    if password is not None:
        text += (f"\n\nYour temporary password: {password}\n"
                 "You will be asked to choose a new password at your first login.")
    return text + signature(settings)


# ---- password reset links ("forgot password") --------------------------------------------------

RESET_LINK_TTL_MINUTES = 60  # Security.password_reset_link_ttl's default


def reset_link_token() -> str:
    """A reset link's secret: 256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def reset_link_ttl_minutes(settings: MailSettings) -> int:
    minutes = whole_number(settings.get("Security.password_reset_link_ttl"))
    return minutes if minutes is not None and minutes > 0 else RESET_LINK_TTL_MINUTES


def reset_link(settings: MailSettings, gateway_url: str, token: str) -> str:
    """`<base>/users/password_reset/<token>`, the base being MISP.external_baseurl or
    MISP.baseurl, else the gateway's URL."""
    base = (settings.baseurl or gateway_url).rstrip("/")
    return f"{base}/users/password_reset/{token}"


def reset_link_body(settings: MailSettings, email: str, link: str, ttl_minutes: int) -> str:
    url = settings.baseurl or "this MISP instance"
    text = (f"Hello,\n\na password reset was requested for your account {email} on the MISP "
            f"instance of {settings.org} ({url}).\n\n"
            f"To choose a new password, open this link within {ttl_minutes} minutes:\n{link}\n\n"
            "The link works once; asking again replaces it. If you did not ask for a new "
            "password, ignore this message: your password stays as it is.")
    return text + signature(settings)


def authkey_expiry_subject(settings: MailSettings) -> str:
    return f"[{settings.org} MISP] Your API key expires soon"


def authkey_expiry_body(email: str, authkey_start: str, authkey_end: str, expiration: datetime,
                        settings: MailSettings) -> str:
    """The warning for one key: which key (its first and last four characters, never more),
    when it expires, and where to make a new one."""
    where = (f"{settings.baseurl}/auth_keys/index" if settings.baseurl
             else "the API keys page of your profile")
    text = (f"Hello,\n\nthe API key {authkey_start}...{authkey_end} of your account {email} on "
            f"the MISP instance of {settings.org} expires on "
            f"{expiration.strftime('%Y-%m-%d %H:%M')} UTC. After that it will no longer be "
            f"accepted.\n\nTo keep your integrations working, create a new key at {where}.")
    return text + signature(settings)


# ---- eligibility under the GnuPG settings ------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A recipient who gets no mail, and why (the sender is told)."""

    email: str
    user_id: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"email": self.email, "user_id": self.user_id, "reason": self.reason}


def key_problem_text(problem: str) -> str:
    return {"invalid": "the GnuPG key is not a valid public key",
            "expired": "the GnuPG key has expired",
            "revoked": "the GnuPG key has been revoked"}.get(problem, f"the GnuPG key: {problem}")


# ---- alerts ------------------------------------------------------------------------------------


def subject_marking(tags: list[str], settings: MailSettings) -> str:
    """The TLP part of an alert subject (MISP's getEmailSubjectMarkForEvent)."""
    namespace = str(settings.get("MISP.email_subject_tag") or "tlp").lower()
    include_name = settings.get("MISP.email_subject_include_tag_name") is not False
    for tag in tags:
        if tag.lower().startswith(namespace + ":"):
            return tag if include_name else tag.split(":", 1)[1]
    return str(settings.get("MISP.email_subject_TLP_string") or "tlp:amber")


def alert_subject(event_id: int, info: str, threat_level_id: int, tags: list[str],
                  settings: MailSettings) -> str:
    """`[ORG MISP] Event 8 - OSINT - Dissecting XXX... - Low - TLP:AMBER` (extended) or
    `[ORG MISP] Event 7 - Low - TLP:AMBER`."""
    extended = ""
    if settings.flag("MISP.extended_alert_subject"):
        one_line = re.sub(r"[\r\n]", "", info)
        extended = (one_line[:55] + "... - ") if len(one_line) > 58 else one_line + " - "
    level = ""
    if settings.get("MISP.threatlevel_in_email_subject") is not False:
        level = THREAT_LEVELS.get(threat_level_id, "Undefined") + " - "
    marking = subject_marking(tags, settings).upper()
    return f"[{settings.org} MISP] Event {event_id} - {extended}{level}{marking}"


def alert_body(event_id: int, info: str, summary: str, settings: MailSettings) -> str:
    url = f"{settings.baseurl}/events/view/{event_id}" if settings.baseurl else f"event {event_id}"
    text = f"A new or modified event was just published on {url}\n\nEvent info: {info}\n"
    if summary:
        text += "\n" + summary.rstrip() + "\n"
    return text + signature(settings)


def alert_body_unencrypted(event_id: int, settings: MailSettings) -> str:
    """GnuPG.bodyonlyencrypted: what a user without a key gets instead of the details."""
    url = f"{settings.baseurl}/events/view/{event_id}" if settings.baseurl else f"event {event_id}"
    return (f"A new or modified event was just published on {url}\n\nThe details are only sent "
            "encrypted: add your GnuPG key to your profile to receive them by e-mail."
            + signature(settings))


def contact_subject(event_id: int, tags: list[str], settings: MailSettings) -> str:
    marking = subject_marking(tags, settings).upper()
    return f"[{settings.org} MISP] Need info about event {event_id} - {marking}"


def contact_body(event_id: int, info: str, message: str, requester: str,
                 settings: MailSettings) -> str:
    url = f"{settings.baseurl}/events/view/{event_id}" if settings.baseurl else ""
    return (f"Hello,\n\nsomeone wants to get in touch with your organisation about event "
            f"{event_id} ({info}) {url}\n\nThe user who asked: {requester}\n\n"
            f"Their message:\n\n{message.rstrip()}\n" + signature(settings))
