"""User commands and reads: index, view, add, edit (admin and self), delete, change password."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import gpg, queries
from identity.adapters.passwords import hash_password, verify_password
from identity.adapters.store import record, write
from identity.adapters.tables import login_session, org, role, user_account, user_credential
from identity.adapters.view_cache import ViewCache
from identity.domain import passwords
from identity.domain.access import can_manage_user, can_see_user
from identity.domain.errors import (
    ForbiddenError,
    InvalidFieldsError,
    NotAllowedError,
    NotFoundError,
    UnknownOrganisationError,
)
from identity.domain.users import (
    IGNORED_FIELDS,
    INVALID_ROLE,
    INVALID_USER,
    INVALID_USER_OR_NOT_AUTHORISED,
    ROLE_NOT_ASSIGNABLE,
    parse_user_fields,
    random_nids_sid,
    role_assignable_by_org_admin,
    user_fields,
)
from identity.handlers.authkeys import created as key_created
from identity.handlers.authkeys import deleted as key_deleted
from identity.handlers.authkeys import new_key, next_id
from identity.handlers.views import user_view
from misp_contracts.envelope import Actor
from misp_contracts.events.base import REDACTED, changes_between
from misp_contracts.events.identity import (
    RoleState,
    UserCreated,
    UserDeleted,
    UserPasswordChanged,
    UserPasswordReset,
    UserState,
    UserUpdated,
)
from misp_platform.auth import Principal
from misp_platform.eventstore import Append
from misp_platform.server_settings import read_settings

STREAM = "user"
POLICY_SETTINGS = ("Security.password_policy_length", "Security.password_policy_complexity")
SELF_FIELDS = frozenset({"autoalert", "gpgkey", "certif_public", "nids_sid", "contactalert",
                         "disabled", "notification_daily", "notification_weekly",
                         "notification_monthly", "email", "password"})


# ---- reads -------------------------------------------------------------------------------------


async def view_self_or_any(engine: AsyncEngine, caller: Principal, user_id: int,
                           cache: ViewCache | None = None) -> dict[str, Any]:
    """`users/view/{id|me}`: yourself, or anyone for a site admin (from `cache` when it holds
    the view)."""
    if user_id != caller.user_id and not caller.is_site_admin:
        raise NotFoundError(INVALID_USER_OR_NOT_AUTHORISED)
    if cache is not None and (hit := cache.get(str(user_id))) is not None:
        return copy.deepcopy(hit)
    generation = cache.generation if cache is not None else 0
    async with engine.connect() as conn:
        loaded = await queries.get_user(conn, user_id)
        if loaded is None:
            raise NotFoundError(INVALID_USER_OR_NOT_AUTHORISED)
        view = await user_view(conn, loaded.state)
    if cache is not None:
        cache.put(str(user_id), copy.deepcopy(view), generation)
    return view


async def visible_user(conn: AsyncConnection, caller: Principal, user_id: int,
                       *, manage: bool = False) -> tuple[queries.LoadedUser, RoleState | None]:
    """The user and its role when `caller` may see it (or manage it, with `manage`); else
    the same NotFoundError as for a user that does not exist."""
    loaded = await queries.get_user(conn, user_id)
    if loaded is None:
        raise NotFoundError(INVALID_USER)
    loaded_role = await queries.get_role(conn, loaded.state.role_id)
    role_state = loaded_role.state if loaded_role else None
    allowed = can_manage_user if manage else can_see_user
    if not allowed(caller, loaded.state, role_state):
        raise NotFoundError(INVALID_USER)
    return loaded, role_state


async def admin_view(engine: AsyncEngine, caller: Principal, user_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        loaded, _ = await visible_user(conn, caller, user_id)
        return await user_view(conn, loaded.state, org_admins=True)


def _matches(value: Any, wanted: str) -> bool:
    """Cake's index filter: `a|b` is OR, a `!` prefix negates, substring match."""
    text = "" if value is None else str(value).lower()
    positives = []
    for term in wanted.split("|"):
        term = term.strip().lower()
        if term.startswith("!"):
            if term[1:] and term[1:] in text:
                return False
        elif term:
            positives.append(term)
    return not positives or any(t in text for t in positives)


