"""From a platform event to MISP's Log row: model, action, title and the `change` text.

Pure: no I/O. Known contract types get MISP's own wording; any other `misp.*` type gets a generic
row built from its type string and payload, so a new service's events are logged from day one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from misp_contracts.envelope import Envelope
from misp_contracts.events.base import REDACTED
from misp_contracts.numbers import whole_number

SYSTEM = "SYSTEM"
MAX_TEXT = 65532  # MISP cuts long texts here and appends "..."
MAX_ACTION = 20
MAX_MODEL = 80

# Substrings of field names whose values never appear in a log entry.
SECRET_MARKERS = ("password", "passphrase", "secret", "hmac", "salt", "token", "totp")

# Generic verbs (the past tense in a type string) to MISP's action names.
VERB_ACTIONS: dict[str, str] = {
    "created": "add", "added": "add", "submitted": "add", "set": "edit", "updated": "edit",
    "changed": "edit", "edited": "edit", "deleted": "delete", "removed": "delete",
    "enabled": "enable", "disabled": "disable", "merged": "merge", "published": "publish",
    "logged-in": "login", "logged-out": "logout", "login-failed": "login_fail",
    "sent": "send_mail", "emailed": "email", "accepted": "accept", "discarded": "discard",
    "requested": "request", "pulled": "pull", "pushed": "push", "executed": "execute",
    "uploaded": "file_upload", "exported": "export", "purged": "delete", "started": "execute",
    "failed": "error", "completed": "execute",
}

# auth_fail reasons whose title alone says it all (MISP adds no profile to these).
BARE_AUTH_FAIL = frozenset({"missing", "bad_length", "unknown"})


@dataclass(frozen=True)
class LogSettings:
    """The server settings that change what is logged (defaults from the settings catalogue)."""

    log_auth: bool = False
    log_client_ip: bool = False
    do_not_log_authkeys: bool = False

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> LogSettings:
        return cls(log_auth=bool(values.get("MISP.log_auth")),
                   log_client_ip=bool(values.get("MISP.log_client_ip")),
                   do_not_log_authkeys=bool(values.get("Security.do_not_log_authkeys")))


@dataclass(frozen=True)
class LogRow:
    """One MISP Log row, plus what the newer AuditLog shape and the SIEM record need."""

    title: str
    created: datetime
    model: str
    model_id: int
    action: str
    user_id: int
    change: str
    email: str
    org: str
    description: str
    ip: str | None
    org_id: int | None = None
    authkey_id: int | None = None
    request_id: str | None = None
    request_type: int = 2  # MISP: 0 UI, 1 API, 2 CLI (system)
    change_json: dict[str, Any] = field(default_factory=dict)
    outcome: str = "success"
    target_user_id: int | None = None
    target_email: str | None = None


# ---- value formatting ---------------------------------------------------------------------------


def is_secret(name: str, settings: LogSettings) -> bool:
    lowered = name.lower()
    if any(marker in lowered for marker in SECRET_MARKERS):
        return True
    return settings.do_not_log_authkeys and "authkey" in lowered


def text_of(value: Any) -> str:
    """A value as MISP writes it in `change`: PHP's string cast (true "1", false and null "")."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def truncate(value: str, limit: int = MAX_TEXT) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def format_changes(changes: Mapping[str, Any], settings: LogSettings) -> str:
    """MISP's `field (old) => (new), ...`; secrets become `*****` on both sides."""
    parts = []
    for name, pair in changes.items():
        old, new = (pair if isinstance(pair, list | tuple) and len(pair) == 2 else (None, pair))
        if is_secret(name, settings):
            old, new = (REDACTED if old not in (None, "") else None), REDACTED
        parts.append(f"{name} ({text_of(old)}) => ({text_of(new)})")
    return truncate(", ".join(parts))


def format_added(fields: Mapping[str, Any], settings: LogSettings) -> str:
    """An add: `field () => (value)` for each field that has a value."""
    return format_changes({k: (None, v) for k, v in fields.items()
                           if v not in (None, "", [], {})}, settings)


