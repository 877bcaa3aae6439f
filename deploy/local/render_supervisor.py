#!/usr/bin/env python3
"""Render .local/supervisor/supervisord.conf from deploy/local/supervisord.conf.in (stdlib only).

One program per service (deploy/services.tsv) and role (api, relay, consume), or per replica
of a role deploy/replicas.tsv scales out, plus the workers and schedulers of
deploy/programs.tsv, each with the environment of .local/env plus <SERVICE>_HTTP_PORT, its own
database as its own role (<SERVICE>_DATABASE_URL, password from .local/secrets/pg/misp_<service>)
instead of the superuser's MISP_PG_URL, and its own Kafka principal (MISP_KAFKA_USERNAME/PASSWORD,
from .local/secrets/kafka/misp_<service>) instead of the admin's. The web console gets no database
and only its read-only Kafka principal (CONSOLE_KAFKA_*, misp_console).

With `--profile small` (MISP_PROFILE=small), one process per service instead: `python -m
<service> all` runs its api, relay, consumers and other programs together (small installs).

usage: render_supervisor.py --state-dir .local --python .venv/bin/python [--pg-port N]
       [--profile full|small] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ROLES = ("api", "relay", "consume")
# The profiles (MISP_PROFILE): every role its own process (full), or one process per service
# for small installs (small).
FULL, SMALL = "full", "small"
SEPARATE = "detect"  # the program that stays a process of its own in the small profile
MARKER = ";; ---- per program ----"


def _load_generate():
    """deploy/generate.py, whose readers of programs.tsv (and, through the gateway's render.py,
    of services.tsv) compose and k8s use too: one parser of each file."""
    path = ROOT / "deploy" / "generate.py"
    spec = importlib.util.spec_from_file_location("deploy_generate", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


generate = _load_generate()
CONSOLE = generate.render.CONSOLE
CONSOLE_PORT = generate.render.CONSOLE_PORT
replica_port = generate.render.replica_port


def load_programs(path: Path) -> list[tuple[str, str, str]]:
    """deploy/programs.tsv as (service, program name, arguments), one entry per replica."""
    return [(svc, name if n == 1 else f"{name}-{i}", " ".join(args))
            for svc, name, n, args in generate.load_programs(path) for i in range(1, n + 1)]


def small_programs(services: dict[str, int], extra: list[tuple[str, str, str]],
                   ) -> list[tuple[str, str, str, int]]:
    """The small profile: one process per service (`python -m <service> all`) running its api,
    relay and consumers and, with `--with`, its other programs (one replica of each); the
    audit's faust detector, which runs a loop of its own, stays a process of its own."""
    programs = []
    for svc, port in services.items():
        withs = dict.fromkeys(args for s, _name, args in extra
                              if s == svc and args.split()[0] != SEPARATE)
        args = " ".join(["all", *(f'--with "{a}"' for a in withs)])
        programs.append((svc, f"{svc}-all", args, port))
    programs += [(svc, name, args, services[svc]) for svc, name, args in extra
                 if svc in services and args.split()[0] == SEPARATE]
    return programs


def load_services(path: Path) -> dict[str, int]:
    return generate.render.load_services(path)


_EXPORT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def load_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _EXPORT.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        value = m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[m.group(1)] = value
    return env


def _sv_value(value: str) -> str:
    if '"' in value or "\n" in value:
        raise ValueError(f"unsupported character in environment value {value!r}")
    return '"' + value.replace("%", "%%") + '"'


def _sv_path(value: str) -> str:
    return value.replace("%", "%%")


def database_url(state_dir: Path, service: str, pg_port: int) -> str:
    """The service's own role on its own database (deploy/local/postgres.sh makes both)."""
    role = f"misp_{service}"
    password = (state_dir / "secrets" / "pg" / role).read_text(encoding="utf-8").strip()
    return f"postgresql+psycopg://{role}:{password}@127.0.0.1:{pg_port}/{role}"


def kafka_credentials(state_dir: Path, service: str) -> dict[str, str]:
    """The service's own Kafka principal (deploy/local/kafka.sh makes it and its ACLs)."""
    principal = f"misp_{service}"
    password = (state_dir / "secrets" / "kafka" / principal).read_text(encoding="utf-8").strip()
    return {"MISP_KAFKA_USERNAME": principal, "MISP_KAFKA_PASSWORD": password}