def _flag_matches(value: bool, wanted: str) -> bool:
    return str(int(value)) == wanted.strip() or str(value).lower() == wanted.strip().lower()


async def index(engine: AsyncEngine, caller: Principal,
                named: dict[str, str]) -> list[dict[str, Any]]:
    """`admin/users/index` with MISP's named filters; org admins see their own org only."""
    stmt = (select(user_account.c.state, role.c.state.label("role_state"),
                   org.c.name.label("org_name"))
            .select_from(user_account
                         .outerjoin(role, role.c.role_id == user_account.c.role_id)
                         .outerjoin(org, org.c.org_id == user_account.c.org_id))
            .order_by(user_account.c.user_id))
    if not caller.is_site_admin:
        stmt = stmt.where(user_account.c.org_id == caller.org_id)
    elif "searchorg" in named:
        org_ids = [int(p) for p in named["searchorg"].split("|") if p.strip().isdigit()]
        stmt = stmt.where(user_account.c.org_id.in_(org_ids))
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    out: list[dict[str, Any]] = []
    search_all = named.get("value") or named.get("searchall")
    now = datetime.now(UTC)
    for row in rows:
        user = UserState.model_validate(row.state)
        role_state = RoleState.model_validate(row.role_state) if row.role_state else None
        if not can_see_user(caller, user, role_state):
            continue
        role_name = role_state.name if role_state else ""
        everything = "\n".join(str(v) for v in (user.email, row.org_name, role_name, user.id))
        if search_all and not _matches(everything, search_all):
            continue
        if "searchemail" in named and not _matches(user.email, named["searchemail"]):
            continue
        if "searchrole" in named and not (
                _matches(user.role_id, named["searchrole"])
                or _matches(role_name, named["searchrole"])):
            continue
        flags_ok = all(_flag_matches(getattr(user, f), named[f"search{f}"])
                       for f in ("autoalert", "contactalert", "termsaccepted", "disabled")
                       if f"search{f}" in named)
        if not flags_ok:
            continue
        if named.get("searchinactive") == "1":
            last = user.current_login or user.last_login
            if last is not None and (now - last).days < 90:
                continue
        out.append({
            "User": user_fields(user, index=True),
            "Role": {"id": user.role_id, "name": role_name,
                     "perm_auth": bool(role_state and role_state.perm_auth),
                     "perm_site_admin": bool(role_state and role_state.perm_site_admin),
                     "perm_admin": bool(role_state and role_state.perm_admin)},
            "Organisation": {"id": user.org_id, "name": row.org_name},
        })
    from misp_platform.misp import render_value

    return [render_value(r) for r in out]


# ---- shared checks -----------------------------------------------------------------------------


async def _password_errors(conn: AsyncConnection, password: Any) -> list[str]:
    policy = await read_settings(conn, POLICY_SETTINGS)
    return passwords.policy_errors(password, min_length=policy[POLICY_SETTINGS[0]],
                                   complexity=policy[POLICY_SETTINGS[1]])


def _given_password(body: dict[str, Any]) -> str | None:
    """The new password of a body; PyMISP sends back `*****` for the one it fetched."""
    value = body.get("password")
    if value is None or (isinstance(value, str) and value and set(value) == {"*"}):
        return None
    return value if isinstance(value, str) else str(value)


async def check_gpg_key(fields: dict[str, Any]) -> None:
    """Refuse an unreadable `gpgkey` and set `gpg_fingerprint` from the key (None without one)."""
    key = fields.get("gpgkey")
    if not key:
        fields["gpg_fingerprint"] = None
        return
    info = await gpg.inspect_public_key(key)
    if info is None:
        raise InvalidFieldsError({"gpgkey": [gpg.INVALID_KEY]})
    fields["gpg_fingerprint"] = info.fingerprint


async def _check_role(conn: AsyncConnection, caller: Principal, role_id: int,
                      *, current_role_id: int | None = None) -> RoleState:
    loaded = await queries.get_role(conn, role_id)
    if loaded is None:
        raise NotAllowedError(INVALID_ROLE)
    if (caller.is_org_admin and role_id != current_role_id
            and not role_assignable_by_org_admin(loaded.state)):
        raise ForbiddenError(ROLE_NOT_ASSIGNABLE)
    return loaded.state


