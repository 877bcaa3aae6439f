"""No input makes a server error (issue 15, item 6): schemathesis generates requests from each
service's own OpenAPI, valid ones and ones that break the schema, a few per operation, and sends
them as the site admin to the service's app in-process (no network): no answer may be a 5xx, and
every 4xx is in MISP's shape (`message` or `errors`).

Most MISP routes read their JSON body themselves (it is not in the OpenAPI): a write without a
declared body also gets bodies made of the field names the services read, each holding any JSON
value, flat or wrapped in a model name (`{"Organisation": {...}}`).

Beside the generated examples, every path parameter gets the numbers that answered 500 before
(a sign, past integer and bigint, "²", an exponent): ids parse ASCII digits only, and a number
too large is 404.

The six services are built as the permission matrix builds them (tests/permissions/conftest.py:
each on a fresh database migrated by its own migrations, with a key per kind of caller), a set of
their own for this module. Writes are fuzzed too; only calls aimed at the caller's own user,
authkeys, role or organisation are left out, so that one lucky id cannot lock the fuzzer out
(the permission matrix covers those routes). Each operation's examples come from a seed of its
own (its name, and MISP_FUZZ_SEED to explore further): a run is repeatable. MISP_FUZZ_EXAMPLES
(5) bounds the examples per operation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error

from misp_platform.testing import load_script

ROOT = Path(__file__).resolve().parents[2]
setup = load_script(ROOT / "tests" / "permissions" / "conftest.py", "permissions_setup")
# The permission matrix's fixtures, a set of services of this module's own.
services = setup.services
permission_state_dir = setup.permission_state_dir

# Per operation; MISP_FUZZ_EXAMPLES raises it for a deeper run by hand.
MAX_EXAMPLES = int(os.environ.get("MISP_FUZZ_EXAMPLES", "5"))
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck),
                         phases=[Phase.explicit, Phase.generate], print_blob=False)
FUZZ_SEED = os.environ.get("MISP_FUZZ_SEED", "")
# Path values that answered 500 before: a sign, past integer, past bigint, a Unicode digit, an
# exponent, hexadecimal.
EDGE_VALUES = ("-1", "2147483648", "9" * 20, "\u00b2", "1e3", "0x1f")

# Field and model names the services' routes read from bodies (not in their OpenAPI).
FIELDS = ("id", "name", "email", "password", "confirm_password", "current_password", "org_id",
          "role_id", "user_id", "uuid", "description", "value", "setting", "type", "nationality",
          "sector", "contacts", "local", "restricted_to_domain", "landingpage", "permission",
          "perm_admin", "perm_site_admin", "memory_limit", "max_execution_time", "expiration",
          "allowed_ips", "read_only", "comment", "timer", "action", "subject", "body",
          "recipient", "recipientEmailList", "force", "disabled", "target", "regexp",
          "replacement", "data", "page", "limit", "days", "queue", "job_type", "job_input",
          "gpgkey", "certif_public", "termsaccepted", "autoalert", "contactalert", "change_pw",
          "org_uuid", "org_name", "event_uuid", "event_info", "ip", "searchall", "all")
MODELS = ("Organisation", "User", "Role", "AuthKey", "UserSetting", "Regexp", "Allowedlist",
          "EventBlocklist", "OrgBlocklist", "Server", "Task", "Job", "request")
_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
            | st.text(max_size=12) | st.sampled_from(EDGE_VALUES))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
_RECORDS = st.dictionaries(st.sampled_from(FIELDS), _VALUES, max_size=5)
BODIES = (_RECORDS | st.builds(lambda model, record: {model: record}, st.sampled_from(MODELS),
                                _RECORDS) | _VALUES)
METHOD_ORDER = {"get": 0, "post": 1, "put": 1, "patch": 1, "delete": 2}
_NUMBER = re.compile(r"0*(\d+)")


def id_like(value: Any) -> str:
    """What a route reads from a path or query value: `007.json` -> `7`."""
    text = str(value).strip().removesuffix(".json").strip()
    number = _NUMBER.fullmatch(text)
    return number.group(1) if number else text.lower()


async def callers_own(service: Any) -> set[str]:
    """The site admin's user, role, organisation and authkey ids, and `me`."""
    whoami = await service.call("GET", f"/api/v1/{service.name}/whoami", setup.SITE_ADMIN)
    assert whoami.status_code == 200, whoami.text
    record = whoami.json()
    own = {"me", str(record["User"]["id"]), str(record["Organisation"]["id"]),
           str(record["Role"]["id"])}
    if service.name == "identity":
        keys = await service.call("GET", "/auth_keys/index", setup.SITE_ADMIN)
        assert keys.status_code == 200, keys.text
        own |= {str(k["AuthKey"]["id"]) for k in keys.json()}
    return own


