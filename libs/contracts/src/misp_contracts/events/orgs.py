"""Orgs' published events: organisations and their merges (ARCHITECTURE §3).

Every event of an organisation goes to `misp.orgs.organisation.v1`, keyed by the organisation's
stream id, so a reader sees an organisation's history in order. The merge saga's contract (what
identity does on `OrganisationMergeStarted`) is described in `services/orgs/README.md`.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from misp_contracts.events.base import Change, DomainEvent, register

ORGANISATION_TOPIC = "misp.orgs.organisation.v1"


class OrganisationState(BaseModel):
    """An organisation as MISP's `organisations` table holds it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    uuid: str
    name: str
    description: str = ""
    type: str = ""
    nationality: str = ""
    sector: str = ""
    contacts: str = ""
    local: bool = True
    restricted_to_domain: list[str] = Field(default_factory=list)
    landingpage: str | None = None
    created_by: int = 0
    date_created: datetime | None = None
    date_modified: datetime | None = None
    # SHA-256 (hex) of the organisation's logo, None without one; the image itself is served by
    # orgs at /api/v1/orgs/organisations/{id}/logo.png and never travels on Kafka.
    logo_sha256: str | None = None


class OrganisationRef(BaseModel):
    """Enough of an organisation to name it in another organisation's event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    uuid: str
    name: str


@register
class OrganisationCreated(DomainEvent):
    type: ClassVar[str] = "misp.orgs.organisation.created.v1"
    topic: ClassVar[str] = ORGANISATION_TOPIC
    organisation: OrganisationState
    # Why orgs created it on its own: "first-run" (the host organisation) or "restored" (a user
    # was added while it was being deleted: see the race rule in services/orgs/README.md).
    reason: str | None = None


@register
class OrganisationUpdated(DomainEvent):
    type: ClassVar[str] = "misp.orgs.organisation.updated.v1"
    topic: ClassVar[str] = ORGANISATION_TOPIC
    organisation: OrganisationState
    changes: dict[str, Change] = Field(default_factory=dict)


@register
class OrganisationDeleted(DomainEvent):
    type: ClassVar[str] = "misp.orgs.organisation.deleted.v1"
    topic: ClassVar[str] = ORGANISATION_TOPIC
    org_id: int
    uuid: str
    name: str
    # Set when the organisation was deleted as the last step of a merge into that organisation.
    merged_into: int | None = None


@register
class OrganisationMergeStarted(DomainEvent):
    """A site admin asked to merge `source` into `target` (on the source's stream).

    From this event on the source is closed: identity must move every user of the source to the
    target (one `UserUpdated` per user, `changes: {"org_id": [source, target]}`) and refuse new
    users in the source. Orgs completes the merge once no user is left in the source.
    """

    type: ClassVar[str] = "misp.orgs.organisation.merge-started.v1"
    topic: ClassVar[str] = ORGANISATION_TOPIC
    merge_id: str
    source: OrganisationRef
    target: OrganisationRef


@register
class OrganisationMerged(DomainEvent):
    """The merge is complete: the source has no users left; `OrganisationDeleted` follows."""

    type: ClassVar[str] = "misp.orgs.organisation.merged.v1"
    topic: ClassVar[str] = ORGANISATION_TOPIC
    merge_id: str
    source: OrganisationRef
    target: OrganisationRef
    users_moved: int = 0
