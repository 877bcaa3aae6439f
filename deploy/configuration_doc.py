#!/usr/bin/env python3
"""Print the configuration reference, docs/configuration.md, from the services' settings classes.

For every service: each field of its settings class (`spec.settings`, a subclass of
misp_platform.config.ServiceSettings), with its environment variable, type and default as a
process sees it when nothing is set. The deployment-wide `MISP_*` variables are found by setting
them and watching which field takes the value, and by reading `os.environ` calls in the sources
of libs/ and services/. Only the one-line meanings are written here by hand: a new field without
one stops this script (and tests/lint/test_configuration_doc.py).

usage: .venv/bin/python deploy/configuration_doc.py [--write | --check]
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from misp_contracts.topics import SERVICES
from misp_platform.config import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
SOURCES = ("libs/*/src/**/*.py", "services/*/src/**/*.py")

# One line per field; `{service}` stands for the service's name.
MEANINGS: dict[str, str] = {
    # ServiceSettings: every service.
    "environment": "`development` or `production`. In production the service refuses to start "
                   "with the development pepper.",
    "database_url": "The service's own PostgreSQL database (SQLAlchemy URL, psycopg driver). "
                    "Unset: `MISP_PG_URL` + `/misp_{service}`.",
    "kafka_bootstrap_servers": "Kafka's bootstrap servers, `host:port[,host:port...]`.",
    "pepper": "The key of the HMAC-SHA256 under which authkeys are stored and checked. One "
              "deployment secret: every service must have the same one.",
    "http_host": "The address the `api` process listens on.",
    "http_port": "The port the `api` process listens on (`deploy/services.tsv`).",
    "log_format": "`console` (for people) or `json` (one object per line, ECS field names).",
    "log_level": "The lowest level logged: `debug`, `info`, `warning`, `error`.",
    "state_dir": "Files kept outside the database: the site admin's authkey (identity), the "
                 "audit signing key, the mailer's GnuPG home. Relative to the working "
                 "directory. Every process of a service must see the same one.",
    "consumer_max_attempts": "How many times a consumer tries a failing message before it "
                             "sends it to `misp.{service}.dlq.v1`.",
    "consumer_retry_backoff_s": "The first wait between those tries, in seconds; it doubles "
                                "each time.",
    "consumer_group": "The main consumer group. Empty: `misp.{service}`. The principals "
                      "consumer uses `<group>.principals`.",
    "read_your_writes": "Read-your-writes (`docs/consistency.md`): a 2xx answer waits until its "
                        "events are in Kafka, a read that misses waits for its projection. Off: "
                        "both answer at once.",
    "publish_wait_s": "How long a 2xx answer waits for the relay to put its events in Kafka, in "
                      "seconds.",
    "projection_wait_s": "How long a read that misses waits for its projection, in seconds (a "
                         "setting change waits as long for its readers).",
    "trusted_proxies": "The proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed, "
                       "as comma-separated networks in CIDR notation (empty: none). The client's "
                       "address (the audit's `ip`, authkeys' allowed IPs, the login and forgot "
                       "limits) is the rightmost `X-Forwarded-For` hop that is not one of them. "
                       "Compose sets the gateway's address, Kubernetes the pod network.",
    "abuse_exempt_networks": "Networks never limited by the abuse limits nor counted by the "
                             "abuse detector, comma-separated CIDRs (like fail2ban's "
                             "`ignoreip`; empty: none). The gateway reads the same variable.",
    "auth_fail_budget": "The failed authentications (bad keys, bad passwords) one address may "
                        "make at one API process within `auth_fail_window_s`; past it the "
                        "address gets 429 with `Retry-After`, before any lookup or write. 0: "
                        "no budget.",
    "auth_fail_window_s": "The sliding window of `auth_fail_budget`, in seconds.",
    "follow_abuse_blocks": "Whether the API follows the abuse detector's blocks "
                           "(`misp.audit.abuse.v1`) and refuses a blocked address or key "
                           "prefix with 429 until the block ends.",
    "db_connect_timeout_s": "How long opening a PostgreSQL connection may take, in seconds "
                            "(libpq counts whole seconds). Past it, and while the server is "
                            "down, requests answer 503 with `Retry-After`.",
    "db_statement_timeout_s": "How long one SQL statement may run (PostgreSQL's "
                              "`statement_timeout`), in seconds; 0: no limit. A request whose "
                              "statement runs past it answers 503 with `Retry-After`.",
    "db_long_statement_timeout_s": "The statement timeout of the work that may rightly run long: "
                                   "`audit verify`, `prune` and `rebuild`, the job workers, the "
                                   "audit consumer's retention prune; in seconds, 0: no limit.",
    "db_pool_timeout_s": "How long a request waits for a pooled database connection, in "
                         "seconds (then 503 with `Retry-After`).",
    "metrics_port": "The port of the `relay`, `consume`, `worker` and `scheduler` processes' "
                    "`/metrics` and `/healthz` (200 while the role's loop runs, else 503; "
                    "`deploy/observability`). 0: none, the default (one machine runs them all).",
    "metrics_host": "The address of that `/metrics` and `/healthz` listener (`0.0.0.0` in a "
                    "container).",
    # orgs
    "logo_max_bytes": "The largest logo upload, in bytes (more: 413).",
    "logo_max_width": "The widest logo accepted, in pixels.",
    "logo_max_height": "The tallest logo accepted, in pixels.",
    "merge_wait_s": "How long `admin/organisations/merge` waits for the merge to complete before "
                    "it answers `\"status\": \"running\"`, in seconds.",
    # audit
    "verify_key_path": "The published public key (PEM, `python -m audit public-key`) that the "
                       "API, `audit verify` and the verify job check the checkpoints with; "
                       "empty: the signing key's public half. A verifier needs no secret.",
    "signing_key_path": "The Ed25519 key that signs the log's checkpoints, kept outside the "
                        "audit database. Empty: `<state_dir>/audit-signing.key`. Generated on "
                        "first use (mode 0600) outside production; in production the processes "
                        "that sign (consume, worker, checkpoint, prune, rebuild) refuse to start "
                        "unless it names a readable file (a mounted secret).",
    "checkpoint_interval_s": "How often the consumer writes a signed checkpoint, in seconds.",
    "retention_days": "Entries older than this many days are pruned, whole checkpoint ranges at "
                      "a time. 0: never.",
    "abuse_window_s": "The abuse detector's (`python -m audit detect`) sliding window, in "
                      "seconds: failed authentications from all services are counted per "
                      "address and per key prefix over it.",
    "abuse_window_step_s": "How far the detector's window moves at a time, in seconds (its "
                           "hopping windows' step).",
    "abuse_address_threshold": "Failed authentications from one address within the window "
                               "that block it in every service.",
    "abuse_key_prefix_threshold": "Failed authentications with keys sharing their first four "
                                  "characters, from any address, within the window, that "
                                  "block that prefix in every service.",
    "abuse_block_s": "How long a block lasts, in seconds (the local stack sets 15).",
    "prune_interval_s": "How often the consumer prunes, in seconds (when `retention_days` > 0).",
    "publish_siem": "Declared, but no code reads it: the records for SIEMs always go to "
                    "`misp.audit.log.v1`.",
    # jobs
    "worker_group": "The consumer group of `python -m <service> worker`. Empty: "
                    "`misp.<service>.worker.<queue>`; with several queues in one process, "
                    "`<group>-<queue>`.",
    "worker_heartbeat_s": "How often a `python -m <service> worker` sends a heartbeat, in "
                          "seconds.",
    "worker_prefetch": "How many jobs a `python -m <service> worker` takes per claim round trip "
                       "(1 is fairest for long jobs).",
    "max_message_bytes": "The cap of one Kafka message in bytes, checked when a write puts it in "
                         "the outbox (a larger change is refused with 413); keep it well below "
                         "the broker's `message.max.bytes`.",
    "scheduler_poll_s": "How often the scheduler looks for due ticks, due retries and dead "
                        "workers, in seconds.",
    "missed_heartbeats": "How many heartbeats a worker may miss (plus 2 s) before its job fails "
                         "and is retried or dead.",
    "scheduler_beat_s": "How often each scheduler records that it is alive "
                        "(`servers/getWorkers`, diagnostics), in seconds.",
    # mailer
    "smtp_host": "The SMTP server the mails are sent to.",
    "smtp_port": "Its port (the default is the local mail catcher).",
    "smtp_starttls": "Upgrade the SMTP session with STARTTLS.",
    "smtp_implicit_tls": "SMTPS: TLS from the first byte (usually port 465).",
    "smtp_ca_file": "A PEM bundle of a private CA for the server's certificate. Empty: the "
                    "system's CAs. The certificate and host name are always verified.",
    "smtp_username": "The SMTP login. Empty: no login.",
    "smtp_password": "The SMTP password.",
    "smtp_timeout_s": "The SMTP socket timeout, in seconds.",
    "max_attempts": "Delivery attempts per mail in all. 4xx answers, refused logins (535) and "
                    "connection errors are retried; other 5xx answers fail at once.",
    "backoff_base_s": "The first wait before a retry, in seconds; it grows exponentially.",
    "backoff_max_s": "The longest wait between two attempts, in seconds.",
    "lease_s": "How long a delivery loop holds the mails it claimed before another may take "
               "them, in seconds.",
    "poll_interval_s": "How often the delivery loop looks for due mails when nothing wakes it, "
                       "in seconds.",
    "deliver_batch": "How many due mails the delivery loop claims at once.",
    "smtp_connections": "How many SMTP sessions the delivery loop uses at once.",
    "record_batch": ("Mails an SMTP session sends before it records them in one transaction: "
                     "the most a crash can make it send twice (same Message-ID). 1 records "
                     "each mail as it goes; 8 doubles the delivery's speed."),
    "deliver_in_api": "Run the delivery loop in the `api` process (`python -m mailer deliver` "
                      "runs it on its own).",
    "gnupg_instance_key_file": "The instance's OpenPGP secret key as an armored file (mounted "
                               "from a secret): every mailer process imports it and signs with "
                               "it, in any home. Empty: a key is generated once per GnuPG home, "
                               "outside production; in production `api`, `consume` and `worker` "
                               "refuse to start unless it names a readable file.",
    "gnupg_home": "The instance's GnuPG home. Empty: `<state_dir>/mailer-gnupg`. Keep the path "
                  "short (gpg-agent's socket lives there). The instance key is generated there "
                  "on first use.",
    "gnupg_passphrase": "The passphrase of the instance key, if it has one (MISP's "
                        "`GnuPG.password`, never sent over Kafka).",
    "gpg_binary": "The gpg program.",
    "gpg_parallelism": "How many gpg processes may sign or encrypt at once.",
    "gpg_timeout_s": ("How long one gpg run may take before it is killed and the operation "
                      "fails (0: no limit)."),
    # settings
    "diagnostics_urls": "Where each service's diagnostics answer, as a JSON object "
                        "`{\"service\": \"url\"}`; services missing from it are not asked. "
                        "Compose and Kubernetes set their APIs' names (`<service>-api`).",
    "diagnostics_timeout_s": "How long the diagnostics report waits for each service and for "
                             "Kafka, in seconds.",
    "openapi_urls": "Where the other services' OpenAPI documents answer, as a JSON object "
                    "`{\"service\": \"url\"}`: MISP's queryACL lists the functions they route "
                    "(this service's own are read in-process). Compose and Kubernetes set their "
                    "APIs' names.",
}

# Secrets show no default, only whether they must be set.
SECRET_DEFAULTS: dict[str, str] = {
    "pepper": "required in production (elsewhere a fixed, public development value)",
    "smtp_password": "optional",
    "gnupg_passphrase": "optional",
}

# Variables the sources read directly (os.environ), beyond the settings classes.
DIRECT_MEANINGS: dict[str, str] = {
    "MISP_PG_URL": "The PostgreSQL server, without a database name. A service whose "
                   "`<SERVICE>_DATABASE_URL` is unset uses this + `/misp_<service>`.",
    "MISP_KAFKA_SECURITY_PROTOCOL": "How every Kafka client of the process connects: "
                                    "`PLAINTEXT` (default), `SASL_PLAINTEXT`, `SASL_SSL` or "
                                    "`SSL`. `make up` runs the broker with SASL/SCRAM.",
    "MISP_GATEWAY_URL": "Where the gateway answers. The tests and benchmarks call it there; "
                        "the mailer starts the links of its mails (a password reset link) with "
                        "it while the server setting `MISP.baseurl` is empty.",
    "MISP_KAFKA_SASL_MECHANISM": "The SASL mechanism (default `SCRAM-SHA-512`).",
    "MISP_KAFKA_USERNAME": "The process's Kafka principal: each service its own "
                           "(`misp_<service>`, whose ACLs allow only its topics); tests and "
                           "tools the broker's `admin`.",
    "MISP_KAFKA_PASSWORD": "The principal's SCRAM password (a secret).",
    "MISP_KAFKA_REPLICATION_FACTOR": "The replication factor of the topics a service creates "
                                     "(default 1, the local single broker; 3 on a cluster).",
    "MISP_KAFKA_MIN_INSYNC_REPLICAS": "Their `min.insync.replicas` (default 1; 2 with a factor "
                                      "of 3), so that acks=all survives a broker's loss.",
    "MISP_KAFKA_CA_FILE": "The CA bundle that signed the broker's certificate (TLS protocols).",
    "MISP_INDEX_MAX_ROWS": "The most rows one MISP index answers (default 10000): the whole "
                           "list when the client names no `limit`, and the clamp of a larger "
                           "one.",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "OpenTelemetry's standard variable: set, every process "
                                   "exports its traces over OTLP/HTTP there (tracing is off "
                                   "while no OTEL_* variable asks for it; README.md, "
                                   "Operating it).",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "As `OTEL_EXPORTER_OTLP_ENDPOINT`, for traces only.",
    "OTEL_TRACES_EXPORTER": "`otlp` turns tracing on (to the SDK's default endpoint when no "
                            "endpoint is set); `none` keeps it off whatever else is set.",
    "OTEL_SDK_DISABLED": "`true` keeps tracing off whatever else is set.",
    "MISP_FAILPOINTS": "Tests only: failpoints, comma-separated. `name` or `name=N` kills the "
                       "process at the point's first (Nth) hit, `name=delay:MS` slows it.",
}

TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                         SecretStr: "secret", dict[str, str]: "JSON object"}

# The web console (services/console): not a service of the topic catalogue (it owns no data),
# its own settings class (`console.settings.ConsoleSettings`, a pydantic BaseSettings). One line
# per field, as MEANINGS.
CONSOLE_MODULE = "console.settings"
CONSOLE_CLASS = "ConsoleSettings"
CONSOLE_MEANINGS: dict[str, str] = {
    "http_host": "The address the console listens on.",
    "http_port": "The port it listens on: the gateway's upstream `console` "
                 "(`deploy/gateway/render.py`).",
    "gateway_url": "Where the console calls MISP's API as the browser's user: the gateway. "
                   "Compose `https://gateway:8443`, Kubernetes `https://gateway:443` (in "
                   "containers the gateway redirects all plain HTTP).",
    "gateway_ca": "With an https `gateway_url`: a PEM file of the certificates the console "
                  "trusts for the gateway, each an anchor of its own (a partial chain), so the "
                  "gateway's own certificate is enough, self-signed or not; compose and "
                  "Kubernetes mount it (the certificate, never its key). Unset: the system's "
                  "CAs, enough for a certificate from a public CA. Read at start: restart the "
                  "console when the certificate is renewed.",
    "gateway_tls_name": "The name the gateway's certificate is for, when `gateway_url`'s host "
                        "is not it (`gateway` in containers): the TLS handshake sends it (SNI) "
                        "and verifies the certificate against it, connecting to the URL's "
                        "host. Unset: the URL's host. Compose sets it from "
                        "`MISP_GATEWAY_TLS_NAME` (required), Kubernetes from that key of "
                        "`misp-env`.",
    "api_timeout_s": "How long one API call may take, in seconds.",
    "trusted_proxies": "The proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` the console "
                       "believes (the gateway), comma-separated CIDRs; the browser's address so "
                       "found is what it forwards to the API (the gateway believes the "
                       "console's in turn).",
    "log_format": MEANINGS["log_format"],
    "log_level": MEANINGS["log_level"],
    "kafka_bootstrap_servers": "Live updates (`/console/live/...`): Kafka's bootstrap servers. "
                               "Empty: no live updates, the pages are reloaded by hand (compose "
                               "and Kubernetes leave it empty).",
    "kafka_security_protocol": "How the live updates' consumer connects: `PLAINTEXT`, "
                               "`SASL_PLAINTEXT`, `SASL_SSL` or `SSL`.",
    "kafka_sasl_mechanism": "Its SASL mechanism.",
    "kafka_username": "Its principal: the console's own, read-only (its feeds' topics, no "
                      "group).",
    "kafka_password": "That principal's SCRAM password.",
    "kafka_ca_file": "The CA bundle of the broker's certificate (TLS protocols). Unset: the "
                     "system's CAs.",
}
CONSOLE_SECRET_DEFAULTS = {"kafka_password": "optional (needed with SASL)"}


@contextmanager
def environment(values: dict[str, str] | None = None) -> Iterator[None]:
    """Exactly these variables, nothing from the caller's shell (`.local/env`, a test run);
    the caller's environment is put back afterwards."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values or {})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_class(service: str) -> type[ServiceSettings]:
    """The class the service's processes read their settings from (`spec.settings`)."""
    cls = importlib.import_module(f"{service}.bootstrap").spec.settings
    if not (isinstance(cls, type) and issubclass(cls, ServiceSettings)):
        raise TypeError(f"{service}: spec.settings is not a ServiceSettings class")
    return cls


