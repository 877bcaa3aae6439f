"""The settings service's published events: one event per change of a server setting.

A redacted setting (passwords, salts) never travels in clear: its value and previous value are
replaced by `*****` whatever the producer put there (ARCHITECTURE §6).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, JsonValue, model_validator

from misp_contracts.events.base import REDACTED, DomainEvent, register
from misp_contracts.settings_catalogue import definition

SETTING_TOPIC = "misp.settings.setting.v1"


def is_redacted(name: str) -> bool:
    try:
        return definition(name).redacted
    except KeyError:
        return False


@register
class SettingChanged(DomainEvent):
    """A setting was set (or reset to its default: `value` is then the default)."""

    type: ClassVar[str] = "misp.settings.setting.changed.v1"
    topic: ClassVar[str] = SETTING_TOPIC
    name: str
    value: JsonValue = None
    previous_value: JsonValue = None
    # Optional additions: the change was saved although the value fails its test (MISP's
    # `force`), and whether it came through the CLI (the only way for `cli_only` settings).
    forced: bool = False
    via_cli: bool = False

    @model_validator(mode="before")
    @classmethod
    def _redact(cls, data: Any) -> Any:
        if isinstance(data, dict) and is_redacted(str(data.get("name", ""))):
            return {**data, "value": REDACTED, "previous_value": REDACTED}
        return data


# --- Import blocklists, import regexps and the signature allowlist ---------------------------
# One aggregate type per list, each entry its own stream (keyed by its uuid or id). Payloads
# carry the entry's state as one nested object with an `id`, and `changes` on update, so that
# the audit's generic mapping shows MISP's model (`EventBlocklist`, `OrgBlocklist`, `Regexp`,
# `Allowedlist`) and action (add, edit, delete).

EVENT_BLOCKLIST_TOPIC = "misp.settings.event-blocklist.v1"
ORG_BLOCKLIST_TOPIC = "misp.settings.org-blocklist.v1"
REGEXP_TOPIC = "misp.settings.regexp.v1"
ALLOWEDLIST_TOPIC = "misp.settings.allowedlist.v1"


class EventBlocklistState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    event_uuid: str
    created: str  # MISP's "YYYY-MM-DD HH:MM:SS"
    event_info: str = ""
    comment: str = ""
    event_orgc: str = ""


class OrgBlocklistState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    org_uuid: str
    created: str
    org_name: str = ""
    comment: str = ""


class RegexpState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    regexp: str
    replacement: str = ""  # empty: a matching value is blocked
    type: str = "ALL"


class AllowedlistState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    name: str  # a delimited regex


@register
class EventBlocklistAdded(DomainEvent):
    type: ClassVar[str] = "misp.settings.event-blocklist.added.v1"
    topic: ClassVar[str] = EVENT_BLOCKLIST_TOPIC
    entry: EventBlocklistState


@register
class EventBlocklistUpdated(DomainEvent):
    type: ClassVar[str] = "misp.settings.event-blocklist.updated.v1"
    topic: ClassVar[str] = EVENT_BLOCKLIST_TOPIC
    entry: EventBlocklistState
    changes: dict[str, tuple[JsonValue, JsonValue]] = {}


@register
class EventBlocklistRemoved(DomainEvent):
    type: ClassVar[str] = "misp.settings.event-blocklist.removed.v1"
    topic: ClassVar[str] = EVENT_BLOCKLIST_TOPIC
    entry: EventBlocklistState


@register
class OrgBlocklistAdded(DomainEvent):
    type: ClassVar[str] = "misp.settings.org-blocklist.added.v1"
    topic: ClassVar[str] = ORG_BLOCKLIST_TOPIC
    entry: OrgBlocklistState


@register
class OrgBlocklistUpdated(DomainEvent):
    type: ClassVar[str] = "misp.settings.org-blocklist.updated.v1"
    topic: ClassVar[str] = ORG_BLOCKLIST_TOPIC
    entry: OrgBlocklistState
    changes: dict[str, tuple[JsonValue, JsonValue]] = {}


@register
class OrgBlocklistRemoved(DomainEvent):
    type: ClassVar[str] = "misp.settings.org-blocklist.removed.v1"
    topic: ClassVar[str] = ORG_BLOCKLIST_TOPIC
    entry: OrgBlocklistState


@register
class RegexpAdded(DomainEvent):
    type: ClassVar[str] = "misp.settings.regexp.added.v1"
    topic: ClassVar[str] = REGEXP_TOPIC
    regexp: RegexpState


@register
class RegexpUpdated(DomainEvent):
    type: ClassVar[str] = "misp.settings.regexp.updated.v1"
    topic: ClassVar[str] = REGEXP_TOPIC
    regexp: RegexpState
    changes: dict[str, tuple[JsonValue, JsonValue]] = {}


@register
class RegexpRemoved(DomainEvent):
    type: ClassVar[str] = "misp.settings.regexp.removed.v1"
    topic: ClassVar[str] = REGEXP_TOPIC
    regexp: RegexpState


@register
class AllowedlistAdded(DomainEvent):
    type: ClassVar[str] = "misp.settings.allowedlist.added.v1"
    topic: ClassVar[str] = ALLOWEDLIST_TOPIC
    allowedlist: AllowedlistState


@register
class AllowedlistUpdated(DomainEvent):
    type: ClassVar[str] = "misp.settings.allowedlist.updated.v1"
    topic: ClassVar[str] = ALLOWEDLIST_TOPIC
    allowedlist: AllowedlistState
    changes: dict[str, tuple[JsonValue, JsonValue]] = {}


@register
class AllowedlistRemoved(DomainEvent):
    type: ClassVar[str] = "misp.settings.allowedlist.removed.v1"
    topic: ClassVar[str] = ALLOWEDLIST_TOPIC
    allowedlist: AllowedlistState
