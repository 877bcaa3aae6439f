"""The organisation aggregate: its state, how events evolve it, and the decisions on commands.

Pure: no I/O. Handlers load the stream, call `decide_*`, append what comes back, and apply the
same events to the read model.
"""

from __future__ import annotations

import re
import uuid as uuid_module
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from misp_contracts.events.base import DomainEvent, changes_between
from misp_contracts.events.orgs import (
    OrganisationCreated,
    OrganisationDeleted,
    OrganisationMerged,
    OrganisationMergeStarted,
    OrganisationRef,
    OrganisationState,
    OrganisationUpdated,
)
from orgs.domain.errors import (
    OrganisationInUseError,
    OrganisationRefusedError,
    OrganisationValidationError,
)

HOST_ORG_ID = 1
ACTIVE, MERGING, DELETED = "active", "merging", "deleted"

# The stream of organisation N is derived from N: a second "create organisation 1" (two first
# runs racing) collides on (stream, version 1) instead of creating a twin.
_STREAM_NAMESPACE = uuid_module.UUID("6d1c4f0e-5b0a-4d8e-9a51-0b6f3c2e7a10")

# CakePHP's Validation::uuid, which MISP uses.
UUID_RE = re.compile(
    r"^[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[0-5][a-fA-F0-9]{3}-[089aAbB][a-fA-F0-9]{3}-[a-fA-F0-9]{12}$")

NAME_TAKEN = "An organisation with this name already exists."
UUID_TAKEN = "An organisation with this UUID already exists."
UUID_INVALID = "Please provide a valid RFC 4122 UUID"
NAME_EMPTY = "Name cannot be empty."

# What a client may set (MISP's add/edit field lists); anything else in a body is ignored.
TEXT_FIELDS: dict[str, int] = {"name": 255, "description": 65535, "type": 255,
                               "nationality": 255, "sector": 255, "contacts": 65535}
EDITABLE = (*TEXT_FIELDS, "local", "uuid", "restricted_to_domain")


def stream_id_of(org_id: int) -> str:
    return str(uuid_module.uuid5(_STREAM_NAMESPACE, f"misp.orgs.organisation/{org_id}"))


@dataclass(frozen=True)
class Organisation:
    """An organisation as its stream makes it (None before its first event)."""

    state: OrganisationState
    version: int
    status: str = ACTIVE
    merge_id: str | None = None
    merged_into: int | None = None

    @property
    def ref(self) -> OrganisationRef:
        return OrganisationRef(id=self.state.id, uuid=self.state.uuid, name=self.state.name)


def evolve(org: Organisation | None, event: DomainEvent) -> Organisation | None:
    version = (org.version if org else 0) + 1
    if isinstance(event, OrganisationCreated):
        return Organisation(state=event.organisation, version=version)
    if org is None:
        return None
    if isinstance(event, OrganisationUpdated):
        return replace(org, state=event.organisation, version=version)
    if isinstance(event, OrganisationMergeStarted):
        return replace(org, status=MERGING, merge_id=event.merge_id, version=version)
    if isinstance(event, OrganisationMerged):
        return replace(org, merged_into=event.target.id, version=version)
    if isinstance(event, OrganisationDeleted):
        return replace(org, status=DELETED, merged_into=event.merged_into,
                       state=org.state.model_copy(update={"logo_sha256": None}),
                       version=version)
    return replace(org, version=version)


def replay(events: Iterable[DomainEvent]) -> Organisation | None:
    org: Organisation | None = None
    for event in events:
        org = evolve(org, event)
    return org


# ---- input ------------------------------------------------------------------------------------


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false", ""):
        return value.strip().lower() in ("1", "true")
    return None


def _domains(value: Any) -> list[str] | None:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [d.strip() for d in re.split(r"[\r\n]+", value) if d.strip()]
    if isinstance(value, list) and all(isinstance(d, str) for d in value):
        return [d.strip() for d in value if d.strip()]
    return None


