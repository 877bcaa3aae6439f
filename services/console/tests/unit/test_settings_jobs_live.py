"""The pure pieces of the settings, jobs and live-update pages: how a setting is shown and sent,
the tabs' figures, the workers' queues, a job's progress and whether it can be cancelled, the
feeds' topics, the consumer's options, and the event stream's text."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from console.feeds import FEEDS, feed_topics, feeds_of
from console.forms import Form
from console.live import Hub, LiveUpdates, events, kafka_options
from console.pages.jobs import is_open, job_rows, progress_of, task_input, with_status
from console.pages.settings import (
    REDACTED,
    level_name,
    posted_value,
    queues_of,
    setting_row,
    severity_counts,
    tab_figures,
)
from console.settings import ConsoleSettings


@pytest.mark.parametrize(("level", "name"), [
    (0, "critical"), ("1", "recommended"), (2, "optional"), (3, "deprecated"),
    (None, "optional"), ("x", "optional"), (9, "optional")])
def test_a_level_is_named_as_misp_colours_it(level: object, name: str) -> None:
    assert level_name(level) == name


@pytest.mark.parametrize(("kind", "raw", "redacted", "sent"), [
    ("boolean", "false", False, False),  # MISP casts the string "false" to true: a JSON boolean
    ("boolean", " TRUE ", False, True),
    ("boolean", "maybe", False, "maybe"),  # the API refuses it, with its own message
    ("numeric", "12", False, "12"),
    ("numeric", "not a number", False, "not a number"),
    ("string", "", True, REDACTED),  # a hidden value left blank: no change (the API says so)
    ("string", "new secret", True, "new secret"),
    ("string", "", False, ""),
])
def test_an_edit_sends_booleans_as_json_and_the_rest_as_typed(
        kind: str, raw: str, redacted: bool, sent: object) -> None:
    assert posted_value(kind, raw, redacted=redacted) == sent


def test_a_setting_row_gets_the_control_of_its_type() -> None:
    boolean = setting_row({"setting": "MISP.live", "type": "boolean", "value": True, "level": 0})
    assert (boolean["control"], boolean["shown"], boolean["severity"]) == (
        "select", "true", "critical")
    assert boolean["choices"] == [("true", "true"), ("false", "false")]
    options = setting_row({"setting": "debug", "type": "numeric", "value": 0, "level": 0,
                           "options": {"0": "Off", "1": "On"}})
    assert (options["control"], options["choices"], options["shown"]) == (
        "select", [("0", "Off"), ("1", "On")], "0")
    nullable = setting_row({"setting": "Proxy.method", "type": "string", "value": "",
                            "null": True, "options": {"Basic": "Basic"}})
    assert nullable["choices"][0] == ("", "(not set)")
    hidden = setting_row({"setting": "GnuPG.password", "type": "string", "value": "*****",
                          "redacted": True, "level": 1})
    assert (hidden["control"], hidden["shown"]) == ("password", "")
    cli = setting_row({"setting": "Security.salt", "type": "string", "value": "",
                       "cli_only": True, "redacted": True})
    assert cli["editable"] is False
    plain = setting_row({"setting": "Proxy.port", "type": "numeric", "value": None})
    assert (plain["control"], plain["shown"], plain["editable"]) == ("text", "", True)


def test_tab_figures_and_severity_counts() -> None:
    figures = tab_figures({"MISP": {"count": 37, "errors": 2, "severity": 0},
                           "Proxy": {"count": 5, "errors": 0, "severity": 5}})
    assert figures == [
        {"name": "MISP", "count": 37, "errors": 2, "severity": "critical"},
        {"name": "Proxy", "count": 5, "errors": 0, "severity": "ok"}]
    assert tab_figures(None) == []
    rows = [setting_row(r) for r in (
        {"setting": "a", "level": 0, "error": 1}, {"setting": "b", "level": 0},
        {"setting": "c", "level": 2, "error": 1}, {"setting": "d", "level": 3, "error": 1})]
    assert severity_counts(rows) == {"critical": 1, "recommended": 0, "optional": 1}


def test_the_workers_queues_leave_out_getworkers_flags_and_end_with_the_scheduler() -> None:
    answer = {"scheduler": {"ok": True, "workers": [{"pid": "9"}], "jobCount": 0},
              "default": {"ok": False, "workers": [], "jobCount": 3},
              "cache": {"ok": True, "workers": [{"pid": "7"}, "junk"], "jobCount": 0},
              "proc_accessible": False, "controls": 1}
    queues = queues_of(answer)
    assert [q["name"] for q in queues] == ["cache", "default", "scheduler"]
    assert queues[0]["workers"] == [{"pid": "7"}]
    assert (queues[1]["ok"], queues[1]["job_count"]) == (False, 3)
    assert queues_of(["Background jobs not enabled"]) == []


@pytest.mark.parametrize(("job", "percent", "open_"), [
    ({"status": "1", "progress": "0", "job_status": "Waiting"}, 0, True),
    ({"status": "2", "progress": "40", "job_status": "Running"}, 40, True),
    ({"status": "2", "progress": "250", "job_status": "Running"}, 100, True),
    ({"status": "4", "progress": "10", "job_status": "Completed"}, 100, False),
    ({"status": "3", "progress": "x", "job_status": "Failed"}, 0, False),
    ({"status": "1", "progress": "0", "job_status": "Waiting", "cancelled": True}, 0, False),
    ({"status": "1", "job_status": "Waiting", "dead": True}, 0, False),
])
def test_a_jobs_progress_and_whether_it_can_be_cancelled(
        job: dict[str, object], percent: int, open_: bool) -> None:
    assert progress_of(job) == percent
    assert is_open(job) is open_


def test_job_rows_and_the_status_filter() -> None:
    body = [{"Job": {"id": "2", "status": "1", "job_status": "Waiting", "progress": "0"},
             "Org": {"name": "ORG"}},
            {"Job": {"id": "1", "status": "4", "job_status": "Completed", "progress": "100"}}]
    rows = job_rows(body)
    assert [(r["Job"]["id"], r["Job"]["percent"], r["Job"]["open"]) for r in rows] == [
        ("2", 0, True), ("1", 100, False)]
    assert rows[1]["Org"] == {}
    assert [r["Job"]["id"] for r in with_status(rows, "Completed")] == ["1"]
    assert len(with_status(rows, "")) == 2


def test_a_tasks_form_sends_the_next_day_only_when_given() -> None:
    form = Form([("timer", " 24 "), ("scheduled_time", "03:30"), ("next_execution_time", "")])
    assert task_input(form) == {"timer": "24", "scheduled_time": "03:30"}
    form = Form([("timer", "0"), ("scheduled_time", "12:00"),
                 ("next_execution_time", "2030-01-02")])
    assert task_input(form)["next_execution_time"] == "2030-01-02"


def test_every_feed_has_topics_and_a_topic_names_its_feeds() -> None:
    assert set(FEEDS) == {"jobs", "logs"}
    assert feed_topics() == sorted({t for topics in FEEDS.values() for t in topics})
    assert feeds_of("misp.jobs.job.v1") == ["jobs"]
    assert feeds_of("misp.audit.log.v1") == ["logs"]
    assert feeds_of("misp.identity.user.v1") == []


def test_the_consumer_connects_as_the_consoles_own_principal() -> None:
    plain = ConsoleSettings(kafka_bootstrap_servers="k:9092")
    assert kafka_options(plain) == {"bootstrap_servers": "k:9092"}
    sasl = ConsoleSettings(kafka_bootstrap_servers="k:9092",
                           kafka_security_protocol="sasl_plaintext",
                           kafka_password=SecretStr("pw"))
    assert kafka_options(sasl) == {
        "bootstrap_servers": "k:9092", "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "misp_console",
        "sasl_plain_password": "pw"}
    assert "ssl_context" in kafka_options(ConsoleSettings(
        kafka_bootstrap_servers="k:9093", kafka_security_protocol="SASL_SSL"))


def test_a_stream_says_change_once_per_burst_and_beats_when_silent() -> None:
    async def run() -> list[str]:
        hub = Hub()
        queue = hub.subscribe("jobs")
        other = hub.subscribe("logs")
        for _ in range(3):  # a burst of changes before the page fetched: one notice
            hub.changed("misp.jobs.job.v1")
        hub.changed("misp.identity.user.v1")  # no feed's topic
        texts = [text async for text in events(queue, heartbeat_s=0.05, max_s=0.12)]
        assert other.empty()
        hub.unsubscribe("jobs", queue)
        assert hub.followers("jobs") == 0
        return texts

    texts = asyncio.run(run())
    assert texts[0].startswith("retry: ")
    assert texts[1] == "event: change\ndata: changed\n\n"
    assert texts.count("event: change\ndata: changed\n\n") == 1
    assert texts[2:] and set(texts[2:]) == {": heartbeat\n\n"}


def test_without_a_reachable_broker_the_console_goes_on_without_live_updates() -> None:
    async def run() -> None:
        live = LiveUpdates(ConsoleSettings(kafka_bootstrap_servers="127.0.0.1:1"))
        live.start()
        queue = live.hub.subscribe("jobs")
        for _ in range(600):  # until its first attempt has failed (it then waits to retry)
            if live.failed_attempts:
                break
            await asyncio.sleep(0.05)
        assert live.failed_attempts == 1 and live.connected is False
        live.hub.changed("misp.jobs.job.v1")  # the hub still works for whoever feeds it
        assert queue.get_nowait() is None
        await asyncio.wait_for(live.stop(), 5)

    asyncio.run(run())


def test_no_bootstrap_servers_no_consumer() -> None:
    async def run() -> None:
        live = LiveUpdates(ConsoleSettings(kafka_bootstrap_servers=""))
        live.start()
        assert live._task is None
        await live.stop()

    asyncio.run(run())
