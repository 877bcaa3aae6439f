"""What several benchmarks share: a free local port, and the running stack's admin key."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

STATE_DIR = Path(os.environ.get("MISP_STATE_DIR", ".local"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_key() -> str:
    path = STATE_DIR / "admin.authkey"
    if not path.exists():
        sys.exit(f"{path} is missing: start the stack first (make up)")
    return path.read_text().strip()
