"""What a service declares about itself, so one runner can start any of its roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from misp_platform.config import ServiceSettings
from misp_platform.consumer import BatchHandler, ConsumerRunner, Handler

if TYPE_CHECKING:
    import click
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from misp_contracts.envelope import Envelope


@dataclass(frozen=True)
class ServiceSpec:
    """The composition root's answer to: how do I build this service's parts?"""

    name: str
    settings: Callable[[], ServiceSettings]
    create_app: Callable[[ServiceSettings], FastAPI]
    migrations_dir: Path
    # The consumer's handlers by event type, and what it subscribes to.
    handlers: Callable[[ServiceSettings], Mapping[str, Handler]] = lambda _s: {}
    batch_handlers: Callable[[ServiceSettings], Mapping[str, BatchHandler]] = lambda _s: {}
    topics: Callable[[ServiceSettings], list[str]] = lambda _s: []
    topic_pattern: str | None = None
    # The runner class (a service may subclass it, e.g. to handle every type of a pattern).
    consumer_class: type[ConsumerRunner] = ConsumerRunner
    # The one-message handlers of a runner class that handles types itself (the DLQ replay's);
    # by default, `handlers` plus each batch handler applied to one message.
    replay_handlers: Callable[[ServiceSettings], Mapping[str, Handler]] | None = None
    # The principals projection's consumer (a group of its own, so a slow handler of the main
    # consumer never holds back a revocation); by default every principal event, as elsewhere.
    principal_handlers: Callable[[ServiceSettings], Mapping[str, BatchHandler]] = (
        lambda _s: default_principal_handlers())
    # Runs once the consumer is up (first-run seeding and the like), with the engine.
    on_consumer_start: Callable[[ServiceSettings, AsyncEngine], Awaitable[None]] | None = None
    # The service's own operator commands (click), beside api, relay, consume, migrate and dlq.
    extra_commands: Sequence[click.Command] = ()

    @property
    def consumer_group(self) -> str:
        return f"misp.{self.name}"

    def single_handlers(self, settings: ServiceSettings,
                        group: str | None = None) -> Mapping[str, Handler]:
        """Every handler of a group (the main one by default) as a one-message handler (what
        the DLQ replay needs)."""
        if group is not None and group == settings.principals_group:
            return {t: _single(b) for t, b in self.principal_handlers(settings).items()}
        if self.replay_handlers is not None:
            return self.replay_handlers(settings)
        out: dict[str, Handler] = dict(self.handlers(settings))
        for type_, batch in self.batch_handlers(settings).items():
            out[type_] = _single(batch)
        return out


def default_principal_handlers() -> Mapping[str, BatchHandler]:
    from misp_platform.auth.principals import PRINCIPAL_HANDLERS, project_principals

    return dict.fromkeys(PRINCIPAL_HANDLERS, project_principals)


def _single(batch: BatchHandler) -> Handler:
    async def one(conn: AsyncConnection, envelope: Envelope) -> None:
        await batch(conn, [envelope])

    return one
