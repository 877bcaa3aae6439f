"""Orgs' published events: organisations (ARCHITECTURE §3)."""

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


@register
class OrganisationCreated(DomainEvent):
    type: ClassVar[str] = "misp.orgs.organisation.created.v1"
    topic: ClassVar[str] = ORGANISATION_TOPIC
    organisation: OrganisationState


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
