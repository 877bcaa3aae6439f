"""`python -m <service> all`: its `--with` programs checked against the service's commands at
start, and its parts (API, relay, consumers, the programs given) built from the spec and stopped
together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest

from misp_platform import roles
from misp_platform.cli import main
from misp_platform.cli_support import OK, PartCommand, with_settings
from misp_platform.config import ServiceSettings, settings_class
from misp_platform.service import ServiceSpec

STARTED: list[str] = []


async def _probe_program(name: str, stop: asyncio.Event) -> None:
    STARTED.append(name)
    await stop.wait()


def _worker_part(settings: ServiceSettings, queues: tuple[str, ...]) -> Any:
    return functools.partial(_probe_program, f"worker {','.join(queues)}")


@click.command(name="worker", cls=PartCommand, part=_worker_part)
@click.option("--queue", "queues", multiple=True, type=click.Choice(["default", "email"]))
@with_settings()
def worker(settings: ServiceSettings, queues: tuple[str, ...]) -> int:
    return OK


@click.command(name="detect")
def detect() -> None:
    """A program with an event loop of its own."""


@click.command(name="verify")
def verify() -> None:
    """An operator command, not a program."""


def spec(*, topics: list[str] | None = None) -> ServiceSpec:
    return ServiceSpec(name="probe", settings=settings_class("probe"),
                       create_app=lambda _s: None,
                       migrations_dir=Path("."), topics=lambda _s: topics or [],
                       extra_commands=[worker, detect, verify])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(spec(), ["all", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("value", "said"), [
    ("detect", "runs its own event loop"),
    ("scheduler", "not a program of the probe service that `all` can run (those it can: "
                  "worker)"),
    ("verify", "not a program of the probe service"),
    ("worker --queue nope", "'nope' is not one of 'default', 'email'"),
    ("worker --bogus", "No such option: --bogus"),
    ("", "not a program"),
])
def test_a_program_all_cannot_run_is_a_usage_error_naming_why(
        capsys: pytest.CaptureFixture[str], value: str, said: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roles, "run_all", _must_not_run)
    code, err = run(capsys, "--with", value)
    assert code == 2
    assert said in " ".join(err.split())


def test_a_program_given_twice_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roles, "run_all", _must_not_run)
    code, err = run(capsys, "--with", "worker", "--with", "worker --queue email")
    assert code == 2 and "given twice" in err


def test_the_programs_given_run_with_their_own_parsed_arguments(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def run_all(spec: ServiceSpec, settings: ServiceSettings,
                      others: dict[str, roles.Part]) -> None:
        seen.update(spec=spec.name, others=others)
        stop = asyncio.Event()
        stop.set()
        for part in others.values():
            await part(stop)

    monkeypatch.setattr(roles, "run_all", run_all)
    STARTED.clear()
    code, _ = run(capsys, "--with", "worker --queue email --queue default")
    assert code == 0
    assert seen["spec"] == "probe" and list(seen["others"]) == ["worker"]
    assert STARTED == ["worker email,default"]


def test_the_help_documents_the_role(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(spec(), ["all", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Run the API, the relay and the consumers in one process" in out
    assert "--with 'COMMAND [ARGS]...'" in out


async def _must_not_run(*_args: Any) -> None:
    raise AssertionError("the role started despite a usage error")


@dataclass
class FakeRunner:
    group: str
    fail: int = 0  # how many runs fail before one works
    stopped: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        STARTED.append(self.group)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("broker gone")
        await stop.wait()
        self.stopped.append(self.group)


@pytest.fixture
def parts(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The relay, consumers and API replaced by fakes that record their runs; `stop` is the
    process's stop event (what SIGTERM sets)."""
    STARTED.clear()
    made: dict[str, Any] = {"stop": asyncio.Event(), "relay": FakeRunner("relay"),
                            "consumers": [FakeRunner("misp.probe.principals"),
                                          FakeRunner("misp.probe")],
                            "api": FakeRunner("api")}

    @contextlib.asynccontextmanager
    async def open_relay(_settings: ServiceSettings) -> AsyncIterator[FakeRunner]:
        yield made["relay"]

    @contextlib.asynccontextmanager
    async def open_consumers(spec: ServiceSpec, _settings: ServiceSettings
                             ) -> AsyncIterator[list[FakeRunner]]:
        made["consumers_of"] = spec.name
        yield made["consumers"]

    async def ensure_topics(*_args: Any) -> None:
        return None

    monkeypatch.setattr(roles, "stop_on_signals", lambda: made["stop"])
    monkeypatch.setattr(roles, "ensure_topics", ensure_topics)
    monkeypatch.setattr(roles, "open_relay", open_relay)
    monkeypatch.setattr(roles, "open_consumers", open_consumers)
    monkeypatch.setattr(roles, "api_part", lambda _spec, _settings: made["api"].run)
    return made


