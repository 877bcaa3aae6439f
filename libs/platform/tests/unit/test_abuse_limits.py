"""The failure budget's sliding window and the blocks' arithmetic (misp_platform.auth.abuse),
on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from misp_contracts.events.abuse import AbuseBlocked
from misp_platform.auth.abuse import AbuseGuard, Blocks, FailureBudget, key_prefix
from misp_platform.client_address import parse_networks
from misp_platform.misp.errors import TooManyRequests

KEY = "abcd" + "0" * 36


def test_the_budget_slides_an_address_may_try_again_once_its_oldest_failure_left() -> None:
    budget = FailureBudget(3, 60.0)
    for t in (0.0, 10.0, 20.0):
        assert budget.remaining("198.51.100.7", t) == 0
        budget.note("198.51.100.7", t)
    assert budget.remaining("198.51.100.7", 30.0) == pytest.approx(30.0)
    assert budget.remaining("198.51.100.8", 30.0) == 0
    assert budget.remaining("198.51.100.7", 60.5) == 0  # the failure at 0 left the window
    budget.note("198.51.100.7", 61.0)
    assert budget.remaining("198.51.100.7", 61.0) == pytest.approx(9.0)  # 10 + 60 - 61


def test_a_zero_budget_limits_nothing() -> None:
    budget = FailureBudget(0, 60.0)
    for t in range(10):
        budget.note("198.51.100.7", float(t))
    assert budget.remaining("198.51.100.7", 10.0) == 0


def block(subject: str, value: str, until: float) -> AbuseBlocked:
    return AbuseBlocked(subject=subject, value=value, failures=20,  # type: ignore[arg-type]
                        window_s=60, blocked_until=datetime.fromtimestamp(until, UTC))


def test_blocks_keep_the_latest_end_and_cover_addresses_and_key_prefixes() -> None:
    blocks = Blocks()
    blocks.apply(block("address", "198.51.100.7", 1000.0))
    blocks.apply(block("address", "198.51.100.7", 900.0))  # a replayed older block
    assert blocks.remaining("198.51.100.7", [], 950.0) == pytest.approx(50.0)
    assert blocks.remaining("198.51.100.8", [KEY], 950.0) == 0
    blocks.apply(block("key_prefix", "abcd", 1200.0))
    assert blocks.remaining("198.51.100.8", [KEY], 950.0) == pytest.approx(250.0)
    assert blocks.remaining("198.51.100.8", ["short"], 950.0) == 0
    assert blocks.remaining("198.51.100.7", [KEY], 1300.0) == 0
    assert key_prefix(KEY) == "abcd" and key_prefix("x") is None


def test_the_guard_never_limits_exempt_networks() -> None:
    guard = AbuseGuard(parse_networks("127.0.0.0/8,::1/128,10.0.0.0/8"), budget=1, window_s=60)
    for ip in ("127.0.0.1", "::1", "10.9.8.7", None, "garbage"):
        guard.failed(ip)
        guard.failed(ip)
        guard.check(ip)
    guard.failed("198.51.100.7")
    with pytest.raises(TooManyRequests) as refused:
        guard.check("198.51.100.7")
    assert refused.value.status_code == 429
    assert 59 <= int(refused.value.headers["Retry-After"]) <= 60
