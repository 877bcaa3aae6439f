"""PostgreSQL as `make up` runs it trusts nobody over TCP: every service logs in as its own role
with its own password, owns its database, and cannot connect to another service's; the running
services really use those roles, and no program of theirs holds the superuser's URL."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from misp_platform.testing import required_env

SERVICES = ["identity", "orgs", "audit", "jobs", "mailer", "settings"]


def server() -> tuple[str, int]:
    url = make_url(required_env("MISP_PG_URL"))
    return url.host or "127.0.0.1", url.port or 5432


def password_of(role: str) -> str:
    state = Path(required_env("MISP_STATE_DIR"))
    return (state / "secrets" / "pg" / role).read_text(encoding="utf-8").strip()


def connect(user: str, dbname: str, password: str | None) -> psycopg.Connection:
    host, port = server()
    return psycopg.connect(host=host, port=port, user=user, dbname=dbname,
                           password=password or "", connect_timeout=5)


def test_each_service_role_reaches_its_own_database_and_owns_it() -> None:
    for service in SERVICES:
        role = f"misp_{service}"
        with connect(role, role, password_of(role)) as conn:
            owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                                 "WHERE datname = current_database()").fetchone()
            foreign = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                "AND tableowner <> current_user").fetchone()
        assert owner == (role,)
        assert foreign == (0,), f"{role} does not own every table of its database"


def test_identitys_role_cannot_connect_to_orgs_database() -> None:
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect("misp_identity", "misp_orgs", password_of("misp_identity"))


def test_no_tcp_connection_is_trusted_without_its_password() -> None:
    for user, dbname in (("postgres", "postgres"), ("misp_orgs", "misp_orgs")):
        with pytest.raises(psycopg.OperationalError, match="password"):
            connect(user, dbname, None)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(user, dbname, "not-" + password_of(user))


def test_the_running_services_use_their_own_roles_only() -> None:
    url = make_url(required_env("MISP_PG_URL"))
    host, port = server()
    with psycopg.connect(host=host, port=port, user=url.username, password=url.password,
                         dbname="postgres") as conn:
        sessions = conn.execute(
            "SELECT datname, usename FROM pg_stat_activity WHERE datname = ANY(%s) "
            "AND backend_type = 'client backend'",
            ([f"misp_{service}" for service in SERVICES],)).fetchall()
    by_database: dict[str, set[str]] = {}
    for database, user in sessions:
        by_database.setdefault(database, set()).add(user)
    for service in SERVICES:
        assert by_database.get(f"misp_{service}") == {f"misp_{service}"}, by_database


def test_no_service_program_is_given_the_superusers_url() -> None:
    conf = Path(required_env("MISP_STATE_DIR")) / "supervisor" / "supervisord.conf"
    text = conf.read_text(encoding="utf-8")
    assert "MISP_PG_URL" not in text
    assert password_of("postgres") not in text
    for service in SERVICES:
        assert f"{service.upper()}_DATABASE_URL" in text
    assert os.environ.get("MISP_PG_URL", "").count(":") >= 3  # the tests' URL has a password
