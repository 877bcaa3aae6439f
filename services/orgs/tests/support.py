"""Helpers of the orgs service's tests: auth headers, identity's events as identity publishes
them (polling with a deadline is misp_platform.testing.eventually)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable

from misp_contracts.envelope import Envelope
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import UserCreated, UserDeleted, UserState, UserUpdated

Publish = Callable[..., Awaitable[list[Envelope]]]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": key, "Accept": "application/json"}



def new_user(org_id: int) -> UserState:
    uid = random.randint(10**9, 10**12)
    return UserState(id=uid, uuid=str(uuid.uuid4()), email=f"u{uid}@example.test",
                     org_id=org_id, role_id=3)


def created(user: UserState) -> tuple[str, DomainEvent]:
    return user.uuid, UserCreated(user=user)


def moved(user: UserState, to_org: int) -> tuple[str, DomainEvent]:
    after = user.model_copy(update={"org_id": to_org})
    return user.uuid, UserUpdated(user=after, changes={"org_id": (user.org_id, to_org)})


def deleted(user: UserState) -> tuple[str, DomainEvent]:
    return user.uuid, UserDeleted(user_id=user.id, uuid=user.uuid, email=user.email,
                                  org_id=user.org_id)


