"""Turn drafts into final messages and queue them: every check and every gpg operation happens
before the one transaction that records the request, the mails, the credentials' events and the
outbox rows, so a request is queued whole or not at all."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import structlog
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncConnection

from mailer.adapters import mime, store
from mailer.adapters.gpg import KeyCheck, Keyring, keyring_for
from mailer.domain.model import (
    OBSCURED_SUBJECT,
    MailSettings,
    Recipient,
    Skipped,
    key_problem_text,
)
from mailer.settings import MailerSettings
from misp_contracts.envelope import Actor
from misp_contracts.events.mailer import PasswordResetLinkIssued, TemporaryPasswordIssued

log = structlog.get_logger(__name__)

MAIL_NAMESPACE = uuid.UUID("6a1f3b0e-2d0c-4b7e-9a55-3f1f6f0c1e42")
_HASHER = PasswordHasher()

# Told `(done, total)` as a long request goes (a bulk send's job reports it as its progress).
Progress = Callable[[int, int], Awaitable[None]]
PROGRESS_STEP = 10  # drafts per progress report

_In = TypeVar("_In")
_Out = TypeVar("_Out")


@dataclass(frozen=True)
class Draft:
    """One mail before rendering; `password` is mailed and only its hash leaves the mailer."""

    recipient: Recipient
    subject: str
    body: str
    body_unencrypted: str | None = None  # what GnuPG.bodyonlyencrypted sends to keyless users
    password: str | None = None
    reason: str = "password_reset"
    # A reset link the body carries: only the sha256 of its token leaves the mailer.
    link_token_hash: str | None = None
    link_expires_at: datetime | None = None


@dataclass
class Queued:
    request_id: str
    replay: bool = False
    mails: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class Mailer:
    """What composing needs: the keyring (instance key made on first use) and a limit on
    concurrent gpg processes. `wake` tells a delivery loop in this process to look now."""

    def __init__(self, keyring: Keyring, *, parallelism: int = 4,
                 wake: Callable[[], None] | None = None, gateway_url: str = "") -> None:
        self.keyring = keyring
        self.gateway_url = gateway_url  # links' base when MISP.baseurl is empty
        self.semaphore = asyncio.Semaphore(max(1, parallelism))
        self.wake = wake or (lambda: None)
        self._key_lock = asyncio.Lock()

    async def instance_key(self, settings: MailSettings) -> str:
        if self.keyring.fingerprint is None:
            async with self._key_lock:
                if self.keyring.fingerprint is None:
                    email = str(settings.get("GnuPG.email") or settings.sender)
                    await asyncio.to_thread(self.keyring.ensure_instance_key,
                                            name=f"{settings.org} support", email=email)
        assert self.keyring.fingerprint is not None
        return self.keyring.fingerprint

    async def run_gpg(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` (a keyring call) in a thread, at most `parallelism` at once."""
        async with self.semaphore:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def check_key(self, armored: str) -> KeyCheck:
        check: KeyCheck = await self.run_gpg(self.keyring.check_key, armored)
        return check

    async def render(self, draft: Draft, settings: MailSettings, message_id: str,
                     key: KeyCheck | None) -> tuple[bytes, bool, bool, str]:
        """`(raw message, encrypted, signed, subject as sent)`."""
        sign = settings.flag("GnuPG.sign")
        encrypt = key is not None and key.usable and key.fingerprint is not None
        subject = draft.subject
        if encrypt and settings.flag("GnuPG.obscure_subject"):
            subject = OBSCURED_SUBJECT
        body = draft.body
        if (not encrypt and draft.body_unencrypted is not None
                and settings.flag("GnuPG.bodyonlyencrypted")):
            body = draft.body_unencrypted
        env = mime.Envelope(sender_name=settings.sender_name, sender=settings.sender,
                            to=draft.recipient.email, subject=subject, message_id=message_id)
        if encrypt:
            assert key is not None and key.fingerprint is not None
            raw = await self.run_gpg(mime.encrypted, env, body, self.keyring,
                                     key.fingerprint, sign=sign)
        elif sign:
            raw = await self.run_gpg(mime.signed, env, body, self.keyring)
        else:
            raw = mime.plain(env, body)
        return raw, encrypt, sign, subject


def mailer_for(settings: MailerSettings) -> Mailer:
    """The Mailer over the instance keyring, as the API, the consumer and the worker use it."""
    return Mailer(keyring_for(settings), parallelism=settings.gpg_parallelism,
                  gateway_url=settings.gateway_url)


def message_id_for(mail_id: str, sender: str) -> str:
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else "misp.local"
    return f"<{mail_id}@{domain}>"


