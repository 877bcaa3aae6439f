"""Secrets never reach a log line."""

import json

import structlog

from misp_platform.logging import (
    REDACTED,
    configure_logging,
    redact_mapping,
    redact_secrets,
    request_context,
)


def test_secret_keys_are_redacted_at_any_depth():
    event = {"event": "user.created", "password": "hunter2", "authkey": "k" * 40,
             "Key": "x", "token": "t", "pepper": "p", "secret": "s", "passphrase": "pp",
             "user_id": 5, "body": {"confirm_password": "x", "nested": [{"token": "t"}]}}
    out = redact_secrets(None, "info", dict(event))
    for name in ("password", "authkey", "Key", "token", "pepper", "secret", "passphrase"):
        assert out[name] == REDACTED
    assert out["user_id"] == 5
    assert out["body"] == {"confirm_password": REDACTED, "nested": [{"token": REDACTED}]}
    assert out["event"] == "user.created"


def test_none_secrets_stay_none_and_plain_dicts_can_be_redacted():
    assert redact_secrets(None, "info", {"event": "e", "password": None})["password"] is None
    assert redact_mapping({"password": "x", "a": 1}) == {"password": REDACTED, "a": 1}


def test_json_logs_use_ecs_field_names_and_redact(capsys):
    configure_logging("identity", "json", "info")
    try:
        with structlog.contextvars.bound_contextvars(request_id="r-1", correlation_id="c-1"):
            structlog.get_logger("t").info("auth.checked", authkey="k" * 40, user_id=3)
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["message"] == "auth.checked"
        assert record["log.level"] == "info"
        assert record["service"]["name"] == "identity"
        assert record["http"]["request"]["id"] == "r-1"
        assert record["trace"]["id"] == "c-1"
        assert record["authkey"] == REDACTED
        assert "k" * 40 not in line
        assert "@timestamp" in record and "ecs.version" in record
    finally:
        structlog.reset_defaults()


def test_keys_bound_during_a_request_do_not_outlive_it():
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(role="api")
    with request_context("r-2"):
        structlog.contextvars.bind_contextvars(user_id=5)
        assert structlog.contextvars.get_contextvars()["request_id"] == "r-2"
    assert structlog.contextvars.get_contextvars() == {"role": "api"}
    structlog.contextvars.clear_contextvars()


def test_a_password_reset_links_token_is_never_a_logged_path() -> None:
    from misp_platform.logging import loggable_path

    assert loggable_path("/users/password_reset/abcDEF_123-x") == "/users/password_reset/*****"
    assert loggable_path("/users/view/me") == "/users/view/me"
