"""The audit service's published records: one ECS record per log entry for SIEMs, and the signed
checkpoints of the log's hash chains (ARCHITECTURE §5).

`AuditLogRecorded` goes to `misp.audit.log.v1`, keyed by the log entry's id, its payload in
Elastic Common Schema field names (`@timestamp`, `event.action`, `user.*`, `source.ip`, ...) plus
MISP's own Log row under `misp.log`. `AuditCheckpointSigned` goes to `misp.audit.checkpoint.v1`.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from misp_contracts.events.base import DomainEvent, register

AUDIT_LOG_TOPIC = "misp.audit.log.v1"
AUDIT_CHECKPOINT_TOPIC = "misp.audit.checkpoint.v1"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class EcsEvent(_Part):
    """ECS `event.*`: what happened, in ECS's categorization."""

    id: str  # the log entry's id
    action: str  # MISP's action name (add, edit, auth_fail, login, ...)
    category: list[str] = Field(default_factory=list)  # iam, authentication, configuration
    type: list[str] = Field(default_factory=list)  # creation, change, deletion, start, info
    outcome: str = "success"  # success | failure | unknown
    kind: str = "event"
    dataset: str = "misp.audit"
    created: datetime | None = None  # when the source event happened


class EcsUserTarget(_Part):
    id: str | None = None
    email: str | None = None
    name: str | None = None


class EcsUser(_Part):
    """ECS `user.*`: who acted; `user.target.*`: the user acted upon, if any."""

    id: str | None = None
    email: str | None = None
    name: str | None = None
    target: EcsUserTarget | None = None


class EcsOrganization(_Part):
    id: str | None = None
    name: str | None = None


class EcsSource(_Part):
    ip: str | None = None


class EcsRelated(_Part):
    user: list[str] = Field(default_factory=list)
    ip: list[str] = Field(default_factory=list)


class MispLogRow(_Part):
    """MISP's Log row exactly as `admin/logs/index` shows it (integers as strings)."""

    id: str
    title: str
    created: str
    model: str
    model_id: str
    action: str
    user_id: str
    change: str
    email: str
    org: str
    description: str
    ip: str | None = None


class ChainLink(_Part):
    """Where the entry sits in its hash chain (one chain per source partition)."""

    chain: str
    seq: int
    prev_hash: str
    hash: str


class MispAuditFields(_Part):
    log: MispLogRow
    source_event_id: str
    source_event_type: str
    chain: ChainLink | None = None


@register
class AuditLogRecorded(DomainEvent):
    """One audit log entry, normalized for SIEMs (ECS field names)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    type: ClassVar[str] = "misp.audit.log.recorded.v1"
    topic: ClassVar[str] = AUDIT_LOG_TOPIC
    timestamp: datetime = Field(alias="@timestamp")
    message: str
    event: EcsEvent
    user: EcsUser = Field(default_factory=EcsUser)
    organization: EcsOrganization = Field(default_factory=EcsOrganization)
    source: EcsSource | None = None
    related: EcsRelated = Field(default_factory=EcsRelated)
    misp: MispAuditFields


class ChainMark(_Part):
    """A position in one chain: its sequence number and hash (and source offset, if known)."""

    seq: int
    hash: str
    offset: int | None = None


@register
class AuditCheckpointSigned(DomainEvent):
    """A signed statement of every chain's head (and pruned mark) at one moment."""

    type: ClassVar[str] = "misp.audit.checkpoint.signed.v1"
    topic: ClassVar[str] = AUDIT_CHECKPOINT_TOPIC
    number: int  # checkpoints are numbered 1, 2, ... and each names the previous one's hash
    epoch: int  # a rebuild starts a new epoch (ids and chains recomputed)
    kind: str  # periodic | pruned | rebuild
    created_at: datetime
    prev: str  # SHA-256 (hex) of the previous checkpoint's body
    heads: dict[str, ChainMark] = Field(default_factory=dict)
    pruned: dict[str, ChainMark] = Field(default_factory=dict)
    key_id: str  # SHA-256 (hex, 16 chars) of the raw public key
    public_key: str  # base64 of the raw Ed25519 public key
    body: str  # the exact canonical JSON that was signed
    signature: str  # base64 Ed25519 signature of `body`