async def _hash(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


async def _each(items: Sequence[_In], fn: Callable[[_In], Awaitable[_Out]],
                progress: Progress | None) -> list[_Out]:
    """`fn` over every item at once (the mailer's semaphore bounds gpg); with `progress`, in
    steps of PROGRESS_STEP items, reported after each step."""
    if progress is None:
        return list(await asyncio.gather(*(fn(item) for item in items)))
    out: list[_Out] = []
    for start in range(0, len(items), PROGRESS_STEP):
        out.extend(await asyncio.gather(*(fn(item)
                                          for item in items[start:start + PROGRESS_STEP])))
        await progress(len(out), len(items))
    return out


async def prepare(mailer: Mailer, drafts: Sequence[Draft], settings: MailSettings, *,
                  request_id: str, progress: Progress | None = None,
                  ) -> tuple[list[tuple[Draft, KeyCheck | None]], list[Skipped]]:
    """Who gets a mail: disabled users, unusable keys (reported with the reason) and keyless
    users under GnuPG.onlyencrypted are skipped. `progress` hears of the keys checked."""
    only_encrypted = settings.flag("GnuPG.onlyencrypted")
    keep: list[tuple[Draft, KeyCheck | None]] = []
    skipped: list[Skipped] = []

    # Each distinct key is checked once per request, however many drafts carry it: one gpg
    # thread hop per key, not per mail.
    checking: dict[str, asyncio.Future[KeyCheck]] = {}

    async def key_of(d: Draft) -> KeyCheck | None:
        armored = d.recipient.gpgkey
        if not armored:
            return None
        if armored not in checking:
            checking[armored] = asyncio.ensure_future(mailer.check_key(armored))
        return await checking[armored]

    checks = await _each(drafts, key_of, progress)
    for draft, check in zip(drafts, checks, strict=True):
        r = draft.recipient
        if r.disabled:
            skipped.append(Skipped(r.email, r.user_id, "the user is disabled"))
        elif check is not None and not check.usable:
            skipped.append(Skipped(r.email, r.user_id,
                                   key_problem_text(check.problem or "invalid")))
        elif check is None and only_encrypted:
            skipped.append(Skipped(r.email, r.user_id,
                                   "no GnuPG key, and GnuPG.onlyencrypted is on"))
        else:
            keep.append((draft, check))
    return keep, skipped


async def _append_credential(conn: AsyncConnection, mail_id: str,
                             credential: TemporaryPasswordIssued | PasswordResetLinkIssued,
                             actor: Actor, request_id: str) -> None:
    """A credential's event, in a stream of its own named after its mail."""
    await store.store.append(conn, stream_id=str(uuid.uuid5(uuid.UUID(mail_id), "credential")),
                             stream_type="credential", expected_version=0, events=[credential],
                             actor=actor, correlation_id=request_id)


async def queue(conn: AsyncConnection, mailer: Mailer, drafts: Sequence[Draft], *,
                request_id: str, kind: str, action: str, actor: Actor,
                settings: MailSettings | None = None,
                prepared: tuple[list[tuple[Draft, KeyCheck | None]], list[Skipped]] | None = None,
                progress: Progress | None = None) -> Queued:
    """Render and queue `drafts` for `request_id`, idempotently: a request seen before queues
    nothing again. `progress` hears of the mails rendered (signed, encrypted)."""
    settings = settings or await store.load_settings(conn)
    if not await store.claim_request(conn, request_id, kind, actor.user_id):
        return Queued(request_id, replay=True)
    keep, skipped = prepared or await prepare(mailer, drafts, settings, request_id=request_id)
    if keep and (settings.flag("GnuPG.sign") or any(k is not None for _, k in keep)):
        await mailer.instance_key(settings)
    ids = [str(uuid.uuid5(MAIL_NAMESPACE, f"{request_id}:{d.recipient.email.lower()}"))
           for d, _ in keep]

    async def render(item: tuple[tuple[Draft, KeyCheck | None], str]
                     ) -> tuple[tuple[bytes, bool, bool, str], str | None]:
        (d, k), mid = item
        raw = await mailer.render(d, settings, message_id_for(mid, settings.sender), k)
        return raw, await _hash(d.password) if d.password else None

    rendered = await _each(list(zip(keep, ids, strict=True)), render, progress)
    rows: list[dict[str, Any]] = []
    for (draft, _key), mid, ((raw, encrypted, signed, subject), password_hash) in zip(
            keep, ids, rendered, strict=True):
        rows.append({"id": mid, "request_id": request_id,
                     "message_id": message_id_for(mid, settings.sender), "kind": kind,
                     "action": action, "recipient": draft.recipient.email,
                     "user_id": draft.recipient.user_id, "sender": settings.sender,
                     "subject": subject, "encrypted": encrypted, "signed": signed, "raw": raw,
                     "actor": actor.model_dump(mode="json", exclude_none=True)})
        if password_hash is not None and draft.recipient.user_id is not None:
            credential = TemporaryPasswordIssued(
                credential_id=mid, user_id=draft.recipient.user_id, email=draft.recipient.email,
                password_hash=password_hash, reason=draft.reason)
            await _append_credential(conn, mid, credential, actor, request_id)
        if (draft.link_token_hash is not None and draft.link_expires_at is not None
                and draft.recipient.user_id is not None):
            link = PasswordResetLinkIssued(
                credential_id=mid, user_id=draft.recipient.user_id, email=draft.recipient.email,
                token_hash=draft.link_token_hash, expires_at=draft.link_expires_at)
            await _append_credential(conn, mid, link, actor, request_id)
    await store.insert_mails(conn, rows)
    skipped_dicts = [s.as_dict() for s in skipped]
    await store.finish_request(conn, request_id, len(rows), skipped_dicts)
    log.info("mailer.queued", request_id=request_id, kind=kind, mails=len(rows),
             skipped=len(skipped))
    public = [{k: v for k, v in r.items() if k not in ("raw", "actor")} for r in rows]
    return Queued(request_id, mails=public, skipped=skipped)
