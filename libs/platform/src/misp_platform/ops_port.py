"""The health and metrics port of the roles that serve no HTTP (relay, consume, worker,
scheduler): `/metrics` (prometheus-client's WSGI app on this process's registry) and `/healthz`.

`/healthz` answers 200 while the role's loop runs (`OpsPort.alive()`) and its event loop keeps
turning; else 503. The server answers from a thread of its own, so a loop blocked by a stuck call
is seen: a task in that loop stamps the time, and a stamp older than `stale_after_s` is a 503.
Off (no listener) unless `<SERVICE>_METRICS_PORT` or `MISP_METRICS_PORT` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from misp_platform.config import ServiceSettings
from misp_platform.metrics import REGISTRY

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: not worth a log line each."""


class OpsPort:
    """One process's health and metrics listener; `port=None` listens nowhere (the health
    state is still kept), `port=0` on a free port (tests)."""

    def __init__(self, port: int | None, host: str = "127.0.0.1", *,
                 stale_after_s: float = 10.0) -> None:
        self.requested_port = port
        self.host = host
        self.stale_after_s = stale_after_s
        self._metrics = make_wsgi_app(REGISTRY)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._running = 0
        self._stamp = 0.0

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> OpsPort:
        return cls(settings.metrics_port or None, settings.metrics_host)

    @property
    def port(self) -> int | None:
        """The port listened on (the free one chosen for `port=0`), None when off."""
        return self._server.server_port if self._server is not None else None

    def start(self) -> None:
        if self.requested_port is None or self._server is not None:
            return
        family = socket.getaddrinfo(self.host, self.requested_port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        server_class = type("OpsServer", (ThreadingWSGIServer,), {"address_family": family})
        self._server = make_server(self.host, self.requested_port, self._app,
                                   server_class=server_class, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="ops-port", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def healthy(self) -> bool:
        return self._running > 0 and time.monotonic() - self._stamp < self.stale_after_s

    @contextlib.asynccontextmanager
    async def alive(self) -> AsyncIterator[None]:
        """Healthy while the block runs, as long as the running event loop keeps turning."""
        self._stamp = time.monotonic()
        self._running += 1
        stamper = asyncio.create_task(self._stamp_every(self.stale_after_s / 4))
        try:
            yield
        finally:
            self._running -= 1
            stamper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stamper

    async def _stamp_every(self, period_s: float) -> None:
        while True:
            self._stamp = time.monotonic()
            await asyncio.sleep(period_s)

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body: Iterable[bytes] = self._metrics(environ, start_response)
            return body
        if path == "/healthz":
            ok = self.healthy()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n" if ok else b"not running\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"/metrics or /healthz\n"]


@contextlib.asynccontextmanager
async def serving(settings: ServiceSettings) -> AsyncIterator[OpsPort]:
    """The process's ops port, listening (when configured) until the block ends; the role
    enters `alive()` around its loop."""
    port = OpsPort.from_settings(settings)
    port.start()
    try:
        yield port
    finally:
        await asyncio.to_thread(port.stop)  # waits for the server thread's poll (0.5 s at most)
