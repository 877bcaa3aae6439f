"""The app factory against the real PostgreSQL and Kafka: operator endpoints, MISP URL
conventions and MISP's error shapes."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import httpx
import pytest
import structlog
from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from sqlalchemy import text
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send
from structlog.testing import capture_logs

from misp_platform.app import EngineDep, LeanRouter, SettingsDep, create_app
from misp_platform.config import ServiceSettings
from misp_platform.misp.errors import (
    DATABASE_TOO_SLOW,
    INTERNAL_ERROR,
    INVALID_JSON,
    RETRY_AFTER_S,
    NotFound,
)
from misp_platform.misp.params import MispId, NamedParams, read_body
from misp_platform.misp.responses import MispJSONResponse
from misp_platform.testing import required_env, throwaway_database


class AppTestSettings(ServiceSettings):
    service: ClassVar[str] = "apptest"


class ThingCreate(BaseModel):
    name: str
    size: int


router = APIRouter()


@router.get("/admin/things/index")
async def things_index(named: NamedParams) -> dict[str, Any]:
    return {"named": named}


@router.get("/servers/getSetting/{name}")
async def get_setting(name: str, request: Request) -> dict[str, Any]:
    return {"name": name, "extension": request.state.url_extension}


@router.post("/things/add")
async def add_thing(request: Request) -> dict[str, Any]:
    return {"Thing": await read_body(request, "Thing")}


@router.post("/things/typed")
async def typed_thing(thing: ThingCreate) -> dict[str, Any]:
    return thing.model_dump()


@router.get("/things/view/{thing_id}")
async def view_thing(thing_id: MispId) -> dict[str, Any]:
    if thing_id == 404:
        raise NotFound("Invalid thing")
    return {"id": thing_id}


@router.get("/things/boom")
async def boom() -> dict[str, Any]:
    raise RuntimeError("secret internals: password=hunter2")


@router.get("/things/db")
async def db_answer(engine: EngineDep, settings: SettingsDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        value = (await conn.execute(text("SELECT 41 + 1"))).scalar()
    return {"value": value, "service": settings.service}


@router.get("/things/slow")
async def slow_answer(engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_sleep(5)"))
    return {}


lean_router = LeanRouter()


@lean_router.lean("/things/who/me", "/things/who/{who}")
async def who_from_a_cache(scope: Scope, receive: Receive, send: Send) -> bool:
    if Headers(scope=scope).get("x-cached") != "yes":
        return False  # the route answers
    await MispJSONResponse({"who": "me", "lean": True})(scope, receive, send)
    return True


@lean_router.get("/things/who/{who}")
async def who_by_route(who: str) -> dict[str, Any]:
    return {"who": who, "lean": False}


@pytest.fixture(scope="module")
async def database_url():
    async with throwaway_database(required_env("MISP_PG_URL"), prefix="test_app") as url:
        yield url


def make_settings(database_url: str, kafka: str, **fields: Any) -> AppTestSettings:
    return AppTestSettings(database_url=database_url, kafka_bootstrap_servers=kafka, **fields)


@asynccontextmanager
async def running(app: FastAPI):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture(scope="module")
async def client(database_url):
    kafka = required_env("MISP_KAFKA_BOOTSTRAP_SERVERS")
    hooks_seen: list[str] = []

    @asynccontextmanager
    async def hook(app: FastAPI):
        hooks_seen.append("started")
        app.state.hook_ran = True
        yield
        hooks_seen.append("stopped")

    app = create_app(make_settings(database_url, kafka), routers=[router, lean_router],
                     lifespan_hooks=[hook], configure_logs=False)
    async with running(app) as c:
        assert hooks_seen == ["started"]
        yield c
    assert hooks_seen == ["started", "stopped"]


async def test_health_answers_without_dependencies(client):
    for path in ("/health", "/_svc/apptest/health"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "service": "apptest"}


async def test_ready_when_the_database_answers(client):
    response = await client.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok"}


async def test_ready_without_kafka_which_metrics_report(database_url):
    """Writes wait in the outbox while Kafka is away: no reason to leave the balancer."""
    app = create_app(make_settings(database_url, "127.0.0.1:1"), configure_logs=False)
    async with running(app) as c:
        response = await c.get("/_svc/apptest/ready")
        scraped = await c.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok"}
    assert "\nkafka_up 0.0\n" in scraped.text


async def test_not_ready_without_a_database():
    app = create_app(make_settings("postgresql+psycopg://postgres@127.0.0.1:1/none",
                                   required_env("MISP_KAFKA_BOOTSTRAP_SERVERS")),
                     configure_logs=False)
    async with running(app) as c:
        response = await c.get("/ready")
    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]


async def test_diagnostics_report_database_kafka_and_principals(client):
    response = await client.get("/diagnostics")
    assert response.status_code == 200
    body = response.json()
    assert body["service"] == "apptest" and body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["alembic_revision"] is None
    assert body["checks"]["kafka"]["ok"] is True
    assert body["checks"]["kafka"]["brokers"] >= 1
    assert "\nkafka_up 1.0\n" in (await client.get("/metrics")).text
    assert body["checks"]["principals"] == {"ok": True, "present": True, "users": 0, "roles": 0,
                                            "authkeys": 0, "orgs": 0, "last_update": None}


async def test_metrics_count_requests_by_route_template(client):
    await client.get("/things/view/7")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert ('http_requests_total{method="GET",route="/things/view/{thing_id}",status="200"}'
            in response.text)
    assert "events_published_total" in response.text
    assert "/things/view/7" not in response.text


async def test_made_up_methods_and_paths_add_no_metrics_labels(client):
    """A flood of invented methods and paths cannot grow the registry: they are counted as
    method OTHER on the unmatched route."""
    for n in range(5):
        await client.request(f"BREW{n}", f"/nowhere/{n}")
    text = (await client.get("/metrics")).text
    assert 'method="OTHER",route="<unmatched>"' in text
    assert "BREW" not in text and "/nowhere/" not in text


async def test_a_statement_past_its_timeout_is_503_with_retry_after(database_url):
    app = create_app(make_settings(database_url, required_env("MISP_KAFKA_BOOTSTRAP_SERVERS"),
                                   db_statement_timeout_s=0.3),
                     routers=[router], configure_logs=False)
    async with running(app) as c:
        response = await c.get("/things/slow")
        after = await c.get("/things/db")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert response.json() == {"name": DATABASE_TOO_SLOW, "message": DATABASE_TOO_SLOW,
                               "url": "/things/slow"}
    assert after.json()["value"] == 42


async def test_engine_and_settings_dependencies(client):
    response = await client.get("/things/db")
    assert response.json() == {"value": 42, "service": "apptest"}


async def test_json_suffix_and_named_params_reach_the_route(client):
    response = await client.get("/admin/things/index/value:foo+bar/searchorg:2.json")
    assert response.status_code == 200
    assert response.json() == {"named": {"value": "foo bar", "searchorg": "2"}}
    response = await client.get("/admin/things/index.json")
    assert response.json() == {"named": {}}


async def test_a_bare_admin_controller_path_means_its_index(client):
    for path in ("/admin/things", "/admin/things.json", "/admin/things/"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.json() == {"named": {}}


async def test_dots_in_route_parameters_are_kept(client):
    response = await client.get("/servers/getSetting/MISP.baseurl")
    assert response.json() == {"name": "MISP.baseurl", "extension": None}
    response = await client.get("/servers/getSetting/MISP.baseurl.json")
    assert response.json() == {"name": "MISP.baseurl", "extension": "json"}


async def test_bodies_may_be_wrapped_or_flat(client):
    for body in ({"name": "x"}, {"Thing": {"name": "x"}}, {"request": {"name": "x"}}):
        response = await client.post("/things/add", json=body)
        assert response.json() == {"Thing": {"name": "x"}}
    empty = await client.post("/things/add")
    assert empty.json() == {"Thing": {}}


async def test_malformed_json_is_misps_405(client):
    for path in ("/things/add", "/things/typed"):
        response = await client.post(path, content=b'{"name": ',
                                     headers={"content-type": "application/json"})
        assert response.status_code == 405, path
        assert response.json() == {"name": INVALID_JSON, "message": INVALID_JSON, "url": path}


async def test_validation_errors_are_a_misp_shaped_400(client):
    response = await client.post("/things/typed", json={"name": "x", "size": "big"})
    assert response.status_code == 400
    body = response.json()
    assert body["url"] == "/things/typed"
    assert body["name"] == body["message"]
    assert "size" in body["message"]
    assert list(body["errors"]) == ["size"]


async def test_a_non_numeric_id_is_not_found(client):
    response = await client.get("/things/view/abc")
    assert response.status_code == 404
    assert response.json() == {"name": "Not Found", "message": "Not Found",
                               "url": "/things/view/abc"}


async def test_an_id_beyond_bigint_is_not_found(client):
    response = await client.get("/things/view/99999999999999999999")
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"


async def test_head_is_answered_by_the_get_route_without_a_body(client):
    found = await client.head("/things/view/3")
    assert found.status_code == 200
    assert found.content == b""
    assert int(found.headers["content-length"]) > 0
    missing = await client.head("/things/view/404")
    assert missing.status_code == 404 and missing.content == b""
    metrics = (await client.get("/metrics")).text
    assert 'http_requests_total{method="HEAD",route="/things/view/{thing_id}",status="404"}' in (
        metrics)


async def test_route_errors_use_misps_shape(client):
    response = await client.get("/things/view/404")
    assert response.status_code == 404
    assert response.json() == {"name": "Invalid thing", "message": "Invalid thing",
                               "url": "/things/view/404"}


async def test_unknown_paths_and_methods_get_misp_bodies(client):
    response = await client.get("/nope/nothing/here")
    assert response.status_code == 404
    assert response.json() == {"name": "Not Found", "message": "Not Found",
                               "url": "/nope/nothing/here"}
    response = await client.delete("/things/view/1")
    assert response.status_code == 405
    assert response.json()["name"] == "Method Not Allowed"


async def test_an_unexpected_error_is_a_generic_500_that_leaks_nothing(client):
    response = await client.get("/things/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {"name": INTERNAL_ERROR, "message": INTERNAL_ERROR,
                               "url": "/things/boom"}
    assert "hunter2" not in response.text
    assert response.headers["X-Request-ID"] == "boom-1"


async def test_request_ids_are_echoed_or_generated(client):
    response = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    generated = (await client.get("/health")).headers["X-Request-ID"]
    assert len(generated) == 32
    odd = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert odd.headers["X-Request-ID"] != "bad id with spaces"


async def test_docs_live_under_the_service_api_prefix(client):
    assert (await client.get("/api/v1/apptest/openapi.json")).status_code == 200
    assert (await client.get("/api/v1/apptest/docs")).status_code == 200
    assert (await client.get("/docs")).status_code == 404


async def test_a_lean_path_answers_before_routing_or_hands_the_request_to_its_route(client):
    cached = {"X-Cached": "yes"}
    lean = await client.get("/things/who/me.json", headers=cached)
    assert lean.json() == {"who": "me", "lean": True} and lean.headers["X-Request-ID"]
    assert (await client.get("/things/who/me")).json() == {"who": "me", "lean": False}
    assert (await client.get("/things/who/you", headers=cached)).json() == {
        "who": "you", "lean": False}  # not the lean path's
    head = await client.head("/things/who/me", headers=cached)
    assert head.status_code == 200 and head.content == b""
    assert (await client.post("/things/who/me", headers=cached)).status_code == 405
    metrics = (await client.get("/metrics")).text
    assert ('http_requests_total{method="GET",route="/things/who/{who}",status="200"} 3.0'
            in metrics)
    assert 'route="/things/who/{who}",status="200"} 1.0' in metrics  # the HEAD
    assert 'lean_requests_total{outcome="answered",route="/things/who/{who}"} 2.0' in metrics
    assert 'lean_requests_total{outcome="handed_on",route="/things/who/{who}"} 1.0' in metrics


def test_a_lean_path_names_a_get_route_of_its_router() -> None:
    stray = LeanRouter()

    @stray.lean("/things/x", "/things/{nothing}")
    async def never(scope: Scope, receive: Receive, send: Send) -> bool:
        return False

    with pytest.raises(ValueError, match="no GET route"):
        create_app(make_settings("postgresql+psycopg://unused/db", "unused:9092"),
                   routers=[stray], configure_logs=False)


async def test_reads_answered_in_time_are_logged_at_debug_the_rest_at_info(client):
    before = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            await client.get("/things/view/1")
            await client.get("/things/view/404")
            await client.post("/things/add", json={"name": "x"})
    finally:
        structlog.configure(wrapper_class=before)
    levels = [(e["path"], e["status"], e["log_level"]) for e in logs
              if e["event"] == "http.request"]
    assert levels == [("/things/view/1", 200, "debug"), ("/things/view/404", 404, "info"),
                      ("/things/add", 200, "info")]
