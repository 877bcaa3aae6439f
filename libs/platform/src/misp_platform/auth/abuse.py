"""Abuse limits every service's API applies before a request costs anything.

- **Blocks.** The audit's abuse detector (`python -m audit detect`) counts failed
  authentications from every service's auth topic per address and per key prefix, and publishes
  `AbuseBlocked` on `misp.audit.abuse.v1` past its thresholds. Each API process follows that
  topic from its beginning (it keeps a day) in a background task (`following_blocks`) and refuses
  a blocked address, or a key with a blocked prefix, with MISP's 429 and `Retry-After` until the
  block ends: no key lookup, no argon2 check, no write.
- **A failure budget.** Each API process counts the failed authentications of each address in a
  sliding window (`MISP_AUTH_FAIL_BUDGET` in `MISP_AUTH_FAIL_WINDOW_S` seconds); past it, the
  address's next attempts get the same 429 before they cost anything, so a flood of bad keys
  or passwords from one address costs a bounded number of outbox writes, even before the
  detector has seen it.

Addresses in `MISP_ABUSE_EXEMPT_NETWORKS` (loopback by default, like fail2ban's `ignoreip`) are
never limited here, nor counted by the detector.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer
from starlette.requests import HTTPConnection

from misp_contracts.envelope import from_kafka
from misp_contracts.events.abuse import ABUSE_TOPIC, ADDRESS, KEY_PREFIX, AbuseBlocked, subject_key
from misp_contracts.events.base import decode
from misp_platform import metrics
from misp_platform.addresses import Network, is_trusted, parse_address
from misp_platform.auth.keys import is_well_formed
from misp_platform.kafka import client_options, topic_partitions
from misp_platform.misp.errors import TooManyRequests

log = structlog.get_logger(__name__)

BLOCKED = "Too many failed authentications from your address or with your key. Try again later."
KEY_PREFIX_LENGTH = 4
_MAX_ENTRIES = 100_000  # addresses tracked by a budget, blocks held: bounded memory
_RETRY_S = 5.0  # the follower's pause after Kafka refused it


def key_prefix(key: str) -> str | None:
    """What the detector counts and blocks of a key: its first characters (a well-formed key
    only; the audit log shows the same ones)."""
    return key[:KEY_PREFIX_LENGTH] if is_well_formed(key) else None


class Blocks:
    """The blocks in force: `address:<ip>` / `key_prefix:<abcd>` -> end (unix seconds)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def apply(self, block: AbuseBlocked) -> None:
        key = subject_key(block.subject, block.value)
        until = block.blocked_until.timestamp()
        if until > self._until.get(key, 0.0):
            self._until[key] = until
        if len(self._until) > _MAX_ENTRIES:
            now = time.time()
            self._until = {k: end for k, end in self._until.items() if end > now}

    def remaining(self, ip: str | None, keys: Iterable[str], now: float) -> float:
        """Seconds until every block on this address and these keys' prefixes ends (0: none)."""
        subjects = [subject_key(ADDRESS, ip)] if ip else []
        subjects += [subject_key(KEY_PREFIX, p) for p in map(key_prefix, keys) if p]
        return max([0.0, *(self._until.get(s, 0.0) - now for s in subjects)])


