"""Every event and command model, registered by its CloudEvents type string."""

from misp_contracts.events import (  # noqa: F401  (import registers them)
    abuse,
    audit,
    auth,
    identity,
    jobs,
    mailer,
    orgs,
    settings,
)
from misp_contracts.events.base import (
    REDACTED,
    DomainEvent,
    decode,
    event_registry,
    model_for,
    register,
)

__all__ = ["REDACTED", "DomainEvent", "decode", "event_registry", "model_for", "register"]
