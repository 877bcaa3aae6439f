"""The transactional outbox: messages are written in the same transaction as the change.

Only the relay (relay.py) ever publishes them; a request handler never talks to Kafka. The
positions written during an HTTP request are remembered (`written_positions`), so its answer
can wait until the relay has published them (consistency.py).

Every message is capped in bytes here, well below the broker's limit (`MISP_MAX_MESSAGE_BYTES`):
a write whose event would be too large fails before anything is stored, instead of leaving the
relay a row that Kafka refuses.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.envelope import Envelope, to_kafka, to_kafka_text
from misp_platform import tracing
from misp_platform.db import copy_rows

# Kafka's default `message.max.bytes` is 1 MiB; half of it leaves room for the record's framing.
DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024
_limit = {"bytes": DEFAULT_MAX_MESSAGE_BYTES}


class MessageTooLargeError(Exception):
    """A message over the cap: the write that made it is refused (413), nothing is stored."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(f"The change is too large to record: its event on {topic} would be "
                         f"{size} bytes, at most {limit}.")
        self.topic = topic
        self.size = size
        self.limit = limit


def limit_message_bytes(limit: int) -> None:
    """Set the cap of this process (from its settings, when it starts)."""
    if limit < 1024:
        raise ValueError(f"a message cap of {limit} bytes is too small to hold any event")
    _limit["bytes"] = limit


def message_limit() -> int:
    return _limit["bytes"]


@dataclass(frozen=True)
class OutgoingMessage:
    """A Kafka record waiting in the outbox: topic, key, headers and value already encoded."""

    topic: str
    key: str | None
    headers: list[tuple[str, bytes]]
    value: bytes

    @property
    def size(self) -> int:
        """Bytes on the wire, framing aside: value, key and headers."""
        return (len(self.value) + len((self.key or "").encode())
                + sum(len(name.encode()) + len(value) for name, value in self.headers))

    @classmethod
    def of(cls, envelope: Envelope, *, topic: str, key: str | None) -> OutgoingMessage:
        """The record of `envelope`, carrying the active span's trace context (if any and it
        has none) as its `ce_traceparent` / `ce_tracestate` headers."""
        headers, value = to_kafka(tracing.stamped(envelope))
        return cls(topic=topic, key=key, headers=headers, value=value)

    async def send(self, producer: AIOKafkaProducer) -> asyncio.Future[Any]:
        """Hand the record to `producer` straight, as the relay would publish its row (same
        key, so the same partition); the future is Kafka's acknowledgement."""
        return await producer.send(
            self.topic, self.value, key=self.key.encode() if self.key is not None else None,
            headers=self.headers)


class OutboxRow(NamedTuple):
    """A message as the outbox stores it, headers as text: what a writer of many messages
    builds for `copy_messages` (its headers are never encoded only to be decoded back)."""

    topic: str
    key: str | None
    headers: list[tuple[str, str]]
    value: bytes

    @classmethod
    def of(cls, message: OutgoingMessage) -> OutboxRow:
        # Header values are text in every message we produce (CloudEvents attributes).
        return cls(message.topic, message.key, [(n, v.decode("utf-8", "replace"))
                                                for n, v in message.headers], message.value)

    @classmethod
    def of_envelope(cls, envelope: Envelope, *, topic: str, key: str | None) -> OutboxRow:
        """`OutgoingMessage.of`'s record as the outbox stores it, its headers written as text
        from the start (the event store's path: a header encoded to be decoded back cost a
        quarter of a writer's CPU)."""
        envelope = tracing.stamped(envelope)
        written = to_kafka_text(envelope)
        if written is None:  # a shape only the CloudEvents binding writes
            return cls.of(OutgoingMessage.of(envelope, topic=topic, key=key))
        headers, value = written
        return cls(topic, key, headers, value)

    @property
    def size(self) -> int:
        """`OutgoingMessage.size`: bytes on the wire, framing aside."""
        texts = [self.key or "", *chain.from_iterable(self.headers)]
        if all(map(str.isascii, texts)):  # a character a byte
            return len(self.value) + sum(map(len, texts))
        return len(self.value) + sum(len(t.encode()) for t in texts)


# All rows in one JSON parameter (`:messages`, `messages_json`): one statement and one round
# trip, whatever the batch size, in position order (WITH ORDINALITY). The event store runs it
# after its events' insert in the same statement. A row is `[topic, key, headers, payload in
# base64]`.
INSERT_ROWS_SQL = """
    INSERT INTO outbox (topic, message_key, headers, payload)
    SELECT m->>0, m->>1, m->2, decode(m->>3, 'base64')
    FROM jsonb_array_elements(CAST(:messages AS jsonb)) WITH ORDINALITY AS r(m, n)
    ORDER BY n
    RETURNING position
"""
INSERT_ROWS = text(INSERT_ROWS_SQL)

# The outbox positions written while serving the current request (None outside of one).
_written: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "outbox_written", default=None)


