"""The settings service's published events: one event per change of a server setting.

A redacted setting (passwords, salts) never travels in clear: its value and previous value are
replaced by `*****` whatever the producer put there (ARCHITECTURE §6).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import JsonValue, model_validator

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

    @model_validator(mode="before")
    @classmethod
    def _redact(cls, data: Any) -> Any:
        if isinstance(data, dict) and is_redacted(str(data.get("name", ""))):
            return {**data, "value": REDACTED, "previous_value": REDACTED}
        return data