def json_changes(changes: Mapping[str, Any], settings: LogSettings) -> dict[str, Any]:
    """The AuditLog `change` object: edits `{"f": [old, new]}`, secrets redacted."""
    out: dict[str, Any] = {}
    for name, pair in changes.items():
        if is_secret(name, settings):
            out[name] = [REDACTED, REDACTED] if isinstance(pair, list | tuple) else REDACTED
        else:
            out[name] = list(pair) if isinstance(pair, tuple) else pair
    return out


def json_added(fields: Mapping[str, Any], settings: LogSettings) -> dict[str, Any]:
    return {k: (REDACTED if is_secret(k, settings) else v) for k, v in fields.items()
            if v not in (None, "", [], {})}


def model_name(aggregate: str) -> str:
    """`user-setting` -> `UserSetting`."""
    return "".join(part.capitalize() for part in re.split(r"[-_]", aggregate) if part)


def type_parts(type_: str) -> tuple[str, str, str] | None:
    """`(context, aggregate, verb)` of `misp.<context>.<aggregate>.<verb>.v<N>`, else None."""
    parts = type_.split(".")
    if len(parts) != 5 or parts[0] != "misp" or not re.fullmatch(r"v\d+", parts[4]):
        return None
    return parts[1], parts[2], parts[3]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else whole_number(value)


Mapper = Callable[["_Row", Mapping[str, Any], str], "LogRow | None"]


# ---- the builder --------------------------------------------------------------------------------


@dataclass
class _Row:
    """A row under construction: actor fields from the envelope, the rest from the mapping."""

    envelope: Envelope
    settings: LogSettings
    values: dict[str, Any] = field(default_factory=dict)

    def build(self, *, title: str, model: str, model_id: int | None, action: str,
              change: str = "", change_json: dict[str, Any] | None = None,
              user_id: int | None = None, email: str | None = None, org: str | None = None,
              ip: str | None = None, outcome: str = "success", description: str = "",
              target_user_id: int | None = None, target_email: str | None = None) -> LogRow:
        actor = self.envelope.actor
        ip = ip if ip is not None else actor.client_ip
        authkey_id = actor.authkey_id
        return LogRow(
            title=truncate(title), created=self.envelope.time, model=model[:MAX_MODEL],
            model_id=model_id or 0, action=action[:MAX_ACTION],
            user_id=user_id if user_id is not None else (actor.user_id or 0),
            change=truncate(change), email=email or actor.email or SYSTEM,
            org=org or actor.org_name or SYSTEM, description=truncate(description),
            ip=(ip[:45] if ip and self.settings.log_client_ip else None),
            org_id=actor.org_id, authkey_id=authkey_id, request_id=actor.request_id,
            request_type=1 if authkey_id is not None else (2 if actor.user_id is None else 0),
            change_json=change_json or {}, outcome=outcome,
            target_user_id=target_user_id, target_email=target_email,
        )