def prefix(cls: type[ServiceSettings]) -> str:
    if cls.model_config.get("case_sensitive"):
        raise NotImplementedError(f"{cls.__name__} is case-sensitive: teach this script")
    return cls.model_config.get("env_prefix", "").upper()


def variable(cls: type[ServiceSettings], name: str) -> str:
    """The environment variable of a field: the class's prefix and the field's name."""
    field = cls.model_fields[name]
    if field.alias or field.validation_alias:
        raise NotImplementedError(f"{cls.__name__}.{name} has an alias: teach this script")
    return f"{prefix(cls)}{name.upper()}"


def type_name(cls: type[ServiceSettings], name: str) -> str:
    annotation = cls.model_fields[name].annotation
    if annotation not in TYPES:
        raise NotImplementedError(f"{cls.__name__}.{name}: type {annotation} not described")
    return TYPES[annotation]


def defaults(cls: type[ServiceSettings]) -> dict[str, Any]:
    """Every field's value in a process started with no variable set."""
    with environment():
        settings = cls()
    return {name: getattr(settings, name) for name in cls.model_fields}


def render_default(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"`{value}`"
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    if isinstance(value, dict):
        return f"`{json.dumps(value)}`"
    raise NotImplementedError(f"no rendering for a default of type {type(value).__name__}")


# Fields whose values are checked: a probe they accept, and what they then hold.
PROBES: dict[str, tuple[str, Any]] = {"trusted_proxies": ("192.0.2.0/24", "192.0.2.0/24"),
                                      "abuse_exempt_networks": ("192.0.2.0/24", "192.0.2.0/24")}


def _probe(name: str, field: FieldInfo, default: Any) -> tuple[str, Any]:
    """A value to set for the field's type, and what the field then holds."""
    if name in PROBES:
        return PROBES[name]
    kind = field.annotation
    if kind is bool:
        return ("false", False) if default else ("true", True)
    if kind is int:
        return "4242", 4242
    if kind is float:
        return "42.5", 42.5
    if kind is dict[str, str]:
        return '{"probe": "value"}', {"probe": "value"}
    return "probe-value", "probe-value"


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def fallbacks(cls: type[ServiceSettings]) -> dict[str, str]:
    """{field: the MISP_* variable it falls back to}, found by setting each candidate alone."""
    found: dict[str, str] = {}
    clean = defaults(cls)
    for name, field in cls.model_fields.items():
        candidate = f"MISP_{name.upper()}"
        raw, expected = _probe(name, field, clean[name])
        with environment({candidate: raw}):
            value = _plain(getattr(cls(), name))
        if value == expected:
            found[name] = candidate
    return found


@dataclass(frozen=True)
class DirectRead:
    name: str
    module: str
    default: str | None


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os")


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def direct_reads() -> list[DirectRead]:
    """`os.environ.get("X"[, default])`, `os.getenv("X")`, `os.environ["X"]` and
    `"X" in os.environ` in the sources of libs/ and services/, with a literal name."""
    reads: dict[str, DirectRead] = {}
    for pattern in SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            module = str(path.relative_to(ROOT))
            nodes = list(ast.walk(ast.parse(path.read_text(), filename=module)))
            for node in nodes:
                name: str | None = None
                default: str | None = None
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                        (node.func.attr in ("get", "setdefault", "pop")
                         and _is_environ(node.func.value))
                        or (node.func.attr == "getenv" and isinstance(node.func.value, ast.Name)
                            and node.func.value.id == "os")):
                    name = _literal(node.args[0]) if node.args else None
                    default = _literal(node.args[1]) if len(node.args) > 1 else None
                elif isinstance(node, ast.Subscript) and _is_environ(node.value):
                    name = _literal(node.slice)
                elif isinstance(node, ast.Compare) and any(
                        _is_environ(c) for c in node.comparators):
                    name = _literal(node.left)
                if name is not None and name not in reads:
                    reads[name] = DirectRead(name, module, default)
            # A name read through a mapping (`env.get(name)` over `os.environ`, as the tracing
            # set-up reads OpenTelemetry's standard variables): its string literal.
            for node in nodes:
                name = _literal(node) if isinstance(node, ast.Constant) else None
                if name in DIRECT_MEANINGS and name not in reads:
                    reads[name] = DirectRead(name, module, None)
    return sorted(reads.values(), key=lambda r: r.name)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def meaning(name: str, service: str) -> str:
    if name not in MEANINGS:
        raise KeyError(f"no meaning for the field {name!r} ({service}): add one to MEANINGS in "
                       f"{Path(__file__).relative_to(ROOT)}")
    return MEANINGS[name].replace("{service}", service)


