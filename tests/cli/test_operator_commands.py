"""Every service's `python -m <service>` command line (click): every command and option has a
help line, every invocation the deployment makes still parses, a destructive command refuses
without `--yes` when stdin is not a terminal, and no command runs on the built-in local defaults
outside development. Nothing here connects to anything."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from console.cli import cli as console_cli
from misp_platform.cli import build_cli
from misp_platform.cli_support import CliContext
from misp_platform.service import ServiceSpec

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["identity", "orgs", "audit", "jobs", "mailer", "settings"]
# Where nothing listens: a command that got past its checks would fail to connect, not succeed.
NOWHERE = {"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none",
           "kafka_bootstrap_servers": "127.0.0.1:1"}


def spec_of(service: str) -> ServiceSpec:
    spec: ServiceSpec = importlib.import_module(f"{service}.bootstrap").spec
    return spec


def walk(command: click.Command, path: str = "") -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += walk(sub, f"{path} {name}".strip())
    return found


class Parsed(Exception):
    """Raised where a command would load its settings: its arguments parsed."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__("parsed")
        self.params = params


def parse(service: str, args: list[str]) -> click.testing.Result:
    """Run `args` up to the point where the command loads its settings."""

    def stop() -> Any:
        raise Parsed(dict(click.get_current_context().params))

    spec = spec_of(service)
    return CliRunner().invoke(build_cli(spec), args, obj=CliContext(
        service=service, load_settings=stop, spec=spec))


@pytest.mark.parametrize("service", SERVICES)
def test_every_command_and_option_has_a_help_line(service: str) -> None:
    group = build_cli(spec_of(service))
    for path, command in walk(group):
        short = command.get_short_help_str(limit=200)
        assert short.strip(), f"`{service} {path}` has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"`{service} {path}` option {param.opts} has no help"
            else:
                metavar = param.make_metavar(click.Context(command)).strip("[].")
                assert metavar in (command.help or ""), \
                    f"`{service} {path}`: its help does not say what {metavar} is"
        assert command.epilog and "Exit codes:" in command.epilog, f"`{service} {path}`"

    listing = CliRunner().invoke(group, ["--help"])
    assert listing.exit_code == 0
    lines = listing.stdout.split("Commands:")[1].split("Exit codes:")[0].strip().splitlines()
    listed = {line.split()[0]: line.split(None, 1)[1:] for line in lines if line.strip()}
    assert set(listed) == set(group.commands)
    assert all(text for text in listed.values())
    assert {"api", "relay", "consume", "all", "migrate", "dlq"} <= set(listed)


def test_each_service_offers_its_operator_commands() -> None:
    expected = {
        "identity": {"admin-key", "admin-password", "worker"},
        "orgs": set(),
        "audit": {"verify", "checkpoint", "prune", "rebuild", "public-key", "worker",
                  "detect"},
        "jobs": {"worker", "scheduler", "stats", "clear", "cleanup", "tail"},
        "mailer": {"deliver", "worker"},
        "settings": {"get", "set", "worker"},
    }
    for service, commands in expected.items():
        own = set(build_cli(spec_of(service)).commands) - {"api", "relay", "consume", "all",
                                                           "migrate", "dlq", "outbox"}
        assert own == commands, service


def test_settings_set_takes_the_force_flag_after_its_value() -> None:
    result = parse("settings", ["set", "MISP.live", "true", "--force"])
    assert isinstance(result.exception, Parsed), result.output
    assert result.exception.params == {"name": "MISP.live", "value": "true", "force": True}
    negative = parse("settings", ["set", "SecureAuth.amount", "-3"])
    assert isinstance(negative.exception, Parsed), negative.output
    assert negative.exception.params["value"] == "-3"
    assert negative.exception.params["force"] is False


def test_real_flags_replace_the_generic_arguments() -> None:
    assert parse("settings", ["set", "MISP.live"]).exit_code == 2  # VALUE missing
    assert parse("jobs", ["clear", "nowhere"]).exit_code == 2
    assert parse("jobs", ["tail", "--bogus"]).exit_code == 2
    worker = parse("jobs", ["worker", "default", "--queue", "email", "-q", "prio"])
    assert isinstance(worker.exception, Parsed)
    assert worker.exception.params == {"positional": ("default",),
                                       "options": ("email", "prio")}
    assert parse("mailer", ["worker", "default"]).exit_code == 2  # not a queue of its jobs
    prune = parse("audit", ["prune", "--days", "30", "--dry-run"])
    assert isinstance(prune.exception, Parsed)
    assert prune.exception.params == {"days": 30, "yes": False, "dry_run": True}
    assert parse("audit", ["dlq", "replay", "--all", "--yes"]).exception is not None
    assert parse("orgs", ["nonsense"]).exit_code == 2


