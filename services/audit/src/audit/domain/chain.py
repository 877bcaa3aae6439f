"""Tamper evidence: the canonical form of a log entry, its hash chain, and chain verification.

One chain per source partition: entry n of a chain stores `prev_hash` = hash of entry n-1 and
`hash` = SHA-256 of its canonical form, which covers every column a reader sees plus its place in
the chain. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

GENESIS = "0" * 64
CANONICAL_VERSION = 1


class Entry(NamedTuple):
    """A log entry as stored: its content and its place in the chain (its fields in the
    order of the log table's columns, so a row read back is `Entry.of_row(row)`)."""

    id: int
    source_event_id: str
    source_type: str
    chain: str
    seq: int
    prev_hash: str
    hash: str
    created: datetime
    model: str
    model_id: int
    action: str
    user_id: int
    title: str
    change: str
    email: str
    org: str
    description: str
    ip: str | None
    org_id: int | None
    authkey_id: int | None
    request_id: str | None
    request_type: int
    change_json: Any

    @classmethod
    def of_row(cls, values: Iterable[Any]) -> Entry:
        """The entry of a row read in the log table's column order."""
        return cls._make(values)


_UTC_OFFSET = timedelta(0)


def canonical_time(value: datetime) -> str:
    offset = value.utcoffset()
    if offset is None:
        value = value.replace(tzinfo=UTC)
    elif offset != _UTC_OFFSET:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")  # "+00:00" whatever the UTC tzinfo


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the same bytes wherever it is computed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _plain(value: Any) -> bool:
    """Only JSON objects with string keys, arrays, strings, integers, booleans and nulls: what
    orjson writes byte for byte as `canonical_json` does (floats are not: `1e+16` there is
    `1e16` in orjson)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    # Loops, not all() over a generator: this runs for every entry written and verified.
    if kind is dict:
        for key, item in value.items():  # noqa: SIM110
            if type(key) is not str or not _plain(item):
                return False
        return True
    if kind is list:
        for item in value:  # noqa: SIM110
            if not _plain(item):
                return False
        return True
    return False


def canonical_form(e: Entry) -> str:
    """Everything that must not change without detection, `hash` itself excluded."""
    return canonical_json(_canonical_fields(e))


def _canonical_fields(e: Entry) -> dict[str, Any]:
    return {
        "v": CANONICAL_VERSION, "chain": e.chain, "seq": e.seq, "prev": e.prev_hash,
        "id": e.id, "source_event_id": e.source_event_id, "source_type": e.source_type,
        "created": canonical_time(e.created), "model": e.model, "model_id": e.model_id,
        "action": e.action, "user_id": e.user_id, "title": e.title, "change": e.change,
        "email": e.email, "org": e.org, "description": e.description, "ip": e.ip,
        "org_id": e.org_id, "authkey_id": e.authkey_id, "request_id": e.request_id,
        "request_type": e.request_type, "change_json": e.change_json,
    }


def entry_hash(e: Entry) -> str:
    """SHA-256 (hex) of the entry's canonical form, in UTF-8 (`canonical_form(e)`'s bytes)."""
    fields = _canonical_fields(e)
    # The other fields are str, int or None by their types (columns, the projection's Entry):
    # only the JSON change can hold what orjson writes otherwise.
    if _plain(e.change_json):
        try:
            return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()
        except orjson.JSONEncodeError:  # a lone surrogate, an int beyond 64 bits
            pass
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Mark:
    """A position in a chain (seq 0 with the genesis hash: the chain's start)."""

    seq: int
    hash: str


START = Mark(0, GENESIS)


@dataclass(frozen=True)
class Break:
    """The first broken link of a chain."""

    chain: str
    seq: int
    entry_id: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"chain": self.chain, "seq": self.seq, "id": self.entry_id, "reason": self.reason}


@dataclass
class ChainReport:
    chain: str
    entries: int = 0
    last: Mark = START
    broken: Break | None = None


class ChainWalk:
    """One chain verified as its entries come, in `seq` order from `start` (the signed pruned
    mark, genesis, or a signed checkpoint's head), in batches: a long chain is never held whole.

    `signed` maps sequence numbers to the hashes signed checkpoints recorded: a chain that was
    rewritten with every hash recomputed still differs from them.
    """

    def __init__(self, chain: str, *, start: Mark = START,
                 signed: Mapping[int, str] | None = None) -> None:
        self.report = ChainReport(chain, last=start)
        self.start = start
        self.signed = signed or {}

    def feed(self, entries: Iterable[Entry]) -> bool:
        """Check these next entries; False once the chain is broken (the rest is not read)."""
        report, signed = self.report, self.signed
        if report.broken is not None:
            return False
        chain, start = report.chain, self.start
        expected, prev = report.last.seq + 1, report.last.hash
        last = None
        for e in entries:
            report.entries += 1
            seq = e.seq
            if seq != expected:
                if seq < expected:
                    reason = ("entry before the pruned mark" if seq <= start.seq
                              else "sequence number repeated or out of order")
                    report.broken = Break(chain, seq, e.id, reason)
                else:
                    report.broken = Break(chain, expected, e.id,
                                          f"entries {expected}..{seq - 1} are missing")
            elif e.prev_hash != prev:
                report.broken = Break(chain, seq, e.id, "previous hash does not match")
            elif entry_hash(e) != e.hash:
                report.broken = Break(chain, seq, e.id, "content does not match its hash")
            elif seq in signed and signed[seq] != e.hash:
                report.broken = Break(chain, seq, e.id,
                                      "hash differs from the signed checkpoint (rewritten)")
            if report.broken is not None:
                break
            prev, expected, last = e.hash, seq + 1, e
        if last is not None:
            report.last = Mark(last.seq, last.hash)
        return report.broken is None

    def finish(self) -> ChainReport:
        """The report, once every entry was fed: signed entries beyond the last are missing."""
        report = self.report
        if report.broken is None:
            beyond = [s for s in self.signed if s > report.last.seq]
            if beyond:
                report.broken = Break(report.chain, report.last.seq + 1, None,
                                      f"entries up to {max(beyond)} were signed but are missing")
        return report


def verify_chain(chain: str, entries: Iterable[Entry], *, start: Mark = START,
                 signed: Mapping[int, str] | None = None) -> ChainReport:
    """Walk one chain in `seq` order from `start` (`ChainWalk` over all its entries at once)."""
    walk = ChainWalk(chain, start=start, signed=signed)
    walk.feed(entries)
    return walk.finish()