async def _check_org(conn: AsyncConnection, org_id: int, email: str, role_state: RoleState,
                     *, fail_action: str, arriving: bool = True) -> None:
    """The organisation's rules for this user. A user arriving (added, or moved in) needs an
    organisation open to users: not deleted, not being merged (the merge saga's race rule)."""
    if arriving:
        organisation = await queries.org_open_for_users(conn, org_id)
        if organisation is None:
            raise UnknownOrganisationError(["Invalid organisation"],
                                           message=f"Could not {fail_action} User")
    else:
        organisation = await queries.get_org(conn, org_id)
    domains = [] if organisation is None else \
        [d.strip().lower() for d in organisation.restricted_to_domain if d.strip()]
    if domains and email.rsplit("@", 1)[-1].lower() not in domains:
        raise InvalidFieldsError({"email": [
            "Invalid e-mail domain. Your user is restricted to creating users for the "
            f"following domain(s): {', '.join(domains)}"]})
    if role_state.perm_site_admin:
        limits = await read_settings(conn, ["Security.limit_site_admins_to_host_org",
                                            "MISP.host_org_id"])
        if limits["Security.limit_site_admins_to_host_org"] and \
                org_id != int(limits["MISP.host_org_id"] or 1):
            raise InvalidFieldsError({"role_id": [
                "Site admin roles can only be given to users of the host organisation."]})


async def store_password(conn: AsyncConnection, user_id: int, password_hash: str | None) -> None:
    stmt = pg_insert(user_credential).values(user_id=user_id, password_hash=password_hash)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[user_credential.c.user_id],
        set_={"password_hash": stmt.excluded.password_hash, "changed_at": datetime.now(UTC)}))


async def end_sessions(conn: AsyncConnection, user_id: int) -> int:
    result = await conn.execute(delete(login_session).where(login_session.c.user_id == user_id))
    return int(result.rowcount or 0)


# ---- add ---------------------------------------------------------------------------------------

async def new_user(conn: AsyncConnection, caller: Principal, fields: dict[str, Any], *,
                   now: datetime) -> UserState:
    """A new user from validated fields with MISP's REST defaults (role: the default role; org:
    the caller's), after the role, organisation and e-mail checks; not yet recorded."""
    role_id = fields.get("role_id") or await queries.default_role_id(conn)
    if role_id is None:
        raise InvalidFieldsError({"role_id": ["Mandatory field not set."]})
    role_state = await _check_role(conn, caller, role_id)
    org_id = caller.org_id if caller.is_org_admin else fields.get("org_id", caller.org_id)
    await _check_org(conn, org_id, fields["email"], role_state, fail_action="add")
    if await queries.email_taken(conn, fields["email"]):
        raise InvalidFieldsError({"email": ["An account with this email address already "
                                            "exists."]})
    publish_alert = await read_settings(conn, ["MISP.default_publish_alert"])
    return UserState(
        id=await next_id(conn, "user_id_seq"), uuid=str(uuid.uuid4()), email=fields["email"],
        org_id=org_id, role_id=role_id,
        server_id=fields.get("server_id", 0) if role_state.perm_sync else 0,
        disabled=fields.get("disabled", False),
        autoalert=fields.get("autoalert", bool(publish_alert["MISP.default_publish_alert"])),
        contactalert=fields.get("contactalert", False),
        termsaccepted=fields.get("termsaccepted", False),
        change_pw=fields.get("change_pw", True),
        nids_sid=fields.get("nids_sid") or random_nids_sid(),
        gpgkey=fields.get("gpgkey"), gpg_fingerprint=fields.get("gpg_fingerprint"),
        certif_public=fields.get("certif_public"), invited_by=caller.user_id,
        expiration=fields.get("expiration"),
        notification_daily=fields.get("notification_daily", False),
        notification_weekly=fields.get("notification_weekly", False),
        notification_monthly=fields.get("notification_monthly", False),
        date_created=now, date_modified=now, last_pw_change=now)



