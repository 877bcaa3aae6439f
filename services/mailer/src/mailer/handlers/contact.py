"""Contacting users (`admin/users/email` to one user or a future user, `quickEmail`; all users
is a job, handlers/bulk.py), and the alerts and contact-reporter commands: each builds its
drafts, then `compose.queue` renders and queues them in one transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailer.adapters import store
from mailer.domain.errors import EmailingDisabledError, MailRequestError, RecipientNotFoundError
from mailer.domain.model import (
    ContactRequest,
    MailSettings,
    Recipient,
    Skipped,
    alert_body,
    alert_body_unencrypted,
    alert_subject,
    compose_body,
    contact_body,
    contact_subject,
    default_subject,
    key_problem_text,
    reset_link,
    reset_link_body,
    reset_link_token,
    reset_link_ttl_minutes,
    temporary_password,
)
from mailer.handlers.compose import Draft, Mailer, Queued, prepare, queue
from misp_contracts.access import Rights, RoleFlags, TargetUser, can_mail, can_see_user
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.mailer import ContactReporter, NotifyEventPublished, SendPasswordReset

NOT_MANAGED = "the sender may not reset the password of this user"


def sender_rights(actor: Actor, scope_org_id: int | None) -> Rights:
    """The sender as the API authorised them: an admin (the routes' `Admin`), a site admin when
    unscoped, else an org admin of `scope_org_id` (a bulk job knows no more than that)."""
    if scope_org_id is None:
        return Rights(user_id=actor.user_id or 0, org_id=actor.org_id or 0, is_site_admin=True)
    return Rights(user_id=actor.user_id or 0, org_id=scope_org_id, is_org_admin=True)


def _target(recipient: Recipient) -> TargetUser:
    assert recipient.user_id is not None and recipient.org_id is not None
    return TargetUser(id=recipient.user_id, org_id=recipient.org_id)


def may_mail(sender: Rights, recipient: Recipient, role: RoleFlags | None,
             request: ContactRequest) -> bool:
    """misp_contracts.access.can_mail: anything but a custom message issues a password."""
    return can_mail(sender, _target(recipient), role, issues_password=request.action != "custom")


def by_rule(sender: Rights, recipients: Sequence[Recipient], roles: dict[int, RoleFlags],
            request: ContactRequest) -> tuple[list[Recipient], list[Skipped]]:
    """Whom a mail to all users reaches: users the sender may not see are out of scope (as in
    identity's index of users); those they may see but not manage get no password, and the
    sender is told."""
    reached: list[Recipient] = []
    refused: list[Skipped] = []
    for r in recipients:
        role = roles.get(r.user_id) if r.user_id is not None else None
        if not can_see_user(sender, _target(r), role):
            continue
        if may_mail(sender, r, role, request):
            reached.append(r)
        else:
            refused.append(Skipped(r.email, r.user_id, NOT_MANAGED))
    return reached, refused


def drafts_for(request: ContactRequest, settings: MailSettings,
               recipients: Sequence[Recipient]) -> list[Draft]:
    """One draft per recipient; a password reset or welcome mail gets a fresh temporary
    password for each user (only its hash ever leaves the mailer)."""
    subject = request.subject or default_subject(request.action, settings)
    drafts = []
    for r in recipients:
        password = (temporary_password() if request.action != "custom" and r.user_id is not None
                    else None)
        drafts.append(Draft(recipient=r, subject=subject,
                            body=compose_body(request, settings, r.email, password),
                            password=password, reason=request.action))
    return drafts


async def contact_users(engine: AsyncEngine, mailer: Mailer, request: ContactRequest, *,
                        request_id: str, actor: Actor, scope_org_id: int | None) -> Queued:
    """Mail the one user (or future user) a request names; `scope_org_id` limits an org admin
    to their own org, and to the users whose password they may reset for anything but a custom
    message (misp_contracts.access).

    Bad input (unknown user, invalid key of a future user, a recipient who cannot get the mail)
    raises before anything is queued."""
    if request.recipients == "all":
        raise ValueError("a mail to all users is a job: handlers.bulk.request_bulk_email")
    async with engine.connect() as conn:
        settings = await store.load_settings(conn)
        if settings.flag("MISP.disable_emailing"):
            raise EmailingDisabledError()
        if request.recipients == "one":
            assert request.user_id is not None
            found = await store.user(conn, request.user_id)
            if found is None:
                raise RecipientNotFoundError()
            # Identity's answer for a user the caller may not manage: "Invalid user".
            roles = await store.role_flags(conn, user_ids=[request.user_id])
            if not may_mail(sender_rights(actor, scope_org_id), found,
                            roles.get(request.user_id), request):
                raise RecipientNotFoundError()
            recipients = [found]
        else:
            assert request.new_email is not None
            recipients = [Recipient(email=request.new_email, user_id=None, org_id=None,
                                    gpgkey=request.new_gpgkey)]
    if request.recipients == "new" and request.new_gpgkey:
        check = await mailer.check_key(request.new_gpgkey)
        if not check.usable:
            raise MailRequestError({"gpg": [key_problem_text(check.problem or "invalid")]})
    drafts = drafts_for(request, settings, recipients)
    prepared = await prepare(mailer, drafts, settings, request_id=request_id)
    if prepared[1]:
        skipped = prepared[1][0]
        raise MailRequestError({"recipient": [f"{skipped.email}: {skipped.reason}"]},
                               message="Could not send the e-mail")
    action = "admin_email"
    async with engine.begin() as conn:
        result = await queue(conn, mailer, drafts, request_id=request_id,
                             kind=request.action, action=action, actor=actor,
                             settings=settings, prepared=prepared)
    mailer.wake()
    return result


# ---- commands from the event-sharing part ------------------------------------------------------


async def when_event_published_alert(conn: AsyncConnection, envelope: Envelope,
                                     mailer: Mailer) -> Queued | None:
    """Alert mails to the `autoalert` users of the orgs that may see the event."""
    command = NotifyEventPublished.model_validate(envelope.data)
    settings = await store.load_settings(conn)
    if settings.flag("MISP.disable_emailing"):
        return None
    e = command.event
    recipients = await store.users(conn, org_ids=command.visible_org_ids, autoalert=True)
    subject = alert_subject(e.id, e.info, e.threat_level_id, e.tags, settings)
    drafts = [Draft(recipient=r, subject=subject,
                    body=alert_body(e.id, e.info, command.summary, settings),
                    body_unencrypted=alert_body_unencrypted(e.id, settings))
              for r in recipients]
    result = await queue(conn, mailer, drafts, request_id=envelope.id, kind="alert",
                         action="email", actor=envelope.actor, settings=settings)
    mailer.wake()
    return result


async def when_contact_requested_mail_reporter(conn: AsyncConnection, envelope: Envelope,
                                               mailer: Mailer) -> Queued | None:
    """The reporting org's `contactalert` users (or only the event's creator) get the
    requester's message."""
    command = ContactReporter.model_validate(envelope.data)
    settings = await store.load_settings(conn)
    if settings.flag("MISP.disable_emailing"):
        return None
    e = command.event
    if command.creator_only and command.creator_user_id is not None:
        creator = await store.user(conn, command.creator_user_id)
        recipients = [creator] if creator is not None and not creator.disabled else []
    else:
        recipients = await store.users(conn, org_ids=[e.orgc_id], contactalert=True)
    requester = command.requester_email + (f" ({command.requester_org_name})"
                                           if command.requester_org_name else "")
    drafts = [Draft(recipient=r, subject=contact_subject(e.id, e.tags, settings),
                    body=contact_body(e.id, e.info, command.message, requester, settings))
              for r in recipients]
    result = await queue(conn, mailer, drafts, request_id=envelope.id, kind="contact_reporter",
                         action="email", actor=envelope.actor, settings=settings)
    mailer.wake()
    return result


# ---- commands from identity --------------------------------------------------------------------


async def _reset_recipient(conn: AsyncConnection,
                           command: SendPasswordReset) -> Recipient | None:
    """Identity's copy of the user when the projection is behind it (the mailer's consumer reads
    the user topic and the commands apart: a user created a moment before may be unknown yet);
    else the projection's, unless the user is gone, disabled or has another address since."""
    known = await store.user_version(conn, command.user_id)
    if command.version is not None and (known is None or known < command.version):
        return Recipient(email=command.email, user_id=command.user_id, org_id=command.org_id,
                         gpgkey=command.gpgkey)
    recipient = await store.user(conn, command.user_id)
    if (recipient is None or recipient.disabled
            or recipient.email.strip().lower() != command.email.strip().lower()):
        return None
    return recipient


async def when_password_reset_requested_mail(conn: AsyncConnection, envelope: Envelope,
                                             mailer: Mailer) -> Queued | None:
    """A user's "forgot password": a single-use link that sets a new password, valid for
    Security.password_reset_link_ttl minutes; only the sha256 of its token is published
    (PasswordResetLinkIssued, for identity). Nothing when the user is gone, disabled, or their
    address changed since identity asked. A redelivered command mails nothing again (its id
    is the request's), and the token made for it is dropped unseen."""
    command = SendPasswordReset.model_validate(envelope.data)
    settings = await store.load_settings(conn)
    if settings.flag("MISP.disable_emailing"):
        return None
    recipient = await _reset_recipient(conn, command)
    if recipient is None:
        return None
    token = reset_link_token()
    minutes = reset_link_ttl_minutes(settings)
    draft = Draft(recipient=recipient, subject=default_subject("password_reset", settings),
                  body=reset_link_body(settings, recipient.email,
                                       reset_link(settings, mailer.gateway_url, token), minutes),
                  reason="forgot_password",
                  link_token_hash=hashlib.sha256(token.encode()).hexdigest(),
                  link_expires_at=datetime.now(UTC) + timedelta(minutes=minutes))
    result = await queue(conn, mailer, [draft], request_id=envelope.id, kind="forgot_password",
                         action="email", actor=envelope.actor, settings=settings)
    mailer.wake()
    return result