def default_cell(cls: type[ServiceSettings], name: str, value: Any) -> str:
    if cls.model_fields[name].annotation is SecretStr:
        if name not in SECRET_DEFAULTS:
            raise KeyError(f"the secret {name!r} needs an entry in SECRET_DEFAULTS")
        return SECRET_DEFAULTS[name]
    return render_default(value)


def field_rows(cls: type[ServiceSettings], service: str, names: list[str],
               shared: dict[str, str]) -> list[str]:
    values = defaults(cls)
    rows = [_row("variable", "type", "default", "meaning"), "|---|---|---|---|"]
    for name in names:
        text = meaning(name, service)
        if name in shared:
            text += f" Unset: `{shared[name]}`."
        rows.append(_row(f"`{variable(cls, name)}`", type_name(cls, name),
                         default_cell(cls, name, values[name]), text))
    return rows


INTRO = """\
# Configuration reference

Generated from the settings classes by `deploy/configuration_doc.py`; do not edit it by hand.
After changing a settings class, run `.venv/bin/python deploy/configuration_doc.py --write`.
`tests/lint/test_configuration_doc.py` fails when this file and the classes differ.

## How a service reads its settings

- Each service has one settings class (`services/<service>/src/<service>/settings.py`, a
  subclass of `ServiceSettings` in `libs/platform/src/misp_platform/config.py`). Every process
  of the service reads it: `api`, `relay`, `consume`, `migrate`, `dlq`, workers, the scheduler
  and the operator commands. Each process uses the values it needs.
- A field `x` of service `s` is read from the variable `S_X` (`IDENTITY_`, `ORGS_`, `AUDIT_`,
  `JOBS_`, `MAILER_`, `SETTINGS_`). Names are not case-sensitive. Unknown variables are ignored,
  so a misspelt name silently keeps the default.
- A few values are the same for the whole deployment. They fall back to a `MISP_*` variable
  when the service's own variable is unset (next section).
- Booleans take `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`. A JSON object is given as
  JSON text. Durations ending in `_s` are seconds.
- Where the values come from: `make up` writes `.local/env` (the `MISP_*` values of the local
  stack; `set -a; . .local/env; set +a` loads them into a shell) and supervisord adds
  `<SERVICE>_HTTP_PORT` from `deploy/services.tsv`. `docker-compose.yml` sets them in `x-env`
  and each service's own credentials (`<SERVICE>_DATABASE_URL`, `MISP_KAFKA_USERNAME`,
  `MISP_KAFKA_PASSWORD`) in `x-<service>-env`; Kubernetes reads the ConfigMap `misp-env`
  (`deploy/k8s/base/config.yaml`), the Secret `misp-secrets` and the service's
  `misp-<service>-credentials` (`deploy/k8s/README.md`).
"""