def _deploy_invocations() -> list[tuple[str, list[str]]]:
    """Every `python -m <service> ...` the deployment runs (supervisord, compose, k8s, make)."""
    found: list[tuple[str, list[str]]] = []
    for line in (ROOT / "deploy" / "programs.tsv").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            service, _program, _replicas, args = line.split("\t")
            found.append((service, args.split()))
    for path in (ROOT / "docker-compose.yml", ROOT / "deploy" / "k8s" / "base" / "services.yaml",
                 ROOT / "deploy" / "k8s" / "base" / "migrations.yaml"):
        for match in re.finditer(r"\[python, -m, (\w+), ([^\]]*)\]", path.read_text()):
            found.append((match.group(1), [a.strip() for a in match.group(2).split(",")]))
    for path in (ROOT / "Makefile", *sorted((ROOT / "deploy" / "local").glob("*.sh"))):
        for match in re.finditer(r"python -m (\w+) ([^\n;&|]*)", path.read_text()):
            if match.group(1) in SERVICES:
                found.append((match.group(1), shlex.split(match.group(2))))
    return found


def test_every_invocation_of_the_deployment_still_parses() -> None:
    invocations = _deploy_invocations()
    assert ("jobs", ["worker", "default"]) in invocations
    assert ("identity", ["admin-key", "--yes"]) in invocations
    assert ("console", ["api"]) in invocations
    for service, args in invocations:
        if service == "console":
            # not a platform service (no settings to stop at): its own click group, whose
            # commands only start a server; the invocation must name one of them
            result = CliRunner().invoke(console_cli, [*args, "--help"])
            assert result.exit_code == 0, (service, args, result.output)
            continue
        result = parse(service, args)
        assert isinstance(result.exception, Parsed), (service, args, result.output)


@pytest.mark.parametrize(("args", "needs"), [
    (["jobs", "stats"], "JOBS_DATABASE_URL (or MISP_PG_URL)"),
    (["jobs", "worker"], "JOBS_DATABASE_URL (or MISP_PG_URL) and MISP_KAFKA_BOOTSTRAP_SERVERS"),
    (["audit", "verify"], "AUDIT_DATABASE_URL (or MISP_PG_URL) and MISP_KAFKA_BOOTSTRAP_SERVERS"),
    (["audit", "verify", "--db-only"], "AUDIT_DATABASE_URL (or MISP_PG_URL)"),
    (["orgs", "dlq", "list"], "MISP_KAFKA_BOOTSTRAP_SERVERS (or ORGS_KAFKA_BOOTSTRAP_SERVERS)"),
    (["settings", "set", "MISP.live", "true", "--force"],
     "SETTINGS_DATABASE_URL (or MISP_PG_URL)"),
])
def test_no_command_runs_on_the_local_defaults_outside_development(args: list[str],
                                                                  needs: str) -> None:
    service = args[0]
    unset: dict[str, str | None] = {
        name: None for name in ("MISP_PG_URL", "MISP_KAFKA_BOOTSTRAP_SERVERS",
                                f"{service.upper()}_DATABASE_URL",
                                f"{service.upper()}_KAFKA_BOOTSTRAP_SERVERS")}
    runner = CliRunner(env={**unset, "MISP_ENVIRONMENT": "staging", "MISP_PEPPER": "x" * 32})
    result = runner.invoke(build_cli(spec_of(service)), args[1:])
    assert result.exit_code == 1, result.output
    assert f"set {needs}" in result.stderr
    assert "'staging' environment" in result.stderr


def test_the_local_defaults_are_fine_in_development() -> None:
    from misp_platform.cli_support import require

    settings = spec_of("jobs").settings()
    assert settings.environment == "development" or settings.unconfigured(["database"]) == []
    require(settings.model_copy(update={"environment": "development"}), "database", "kafka")


@pytest.mark.parametrize("args", [
    ["audit", "prune", "--days", "30"],
    ["audit", "rebuild"],
    ["identity", "admin-key"],
])
def test_a_destructive_command_refuses_without_yes_when_stdin_is_not_a_terminal(
        args: list[str]) -> None:
    spec = spec_of(args[0])
    settings = spec.settings(**NOWHERE)  # type: ignore[call-arg]
    result = CliRunner().invoke(build_cli(spec), args[1:], input="y\n",
                                obj=CliContext.of(settings, spec))
    assert result.exit_code == 1, result.output
    assert "refusing without confirmation" in result.stderr and "--yes" in result.stderr
