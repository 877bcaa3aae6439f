"""Events to MISP Log rows: titles, actions, the `change` format, secrets, settings."""

from __future__ import annotations

import uuid

from audit.domain.mapping import NOT_LOGGED, LogSettings, specific_types, to_log_row
from audit.testing import envelope_of
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events import event_registry
from misp_contracts.events.auth import AuthenticationFailed, AuthenticationSucceeded
from misp_contracts.events.identity import (
    AuthKeyCreated,
    AuthKeyState,
    UserCreated,
    UserDeleted,
    UserLoginFailed,
    UserState,
    UserUpdated,
)
from misp_contracts.events.mailer import MailFailed, MailSent
from misp_contracts.events.orgs import OrganisationCreated, OrganisationState
from misp_contracts.events.settings import SettingChanged

ADMIN = Actor(user_id=1, email="admin@admin.test", org_id=1, org_name="ORGNAME",
              authkey_id=1, client_ip="10.1.2.3")


def user(**kw: object) -> UserState:
    return UserState(**{"id": 5, "uuid": str(uuid.uuid4()), "email": "u@x.test", "org_id": 2,
                        "role_id": 3, **kw})


def test_a_user_edit_is_written_in_misp_s_change_format_with_pymisp_s_expected_text() -> None:
    event = UserUpdated(user=user(email="testusr@user.local"),
                        changes={"email": ("testusr-changed@user.local", "testusr@user.local")})
    row = to_log_row(envelope_of(event, actor=ADMIN), LogSettings())
    assert row is not None
    assert (row.model, row.model_id, row.action) == ("User", 5, "edit")
    assert row.title == "User (5): testusr@user.local"
    assert row.change == "email (testusr-changed@user.local) => (testusr@user.local)"
    assert (row.user_id, row.email, row.org) == (1, "admin@admin.test", "ORGNAME")


def test_passwords_are_starred_and_an_add_lists_fields_with_empty_old_values() -> None:
    event = UserUpdated(user=user(), changes={"password": ("old-secret", "new-secret"),
                                              "disabled": (False, True)})
    row = to_log_row(envelope_of(event), LogSettings())
    assert row is not None
    assert row.change == "password (*****) => (*****), disabled () => (1)"
    added = to_log_row(envelope_of(UserCreated(user=user())), LogSettings())
    assert added is not None and added.action == "add"
    assert "email () => (u@x.test)" in added.change and "org_id () => (2)" in added.change


def test_org_is_system_without_an_actor_and_the_ip_only_with_log_client_ip() -> None:
    event = OrganisationCreated(organisation=OrganisationState(
        id=9, uuid=str(uuid.uuid4()), name="ACME"))
    row = to_log_row(envelope_of(event), LogSettings())
    assert row is not None
    assert (row.title, row.email, row.org, row.ip) == ("Organisation (9): ACME", "SYSTEM",
                                                       "SYSTEM", None)
    assert to_log_row(envelope_of(event, actor=ADMIN), LogSettings()).ip is None  # type: ignore[union-attr]
    with_ip = to_log_row(envelope_of(event, actor=ADMIN), LogSettings(log_client_ip=True))
    assert with_ip is not None and with_ip.ip == "10.1.2.3"


def test_a_bad_key_is_an_auth_fail_row_by_system_and_auth_rows_need_log_auth() -> None:
    failed = AuthenticationFailed(reason="unknown", title="Failed authentication using API key "
                                  "(abcd********************************wxyz)", ip="1.2.3.4")
    row = to_log_row(envelope_of(failed), LogSettings(log_client_ip=True))
    assert row is not None
    assert (row.action, row.model, row.model_id, row.user_id, row.email, row.org) == (
        "auth_fail", "User", 0, 0, "SYSTEM", "SYSTEM")
    assert row.ip == "1.2.3.4" and row.change == ""
    ok = AuthenticationSucceeded(title="Successful authentication using API key (abcd...)",
                                 authkey_id=1, user_id=1, email="a@b.test", ip="1.2.3.4",
                                 http_method="GET", target="/servers/getVersion")
    assert to_log_row(envelope_of(ok), LogSettings()) is None
    logged = to_log_row(envelope_of(ok), LogSettings(log_auth=True))
    assert logged is not None and logged.action == "auth"
    assert '"target":"/servers/getVersion"' in logged.change


def test_login_failures_are_login_fail_rows_and_authkeys_never_show_their_hmac() -> None:
    failed = UserLoginFailed(title="Failed login attempt using username x from IP: 1.1.1.1.",
                             username="x", ip="1.1.1.1")
    row = to_log_row(envelope_of(failed), LogSettings())
    assert row is not None and row.action == "login_fail" and row.email == "SYSTEM"
    key = AuthKeyCreated(authkey=AuthKeyState(id=3, uuid=str(uuid.uuid4()), user_id=5,
                                              key_hmac="f" * 64, authkey_start="abcd",
                                              authkey_end="wxyz"))
    krow = to_log_row(envelope_of(key), LogSettings())
    assert krow is not None and "f" * 64 not in krow.change
    assert krow.title == "AuthKey (3): abcd" + "*" * 32 + "wxyz"
    hidden = to_log_row(envelope_of(key), LogSettings(do_not_log_authkeys=True))
    assert hidden is not None and "abcd" not in hidden.title + hidden.change