class FailureBudget:
    """Failed authentications per address in a sliding window of this process."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, ip: str, now: float) -> deque[float] | None:
        times = self._seen.get(ip)
        if times is not None:
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if not times:
                del self._seen[ip]
                return None
        return times

    def remaining(self, ip: str, now: float) -> float:
        """Seconds until this address may try again (0: it may now)."""
        times = self._recent(ip, now)
        if self.limit <= 0 or times is None or len(times) < self.limit:
            return 0.0
        return times[-self.limit] + self.window_s - now

    def note(self, ip: str, now: float) -> None:
        times = self._recent(ip, now)
        if times is None:
            times = self._seen[ip] = deque(maxlen=max(self.limit, 1))
        times.append(now)
        self._seen.move_to_end(ip)
        while len(self._seen) > _MAX_ENTRIES:
            self._seen.popitem(last=False)


@functools.lru_cache(maxsize=4096)
def _limited_address(ip: str, exempt: tuple[Network, ...]) -> str | None:
    """`ip` as the guard counts it, None when exempt or not an address (remembered: the same
    few addresses come again and again)."""
    address = parse_address(ip)
    if address is None or is_trusted(address, exempt):
        return None
    return str(address)


class AbuseGuard:
    """An API process's limits: the detector's blocks and its own failure budget."""

    def __init__(self, exempt: Sequence[Network], *, budget: int, window_s: float) -> None:
        self.exempt = tuple(exempt)
        self.blocks = Blocks()
        self.budget = FailureBudget(budget, window_s)

    def _limited(self, ip: str | None) -> str | None:
        """The address to limit, or None when it is exempt (or not an address)."""
        return _limited_address(ip, self.exempt) if ip else None

    def _waits(self, ip: str | None, keys: Sequence[str]) -> tuple[float, float]:
        """(seconds blocked, seconds until the failure budget allows one more): 0 when free."""
        address = self._limited(ip)
        if address is None:
            return 0.0, 0.0
        return (self.blocks.remaining(address, keys, time.time()),
                self.budget.remaining(address, time.monotonic()))

    def refuses(self, ip: str | None, keys: Sequence[str] = ()) -> bool:
        """Whether `check` would refuse this request (counting nothing)."""
        return max(self._waits(ip, keys)) > 0

    def check(self, ip: str | None, keys: Sequence[str] = ()) -> None:
        """Raise MISP's 429 with `Retry-After` when this address or a key's prefix is blocked,
        or the address spent its failure budget."""
        blocked, spent = self._waits(ip, keys)
        wait = max(blocked, spent)
        if wait > 0:
            metrics.abuse_refusals_total.labels("blocked" if blocked >= spent else "budget").inc()
            raise TooManyRequests(BLOCKED, headers={"Retry-After": str(math.ceil(wait))})

    def failed(self, ip: str | None) -> None:
        """Count one failed authentication of this address."""
        address = self._limited(ip)
        if address is not None:
            self.budget.note(address, time.monotonic())


def guard_of(connection: HTTPConnection) -> AbuseGuard | None:
    guard = getattr(connection.app.state, "abuse_guard", None)
    return guard if isinstance(guard, AbuseGuard) else None


def check(connection: HTTPConnection, ip: str | None, keys: Sequence[str] = ()) -> None:
    """The app's `AbuseGuard.check`, when it has one."""
    guard = guard_of(connection)
    if guard is not None:
        guard.check(ip, keys)


def failed(connection: HTTPConnection, ip: str | None) -> None:
    """The app's `AbuseGuard.failed`, when it has one."""
    guard = guard_of(connection)
    if guard is not None:
        guard.failed(ip)


async def follow_blocks(bootstrap_servers: str, blocks: Blocks, *, client_id: str) -> None:
    """Apply every `AbuseBlocked` of the topic to `blocks`, from its beginning, until cancelled;
    Kafka away or the topic not there yet: try again a little later."""
    while True:
        consumer = AIOKafkaConsumer(**client_options(bootstrap_servers), group_id=None,
                                    enable_auto_commit=False, client_id=client_id)
        try:
            await consumer.start()
            partitions = await topic_partitions(consumer, ABUSE_TOPIC)
            if not partitions:
                raise LookupError(f"{ABUSE_TOPIC} does not exist yet")
            consumer.assign(partitions)
            await consumer.seek_to_beginning()
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        _apply(blocks, record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("abuse.blocks_unavailable", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(_RETRY_S)
        finally:
            await consumer.stop()


def _apply(blocks: Blocks, record: Any) -> None:
    try:
        envelope = from_kafka(list(record.headers or ()), record.value)
        event = decode(envelope.type, envelope.data)
    except Exception as exc:  # a malformed message is skipped, never fatal
        log.warning("abuse.block_unreadable", offset=record.offset, error=str(exc))
        return
    if isinstance(event, AbuseBlocked):
        blocks.apply(event)
        log.info("abuse.block_applied", subject=event.subject, value=event.value,
                 until=event.blocked_until.isoformat())


@contextlib.asynccontextmanager
async def following_blocks(app: Any) -> AsyncIterator[None]:
    """Lifespan hook: the app's guard follows the detector's blocks while the app runs (when
    `follow_abuse_blocks`; in-process tests turn it off)."""
    settings = app.state.settings
    guard: AbuseGuard = app.state.abuse_guard
    if not settings.follow_abuse_blocks:
        yield
        return
    task = asyncio.create_task(follow_blocks(
        settings.kafka_bootstrap_servers, guard.blocks,
        client_id=f"misp-{settings.service}-abuse-blocks"))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