OUTRO = """\
## Not read by the services

The scripts in `deploy/local/` have their own variables (see their headers). Compose reads
the secrets, the key files' paths and `MISP_GATEWAY_TLS_NAME` (the name of the gateway's
certificate, which the console checks) from the shell (README.md, With Docker).
"""


def console_variables(cls: type[Any], name: str) -> list[str]:
    """The variables of a console field, first the one that wins (its aliases, in order)."""
    alias = cls.model_fields[name].validation_alias
    if alias is None:
        return [f"{prefix(cls)}{name.upper()}"]
    if isinstance(alias, AliasChoices) and all(isinstance(c, str) for c in alias.choices):
        return [str(c) for c in alias.choices]
    raise NotImplementedError(f"{cls.__name__}.{name}: alias {alias!r} not described")


def console_section() -> list[str]:
    cls = getattr(importlib.import_module(CONSOLE_MODULE), CONSOLE_CLASS)
    with environment():
        values = cls()
    rows = [_row("variable", "type", "default", "meaning"), "|---|---|---|---|"]
    for name, field in cls.model_fields.items():
        if name not in CONSOLE_MEANINGS:
            raise KeyError(f"no meaning for the console's field {name!r}: add one to "
                           f"CONSOLE_MEANINGS in {Path(__file__).relative_to(ROOT)}")
        own, *fallback = console_variables(cls, name)
        text = CONSOLE_MEANINGS[name] + "".join(f" Unset: `{v}`." for v in fallback)
        kind = field.annotation
        value = getattr(values, name)
        if kind is SecretStr:
            default = CONSOLE_SECRET_DEFAULTS[name]
        else:
            default = "unset" if value is None else render_default(value)
        rows.append(_row(f"`{own}`", TYPES[str] if kind == str | None else TYPES[kind],
                         default, text))
    return [f"## console (`{prefix(cls)}`)", "",
            f"Class `{CONSOLE_MODULE}.{CONSOLE_CLASS}`; the web console: "
            "[console](../services/console/README.md). Not a service of the topic catalogue "
            "(it owns no data: no database, no pepper); one HTTP role behind the gateway. Its "
            "class is not a `ServiceSettings`: these are all its settings.", "",
            *rows, ""]


