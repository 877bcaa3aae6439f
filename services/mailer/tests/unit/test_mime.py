"""Headers are always well-formed: texts from settings and events (an event's info in an alert
subject, the organisation's name) cannot add a header, and non-ASCII text is RFC 2047."""

from __future__ import annotations

import email
from email import policy

from mailer.adapters.mime import Envelope, header_field, plain


def test_a_line_break_from_a_setting_or_an_event_adds_no_header() -> None:
    env = Envelope(sender_name="CERT\r\nBcc: x@evil.test", sender="misp@example.test",
                   to="a@example.test", subject="Event 1: info\nBcc: y@evil.test",
                   message_id="<m@example.test>")
    message = email.message_from_bytes(plain(env, "body"), policy=policy.default)
    assert message["Bcc"] is None
    assert message["Subject"] == "Event 1: info Bcc: y@evil.test"
    assert [name for name, _ in message.items()].count("Subject") == 1


def test_non_ascii_is_encoded_and_long_values_fold_with_crlf() -> None:
    text = " ".join(["Grüße"] * 30)
    field = header_field("Subject", text)
    assert field.isascii() and field.endswith(b"\r\n") and b"=?utf-8?" in field
    assert all(len(line) <= 78 for line in field.split(b"\r\n"))
    parsed = email.message_from_bytes(field + b"\r\n", policy=policy.default)
    assert parsed["Subject"] == text