def test_a_setting_change_and_a_redacted_one() -> None:
    row = to_log_row(envelope_of(SettingChanged(name="MISP.live", value=False,
                                                previous_value=True)), LogSettings())
    assert row is not None
    assert (row.title, row.action, row.change) == ("Server setting changed",
                                                   "serverSettingsEdit", "MISP.live (1) => ()")
    secret = SettingChanged(name="Security.salt", value="clear", previous_value="older")
    srow = to_log_row(envelope_of(secret), LogSettings())
    assert srow is not None and "clear" not in srow.change and "*****" in srow.change


def test_an_unknown_misp_type_gets_a_generic_row() -> None:
    envelope = Envelope(source="/jobs", type="misp.jobs.scheduled-task.updated.v1",
                        subject="x", data={"task": {"id": 7, "name": "cache feeds"},
                                           "changes": {"timer": [0, 3600],
                                                       "api_token": ["a", "b"]}})
    row = to_log_row(envelope, LogSettings())
    assert row is not None
    assert (row.model, row.model_id, row.action) == ("ScheduledTask", 7, "edit")
    assert row.title == "ScheduledTask (7): cache feeds"
    assert row.change == "timer (0) => (3600), api_token (*****) => (*****)"
    assert to_log_row(Envelope(source="/x", type="other.thing", data={}), LogSettings()) is None


def test_a_creation_whose_changes_carry_the_new_id_is_titled_by_its_state() -> None:
    envelope = Envelope(source="/jobs", type="misp.jobs.task.scheduled.v1", subject="stream",
                        data={"task": {"id": 6, "type": "noop", "description": "nightly"},
                              "changes": {"id": [None, 6], "type": [None, "noop"]}})
    row = to_log_row(envelope, LogSettings())
    assert row is not None
    assert (row.model, row.model_id, row.title) == ("Task", 6, "Task (6): nightly")
    assert row.change == "id () => (6), type () => (noop)"


def test_every_registered_contract_type_maps_to_a_row() -> None:
    mapped = set(specific_types())
    for type_ in event_registry:
        if type_.startswith("misp.audit.") or type_ in NOT_LOGGED:
            continue
        envelope = Envelope(source="/t", type=type_, data={})
        row = to_log_row(envelope, LogSettings(log_auth=True))
        assert row is not None, type_
        assert len(row.action) <= 20
    assert "misp.identity.user.updated.v1" in mapped


def test_worker_chatter_is_not_logged_but_the_job_lifecycle_is() -> None:
    for type_ in ("misp.jobs.worker.heartbeat.v1", "misp.jobs.job.progressed.v1"):
        assert to_log_row(Envelope(source="/t", type=type_, data={}), LogSettings()) is None
    queued = to_log_row(Envelope(source="/t", type="misp.jobs.job.queued.v1", data={}),
                        LogSettings())
    assert queued is not None


def test_a_deleted_user_keeps_the_email_in_the_title() -> None:
    row = to_log_row(envelope_of(UserDeleted(user_id=5, uuid="u", email="gone@x.test",
                                             org_id=2)), LogSettings())
    assert row is not None and row.title == "User (5): gone@x.test" and row.action == "delete"


def _mail(model: type[MailSent] | type[MailFailed], **kw: object) -> MailSent | MailFailed:
    fields: dict[str, object] = {"mail_id": str(uuid.uuid4()), "message_id": "<m@x.test>",
                                 "request_id": "r1", "email": "u@x.test", "user_id": 5,
                                 "subject": "Hello", "signed": True, **kw}
    return model(**fields)  # type: ignore[arg-type]


def test_an_administrators_mail_is_logged_as_admin_email() -> None:
    row = to_log_row(envelope_of(_mail(MailSent, kind="custom", action="admin_email"),
                                 actor=ADMIN), LogSettings())
    assert row is not None
    assert (row.action, row.model, row.model_id, row.user_id, row.outcome) == (
        "admin_email", "User", 5, 1, "success")
    assert row.title == 'Email to u@x.test sent, titled "Hello".'
    assert row.target_user_id == 5 and row.target_email == "u@x.test"
    assert "kind () => (custom)" in row.change


def test_platform_mail_and_failures_are_logged_as_email() -> None:
    sent = to_log_row(envelope_of(_mail(MailSent, kind="alert", action="email")), LogSettings())
    assert sent is not None and sent.action == "email" and sent.email == "SYSTEM"
    failed = to_log_row(envelope_of(_mail(MailFailed, kind="welcome", action="admin_email",
                                          error="550 no such user")), LogSettings())
    assert failed is not None
    assert (failed.action, failed.outcome) == ("admin_email", "failure")
    assert failed.title.endswith("failed. Reason: 550 no such user")
    odd = to_log_row(envelope_of(_mail(MailSent, kind="other", action="delete")), LogSettings())
    assert odd is not None and odd.action == "email"
