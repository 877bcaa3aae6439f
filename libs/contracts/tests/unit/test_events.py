"""The event registry, decoding rules, the `changes` convention and the naming rules."""

import re
from typing import ClassVar

import pytest

from misp_contracts.events import decode, event_registry, model_for, register
from misp_contracts.events.auth import AuthenticationFailed, auth_topic
from misp_contracts.events.base import REDACTED, DomainEvent, changes_between
from misp_contracts.events.identity import UserCreated, UserDeleted
from misp_contracts.topics import BY_NAME, SERVICES

EVENT_TYPE = re.compile(r"^misp\.[a-z]+\.[a-z-]+\.[a-z-]+\.v[1-9][0-9]*$")


def test_an_unknown_event_type_decodes_to_none() -> None:
    assert model_for("misp.nobody.thing.happened.v1") is None
    assert decode("misp.nobody.thing.happened.v1", {"a": 1}) is None


def test_unknown_fields_are_ignored_when_decoding() -> None:
    event = decode(UserDeleted.type, {"user_id": 3, "uuid": "u", "email": "e@x.test",
                                      "org_id": 1, "added_in_v2": "whatever"})

    assert isinstance(event, UserDeleted)
    assert event.user_id == 3
    assert not hasattr(event, "added_in_v2")


def test_nested_state_ignores_unknown_fields_too() -> None:
    event = decode(UserCreated.type, {"user": {"id": 1, "uuid": "u", "email": "e@x.test",
                                               "org_id": 1, "role_id": 3, "future": True}})

    assert isinstance(event, UserCreated)
    assert event.user.email == "e@x.test"


def test_events_are_frozen() -> None:
    event = UserDeleted(user_id=3, uuid="u", email="e@x.test", org_id=1)

    with pytest.raises(ValueError):
        event.user_id = 4  # type: ignore[misc]


def test_the_registry_rejects_a_type_string_registered_twice() -> None:
    class Impostor(DomainEvent):
        type: ClassVar[str] = UserCreated.type
        topic: ClassVar[str] = UserCreated.topic

    with pytest.raises(ValueError, match="registered twice"):
        register(Impostor)
    assert event_registry[UserCreated.type] is UserCreated


def test_registering_the_same_model_again_is_harmless() -> None:
    assert register(UserCreated) is UserCreated


def test_changes_between_lists_differing_fields_only() -> None:
    changes = changes_between({"email": "a@x.test", "disabled": False, "org_id": 1},
                              {"email": "b@x.test", "disabled": False, "org_id": 2})

    assert changes == {"email": ("a@x.test", "b@x.test"), "org_id": (1, 2)}


def test_changes_between_redacts_secrets_on_both_sides() -> None:
    changes = changes_between({"password": "old-secret", "email": "a@x.test"},
                              {"password": "new-secret", "email": "a@x.test"},
                              secret_fields=frozenset({"password"}))

    assert changes == {"password": (REDACTED, REDACTED)}
    assert "old-secret" not in repr(changes) and "new-secret" not in repr(changes)


def test_a_field_that_appears_is_a_change_from_none() -> None:
    assert changes_between({}, {"gpgkey": "KEY"}) == {"gpgkey": (None, "KEY")}


@pytest.mark.parametrize("type_", sorted(event_registry))
def test_every_event_type_follows_the_naming_rule(type_: str) -> None:
    assert EVENT_TYPE.match(type_), type_
    assert event_registry[type_].type == type_


@pytest.mark.parametrize("type_", sorted(event_registry))
def test_every_event_goes_to_a_catalogued_topic(type_: str) -> None:
    model = event_registry[type_]
    if type_.startswith("misp.auth."):
        assert model.topic == ""  # per service, on the service's own auth topic
        assert all(auth_topic(s) in BY_NAME for s in SERVICES)
    else:
        assert model.topic in BY_NAME, f"{type_} goes to {model.topic!r}"
        context, aggregate = type_.split(".")[1:3]
        assert model.topic.startswith(f"misp.{context}.{aggregate}.v")


def test_auth_failures_carry_no_secret_field() -> None:
    fields = set(AuthenticationFailed.model_fields)

    assert not fields & {"key", "authkey", "password"}
