"""The relay's `outbox_published` payload: the positions it published, as runs."""

from __future__ import annotations

from misp_platform.outbox import announce_positions, announced_positions


def test_published_positions_are_announced_as_runs() -> None:
    assert announce_positions([7, 3, 4, 5, 9, 10]) == "3-5,7,9-10"
    assert announced_positions("3-5,7,9-10") == [(3, 5), (7, 7), (9, 10)]


def test_a_list_too_long_for_a_notification_is_announced_as_unknown() -> None:
    assert announce_positions(list(range(0, 4000, 2))) == ""
    assert announced_positions("") is None


def test_a_payload_that_is_not_a_list_of_runs_names_nothing() -> None:
    assert announced_positions("x-1") is None
