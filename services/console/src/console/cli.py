"""`python -m console api`: serve the console (the only role: it owns no data, no consumer
state, so replicas need nothing but the gateway's address)."""

from __future__ import annotations

import click

from console.settings import ConsoleSettings
from misp_platform.logging import configure_logging
from misp_platform.roles import UPSTREAM_IDLE_S

GRACEFUL_STOP_S = 8  # below supervisor's stopwaitsecs (10 s), past which it kills


@click.group(help="The MISP administration console (settings: CONSOLE_*, MISP_*).")
def cli() -> None:
    pass


@cli.command(name="api")
def api_command() -> None:
    """Serve the console's pages on CONSOLE_HTTP_HOST:CONSOLE_HTTP_PORT until SIGTERM."""
    import uvicorn

    from console.app import create_app

    settings = ConsoleSettings()
    configure_logging("console", settings.log_format, settings.log_level)
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port,
                log_config=None, access_log=False, proxy_headers=False,
                timeout_keep_alive=UPSTREAM_IDLE_S,
                # a live stream (live.py) never ends by itself: a stop waits this long for it
                timeout_graceful_shutdown=GRACEFUL_STOP_S)


def main() -> int:
    cli(standalone_mode=True)
    return 0
