"""A notified cache's shared reads: misses of one key at once cost one read; a change while it
runs makes the next caller read again; a waiter cancelled leaves the read to the others."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from misp_platform.auth.cache import NotifiedCache


def reader(results: list[str]) -> tuple[list[int], asyncio.Event,
                                        Callable[[], Awaitable[str]]]:
    reads: list[int] = []
    release = asyncio.Event()

    async def read() -> str:
        reads.append(1)
        result = results[len(reads) - 1]
        await release.wait()
        return result

    return reads, release, read


async def test_misses_of_one_key_at_once_share_one_read() -> None:
    cache = NotifiedCache()
    reads, release, read = reader(["row"])
    waiting = [asyncio.create_task(cache.shared("k", read)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == ["row"] * 20
    assert len(reads) == 1


async def test_after_a_change_a_miss_reads_again_and_a_later_read_is_new() -> None:
    cache = NotifiedCache()
    reads, release, read = reader(["old", "new", "later"])
    before = asyncio.create_task(cache.shared("k", read))
    await asyncio.sleep(0)
    cache.clear()  # a notification: what `before` reads may be stale for the callers after it
    after = asyncio.create_task(cache.shared("k", read))
    await asyncio.sleep(0)
    release.set()
    assert (await before, await after) == ("old", "new")
    assert await cache.shared("k", read) == "later"
    assert len(reads) == 3


async def test_a_cancelled_waiter_leaves_the_read_to_the_others() -> None:
    cache = NotifiedCache()
    reads, release, read = reader(["row"])
    first = asyncio.create_task(cache.shared("k", read))
    second = asyncio.create_task(cache.shared("k", read))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await second == "row" and len(reads) == 1


async def test_a_failed_read_fails_its_waiters_and_the_next_miss_reads_again() -> None:
    cache = NotifiedCache()
    attempts: list[int] = []

    async def read() -> str:
        attempts.append(1)
        await asyncio.sleep(0)
        if len(attempts) == 1:
            raise ConnectionError("database away")
        return "row"

    waiting = [asyncio.create_task(cache.shared("k", read)) for _ in range(3)]
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results) and len(attempts) == 1
    assert await cache.shared("k", read) == "row"
