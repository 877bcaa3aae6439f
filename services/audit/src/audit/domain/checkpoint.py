"""Signed checkpoints: every chain's head (and pruned mark) at one moment, signed with Ed25519.

The signing key is never in the audit database, so a rewrite of the database that recomputes
every hash cannot produce matching signed heads. Checkpoints are numbered and each names the
previous one's hash, so one cannot be removed unnoticed either. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.domain.chain import GENESIS, Mark, canonical_json, canonical_time

PERIODIC, PRUNED, REBUILD = "periodic", "pruned", "rebuild"


def public_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainState:
    """A chain's head, and where it was pruned up to (with the source offset of that entry)."""

    head: Mark
    pruned: Mark
    pruned_offset: int | None = None


@dataclass(frozen=True)
class Checkpoint:
    number: int
    epoch: int
    kind: str
    created_at: str
    prev: str
    heads: dict[str, Mark]
    pruned: dict[str, tuple[Mark, int | None]]
    key_id: str
    body: str
    signature: str

    @property
    def hash(self) -> str:
        return body_hash(self.body)

    def as_record(self) -> dict[str, Any]:
        return {"number": self.number, "epoch": self.epoch, "kind": self.kind,
                "created_at": self.created_at, "prev": self.prev, "key_id": self.key_id,
                "heads": {c: {"seq": m.seq, "hash": m.hash} for c, m in self.heads.items()},
                "pruned": {c: {"seq": m.seq, "hash": m.hash, "offset": o}
                           for c, (m, o) in self.pruned.items()},
                "body": self.body, "signature": self.signature}


def make_checkpoint(key: Ed25519PrivateKey, *, number: int, epoch: int, kind: str,
                    created_at: datetime, prev: str | None,
                    chains: Mapping[str, ChainState]) -> Checkpoint:
    kid = key_id(public_raw(key))
    content = {
        "number": number, "epoch": epoch, "kind": kind,
        "created_at": canonical_time(created_at), "prev": prev or GENESIS, "key_id": kid,
        "heads": {c: {"seq": s.head.seq, "hash": s.head.hash} for c, s in sorted(chains.items())},
        "pruned": {c: {"seq": s.pruned.seq, "hash": s.pruned.hash, "offset": s.pruned_offset}
                   for c, s in sorted(chains.items()) if s.pruned.seq > 0
                   or s.pruned_offset is not None},
    }
    body = canonical_json(content)
    signature = base64.b64encode(key.sign(body.encode("utf-8"))).decode("ascii")
    return parse_checkpoint(body, signature)


def parse_checkpoint(body: str, signature: str) -> Checkpoint:
    import json

    c = json.loads(body)
    return Checkpoint(
        number=int(c["number"]), epoch=int(c["epoch"]), kind=str(c["kind"]),
        created_at=str(c["created_at"]), prev=str(c["prev"]),
        heads={k: Mark(int(v["seq"]), str(v["hash"])) for k, v in c["heads"].items()},
        pruned={k: (Mark(int(v["seq"]), str(v["hash"])), v.get("offset"))
                for k, v in c["pruned"].items()},
        key_id=str(c["key_id"]), body=body, signature=signature)


def signature_ok(public: bytes, checkpoint: Checkpoint) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            base64.b64decode(checkpoint.signature), checkpoint.body.encode("utf-8"))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class CheckpointReport:
    """The trusted checkpoints of the newest epoch, or why the sequence cannot be trusted."""

    count: int = 0
    epoch: int = 0
    problem: str | None = None
    trusted: list[Checkpoint] = field(default_factory=list)

    def signed_heads(self) -> dict[str, dict[int, str]]:
        out: dict[str, dict[int, str]] = {}
        for cp in self.trusted:
            for chain, mark in cp.heads.items():
                out.setdefault(chain, {})[mark.seq] = mark.hash
        return out

    def pruned_marks(self) -> dict[str, Mark]:
        """The newest signed pruned mark of each chain (the start of verification)."""
        if not self.trusted:
            return {}
        return {c: m for c, (m, _o) in self.trusted[-1].pruned.items()}


def verify_checkpoints(checkpoints: Sequence[Checkpoint], public: bytes,
                       published: Sequence[Checkpoint] = ()) -> CheckpointReport:
    """Signatures, numbering and `prev` links of the stored checkpoints, and agreement with
    the copies published on Kafka (`published`): a stored one that differs, or a published one
    that is missing from the database, means the database was tampered with."""
    report = CheckpointReport(count=len(checkpoints))
    ordered = sorted(checkpoints, key=lambda c: c.number)
    kid = key_id(public)
    prev_hash: str | None = None
    for i, cp in enumerate(ordered):
        if cp.key_id != kid or not signature_ok(public, cp):
            report.problem = f"checkpoint {cp.number}: bad signature"
            return report
        if i > 0 and cp.number != ordered[i - 1].number + 1:
            report.problem = (f"checkpoints {ordered[i - 1].number + 1}..{cp.number - 1} "
                              "are missing")
            return report
        if prev_hash is not None and cp.prev != prev_hash:
            report.problem = f"checkpoint {cp.number}: previous checkpoint hash does not match"
            return report
        prev_hash = cp.hash
    stored = {cp.number: cp for cp in ordered}
    for pub in sorted(published, key=lambda c: c.number):
        if not signature_ok(public, pub):
            continue  # not ours: someone else's noise on the topic proves nothing
        mine = stored.get(pub.number)
        if mine is None:
            report.problem = f"checkpoint {pub.number} was published but is not in the database"
            return report
        if mine.body != pub.body:
            report.problem = f"checkpoint {pub.number} differs from its published copy"
            return report
    if ordered:
        report.epoch = ordered[-1].epoch
        report.trusted = [cp for cp in ordered if cp.epoch == report.epoch]
    return report