def console_kafka(state_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """The console's Kafka settings (CONSOLE_KAFKA_*, its live updates): the broker of the
    stack and its own read-only principal `misp_console` (kafka.sh makes it), never a service's
    nor the admin's. None when the broker is not configured."""
    if not env.get("MISP_KAFKA_BOOTSTRAP_SERVERS"):
        return {}
    out = {"CONSOLE_KAFKA_BOOTSTRAP_SERVERS": env["MISP_KAFKA_BOOTSTRAP_SERVERS"]}
    protocol = env.get("MISP_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    if protocol.upper() == "PLAINTEXT":
        return out
    secret = state_dir / "secrets" / "kafka" / "misp_console"
    if not secret.is_file():
        return {}  # no principal yet: no live updates rather than someone else's
    out.update(CONSOLE_KAFKA_SECURITY_PROTOCOL=protocol,
               CONSOLE_KAFKA_SASL_MECHANISM=env.get("MISP_KAFKA_SASL_MECHANISM",
                                                    "SCRAM-SHA-512"),
               CONSOLE_KAFKA_USERNAME="misp_console",
               CONSOLE_KAFKA_PASSWORD=secret.read_text(encoding="utf-8").strip())
    if env.get("MISP_KAFKA_CA_FILE"):
        out["CONSOLE_KAFKA_CA_FILE"] = env["MISP_KAFKA_CA_FILE"]
    return out


def render(
    state_dir: Path, python: str, template: str, env: dict[str, str], services: dict[str, int],
    extra: list[tuple[str, str, str]] | None = None, pg_port: int = 55432,
    replicas: dict[tuple[str, str], int] | None = None, profile: str = FULL,
) -> str:
    head, _, program = template.partition(MARKER)
    if not program:
        raise ValueError(f"template lacks the {MARKER!r} line")
    common = {
        "ROOT": _sv_path(str(ROOT)),
        "SUPERVISOR_DIR": _sv_path(str(state_dir / "supervisor")),
        "LOG_DIR": _sv_path(str(state_dir / "logs")),
        "PYTHON": _sv_path(python),
    }
    replicas = replicas or {}
    if profile == SMALL:
        programs = small_programs(services, extra or [])
    else:
        # Replica 1 keeps the role's plain name; an API replica listens on its own port.
        programs = [(svc, f"{svc}-{role}" if i == 1 else f"{svc}-{role}-{i}", role,
                     replica_port(port, i) if role == "api" else port)
                    for svc, port in services.items() for role in ROLES
                    for i in range(1, replicas.get((svc, role), 1) + 1)]
        programs += [(svc, name, args, services[svc]) for svc, name, args in extra or []
                     if svc in services]
    # The web console: its HTTP role only, with no database (it owns no data; it calls the API
    # through the gateway as its users) and a read-only Kafka principal for its live updates.
    programs.append((CONSOLE, CONSOLE, "api", CONSOLE_PORT))
    names = [name for _, name, _, _ in programs]
    parts = [Template(head).substitute(common, PROGRAMS=",".join(names)).rstrip() + "\n"]
    for svc, name, args, port in programs:
        # No superuser and no other service's database in a service's environment.
        penv = {k: v for k, v in env.items()
                if k != "MISP_PG_URL" and not k.endswith("_DATABASE_URL")}
        if svc == CONSOLE:
            penv = {k: v for k, v in penv.items()
                    if not k.startswith(("MISP_PEPPER", "MISP_KAFKA_", "MISP_AUDIT_SIGNING"))}
            penv.update(console_kafka(state_dir, env))
        else:
            penv[f"{svc.upper()}_DATABASE_URL"] = database_url(state_dir, svc, pg_port)
        if svc != CONSOLE and env.get("MISP_KAFKA_SECURITY_PROTOCOL",
                                      "PLAINTEXT").upper() != "PLAINTEXT":
            penv.update(kafka_credentials(state_dir, svc))  # never the admin's
        penv[f"{svc.upper()}_HTTP_PORT"] = str(port)
        penv["MISP_SERVICE"] = svc
        penv["MISP_ROLE"] = args.split()[0]
        penv["PYTHONUNBUFFERED"] = "1"
        environment = ",".join(f"{k}={_sv_value(v)}" for k, v in penv.items())
        block = Template(program).substitute(
            common, SERVICE=svc, NAME=name, ARGS=args, ENVIRONMENT=environment
        )
        parts.append(block.strip("\n") + "\n")
    return "\n".join(parts)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--template", type=Path, default=HERE / "supervisord.conf.in")
    p.add_argument("--services", type=Path, default=ROOT / "deploy" / "services.tsv")
    p.add_argument("--programs", type=Path, default=ROOT / "deploy" / "programs.tsv")
    p.add_argument("--replicas", type=Path, default=ROOT / "deploy" / "replicas.tsv")
    p.add_argument("--profile", choices=(FULL, SMALL), default=os.environ.get("MISP_PROFILE")
                   or FULL, help="full: a process per role; small: one per service")
    p.add_argument("--pg-port", type=int, default=55432)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    state = a.state_dir.resolve()
    services = load_services(a.services)
    text = render(
        state,
        a.python,
        a.template.read_text(encoding="utf-8"),
        load_env(state / "env"),
        services,
        load_programs(a.programs),
        pg_port=a.pg_port,
        replicas=generate.render.load_replicas(a.replicas, services),
        profile=a.profile,
    )
    out = a.out or state / "supervisor" / "supervisord.conf"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o600)  # it holds the pepper and the services' passwords
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
