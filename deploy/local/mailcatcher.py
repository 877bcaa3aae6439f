"""A local mail catcher for `make up`: an SMTP server (aiosmtpd) on 127.0.0.1 that writes every
message it receives as an `.eml` file, so a person can read what the platform sent. A development
tool, not part of the mailer: aiosmtpd comes from the project's dev dependencies.

    .venv/bin/python deploy/local/mailcatcher.py --dir .local/mail --port 1025

deploy/local/mailcatcher.sh start|stop|status runs it in the background.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class EmlWriter:
    """Writes each message, with the envelope as X-Envelope headers, to `<dir>/<time>-<id>.eml`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        head = (f"X-Envelope-From: {envelope.mail_from}\r\n"
                f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n").encode()
        content = envelope.content if isinstance(envelope.content, bytes) else str(
            envelope.content).encode()
        tmp = self.directory / (name + ".part")
        tmp.write_bytes(head + content)
        tmp.rename(self.directory / name)
        return "250 OK"


def main() -> int:
    parser = argparse.ArgumentParser(prog="mailcatcher.py")
    parser.add_argument("--dir", default=".local/mail", help="where the .eml files go")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=int, default=1025, help="the SMTP port to listen on")
    args = parser.parse_args()
    controller = Controller(EmlWriter(Path(args.dir)), hostname=args.host, port=args.port)
    controller.start()
    print(f"mail catcher on {args.host}:{args.port}, writing .eml files to {args.dir}",
          flush=True)

    async def wait() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
