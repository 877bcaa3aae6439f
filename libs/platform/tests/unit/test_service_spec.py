"""What a ServiceSpec hands the DLQ replay: the handlers of the group that dead-lettered the
message (the principals consumer's own, or the service's main ones)."""

from __future__ import annotations

from pathlib import Path

from misp_contracts.events.identity import UserCreated
from misp_platform.auth.principals import PRINCIPAL_HANDLERS
from misp_platform.config import settings_class
from misp_platform.service import ServiceSpec

MAIN_TYPE = "misp.test.thing.happened.v1"


async def _main(_conn: object, _envelope: object) -> None:
    return None


def spec() -> ServiceSpec:
    return ServiceSpec(name="probe", settings=settings_class("probe"),
                       create_app=lambda _s: None,  # type: ignore[arg-type,return-value]
                       migrations_dir=Path("."), handlers=lambda _s: {MAIN_TYPE: _main})


def test_a_principals_letter_is_replayed_with_the_principals_handlers() -> None:
    settings = settings_class("probe")()
    handlers = spec().single_handlers(settings, settings.principals_group)
    assert set(handlers) == set(PRINCIPAL_HANDLERS)
    assert UserCreated.type in handlers and MAIN_TYPE not in handlers


def test_a_main_letter_is_replayed_with_the_main_handlers() -> None:
    settings = settings_class("probe")()
    assert settings.main_group == "misp.probe"
    assert settings.principals_group == "misp.probe.principals"
    for group in (settings.main_group, None):
        assert set(spec().single_handlers(settings, group)) == {MAIN_TYPE}
