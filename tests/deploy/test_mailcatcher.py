"""The local mail catcher (`deploy/local/mailcatcher.py`, run by `mailcatcher.sh`) writes each
message it receives, with its envelope, as one `.eml` file; it lives outside the mailer's
package, so it is loaded here from its path."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType, SimpleNamespace

from misp_platform.testing import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "mailcatcher.py"


def load_catcher() -> ModuleType:
    return load_script(SCRIPT, "mailcatcher")


def test_a_received_message_becomes_one_eml_file_with_its_envelope(tmp_path: Path) -> None:
    writer = load_catcher().EmlWriter(tmp_path / "mail")
    envelope = SimpleNamespace(mail_from="misp@example.org",
                               rcpt_tos=["a@example.org", "b@example.org"],
                               content=b"Subject: hello\r\n\r\nbody\r\n")
    answer = asyncio.run(writer.handle_DATA(None, None, envelope))
    assert answer == "250 OK"
    [eml] = (tmp_path / "mail").iterdir()
    assert eml.suffix == ".eml"
    assert eml.read_bytes() == (b"X-Envelope-From: misp@example.org\r\n"
                                b"X-Envelope-To: a@example.org, b@example.org\r\n"
                                b"Subject: hello\r\n\r\nbody\r\n")