def clean_fields(raw: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """The settable fields of a request body, typed; OrganisationValidationError for bad ones.

    On create, `name` is required; `local` defaults to true (MISP's REST default).
    """
    errors: dict[str, list[str]] = {}
    out: dict[str, Any] = {}
    for name, limit in TEXT_FIELDS.items():
        if name not in raw:
            continue
        value = raw[name]
        if value is None:
            value = ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            errors.setdefault(name, []).append(f"{name.capitalize()} must be a string.")
            continue
        text = str(value).strip() if name == "name" else str(value)
        if len(text) > limit:
            errors.setdefault(name, []).append(
                f"{name.capitalize()} is too long (at most {limit} characters).")
            continue
        out[name] = text
    missing = creating and "name" not in out and "name" not in errors
    if missing or ("name" in out and not out["name"]):
        errors["name"] = [NAME_EMPTY]
    if "local" in raw:
        local = _boolean(raw["local"])
        if local is None:
            errors["local"] = ["Local must be a boolean."]
        else:
            out["local"] = local
    if "restricted_to_domain" in raw:
        domains = _domains(raw["restricted_to_domain"])
        if domains is None:
            errors["restricted_to_domain"] = [
                "Restricted to domain must be a list of domains or one domain per line."]
        else:
            out["restricted_to_domain"] = domains
    if "uuid" in raw and raw["uuid"] not in (None, ""):
        value = raw["uuid"]
        if not isinstance(value, str) or not UUID_RE.fullmatch(value.strip()):
            errors["uuid"] = [UUID_INVALID]
        else:
            out["uuid"] = value.strip().lower()
    if errors:
        raise OrganisationValidationError(errors)
    return out


# ---- decisions --------------------------------------------------------------------------------


def decide_create(fields: Mapping[str, Any], *, org_id: int, created_by: int,
                  now: datetime, reason: str | None = None) -> OrganisationCreated:
    state = OrganisationState(
        id=org_id,
        uuid=fields.get("uuid") or str(uuid_module.uuid4()),
        name=fields["name"],
        description=fields.get("description", ""),
        type=fields.get("type", ""),
        nationality=fields.get("nationality", ""),
        sector=fields.get("sector", ""),
        contacts=fields.get("contacts", ""),
        local=fields.get("local", True),
        restricted_to_domain=list(fields.get("restricted_to_domain", [])),
        created_by=created_by,
        date_created=now,
        date_modified=now,
    )
    return OrganisationCreated(organisation=state, reason=reason)


def _require_live(org: Organisation | None) -> Organisation:
    if org is None or org.status == DELETED:
        from orgs.domain.errors import OrganisationNotFoundError

        raise OrganisationNotFoundError("Invalid organisation")
    return org


def _require_not_merging(org: Organisation, action: str) -> None:
    if org.status == MERGING:
        raise OrganisationRefusedError(
            f"Could not {action} Organisation",
            {"id": ["The organisation is being merged into another one."]})


def decide_edit(org: Organisation | None, fields: Mapping[str, Any], *,
                now: datetime) -> list[DomainEvent]:
    org = _require_live(org)
    _require_not_merging(org, "edit")
    before = org.state.model_dump(include=set(EDITABLE))
    after = {**before, **{k: v for k, v in fields.items() if k in EDITABLE}}
    changes = changes_between(before, after)
    if not changes:
        return []
    state = org.state.model_copy(update={**after, "date_modified": now})
    return [OrganisationUpdated(organisation=state, changes=changes)]


def decide_delete(org: Organisation | None, *, user_count: int,
                  target_of_running_merge: bool) -> OrganisationDeleted:
    org = _require_live(org)
    if org.state.id == HOST_ORG_ID:
        raise OrganisationRefusedError("Could not delete Organisation",
                                       {"id": ["The host organisation cannot be deleted."]})
    if user_count > 0:
        # MISP's answer while users reference the organisation, with the reason.
        raise OrganisationInUseError("Could not delete Organisation", {"id": [
            f"The organisation still has {user_count} user(s): delete them or move them to "
            "another organisation first."]})
    if org.status == MERGING:
        raise OrganisationRefusedError("Could not delete Organisation", {"id": [
            "The organisation is being merged into another one."]})
    if target_of_running_merge:
        raise OrganisationRefusedError("Could not delete Organisation", {"id": [
            "Another organisation is being merged into this one."]})
    return OrganisationDeleted(org_id=org.state.id, uuid=org.state.uuid, name=org.state.name)


def decide_logo(org: Organisation | None, sha256: str | None, *,
                now: datetime) -> list[DomainEvent]:
    org = _require_live(org)
    if org.state.logo_sha256 == sha256:
        return []
    state = org.state.model_copy(update={"logo_sha256": sha256, "date_modified": now})
    return [OrganisationUpdated(organisation=state,
                                changes={"logo_sha256": (org.state.logo_sha256, sha256)})]


def decide_start_merge(source: Organisation | None, target: Organisation | None, *,
                       merge_id: str) -> OrganisationMergeStarted:
    source = _require_live(source)
    if target is None or target.status == DELETED:
        raise OrganisationRefusedError("Could not merge Organisation",
                                       {"target": ["Invalid target organisation."]})
    if source.state.id == target.state.id:
        raise OrganisationRefusedError(
            "Could not merge Organisation",
            {"target": ["An organisation cannot be merged into itself."]})
    if source.state.id == HOST_ORG_ID:
        raise OrganisationRefusedError(
            "Could not merge Organisation",
            {"id": ["The host organisation cannot be merged into another one."]})
    _require_not_merging(source, "merge")
    if target.status == MERGING:
        raise OrganisationRefusedError(
            "Could not merge Organisation",
            {"target": ["The target organisation is itself being merged."]})
    return OrganisationMergeStarted(merge_id=merge_id, source=source.ref, target=target.ref)


def decide_complete_merge(source: Organisation | None, target: OrganisationRef, *,
                          merge_id: str, users_left: int,
                          users_moved: int) -> list[DomainEvent]:
    """[] while users are left (or when already done: a redelivery), else merged + deleted."""
    if source is None or source.status != MERGING or source.merge_id != merge_id:
        return []
    if users_left > 0:
        return []
    return [
        OrganisationMerged(merge_id=merge_id, source=source.ref, target=target,
                           users_moved=users_moved),
        OrganisationDeleted(org_id=source.state.id, uuid=source.state.uuid,
                            name=source.state.name, merged_into=target.id),
    ]


def decide_restore(org: Organisation | None, *, name: str,
                   now: datetime) -> OrganisationCreated | None:
    """Bring back an organisation deleted (not merged) while a user was being added to it."""
    if org is None or org.status != DELETED or org.merged_into is not None:
        return None
    state = org.state.model_copy(update={"name": name, "date_modified": now,
                                         "logo_sha256": None})
    return OrganisationCreated(organisation=state, reason="restored")
