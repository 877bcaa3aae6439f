"""What the abuse detector counts (audit.domain.abuse) and how its blocks are logged."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

from audit.domain.abuse import Thresholds, strikes
from audit.domain.mapping import LogSettings, to_log_row
from audit.domain.siem import categories
from audit.testing import envelope_of
from misp_contracts.events.abuse import AbuseBlocked
from misp_contracts.events.auth import AuthenticationFailed, AuthenticationSucceeded
from misp_contracts.events.identity import UserLoginFailed

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def failed(**fields: object) -> tuple[str, dict[str, object]]:
    event = AuthenticationFailed(reason="unknown", title="Failed authentication", **fields)
    return event.type, event.model_dump(mode="json")


def test_a_bad_key_strikes_its_address_and_its_prefix_a_bad_password_its_address() -> None:
    assert strikes(*failed(ip="198.51.100.7", key_start="abcd", key_end="wxyz"), LOOPBACK) == [
        "address:198.51.100.7", "key_prefix:abcd"]
    assert strikes(*failed(ip="2001:db8::1"), LOOPBACK) == ["address:2001:db8::1"]
    login = UserLoginFailed(title="Failed login", username="a@b.test", ip="203.0.113.9")
    assert strikes(login.type, login.model_dump(mode="json"), LOOPBACK) == [
        "address:203.0.113.9"]


def test_exempt_networks_unknown_addresses_and_successes_strike_nothing() -> None:
    assert strikes(*failed(ip="127.0.0.1", key_start="abcd"), LOOPBACK) == []
    assert strikes(*failed(ip="::1"), LOOPBACK) == []
    assert strikes(*failed(ip=None, key_start="abcd"), LOOPBACK) == []
    assert strikes(*failed(ip="not an address"), LOOPBACK) == []
    ok = AuthenticationSucceeded(title="ok", authkey_id=1, user_id=1, email="a@b.test",
                                 ip="198.51.100.7")
    assert strikes(ok.type, ok.model_dump(mode="json"), LOOPBACK) == []
    assert strikes(*failed(ip="10.1.2.3"), (ipaddress.ip_network("10.0.0.0/8"),)) == []


def test_each_subject_has_its_threshold() -> None:
    thresholds = Thresholds(address=20, key_prefix=50)
    assert thresholds.of("address:198.51.100.7") == 20
    assert thresholds.of("key_prefix:abcd") == 50


def test_a_block_is_an_auth_alert_row_that_names_what_was_blocked_and_until_when() -> None:
    until = datetime(2026, 12, 4, 18, 30, tzinfo=UTC)
    block = AbuseBlocked(subject="address", value="198.51.100.7", failures=21, window_s=60,
                         blocked_until=until)
    row = to_log_row(envelope_of(block), LogSettings(log_client_ip=True))
    assert row is not None
    assert (row.action, row.model, row.email, row.outcome, row.ip) == (
        "auth_alert", "Bruteforce", "SYSTEM", "failure", "198.51.100.7")
    assert row.title == ("Blocked address 198.51.100.7 until 2026-12-04T18:30:00Z: 21 failed "
                         "authentications in 60 s")
    assert row.change_json["subject"] == "address" and row.change_json["failures"] == 21
    assert categories(row)[0] == ["authentication"]
    prefix = AbuseBlocked(subject="key_prefix", value="abcd", failures=50, window_s=60,
                          blocked_until=until)
    prow = to_log_row(envelope_of(prefix), LogSettings(log_client_ip=True))
    assert prow is not None and prow.ip is None
    assert prow.title.startswith("Blocked API keys starting abcd until ")
