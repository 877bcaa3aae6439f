#!/usr/bin/env python3
"""Render .local/supervisor/supervisord.conf from deploy/local/supervisord.conf.in (stdlib only).

One program per service (deploy/services.tsv) and role (api, relay, consume), each with the
environment of .local/env plus <SERVICE>_HTTP_PORT.

usage: render_supervisor.py --state-dir .local --python .venv/bin/python [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ROLES = ("api", "relay", "consume")
# Programs beyond the three roles: (service, program name, arguments of `python -m <service>`).
# Two schedulers: the jobs scheduler is highly available (one tick runs once whoever claims it).
EXTRA_PROGRAMS = (
    ("jobs", "jobs-scheduler-1", "scheduler"),
    ("jobs", "jobs-scheduler-2", "scheduler"),
    # No-op jobs (tests, benchmarks) on the default queue; the other queues are left to the
    # tests' and benchmarks' own workers.
    ("jobs", "jobs-worker-default", "worker default"),
    # Each owner's job types (misp_contracts.events.jobs), on every queue they are registered
    # on: one process per service, one worker per queue in it.
    ("audit", "audit-worker", "worker"),
    ("identity", "identity-worker", "worker"),
    ("settings", "settings-worker", "worker"),
    ("mailer", "mailer-worker", "worker"),
)
MARKER = ";; ---- per program ----"


def load_services(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, port = line.split()
            out[name] = int(port)
    return out


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


def render(
    state_dir: Path, python: str, template: str, env: dict[str, str], services: dict[str, int]
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
    programs = [(svc, f"{svc}-{role}", role, port) for svc, port in services.items()
                for role in ROLES]
    programs += [(svc, name, args, services[svc]) for svc, name, args in EXTRA_PROGRAMS
                 if svc in services]
    names = [name for _, name, _, _ in programs]
    parts = [Template(head).substitute(common, PROGRAMS=",".join(names)).rstrip() + "\n"]
    for svc, name, args, port in programs:
        penv = dict(env)
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
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    state = a.state_dir.resolve()
    text = render(
        state,
        a.python,
        a.template.read_text(encoding="utf-8"),
        load_env(state / "env"),
        load_services(a.services),
    )
    out = a.out or state / "supervisor" / "supervisord.conf"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o600)  # it holds the pepper
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
