"""Setting changes from the settings topic reach identity's rules (password policy, ...)."""

from __future__ import annotations

from identity.bootstrap import spec
from identity.settings import IdentitySettings
from misp_contracts.envelope import Actor, Envelope


async def _setting_changed(identity, name: str, value) -> None:
    envelope = Envelope(source="/settings", type="misp.settings.setting.changed.v1",
                        subject=name, actor=Actor.system(),
                        data={"name": name, "value": value, "previous_value": None})
    handler = spec.handlers(IdentitySettings())[envelope.type]
    async with identity.engine.begin() as conn:
        await handler(conn, envelope)


async def test_a_longer_policy_from_the_settings_topic_applies_to_the_next_add(identity) -> None:
    ok = await identity.call("POST", "/admin/users/add", identity.admin_key,
                             json={"email": "len1@example.test", "password": "Abcdefgh1234!"})
    assert ok.status_code == 200
    await _setting_changed(identity, "Security.password_policy_length", 20)
    refused = await identity.call("POST", "/admin/users/add", identity.admin_key,
                                  json={"email": "len2@example.test",
                                        "password": "Abcdefgh1234!"})
    assert refused.status_code == 403
    assert refused.json()["errors"]["password"] == ["Password length requirement not met."]


async def test_a_redacted_or_unknown_setting_is_ignored(identity) -> None:
    await _setting_changed(identity, "Security.salt", "*****")
    await _setting_changed(identity, "No.such_setting", 1)
    from sqlalchemy import func, select

    from misp_platform.server_settings import setting_value

    async with identity.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(setting_value))).scalar() == 0