def written_so_far() -> list[int]:
    """The positions this request has written so far ([] outside of a request)."""
    return list(_written.get() or ())


@contextmanager
def written_positions() -> Iterator[list[int]]:
    """Collect the positions that `enqueue_messages` writes within this context."""
    positions: list[int] = []
    token = _written.set(positions)
    try:
        yield positions
    finally:
        _written.reset(token)


# A notification's payload is at most 8000 bytes: a longer list is announced as unknown ('').
_ANNOUNCE_MAX = 7900


def position_runs(positions: Sequence[int]) -> list[tuple[int, int]]:
    """The positions as runs of consecutive ones, `(first, last)`, in order."""
    runs: list[list[int]] = []
    for position in sorted(set(positions)):
        if runs and position == runs[-1][1] + 1:
            runs[-1][1] = position
        else:
            runs.append([position, position])
    return [(a, b) for a, b in runs]


def announce_positions(positions: Sequence[int]) -> str:
    """The published positions as a notification payload: runs as `first-last`, comma
    separated (a batch is mostly one run); '' when too long, which says "ask the table"."""
    text_ = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in position_runs(positions))
    return text_ if len(text_) <= _ANNOUNCE_MAX else ""


def announced_positions(payload: str) -> list[tuple[int, int]] | None:
    """The runs `announce_positions` wrote, or None when the payload does not say which."""
    if not payload:
        return None
    try:
        return [(int(a), int(b)) for a, _, b in
                (run.partition("-") if "-" in run else (run, "", run)
                 for run in payload.split(","))]
    except ValueError:
        return None


async def enqueue(conn: AsyncConnection, envelope: Envelope, *, topic: str,
                  key: str | None) -> None:
    """Queue one envelope for publication, inside the caller's transaction."""
    await enqueue_messages(conn, [OutgoingMessage.of(envelope, topic=topic, key=key)])


def messages_json(messages: Sequence[OutgoingMessage]) -> str:
    """INSERT_ROWS's parameter; a message over the cap raises MessageTooLargeError (before
    anything is written: the caller's transaction then rolls back)."""
    return rows_json([OutboxRow.of(m) for m in messages])


def rows_json(rows: Sequence[OutboxRow]) -> str:
    """`messages_json` for rows whose headers are text already (`OutboxRow.of_envelope`);
    header values are text in every message we produce (CloudEvents attributes, errors)."""
    limit = _limit["bytes"]
    for r in rows:
        # A character is at most 4 bytes in UTF-8: the exact size only near the cap.
        chars = len(r.value) + len(r.key or "") + sum(map(len, chain.from_iterable(r.headers)))
        if 4 * chars > limit and (size := r.size) > limit:
            raise MessageTooLargeError(r.topic, size, limit)
    return orjson.dumps([[r.topic, r.key, r.headers, base64.b64encode(r.value).decode("ascii")]
                         for r in rows]).decode("utf-8")


def note_written(positions: Iterable[int]) -> None:
    """Add the positions INSERT_ROWS returned to the current request's (`written_positions`)."""
    written = _written.get()
    if written is not None:
        written.extend(positions)


async def enqueue_messages(conn: AsyncConnection, messages: Sequence[OutgoingMessage]) -> None:
    """Queue raw records (already encoded), inside the caller's transaction; a message over
    the cap raises MessageTooLargeError (the caller's transaction then rolls back)."""
    if messages:
        result = await conn.execute(INSERT_ROWS, {"messages": messages_json(messages)})
        note_written(row[0] for row in result)


COPY_ROWS = "COPY outbox (topic, message_key, headers, payload) FROM STDIN"


async def copy_messages(conn: AsyncConnection, rows: Sequence[OutboxRow]) -> None:
    """Queue these records as `enqueue_messages` does (the same rows in the same order, the
    same cap, the relay woken at commit by the same trigger), in one `COPY ... FROM STDIN` on
    the caller's transaction: no JSON parameter for the server to parse back. Prefer it for
    many records written outside a request (a projection's batch: the audit's SIEM records);
    COPY gives no positions back, so within `written_positions` (a request waiting for its
    events' publication) it is `enqueue_messages`."""
    if _written.get() is not None:
        await enqueue_messages(conn, [OutgoingMessage(
            r.topic, r.key, [(n, v.encode()) for n, v in r.headers], r.value) for r in rows])
        return
    limit = _limit["bytes"]
    copied = []
    for row in rows:
        headers = orjson.dumps(row.headers)
        # The JSON's length bounds the headers' bytes from above: exact only when it matters.
        if len(row.value) + len(row.key or "") + len(headers) > limit:
            size = len(row.value) + len((row.key or "").encode()) + sum(
                len(n.encode()) + len(v.encode()) for n, v in row.headers)
            if size > limit:
                raise MessageTooLargeError(row.topic, size, limit)
        copied.append((row.topic, row.key, headers.decode("utf-8"), row.value))
    if copied:
        await copy_rows(conn, COPY_ROWS, copied)
