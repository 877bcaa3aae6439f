"""The composition root of the mailer service: the one place that wires real adapters (the
instance keyring, SMTP, the delivery loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters import store
from mailer.adapters.gpg import INSTANCE_KEY_WARNING
from mailer.adapters.smtp import SmtpConfig, open_session
from mailer.api.routes import misp, router
from mailer.consumer import handlers, on_consumer_start, topics
from mailer.handlers.compose import Mailer, mailer_for
from mailer.handlers.deliver import Deliverer
from mailer.handlers.jobs import job_handlers
from mailer.settings import MailerSettings
from misp_platform.app import create_app as create_platform_app
from misp_platform.cli_support import OK, epilog, with_settings
from misp_platform.config import DATABASE, ServiceSettings
from misp_platform.service import ServiceSpec
from misp_platform.worker_command import worker_command

T = TypeVar("T")


def require_instance_key(settings: ServiceSettings) -> None:
    """Stop (exit 1, the message naming MAILER_GNUPG_INSTANCE_KEY_FILE) when this process may
    not sign: production without the deployment's instance key."""
    assert isinstance(settings, MailerSettings)
    problem = settings.instance_key_problem()
    if problem:
        raise click.ClickException(f"refusing to start: {problem}")


def requiring_instance_key(
        factory: Callable[[ServiceSettings], T]) -> Callable[[ServiceSettings], T]:
    """`factory` (the handlers of the consumer, its DLQ replay or the job workers, all of which
    render mails), checking the instance key first."""

    def checked(settings: ServiceSettings) -> T:
        require_instance_key(settings)
        return factory(settings)

    return checked


async def start_consumer(settings: ServiceSettings, engine: AsyncEngine) -> None:
    require_instance_key(settings)
    await on_consumer_start(settings, engine)


def smtp_config(settings: MailerSettings) -> SmtpConfig:
    return SmtpConfig(host=settings.smtp_host, port=settings.smtp_port,
                      starttls=settings.smtp_starttls, implicit_tls=settings.smtp_implicit_tls,
                      ca_file=settings.smtp_ca_file, username=settings.smtp_username,
                      password=settings.smtp_password.get_secret_value(),
                      timeout_s=settings.smtp_timeout_s)


def deliverer_for(settings: MailerSettings, engine: Any) -> Deliverer:
    return Deliverer(engine, smtp_config(settings), max_attempts=settings.max_attempts,
                     backoff_base_s=settings.backoff_base_s,
                     backoff_max_s=settings.backoff_max_s, lease_s=settings.lease_s,
                     batch=settings.deliver_batch, poll_interval_s=settings.poll_interval_s,
                     connections=settings.smtp_connections,
                     record_batch=settings.record_batch)


async def diagnose_gnupg(app: FastAPI) -> dict[str, Any]:
    mailer: Mailer = app.state.mailer
    async with app.state.engine.connect() as conn:
        settings = await store.load_settings(conn)
    fingerprint = await mailer.instance_key(settings)
    # A trial signature: the key is there and usable (passphrase, agent), not just listed.
    await mailer.run_gpg(mailer.keyring.sign_detached, b"diagnostics")
    return {"instance_key_fingerprint": fingerprint, "can_sign": True,
            "warning": INSTANCE_KEY_WARNING, "sign": settings.flag("GnuPG.sign"),
            "onlyencrypted": settings.flag("GnuPG.onlyencrypted")}


async def diagnose_smtp(app: FastAPI) -> dict[str, Any]:
    """The SMTP server answers EHLO (and STARTTLS and login when configured)."""
    config = smtp_config(app.state.settings)

    def probe() -> str:
        with open_session(config, timeout_s=5) as smtp:
            code, banner = smtp.ehlo()  # as the session now stands (after TLS and login)
            return f"{code} {banner.decode(errors='replace').splitlines()[0]}"

    return {"server": f"{config.host}:{config.port}", "ehlo": await asyncio.to_thread(probe)}


async def diagnose_queue(app: FastAPI) -> dict[str, Any]:
    async with app.state.engine.connect() as conn:
        return {"mails": await store.mail_counts(conn)}


def create_app(settings: ServiceSettings, *, engine: Any = None,
               deliver: bool | None = None) -> FastAPI:
    assert isinstance(settings, MailerSettings)
    require_instance_key(settings)

    @asynccontextmanager
    async def delivery(app: FastAPI) -> AsyncIterator[None]:
        deliverer = deliverer_for(settings, app.state.engine)
        app.state.mailer.wake = deliverer.wake
        app.state.deliverer = deliverer
        run = settings.deliver_in_api if deliver is None else deliver
        stop = asyncio.Event()
        task = asyncio.create_task(deliverer.run(stop)) if run else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task

    app = create_platform_app(settings, routers=[misp, router], lifespan_hooks=[delivery],
                              diagnostics={"gnupg": diagnose_gnupg, "smtp": diagnose_smtp,
                                           "queue": diagnose_queue},
                              engine=engine)
    app.state.mailer = mailer_for(settings)
    return app


@click.command(name="deliver", epilog=epilog())
@with_settings(DATABASE)
def deliver_command(settings: MailerSettings) -> int:
    """Run the delivery loop on its own, until SIGTERM or SIGINT.

    It sends the queued mails over SMTP (MAILER_SMTP_*), retrying with backoff; the api process
    runs the same loop unless MAILER_DELIVER_IN_API is false.
    """
    from misp_platform.db import engine_for
    from misp_platform.roles import stop_on_signals

    async def main() -> None:
        engine = engine_for(settings)
        try:
            await deliverer_for(settings, engine).run(stop_on_signals())
        finally:
            await engine.dispose()

    asyncio.run(main())
    return OK


spec = ServiceSpec(
    name="mailer",
    settings=MailerSettings,
    create_app=create_app,
    migrations_dir=Path(__file__).parent / "migrations",
    handlers=requiring_instance_key(handlers),
    topics=topics,
    on_consumer_start=start_consumer,
    extra_commands=[deliver_command,
                    worker_command("mailer", requiring_instance_key(job_handlers))],
)