async def add_user(engine: AsyncEngine, caller: Principal, body: dict[str, Any], *,
                   pepper: str) -> dict[str, Any]:
    """`admin/users/add`: the new user, with a working key in `authkey` (shown once)."""
    body = {k: v for k, v in body.items() if k not in IGNORED_FIELDS or k == "notify"}
    fields, errors = parse_user_fields(body, creating=True)
    password = _given_password(body)
    if errors:
        raise InvalidFieldsError(errors)
    await check_gpg_key(fields)
    password_hash = await hash_password(password) if password else None
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        settings = await read_settings(conn, ["MISP.disable_user_add"])
        if settings["MISP.disable_user_add"] and not caller.is_site_admin:
            raise ForbiddenError("Adding users has been disabled on this instance.")
        if password is not None:
            problems = await _password_errors(conn, password)
            if problems:
                raise InvalidFieldsError({"password": problems})
        user = await new_user(conn, caller, fields, now=now)
        user_id = user.id
        raw, key = new_key(pepper, key_id=await next_id(conn, "authkey_id_seq"),
                           user_id=user_id, now=now)
        actor = caller.actor()
        await record(conn, [
            Append(stream_id=user.uuid, stream_type=STREAM, expected_version=0,
                   events=(UserCreated(user=user),), actor=actor),
            key_created(key, actor)])
        await store_password(conn, user_id, password_hash)
        out = user_fields(user)
        out.update({"password": "******", "authkey": raw})
        return out

    return await write(engine, work)


# ---- edit --------------------------------------------------------------------------------------


async def edit_user(engine: AsyncEngine, caller: Principal, user_id: int, body: dict[str, Any],
                    *, self_service: bool) -> UserState:
    """`admin/users/edit/{id}` and `users/edit`: the user after the change."""
    body = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    if self_service:
        body = {k: v for k, v in body.items() if k in SELF_FIELDS}
    password = _given_password(body)
    body.pop("password", None)
    fields, errors = parse_user_fields(body, creating=False)
    if errors:
        raise InvalidFieldsError(errors)
    if "gpgkey" in fields:
        await check_gpg_key(fields)
    password_hash = await hash_password(password) if password else None
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> UserState:
        if self_service:
            if user_id != caller.user_id:
                raise NotFoundError(INVALID_USER)
            loaded = await queries.get_user(conn, user_id)
            if loaded is None:
                raise NotFoundError(INVALID_USER)
            flags = await read_settings(conn, ["MISP.disableUserSelfManagement",
                                               "MISP.disable_user_login_change",
                                               "MISP.disable_user_password_change"])
            if flags["MISP.disableUserSelfManagement"] and not caller.is_admin:
                raise ForbiddenError("User self-management has been disabled on this instance.")
            if flags["MISP.disable_user_login_change"]:
                fields.pop("email", None)
            if flags["MISP.disable_user_password_change"] and password is not None:
                raise ForbiddenError("Password change has been disabled on this instance.")
        else:
            loaded, _ = await visible_user(conn, caller, user_id, manage=True)
        current = loaded.state
        if password is not None:
            problems = await _password_errors(conn, password)
            if problems:
                raise InvalidFieldsError({"password": problems})
        if caller.is_org_admin:
            fields.pop("org_id", None)
        if "role_id" in fields and fields["role_id"] != current.role_id:
            if user_id == caller.user_id and not caller.is_site_admin:
                raise ForbiddenError(ROLE_NOT_ASSIGNABLE)
            role_state = await _check_role(conn, caller, fields["role_id"],
                                           current_role_id=current.role_id)
        else:
            loaded_role = await queries.get_role(conn, current.role_id)
            role_state = loaded_role.state if loaded_role else RoleState(id=0, name="")
        new_email = fields.get("email", current.email)
        new_org = fields.get("org_id", current.org_id)
        if new_org != current.org_id or "email" in fields or "role_id" in fields:
            await _check_org(conn, new_org, new_email, role_state, fail_action="edit",
                             arriving=new_org != current.org_id)
        if "email" in fields and await queries.email_taken(conn, new_email, except_id=user_id):
            raise InvalidFieldsError({"email": ["An account with this email address already "
                                                "exists."]})
        if "server_id" in fields and not role_state.perm_sync:
            fields["server_id"] = 0
        new = current.model_copy(update=fields)
        changes = changes_between(current.model_dump(mode="json"), new.model_dump(mode="json"))
        events: list[Any] = []
        actor = caller.actor()
        if password is not None:
            new = new.model_copy(update={"last_pw_change": now,
                                         "change_pw": fields.get("change_pw", False)
                                         if user_id == caller.user_id
                                         else fields.get("change_pw", current.change_pw)})
            changes = changes_between(current.model_dump(mode="json"),
                                      new.model_dump(mode="json"))
            changes["password"] = (REDACTED, REDACTED)
            own = user_id == caller.user_id
            auth_event = UserPasswordChanged if own else UserPasswordReset
            verb = "changed" if own else "reset"
            events.append(auth_event(title=f"Password {verb} for user {user_id} ({current.email})",
                                     user_id=user_id, email=current.email, org_id=current.org_id,
                                     ip=caller.client_ip))
            await store_password(conn, user_id, password_hash)
        if not changes:
            return current
        new = new.model_copy(update={"date_modified": now})
        events.insert(0, UserUpdated(user=new, changes=changes))
        await record(conn, [Append(stream_id=loaded.stream_id, stream_type=STREAM,
                                   expected_version=loaded.version, events=tuple(events),
                                   actor=actor)])
        if new.disabled or new.force_logout or password is not None:
            await end_sessions(conn, user_id)
        return new

    return await write(engine, work)


