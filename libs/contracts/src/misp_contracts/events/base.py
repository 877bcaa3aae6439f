"""The base of every contract model, the `changes` convention, and the type-string registry."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

# What a secret becomes wherever it would otherwise appear (changes, logs, audit rows).
REDACTED = "*****"

Change = tuple[Any, Any]


class DomainEvent(BaseModel):
    """A frozen payload; readers ignore fields they do not know (forward compatibility)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # `misp.<context>.<aggregate>.<past-tense>.v<N>`; set on each concrete model.
    type: ClassVar[str]
    # `misp.<context>.<aggregate>.v<N>`: the topic that carries every event of the aggregate.
    topic: ClassVar[str]


E = TypeVar("E", bound=type[DomainEvent])

event_registry: dict[str, type[DomainEvent]] = {}


def register(model: E) -> E:
    """Class decorator: make a model findable by its type string (each type exactly once)."""
    if model.type in event_registry and event_registry[model.type] is not model:
        raise ValueError(f"event type registered twice: {model.type}")
    event_registry[model.type] = model
    return model


def model_for(type_: str) -> type[DomainEvent] | None:
    """The model of a type string, or None for a type this reader does not know (skip it)."""
    return event_registry.get(type_)


def decode(type_: str, data: dict[str, Any]) -> DomainEvent | None:
    """Parse a payload into its model; None for an unknown type."""
    model = model_for(type_)
    return None if model is None else model.model_validate(data)


def changes_between(old: dict[str, Any], new: dict[str, Any],
                    secret_fields: frozenset[str] = frozenset()) -> dict[str, Change]:
    """`{field: (old, new)}` for each field that differs; secrets become `*****` on both sides."""
    out: dict[str, Change] = {}
    for name, value in new.items():
        before = old.get(name)
        if before != value:
            out[name] = (REDACTED, REDACTED) if name in secret_fields else (before, value)
    return out
