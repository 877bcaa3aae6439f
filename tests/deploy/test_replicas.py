"""The local stack's replicas (deploy/replicas.tsv, issue 18 item 1): supervisor runs one program
per replica, each API replica on its own port, and the gateway spreads the API's requests over
them, passing a request whose connection a dead replica refused to another one (never a request
already sent: its effect is unknown)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from misp_platform.testing import load_script

ROOT = Path(__file__).resolve().parents[2]
render = load_script(ROOT / "deploy" / "gateway" / "render.py", "gateway_render_replicas_test")
supervisor = load_script(ROOT / "deploy" / "local" / "render_supervisor.py",
                         "render_supervisor_replicas_test")
TEMPLATE = (ROOT / "deploy" / "local" / "supervisord.conf.in").read_text(encoding="utf-8")


def local_conf(replicas: dict[tuple[str, str], int]) -> str:
    services = render.load_services()
    locations = render.expand(render.load_routes(services=services), services)
    return render.render(locations, services, mode="local", state_dir=Path("/state"),
                         replicas=replicas)


def upstream_servers(conf: str) -> dict[str, list[str]]:
    return {name: re.findall(r"server (\S+) ", body)
            for name, body in re.findall(r"upstream (\w+) \{(.*?)\}", conf, re.S)}


def test_the_table_scales_out_every_role_of_a_service() -> None:
    replicas = render.load_replicas(services=render.load_services())
    scaled = {svc for (svc, _role), n in replicas.items() if n > 1}
    assert scaled, "deploy/replicas.tsv scales out no service"
    for svc in scaled:
        assert all(replicas.get((svc, role), 1) >= 2 for role in render.REPLICATED_ROLES), svc


def test_the_gateway_spreads_an_apis_requests_over_its_replicas() -> None:
    services = render.load_services()
    conf = local_conf({("orgs", "api"): 3})
    servers = upstream_servers(conf)
    port = services["orgs"]
    assert servers["orgs"] == [f"127.0.0.1:{port}", f"127.0.0.1:{port + 100}",
                               f"127.0.0.1:{port + 200}"]
    assert servers["identity"] == [f"127.0.0.1:{services['identity']}"]
    # A refused connection goes to the next replica; nothing else does (an answer stands).
    assert set(re.findall(r"proxy_next_upstream (\w+);", conf)) == {"error"}
    assert "max_fails=1 fail_timeout=" in conf


def test_one_replica_each_renders_as_before() -> None:
    conf = local_conf({})
    assert all(len(s) == 1 for s in upstream_servers(conf).values())
    assert set(re.findall(r"proxy_next_upstream (\w+);", conf)) == {"off"}
    assert "max_fails=1" not in conf


def test_wait_ready_is_told_the_ports_of_the_replicas_beyond_each_apis_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    services = render.load_services()
    table = tmp_path / "replicas.tsv"
    table.write_text("# a comment\norgs\tapi\t3\norgs\trelay\t2\n", encoding="utf-8")
    assert render.main(["--replicas", str(table), "--api-replica-ports"]) == 0
    port = services["orgs"]
    assert capsys.readouterr().out.split() == [str(port + 100), str(port + 200)]
    assert render.main(["--replicas", "/dev/null", "--api-replica-ports"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("line", ["orgs api 0", "orgs worker 2", "nobody api 2", "orgs api"])
def test_a_bad_line_is_refused(tmp_path: Path, line: str) -> None:
    table = tmp_path / "replicas.tsv"
    table.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(render.RouteError):
        render.load_replicas(table, services=render.load_services())


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state folder with every service's PostgreSQL and Kafka password."""
    for secret in ("pg", "kafka"):
        (tmp_path / "secrets" / secret).mkdir(parents=True)
        for svc in render.load_services():
            (tmp_path / "secrets" / secret / f"misp_{svc}").write_text("x", encoding="utf-8")
    return tmp_path


def test_supervisor_runs_a_program_per_replica_each_api_on_its_own_port(state: Path) -> None:
    services = render.load_services()
    conf = supervisor.render(state, "/venv/bin/python", TEMPLATE, {}, services,
                             replicas={("orgs", "api"): 2, ("orgs", "relay"): 2,
                                       ("orgs", "consume"): 2})
    programs = dict(re.findall(r"\[program:([\w-]+)\]\n(.*?)(?=\n\[|\Z)", conf, re.S))
    for role in render.REPLICATED_ROLES:
        assert f"orgs-{role}" in programs and f"orgs-{role}-2" in programs, role
        assert f"identity-{role}" in programs and f"identity-{role}-2" not in programs, role
    port = services["orgs"]
    assert f'ORGS_HTTP_PORT="{port}"' in programs["orgs-api"]
    assert f'ORGS_HTTP_PORT="{port + 100}"' in programs["orgs-api-2"]


def test_the_small_profile_runs_one_process_per_service(state: Path) -> None:
    services = render.load_services()
    extra = supervisor.load_programs(ROOT / "deploy" / "programs.tsv")
    conf = supervisor.render(state, "/venv/bin/python", TEMPLATE, {}, services, extra,
                             replicas={("orgs", "api"): 2}, profile=supervisor.SMALL)
    commands = dict(re.findall(r"\[program:([\w-]+)\]\ncommand = \S+ -m (.*)", conf))
    # Each service's every program (deploy/programs.tsv; jobs' two schedulers as one) in one
    # process, but the faust detector, a loop of its own.
    assert commands == {
        "identity-all": 'identity all --with "worker"', "orgs-all": "orgs all",
        "audit-all": 'audit all --with "worker"',
        "jobs-all": 'jobs all --with "scheduler" --with "worker default"',
        "mailer-all": 'mailer all --with "worker"', "settings-all": 'settings all --with "worker"',
        "audit-detector": "audit detect", "console": "console api"}
    assert 'ORGS_HTTP_PORT="8102"' in conf and "8202" not in conf
