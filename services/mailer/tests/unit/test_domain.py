"""Domain rules of the mailer: request parsing, subjects, temporary passwords."""

import re

import pytest

from mailer.domain.errors import MailRequestError
from mailer.domain.model import (
    MailSettings,
    alert_subject,
    compose_body,
    parse_contact_request,
    parse_quick_email,
    temporary_password,
)
from misp_contracts.settings_catalogue import defaults


def settings(**over: object) -> MailSettings:
    return MailSettings({**defaults(), "MISP.org": "OSINT", **over})


def test_the_plain_alert_subject_has_the_threat_level_and_tlp() -> None:
    subject = alert_subject(7, "Dissecting something", 3, [], settings())

    assert subject == "[OSINT MISP] Event 7 - Low - TLP:AMBER"


def test_the_extended_alert_subject_adds_the_info_cut_at_55_characters() -> None:
    info = "OSINT - Dissecting XXX " + "x" * 60
    subject = alert_subject(8, info, 3, ["tlp:green", "other"],
                            settings(**{"MISP.extended_alert_subject": True}))

    assert subject == f"[OSINT MISP] Event 8 - {info[:55]}... - Low - TLP:GREEN"


def test_a_short_info_is_kept_whole_and_the_tag_value_alone_when_asked() -> None:
    subject = alert_subject(8, "Short", 1, ["tlp:red"],
                            settings(**{"MISP.extended_alert_subject": True,
                                        "MISP.email_subject_include_tag_name": False}))

    assert subject == "[OSINT MISP] Event 8 - Short - High - RED"


def test_a_custom_message_needs_a_subject() -> None:
    with pytest.raises(MailRequestError) as caught:
        parse_contact_request({"action": "0", "recipient": "0", "body": "hi"})

    assert "subject" in caught.value.errors


def test_a_future_user_needs_a_well_formed_address() -> None:
    with pytest.raises(MailRequestError) as caught:
        parse_contact_request({"action": "0", "recipient": "2", "subject": "s", "body": "b",
                               "recipientEmail": "not an address"})

    assert "recipientEmail" in caught.value.errors


def test_quick_email_without_a_body_is_405() -> None:
    with pytest.raises(MailRequestError) as caught:
        parse_quick_email({"subject": "s"}, 5)

    assert caught.value.status == 405


def test_temporary_passwords_meet_the_default_policy() -> None:
    for _ in range(20):
        password = temporary_password()
        assert len(password) >= 16 and re.search(r"[A-Z]", password)
        assert re.search(r"[a-z]", password) and re.search(r"\d", password)


def test_a_custom_reset_message_is_followed_by_the_password_and_the_signature() -> None:
    request = parse_contact_request({"action": "2", "recipient": "1", "recipientEmailList": "5",
                                     "customMessage": "1", "body": "Our text."})
    body = compose_body(request, settings(**{"MISP.contact": "help@example.test"}),
                        "a@example.test", "Secret123abcDEF456ghi")

    assert body.index("Our text.") < body.index("Secret123abcDEF456ghi") < body.index(
        "The OSINT support team")
    assert "help@example.test" in body
