"""Scheduled tasks without I/O: next runs in a time zone, validation, overlap and catch-up."""

from datetime import UTC, date, datetime, timedelta

import pytest

from jobs.domain import schedule
from jobs.domain.errors import JobValidationError
from misp_contracts.events.jobs import TaskState

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def task(**kw: object) -> TaskState:
    return TaskState.model_validate({"id": 1, "type": "noop", "timer": 24, **kw})


def test_the_first_run_is_the_next_scheduled_time_in_the_tasks_zone() -> None:
    assert schedule.first_run(task(scheduled_time="13:30"), NOW) == NOW.replace(minute=30,
                                                                                  hour=13)
    assert schedule.first_run(task(scheduled_time="11:00"), NOW) == datetime(
        2026, 3, 11, 11, 0, tzinfo=UTC)
    paris = schedule.first_run(task(scheduled_time="14:00", timezone="Europe/Paris"), NOW)
    assert paris == datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
    assert schedule.first_run(task(scheduled_time="01:00"), NOW, date(2026, 4, 1)) == datetime(
        2026, 4, 1, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize("bad", [
    {"scheduled_time": "25:00"}, {"scheduled_time": "noon"}, {"timer": -1},
    {"type": "nope"}, {"timezone": "Mars/Olympus"}, {"overlap": "maybe"},
    {"catch_up": "sometimes"},
])
def test_bad_schedules_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(JobValidationError):
        schedule.validate(task(**bad))


def test_a_tick_on_time_queues_one_run_and_moves_one_period() -> None:
    plan = schedule.plan_tick(task(), NOW, NOW + timedelta(seconds=1), active_runs=0)
    assert plan.runs == 1 and plan.next_at == NOW + timedelta(hours=24)


def test_a_run_once_task_has_no_next_run() -> None:
    plan = schedule.plan_tick(task(timer=0), NOW, NOW, active_runs=0)
    assert plan.runs == 1 and plan.next_at is None


@pytest.mark.parametrize(("policy", "runs"), [("skip", 0), ("run_once", 1), ("run_all", 4)])
def test_catch_up_after_downtime_follows_the_policy(policy: str, runs: int) -> None:
    later = NOW + timedelta(hours=3, minutes=40)
    plan = schedule.plan_tick(task(timer=1, catch_up=policy, catch_up_max=10), NOW, later,
                              active_runs=0)
    assert plan.runs == runs
    assert plan.next_at == NOW + timedelta(hours=4)


def test_run_all_is_bounded() -> None:
    plan = schedule.plan_tick(task(timer=1, catch_up="run_all", catch_up_max=2), NOW,
                              NOW + timedelta(hours=10), active_runs=0)
    assert plan.runs == 2


@pytest.mark.parametrize(("policy", "active", "runs"), [
    ("skip", 1, 0), ("buffer_one", 1, 1), ("buffer_one", 2, 0), ("allow", 5, 1)])
def test_overlap_with_a_run_still_going_follows_the_policy(policy: str, active: int,
                                                           runs: int) -> None:
    plan = schedule.plan_tick(task(overlap=policy), NOW, NOW, active_runs=active)
    assert plan.runs == runs