def aims_at(case: Case, own: set[str]) -> bool:
    """Whether a write names one of the caller's own ids in its path or query."""
    if case.method.lower() == "get":
        return False
    values = [*(case.path_parameters or {}).values(), *(case.query or {}).values()]
    return any(id_like(v) in own for v in values)


def request_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    """schemathesis' `requests` arguments as httpx's."""
    out: dict[str, Any] = {"method": kwargs["method"], "url": kwargs["url"],
                           "params": kwargs.get("params") or None,
                           "headers": kwargs.get("headers") or None}
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    if "files" in kwargs:
        out["files"] = kwargs["files"]
    data = kwargs.get("data")
    if isinstance(data, dict):
        out["data"] = data
    elif data is not None:
        out["content"] = data
    return out


def misp_shaped(response: httpx.Response) -> str | None:
    """Why a 4xx is not in MISP's error shape, or None."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} without a JSON body: {response.text[:200]!r}"
    if isinstance(body, dict) and ("message" in body or "errors" in body):
        return None
    return f"{response.status_code} not in MISP's shape: {response.text[:200]!r}"


NO_BODY = object()


class Unsendable(Exception):
    """A generated request no HTTP client could send: not the service's input."""


def edge_cases(operation: Any) -> list[Case]:
    names = re.findall(r"\{([^}]+)\}", operation.path)
    return [operation.Case(path_parameters=dict.fromkeys(names, value))
            for value in EDGE_VALUES] if names else []


def fuzz(operation: Any, base_url: str, headers: dict[str, str], own: set[str],
         send: Callable[[dict[str, Any]], httpx.Response]) -> str | None:
    """Run the operation's examples and edge cases (in a worker thread); the first failure,
    or None."""
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))
    undeclared_body = (operation.method.lower() in ("post", "put", "patch")
                       and "requestBody" not in operation.definition.raw)

    def check(case: Case, body: Any = NO_BODY) -> None:
        try:
            kwargs = request_of(case.as_transport_kwargs(base_url=base_url, headers=headers))
            if body is not NO_BODY:
                kwargs["json"] = body
            built = httpx.Request(**{k: v for k, v in kwargs.items() if v is not None})
        except (UnicodeEncodeError, httpx.InvalidURL, ValueError, TypeError) as exc:
            raise Unsendable from exc
        response = send(kwargs)
        case.validate_response(response, checks=[not_a_server_error])
        problem = misp_shaped(response)
        assert problem is None, f"{built.method} {built.url}: {problem}"

    @FUZZ_SETTINGS
    @seed(zlib.crc32(f"{FUZZ_SEED}{operation.label}".encode()))
    @given(case=strategy, body=BODIES if undeclared_body else st.just(NO_BODY))
    def examples(case: Case, body: Any) -> None:
        assume(not aims_at(case, own))
        try:
            check(case, body)
        except Unsendable:
            assume(False)

    try:
        examples()
        for case in edge_cases(operation):
            with contextlib.suppress(Unsendable):
                check(case)
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is the latter
        return f"{operation.label}: {type(exc).__name__}: {exc}"[:3000]
    return None


@pytest.mark.parametrize("name", setup.SERVICES)
async def test_no_input_makes_a_server_error(services: Any, name: str) -> None:
    service = await services.get(name)
    begin = time.monotonic()
    own = await callers_own(service)
    schema = schemathesis.openapi.from_dict(service.app.openapi())
    operations = sorted((result.ok() for result in schema.get_all_operations()),
                        key=lambda op: (METHOD_ORDER.get(op.method.lower(), 1), op.path))
    headers = {"Authorization": service.keys[setup.SITE_ADMIN], "Accept": "application/json"}
    loop = asyncio.get_running_loop()

    sent = 0

    async def call(kwargs: dict[str, Any]) -> httpx.Response:
        nonlocal sent
        sent += 1
        try:
            return await service.client.request(**kwargs)
        finally:
            service.client.cookies.clear()  # a login's session must not follow the next call

    def send(kwargs: dict[str, Any]) -> httpx.Response:
        return asyncio.run_coroutine_threadsafe(call(kwargs), loop).result(timeout=60)

    failures = []
    for operation in operations:
        problem = await asyncio.to_thread(fuzz, operation, str(service.client.base_url),
                                          headers, own, send)
        if problem:
            failures.append(problem)
    print(f"{name}: {len(operations)} operations, {sent} requests in "
          f"{time.monotonic() - begin:.1f}s")
    assert not failures, f"{len(failures)} of {len(operations)} operations failed:\n\n" + \
        "\n\n".join(failures)