# ---- delete ------------------------------------------------------------------------------------


async def delete_user(engine: AsyncEngine, caller: Principal, user_id: int) -> None:
    async def work(conn: AsyncConnection) -> None:
        loaded, _ = await visible_user(conn, caller, user_id, manage=True)
        actor = caller.actor()
        user = loaded.state
        keys = await queries.keys_of(conn, user_id)
        await record(conn, [
            *(key_deleted(k, actor) for k in keys),
            Append(stream_id=loaded.stream_id, stream_type=STREAM,
                   expected_version=loaded.version,
                   events=(UserDeleted(user_id=user.id, uuid=user.uuid, email=user.email,
                                       org_id=user.org_id),), actor=actor)])
        await conn.execute(delete(user_credential).where(user_credential.c.user_id == user_id))
        await end_sessions(conn, user_id)

    await write(engine, work)


# ---- change_pw ---------------------------------------------------------------------------------


async def change_password(engine: AsyncEngine, caller: Principal, body: dict[str, Any]) -> None:
    """`users/change_pw`: the caller's own password, under the policy."""
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise InvalidFieldsError({"password": ["A password is required."]},
                                 message="Password could not be changed.")
    if "confirm_password" in body and body["confirm_password"] != password:
        raise InvalidFieldsError({"password": [passwords.CONFIRM_MISMATCH]})
    async with engine.connect() as conn:
        current_hash = await queries.password_hash(conn, caller.user_id)
        flags = await read_settings(conn, ["MISP.disable_user_password_change"])
    if flags["MISP.disable_user_password_change"] and not caller.is_site_admin:
        raise ForbiddenError("Password change has been disabled on this instance.")
    if current_hash and await verify_password(current_hash, password):
        raise InvalidFieldsError({"password": [passwords.SAME_AS_CURRENT]},
                                 message=passwords.SAME_AS_CURRENT)
    new_hash = await hash_password(password)
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> None:
        problems = await _password_errors(conn, password)
        if problems:
            raise InvalidFieldsError({"password": problems}, message=problems[0])
        loaded = await queries.get_user(conn, caller.user_id)
        if loaded is None:
            raise NotFoundError(INVALID_USER)
        current = loaded.state
        new = current.model_copy(update={"change_pw": False, "last_pw_change": now,
                                         "date_modified": now})
        changes = changes_between(current.model_dump(mode="json"), new.model_dump(mode="json"))
        changes["password"] = (REDACTED, REDACTED)
        await record(conn, [Append(
            stream_id=loaded.stream_id, stream_type=STREAM, expected_version=loaded.version,
            events=(UserUpdated(user=new, changes=changes),
                    UserPasswordChanged(title=f"Password changed for user {current.id} "
                                              f"({current.email})",
                                        user_id=current.id, email=current.email,
                                        org_id=current.org_id, ip=caller.client_ip)),
            actor=caller.actor())])
        await store_password(conn, caller.user_id, new_hash)

    await write(engine, work)


def system_actor() -> Actor:
    return Actor.system()
