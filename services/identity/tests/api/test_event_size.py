"""One user's edit can never make an event Kafka refuses: key and certificate texts are bounded
in bytes and free of control characters (MISP's validation error), and whatever passes them
stays under the cap of one message."""

from __future__ import annotations

from sqlalchemy import func, select

from misp_platform.db import event, outbox
from misp_platform.outbox import message_limit


async def counts(identity) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with identity.engine.connect() as conn:
        events = (await conn.execute(select(func.count()).select_from(event))).scalar_one()
        largest = (await conn.execute(select(func.coalesce(
            func.max(func.length(outbox.c.payload)), 0)))).scalar_one()
    return int(events), int(largest)


async def test_control_characters_in_a_self_edit_are_refused_and_nothing_is_written(
        identity) -> None:  # type: ignore[no-untyped-def]
    user = await identity.add_user()
    before, _ = await counts(identity)
    # Two such edits made a 1.2 MB event, over Kafka's limit: the relay stopped for good.
    response = await identity.call("POST", f"/users/edit/{user['id']}", user["authkey"],
                                   json={"certif_public": "\x01" * 65535})
    assert response.status_code == 403, response.text
    assert response.json()["saved"] is False
    assert response.json()["errors"] == {"certif_public": ["Control characters are not allowed."]}
    assert (await counts(identity))[0] == before


async def test_a_text_over_65535_bytes_is_refused_although_it_has_fewer_characters(
        identity) -> None:  # type: ignore[no-untyped-def]
    user = await identity.add_user()
    response = await identity.call("POST", f"/users/edit/{user['id']}", user["authkey"],
                                   json={"certif_public": "é" * 40000})  # 80,000 bytes
    assert response.status_code == 403, response.text
    assert response.json()["errors"] == {
        "certif_public": ["The value can be at most 65535 bytes."]}


async def test_the_largest_edits_allowed_make_events_under_the_message_cap(
        identity) -> None:  # type: ignore[no-untyped-def]
    user = await identity.add_user()
    for text in ("\n" * 65535, "\r\n" * 32767):  # each line break takes two bytes in JSON
        response = await identity.call("POST", f"/users/edit/{user['id']}", user["authkey"],
                                       json={"certif_public": text})
        assert response.status_code == 200, response.text
    _, largest = await counts(identity)
    assert 2 * 65535 < largest <= message_limit()