async def test_all_runs_the_api_relay_consumers_and_the_programs_until_the_stop(
        parts: dict[str, Any]) -> None:
    settings = settings_class("probe")()
    task = asyncio.create_task(roles.run_all(
        spec(), settings, {"worker": functools.partial(_probe_program, "worker")}))
    for _ in range(500):  # every part started
        if len(STARTED) == 5:
            break
        await asyncio.sleep(0.01)
    assert set(STARTED) == {"api", "relay", "misp.probe.principals", "misp.probe", "worker"}
    assert parts["consumers_of"] == "probe"
    parts["stop"].set()  # SIGTERM
    await asyncio.wait_for(task, 5)
    assert parts["api"].stopped and parts["relay"].stopped
    assert all(c.stopped for c in parts["consumers"])


async def test_a_failing_consumer_is_run_again_after_a_growing_delay_and_the_api_goes_on(
        parts: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roles, "PART_RESTART_S", 0.05)
    parts["consumers"][1].fail = 2  # a database outage: two runs fail, the third works
    task = asyncio.create_task(roles.run_all(spec(), settings_class("probe")()))
    started = asyncio.get_running_loop().time()
    for _ in range(500):
        if STARTED.count("misp.probe") == 3:
            break
        await asyncio.sleep(0.01)
    assert STARTED.count("misp.probe") == 3
    assert asyncio.get_running_loop().time() - started >= 0.05 + 0.1  # 0.05 s, then 0.1 s
    assert not task.done() and not parts["api"].stopped and not parts["relay"].stopped
    parts["stop"].set()
    await asyncio.wait_for(task, 5)  # stops well: no PartFailedError
    assert parts["api"].stopped and parts["relay"].stopped
    assert all(c.stopped for c in parts["consumers"])


async def test_a_program_that_ends_by_itself_is_run_again_and_the_api_keeps_serving(
        parts: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roles, "PART_RESTART_S", 0.01)
    runs = []

    async def worker_asked_to_stop(stop: asyncio.Event) -> None:
        runs.append(1)
        if len(runs) >= 3:  # the third run keeps working until the process stops
            await stop.wait()

    task = asyncio.create_task(roles.run_all(spec(), settings_class("probe")(),
                                             {"worker": worker_asked_to_stop}))
    for _ in range(500):
        if len(runs) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(runs) == 3 and not task.done()
    assert not parts["api"].stopped and not parts["relay"].stopped
    parts["stop"].set()
    await asyncio.wait_for(task, 5)  # and it stops well: no PartFailedError


async def test_the_api_relay_or_a_consumer_ending_by_itself_stops_the_process(
        parts: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    async def ends(_stop: asyncio.Event) -> None:
        return None

    monkeypatch.setattr(roles, "api_part", lambda _spec, _settings: ends)
    with pytest.raises(roles.PartFailedError, match="api failed or ended"):
        await asyncio.wait_for(roles.run_all(spec(), settings_class("probe")()), 5)
    assert parts["relay"].stopped


async def test_a_failed_api_start_up_stops_the_process(parts: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    async def exits(_stop: asyncio.Event) -> None:
        raise SystemExit(3)  # what uvicorn does when the app's start-up fails

    monkeypatch.setattr(roles, "api_part", lambda _spec, _settings: exits)
    with pytest.raises(roles.PartFailedError, match="api failed"):
        await asyncio.wait_for(roles.run_all(spec(), settings_class("probe")()), 5)
    assert parts["relay"].stopped


async def test_the_api_part_serves_in_the_loop_and_stops_on_the_event_not_on_signals() -> None:
    import socket

    import httpx
    from fastapi import FastAPI

    app = FastAPI()
    app.add_api_route("/health", lambda: {"ok": True})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = settings_class("probe")(http_host="127.0.0.1", http_port=port)
    probe = ServiceSpec(name="probe", settings=settings_class("probe"),
                        create_app=lambda _s: app, migrations_dir=Path("."))
    stop = asyncio.Event()
    task = asyncio.create_task(roles.api_part(probe, settings)(stop))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/health")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the API never answered")
    stop.set()
    await asyncio.wait_for(task, 5)