def _state_fields(state: Mapping[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in drop and k != "uuid"}


USER_DROP = ("id", "date_created", "date_modified", "last_login", "current_login",
             "last_pw_change")


def _user(row: _Row, d: Mapping[str, Any], action: str) -> LogRow:
    s = row.settings
    if action == "delete":
        uid = d.get("user_id")
        return row.build(title=f"User ({uid}): {d.get('email', '')}", model="User",
                         model_id=uid, action="delete", target_user_id=_int(uid),
                         target_email=d.get("email"))
    user = d.get("user") or {}
    uid = user.get("id")
    common: dict[str, Any] = {"title": f"User ({uid}): {user.get('email', '')}", "model": "User",
              "model_id": uid, "target_user_id": _int(uid), "target_email": user.get("email")}
    if action == "add":
        added = _state_fields(user, USER_DROP)
        return row.build(action="add", change=format_added(added, s),
                         change_json=json_added(added, s), **common)
    changes = d.get("changes") or {}
    return row.build(action="edit", change=format_changes(changes, s),
                     change_json=json_changes(changes, s), **common)


def _user_totp(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow:
    """MISP's "update" entry of a TOTP created or deleted (its title); the secret never travels,
    so the change is the flag alone."""
    user = d.get("user") or {}
    uid = _int(user.get("id"))
    now = bool(user.get("totp_is_set"))
    return row.build(title=str(d.get("title", f"User ({uid})")), model="User", model_id=uid,
                     action="update", change=f"totp_is_set ({not now}) => ({now})",
                     change_json={"totp_is_set": [not now, now]}, ip=d.get("ip"),
                     target_user_id=uid, target_email=user.get("email"))


def _named(kind: str, key: str, name_field: str, id_field: str,
           drop: tuple[str, ...] = ("id",)) -> Mapper:
    """Mapping for `<Kind>Created/Updated` carrying `{key: state}` and `Deleted` carrying ids."""

    def mapper(row: _Row, d: Mapping[str, Any], action: str) -> LogRow:
        s = row.settings
        if action == "delete":
            oid = d.get(id_field, d.get("id"))
            return row.build(title=f"{kind} ({oid}): {d.get(name_field, '')}", model=kind,
                             model_id=_int(oid), action="delete")
        state = d.get(key) or {}
        oid = state.get("id")
        title = f"{kind} ({oid}): {state.get(name_field, '')}"
        if action == "add":
            added = _state_fields(state, drop)
            return row.build(title=title, model=kind, model_id=_int(oid), action="add",
                             change=format_added(added, s), change_json=json_added(added, s))
        changes = d.get("changes") or {}
        return row.build(title=title, model=kind, model_id=_int(oid), action="edit",
                         change=format_changes(changes, s), change_json=json_changes(changes, s))

    return mapper


def _authkey(row: _Row, d: Mapping[str, Any], action: str) -> LogRow:
    s = row.settings
    key = d.get("authkey") or {}
    kid = key.get("id", d.get("authkey_id"))
    uid = key.get("user_id", d.get("user_id"))
    shown = ("*" * 40 if s.do_not_log_authkeys or not key
             else f"{key.get('authkey_start', '')}{'*' * 32}{key.get('authkey_end', '')}")
    title = f"AuthKey ({kid}): {shown}" if action != "delete" else f"AuthKey ({kid})"
    drop = ("id", "key_hmac", "uuid")
    if action == "add":
        added = {k: v for k, v in key.items() if k not in drop}
        if s.do_not_log_authkeys:
            added = {k: v for k, v in added.items() if not k.startswith("authkey_")}
        return row.build(title=title, model="AuthKey", model_id=_int(kid), action="add",
                         change=format_added(added, s), change_json=json_added(added, s),
                         target_user_id=_int(uid))
    if action == "delete":
        return row.build(title=title, model="AuthKey", model_id=_int(kid), action="delete",
                         target_user_id=_int(uid))
    changes = {k: v for k, v in (d.get("changes") or {}).items() if k not in drop}
    return row.build(title=title, model="AuthKey", model_id=_int(kid), action="edit",
                     change=format_changes(changes, s), change_json=json_changes(changes, s),
                     target_user_id=_int(uid))


def _profile(d: Mapping[str, Any], *extra: str) -> dict[str, Any]:
    """MISP's JSON profile of an authentication (`{user_agent, ip, ...}`)."""
    keys = ("user_agent", "ip", *extra)
    return {k: d.get(k) for k in keys if d.get(k) is not None}


def _auth_failed(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow:
    reason = str(d.get("reason", ""))
    known = reason not in BARE_AUTH_FAIL and d.get("user_id") is not None
    profile = {} if reason in BARE_AUTH_FAIL else _profile(d, "http_method", "target")
    uid = _int(d.get("user_id")) if known else 0
    return row.build(
        title=str(d.get("title", "Failed authentication")), model="User", model_id=uid,
        action="auth_fail", user_id=uid or 0,
        email=(d.get("email") if known else None) or SYSTEM,
        org=(d.get("org_name") if known else None) or SYSTEM,
        change=json.dumps(profile, separators=(",", ":")) if profile else "",
        change_json=profile, ip=d.get("ip"), outcome="failure",
        target_user_id=uid or None, target_email=d.get("email") if known else None)


def _auth_succeeded(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow | None:
    if not row.settings.log_auth:
        return None
    profile = _profile(d, "http_method", "target")
    uid = _int(d.get("user_id"))
    return row.build(title=str(d.get("title", "Successful authentication")), model="User",
                     model_id=uid, action="auth", user_id=uid, email=d.get("email"),
                     org=d.get("org_name"), change=json.dumps(profile, separators=(",", ":")),
                     change_json=profile, ip=d.get("ip"))


def _identity_auth(action: str, outcome: str = "success") -> Mapper:
    """identity's login / logout / login_fail / change_pw rows (MISP's `Log::AUTH_ACTIONS`)."""

    def mapper(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow:
        uid = _int(d.get("user_id")) or 0
        change = ""
        change_json: dict[str, Any] = {}
        if action in ("change_pw", "password_reset"):
            change, change_json = "password (*****) => (*****)", {"password": [REDACTED] * 2}
        elif action == "login_fail":
            change_json = _profile(d)
        return row.build(
            title=str(d.get("title", action)), model="User", model_id=uid, action=action,
            user_id=uid if uid else (0 if action == "login_fail" else None),
            email=d.get("email") or (SYSTEM if uid == 0 else None),
            org=SYSTEM if uid == 0 and action == "login_fail" else None,
            change=change, change_json=change_json, ip=d.get("ip"), outcome=outcome,
            target_user_id=uid or None, target_email=d.get("email"))

    return mapper


def _block_lifted(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow:
    return row.build(title=str(d.get("title", "Brute-force block lifted")), model="Bruteforce",
                     model_id=0, action="delete",
                     change=format_changes({"username": (d.get("username"), None),
                                            "ip": (d.get("blocked_ip"), None)}, row.settings))


def _abuse_blocked(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow:
    """The detector's block: an `auth_alert` row (on the SIEM topic like every row), the blocked
    address in `ip` when an address is blocked."""
    subject, value = str(d.get("subject", "")), str(d.get("value", ""))
    what = f"address {value}" if subject == "address" else f"API keys starting {value}"
    alert = {k: d.get(k) for k in ("subject", "value", "failures", "window_s", "blocked_until")}
    return row.build(
        title=(f"Blocked {what} until {d.get('blocked_until')}: {d.get('failures')} failed "
               f"authentications in {d.get('window_s')} s"),
        model="Bruteforce", model_id=0, action="auth_alert",
        change=json.dumps(alert, separators=(",", ":")), change_json=alert,
        ip=value if subject == "address" else None, outcome="failure")


def _default_role(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow:
    rid, prev = d.get("role_id"), d.get("previous_role_id")
    return row.build(title=f"Role ({rid if rid is not None else prev}): default role",
                     model="Role", model_id=_int(rid if rid is not None else prev),
                     action="edit",
                     change=format_changes({"default_role": (prev, rid)}, row.settings),
                     change_json={"default_role": [prev, rid]})


def _registration(action: str) -> Mapper:
    def mapper(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow:
        reg = d.get("registration") or {}
        rid = reg.get("id", d.get("registration_id"))
        email = reg.get("email")
        title = f"Registration ({rid})" + (f": {email}" if email else "")
        change = format_added({"email": email}, row.settings) if email else ""
        if d.get("user_id") is not None:
            change = format_changes({"user_id": (None, d["user_id"])}, row.settings)
        return row.build(title=title, model="Inbox", model_id=_int(rid), action=action,
                         change=change, ip=reg.get("ip"))

    return mapper


def _user_setting(row: _Row, d: Mapping[str, Any], action: str) -> LogRow:
    s = row.settings
    state = d.get("user_setting") or d
    sid, setting = state.get("id"), state.get("setting", "")
    title = f"UserSetting ({sid}): {setting}"
    if action == "delete":
        return row.build(title=title, model="UserSetting", model_id=_int(sid), action="delete",
                         target_user_id=_int(state.get("user_id")))
    changes = d.get("changes") or {"value": (None, state.get("value"))}
    existed = any(isinstance(p, list | tuple) and p and p[0] is not None
                  for p in changes.values())
    return row.build(title=title, model="UserSetting", model_id=_int(sid),
                     action="edit" if existed else "add", change=format_changes(changes, s),
                     change_json=json_changes(changes, s),
                     target_user_id=_int(state.get("user_id")))


def _org_merge(done: bool) -> Mapper:
    def mapper(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow:
        src, tgt = d.get("source") or {}, d.get("target") or {}
        verb = "merged into" if done else "merge into"
        title = (f"Organisation ({src.get('id')}): {src.get('name', '')} {verb} "
                 f"Organisation ({tgt.get('id')}): {tgt.get('name', '')}")
        if not done:
            title += " started"
        fields: dict[str, Any] = {"merge_id": d.get("merge_id"), "target_org_id": tgt.get("id")}
        if done:
            fields["users_moved"] = d.get("users_moved")
        return row.build(title=title, model="Organisation", model_id=_int(src.get("id")),
                         action="merge", change=format_added(fields, row.settings),
                         change_json=json_added(fields, row.settings))

    return mapper


def _setting_changed(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow:
    name = str(d.get("name", ""))
    old, new = d.get("previous_value"), d.get("value")
    # The contract already redacts secret settings; the name check guards older producers.
    if is_secret(name, row.settings):
        old, new = REDACTED, REDACTED
    return row.build(title="Server setting changed", model="Server", model_id=0,
                     action="serverSettingsEdit",
                     change=truncate(f"{name} ({text_of(old)}) => ({text_of(new)})"),
                     change_json={name: [old, new]})


# The mailer says which Log action a mail is: an administrator's message to users is
# `admin_email`, mail the platform sends by itself is `email` (anything else is read as `email`).
MAIL_ACTIONS = frozenset({"admin_email", "email"})


def _mail(sent: bool) -> Mapper:
    def mapper(row: _Row, d: Mapping[str, Any], _action: str) -> LogRow:
        action = d.get("action") if d.get("action") in MAIL_ACTIONS else "email"
        email, subject = str(d.get("email", "")), str(d.get("subject", ""))
        if sent:
            title = f'Email to {email} sent, titled "{subject}".'
        else:
            title = f'Email to {email}, titled "{subject}" failed. Reason: {d.get("error", "")}'
        fields = {k: d[k] for k in ("kind", "message_id", "encrypted", "signed", "attempts")
                  if k in d}
        uid = _int(d.get("user_id"))
        return row.build(title=title, model="User", model_id=uid, action=str(action),
                         change=format_added(fields, row.settings),
                         change_json=json_added(fields, row.settings),
                         outcome="success" if sent else "failure",
                         target_user_id=uid, target_email=email or None)

    return mapper


SPECIFIC: dict[str, tuple[Mapper, str]] = {
    "misp.identity.user.created.v1": (_user, "add"),
    "misp.identity.user.updated.v1": (_user, "edit"),
    "misp.identity.user.deleted.v1": (_user, "delete"),
    "misp.identity.user.totp-set.v1": (_user_totp, "update"),
    "misp.identity.user.totp-removed.v1": (_user_totp, "update"),
    "misp.identity.role.created.v1": (_named("Role", "role", "name", "role_id"), "add"),
    "misp.identity.role.updated.v1": (_named("Role", "role", "name", "role_id"), "edit"),
    "misp.identity.role.deleted.v1": (_named("Role", "role", "name", "role_id"), "delete"),
    "misp.identity.role.default-changed.v1": (_default_role, "edit"),
    "misp.identity.authkey.created.v1": (_authkey, "add"),
    "misp.identity.authkey.updated.v1": (_authkey, "edit"),
    "misp.identity.authkey.deleted.v1": (_authkey, "delete"),
    "misp.identity.auth.logged-in.v1": (_identity_auth("login"), "login"),
    "misp.identity.auth.logged-out.v1": (_identity_auth("logout"), "logout"),
    "misp.identity.auth.login-failed.v1": (_identity_auth("login_fail", "failure"), "login_fail"),
    "misp.identity.auth.password-changed.v1": (_identity_auth("change_pw"), "change_pw"),
    "misp.identity.auth.password-reset.v1": (_identity_auth("password_reset"), "password_reset"),
    "misp.identity.auth.block-lifted.v1": (_block_lifted, "delete"),
    "misp.identity.registration.submitted.v1": (_registration("registration"), "registration"),
    "misp.identity.registration.accepted.v1": (_registration("acceptRegistrations"), "accept"),
    "misp.identity.registration.discarded.v1": (_registration("discardRegistrations"), "discard"),
    "misp.identity.user-setting.set.v1": (_user_setting, "edit"),
    "misp.identity.user-setting.deleted.v1": (_user_setting, "delete"),
    "misp.orgs.organisation.created.v1": (
        _named("Organisation", "organisation", "name", "org_id"), "add"),
    "misp.orgs.organisation.updated.v1": (
        _named("Organisation", "organisation", "name", "org_id"), "edit"),
    "misp.orgs.organisation.deleted.v1": (
        _named("Organisation", "organisation", "name", "org_id"), "delete"),
    "misp.orgs.organisation.merge-started.v1": (_org_merge(False), "merge"),
    "misp.orgs.organisation.merged.v1": (_org_merge(True), "merge"),
    "misp.auth.authentication.failed.v1": (_auth_failed, "auth_fail"),
    "misp.audit.abuse.blocked.v1": (_abuse_blocked, "auth_alert"),
    "misp.auth.authentication.succeeded.v1": (_auth_succeeded, "auth"),
    "misp.settings.setting.changed.v1": (_setting_changed, "serverSettingsEdit"),
    "misp.mailer.mail.emailed.v1": (_mail(True), "email"),
    "misp.mailer.mail.failed.v1": (_mail(False), "email"),
}

_NAME_FIELDS = ("name", "email", "title", "setting", "username", "value", "job_type",
                "description")


def _generic(row: _Row, type_: str) -> LogRow | None:
    parts = type_parts(type_)
    if parts is None:
        return None
    _context, aggregate, verb = parts
    d = row.envelope.data
    model = model_name(aggregate)
    action = VERB_ACTIONS.get(verb, verb.replace("-", "_"))
    # The aggregate's state: the one nested object that has an id, else the payload itself
    # (not `changes`: a creation's changes have an id too, from () to the new one).
    nested = [v for k, v in d.items() if k != "changes" and isinstance(v, dict) and "id" in v]
    state: Mapping[str, Any] = nested[0] if len(nested) == 1 else d
    oid = _int(state.get("id"))
    if oid is None:
        snake = aggregate.replace("-", "_")
        oid = _int(d.get(f"{snake}_id")) or _int(d.get("id"))
    label = next((str(state[k]) for k in _NAME_FIELDS
                  if isinstance(state.get(k), str | int) and not isinstance(state.get(k), bool)
                  and not is_secret(k, row.settings)), None)
    title = f"{model} ({oid if oid is not None else row.envelope.subject or ''})"
    if label:
        title += f": {label}"
    s = row.settings
    changes = d.get("changes")
    if isinstance(changes, dict) and changes:
        change, change_json = format_changes(changes, s), json_changes(changes, s)
    else:
        flat = {k: v for k, v in state.items()
                if not isinstance(v, dict) and k not in ("id", "uuid")}
        change, change_json = format_added(flat, s), json_added(flat, s)
    return row.build(title=title, model=model, model_id=oid, action=action, change=change,
                     change_json=change_json, description=type_)


# Machine chatter, not administrative actions: worker heartbeats and run reports, job progress
# ticks, dispatches to workers. The job's own lifecycle (queued, started, completed...) is logged.
NOT_LOGGED = frozenset({
    "misp.jobs.worker.heartbeat.v1",
    "misp.jobs.worker.run-started.v1",
    "misp.jobs.worker.run-progressed.v1",
    "misp.jobs.worker.run-finished.v1",
    "misp.jobs.job.progressed.v1",
    "misp.jobs.commands.run-job.v1",
    # A session's start and end mirror the login and logout rows identity's auth topic logs.
    "misp.identity.session.started.v1",
    "misp.identity.session.ended.v1",
})


def to_log_row(envelope: Envelope, settings: LogSettings) -> LogRow | None:
    """The Log row an event makes, or None when nothing is logged (auth with log_auth off,
    machine chatter)."""
    if envelope.type in NOT_LOGGED:
        return None
    row = _Row(envelope, settings)
    specific = SPECIFIC.get(envelope.type)
    if specific is not None:
        mapper, action = specific
        try:
            result: LogRow | None = mapper(row, envelope.data, action)
            return result
        except (AttributeError, TypeError, ValueError):
            pass  # a payload that does not fit its contract still gets a generic row
    return _generic(row, envelope.type)


def specific_types() -> list[str]:
    return sorted(SPECIFIC)