def render() -> str:
    classes = {service: settings_class(service) for service in SERVICES}
    shared: dict[str, str] = {}
    field_of: dict[str, str] = {}
    for cls in classes.values():
        for name, var in fallbacks(cls).items():
            shared[name] = var
            field_of[var] = name
    reads = direct_reads()
    unknown = [r.name for r in reads if r.name not in field_of and r.name not in DIRECT_MEANINGS]
    if unknown:
        raise KeyError(f"variables read directly without a meaning: {unknown}: add them to "
                       f"DIRECT_MEANINGS in {Path(__file__).relative_to(ROOT)}")

    out = [INTRO]
    out += ["## Deployment-wide variables", "",
            "Read by every service. A service's own variable wins over them.", "",
            _row("variable", "type", "default", "meaning"), "|---|---|---|---|"]
    base = ServiceSettings
    base_defaults = defaults(base)
    for var, name in sorted(field_of.items()):
        out.append(_row(f"`{var}`", type_name(base, name),
                        default_cell(base, name, base_defaults[name]),
                        f"The default of every `<SERVICE>_{name.upper()}`. "
                        + meaning(name, "<service>")))
    for read in reads:
        if read.name in field_of:
            continue
        default = render_default(read.default) if read.default is not None else "unset"
        out.append(_row(f"`{read.name}`", "string", default,
                        f"{DIRECT_MEANINGS[read.name]} Read in `{read.module}`."))
    out.append("")

    common = list(base.model_fields)
    for service, cls in classes.items():
        own = [n for n in cls.model_fields if n not in base.model_fields]
        readme = f"../services/{service}/README.md"
        out += [f"## {service} (`{prefix(cls)}`)", "",
                f"Class `{cls.__module__}.{cls.__name__}`; the service: [{service}]({readme}).",
                ""]
        if own:
            out += ["Its own settings:", "", *field_rows(cls, service, own, shared), ""]
        out += ["The settings every service has:" if own else
                "It has only the settings every service has:", "",
                *field_rows(cls, service, common, shared), ""]
    out += console_section()
    out.append(OUTRO)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write {DOC.relative_to(ROOT)}")
    group.add_argument("--check", action="store_true",
                       help=f"fail if {DOC.relative_to(ROOT)} is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        DOC.write_text(text)
    elif args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run "
                  ".venv/bin/python deploy/configuration_doc.py --write", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
