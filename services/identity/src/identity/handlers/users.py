"""User commands and reads: index, view, add, edit (admin and self), delete, change password.

Each handler gets a unit of work (identity.adapters.ports): reads through `uow.reads()`,
changes in `uow.transaction(work)`; no SQL here."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from identity.adapters import gpg
from identity.adapters.passwords import hash_password, verify_password
from identity.adapters.ports import IdentityQueries, IdentityStore, LoadedUser, UnitOfWork
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
from identity.handlers.authkeys import new_key
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
from misp_contracts.numbers import whole_number
from misp_platform.auth import Principal
from misp_platform.eventstore import Append
from misp_platform.misp import render_value
from misp_platform.misp.paging import Page, every_row

STREAM = "user"
POLICY_SETTINGS = ("Security.password_policy_length", "Security.password_policy_complexity")
SELF_FIELDS = frozenset({"autoalert", "gpgkey", "certif_public", "nids_sid", "contactalert",
                         "disabled", "notification_daily", "notification_weekly",
                         "notification_monthly", "email", "password"})


# ---- reads -------------------------------------------------------------------------------------


async def view_self_or_any(uow: UnitOfWork, caller: Principal, user_id: int,
                           cache: ViewCache | None = None) -> dict[str, Any]:
    """`users/view/{id|me}`: yourself, or anyone for a site admin (from `cache` when it holds
    the view)."""
    if user_id != caller.user_id and not caller.is_site_admin:
        raise NotFoundError(INVALID_USER_OR_NOT_AUTHORISED)
    if cache is not None and (hit := cache.get(str(user_id))) is not None:
        return copy.deepcopy(hit)
    generation = cache.generation if cache is not None else 0
    async with uow.reads() as q:
        loaded = await q.user(user_id)
        if loaded is None:
            raise NotFoundError(INVALID_USER_OR_NOT_AUTHORISED)
        view = await user_view(q, loaded.state)
    if cache is not None:
        cache.put(str(user_id), copy.deepcopy(view), generation)
    return view


async def view_of(uow: UnitOfWork, user: UserState) -> dict[str, Any]:
    """MISP's view of a user the caller just got (edited themself, logged in)."""
    async with uow.reads() as q:
        return await user_view(q, user)


async def visible_user(q: IdentityQueries, caller: Principal, user_id: int,
                       *, manage: bool = False) -> tuple[LoadedUser, RoleState | None]:
    """The user and its role when `caller` may see it (or manage it, with `manage`); else
    the same NotFoundError as for a user that does not exist."""
    loaded = await q.user(user_id)
    if loaded is None:
        raise NotFoundError(INVALID_USER)
    loaded_role = await q.role(loaded.state.role_id)
    role_state = loaded_role.state if loaded_role else None
    allowed = can_manage_user if manage else can_see_user
    if not allowed(caller, loaded.state, role_state):
        raise NotFoundError(INVALID_USER)
    return loaded, role_state


async def manageable_user(uow: UnitOfWork, caller: Principal, user_id: int) -> LoadedUser:
    """The user when `caller` may manage it (else NotFoundError, as for no such user)."""
    async with uow.reads() as q:
        loaded, _ = await visible_user(q, caller, user_id, manage=True)
    return loaded


async def admin_view(uow: UnitOfWork, caller: Principal, user_id: int) -> dict[str, Any]:
    async with uow.reads() as q:
        loaded, _ = await visible_user(q, caller, user_id)
        return await user_view(q, loaded.state, org_admins=True)


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


def _filters_in_python(caller: Principal, named: dict[str, str]) -> bool:
    """Whether the index drops rows after its query (an org admin never sees site admins; the
    search filters are Cake's `a|!b` terms), so that it pages the filtered rows itself."""
    return not caller.is_site_admin or any(
        value and (name == "value" or (name.startswith("search") and name != "searchorg"))
        for name, value in named.items())


async def index(uow: UnitOfWork, caller: Principal, named: dict[str, str],
                page: Page | None = None) -> list[dict[str, Any]]:
    """`admin/users/index` with MISP's named filters; org admins see their own org only. A page
    is a slice of the filtered users in id order: in SQL when no row is filtered out after it."""
    page = page or every_row()
    org_ids: list[int] | None = None
    if not caller.is_site_admin:
        org_ids = [caller.org_id]
    elif "searchorg" in named:
        org_ids = [n for p in named["searchorg"].split("|")
                   if (n := whole_number(p)) is not None]
    in_python = _filters_in_python(caller, named)
    async with uow.reads() as q:
        rows = await (q.users(org_ids=org_ids) if in_python else
                      q.users(org_ids=org_ids, offset=page.offset, limit=page.limit))
    out: list[dict[str, Any]] = []
    search_all = named.get("value") or named.get("searchall")
    now = datetime.now(UTC)
    for row in rows:
        user, role_state = row.user, row.role
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
    return [render_value(r) for r in (page.take(out) if in_python else out)]


# ---- shared checks -----------------------------------------------------------------------------


async def _password_errors(q: IdentityQueries, password: Any) -> list[str]:
    policy = await q.settings(POLICY_SETTINGS)
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


async def _check_role(q: IdentityQueries, caller: Principal, role_id: int,
                      *, current_role_id: int | None = None) -> RoleState:
    loaded = await q.role(role_id)
    if loaded is None:
        raise NotAllowedError(INVALID_ROLE)
    if (caller.is_org_admin and role_id != current_role_id
            and not role_assignable_by_org_admin(loaded.state)):
        raise ForbiddenError(ROLE_NOT_ASSIGNABLE)
    return loaded.state


async def _check_org(q: IdentityQueries, org_id: int, email: str, role_state: RoleState,
                     *, fail_action: str, arriving: bool = True) -> None:
    """The organisation's rules for this user. A user arriving (added, or moved in) needs an
    organisation open to users: not deleted, not being merged (the merge saga's race rule)."""
    if arriving:
        organisation = await q.organisation_open_for_users(org_id)
        if organisation is None:
            raise UnknownOrganisationError(["Invalid organisation"],
                                           message=f"Could not {fail_action} User")
    else:
        organisation = await q.organisation(org_id)
    domains = [] if organisation is None else \
        [d.strip().lower() for d in organisation.restricted_to_domain if d.strip()]
    if domains and email.rsplit("@", 1)[-1].lower() not in domains:
        raise InvalidFieldsError({"email": [
            "Invalid e-mail domain. Your user is restricted to creating users for the "
            f"following domain(s): {', '.join(domains)}"]})
    if role_state.perm_site_admin:
        limits = await q.settings(["Security.limit_site_admins_to_host_org",
                                   "MISP.host_org_id"])
        if limits["Security.limit_site_admins_to_host_org"] and \
                org_id != int(limits["MISP.host_org_id"] or 1):
            raise InvalidFieldsError({"role_id": [
                "Site admin roles can only be given to users of the host organisation."]})


# ---- add ---------------------------------------------------------------------------------------

async def new_user(tx: IdentityStore, caller: Principal, fields: dict[str, Any], *,
                   now: datetime) -> UserState:
    """A new user from validated fields with MISP's REST defaults (role: the default role; org:
    the caller's), after the role, organisation and e-mail checks; not yet recorded."""
    role_id = fields.get("role_id") or await tx.default_role_id()
    if role_id is None:
        raise InvalidFieldsError({"role_id": ["Mandatory field not set."]})
    role_state = await _check_role(tx, caller, role_id)
    org_id = caller.org_id if caller.is_org_admin else fields.get("org_id", caller.org_id)
    await _check_org(tx, org_id, fields["email"], role_state, fail_action="add")
    if await tx.email_taken(fields["email"]):
        raise InvalidFieldsError({"email": ["An account with this email address already "
                                            "exists."]})
    publish_alert = await tx.settings(["MISP.default_publish_alert"])
    return UserState(
        id=await tx.next_user_id(), uuid=str(uuid.uuid4()), email=fields["email"],
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


async def add_user(uow: UnitOfWork, caller: Principal, body: dict[str, Any], *,
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

    async def work(tx: IdentityStore) -> dict[str, Any]:
        settings = await tx.settings(["MISP.disable_user_add"])
        if settings["MISP.disable_user_add"] and not caller.is_site_admin:
            raise ForbiddenError("Adding users has been disabled on this instance.")
        if password is not None:
            problems = await _password_errors(tx, password)
            if problems:
                raise InvalidFieldsError({"password": problems})
        user = await new_user(tx, caller, fields, now=now)
        raw, key = new_key(pepper, key_id=await tx.next_key_id(), user_id=user.id, now=now)
        actor = caller.actor()
        await tx.record([
            Append(stream_id=user.uuid, stream_type=STREAM, expected_version=0,
                   events=(UserCreated(user=user),), actor=actor),
            key_created(key, actor)])
        await tx.set_password(user.id, password_hash)
        await tx.commit()
        out = user_fields(user)
        out.update({"password": "******", "authkey": raw})
        return out

    return await uow.transaction(work)


# ---- edit --------------------------------------------------------------------------------------


async def edit_user(uow: UnitOfWork, caller: Principal, user_id: int, body: dict[str, Any],
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

    async def work(tx: IdentityStore) -> UserState:
        # `work` may run twice (a lost race): it changes a copy of the parsed fields.
        changed = dict(fields)
        if self_service:
            if user_id != caller.user_id:
                raise NotFoundError(INVALID_USER)
            loaded = await tx.user(user_id)
            if loaded is None:
                raise NotFoundError(INVALID_USER)
            flags = await tx.settings(["MISP.disableUserSelfManagement",
                                       "MISP.disable_user_login_change",
                                       "MISP.disable_user_password_change"])
            if flags["MISP.disableUserSelfManagement"] and not caller.is_admin:
                raise ForbiddenError("User self-management has been disabled on this instance.")
            if flags["MISP.disable_user_login_change"]:
                changed.pop("email", None)
            if flags["MISP.disable_user_password_change"] and password is not None:
                raise ForbiddenError("Password change has been disabled on this instance.")
        else:
            loaded, _ = await visible_user(tx, caller, user_id, manage=True)
        current = loaded.state
        if password is not None:
            problems = await _password_errors(tx, password)
            if problems:
                raise InvalidFieldsError({"password": problems})
        if caller.is_org_admin:
            changed.pop("org_id", None)
        if "role_id" in changed and changed["role_id"] != current.role_id:
            if user_id == caller.user_id and not caller.is_site_admin:
                raise ForbiddenError(ROLE_NOT_ASSIGNABLE)
            role_state = await _check_role(tx, caller, changed["role_id"],
                                           current_role_id=current.role_id)
        else:
            loaded_role = await tx.role(current.role_id)
            role_state = loaded_role.state if loaded_role else RoleState(id=0, name="")
        new_email = changed.get("email", current.email)
        new_org = changed.get("org_id", current.org_id)
        if new_org != current.org_id or "email" in changed or "role_id" in changed:
            await _check_org(tx, new_org, new_email, role_state, fail_action="edit",
                             arriving=new_org != current.org_id)
        if "email" in changed and await tx.email_taken(new_email, except_id=user_id):
            raise InvalidFieldsError({"email": ["An account with this email address already "
                                                "exists."]})
        if "server_id" in changed and not role_state.perm_sync:
            changed["server_id"] = 0
        new = current.model_copy(update=changed)
        changes = changes_between(current.model_dump(mode="json"), new.model_dump(mode="json"))
        events: list[Any] = []
        actor = caller.actor()
        if password is not None:
            new = new.model_copy(update={"last_pw_change": now,
                                         "change_pw": changed.get("change_pw", False)
                                         if user_id == caller.user_id
                                         else changed.get("change_pw", current.change_pw)})
            changes = changes_between(current.model_dump(mode="json"),
                                      new.model_dump(mode="json"))
            changes["password"] = (REDACTED, REDACTED)
            own = user_id == caller.user_id
            auth_event = UserPasswordChanged if own else UserPasswordReset
            verb = "changed" if own else "reset"
            events.append(auth_event(title=f"Password {verb} for user {user_id} ({current.email})",
                                     user_id=user_id, email=current.email, org_id=current.org_id,
                                     ip=caller.client_ip))
            await tx.set_password(user_id, password_hash)
        if not changes:
            return current
        new = new.model_copy(update={"date_modified": now})
        events.insert(0, UserUpdated(user=new, changes=changes))
        await tx.record([Append(stream_id=loaded.stream_id, stream_type=STREAM,
                                expected_version=loaded.version, events=tuple(events),
                                actor=actor)])
        if new.disabled or new.force_logout or password is not None:
            reason = ("user_disabled" if new.disabled else "forced_logout" if new.force_logout
                      else "password_changed" if user_id == caller.user_id else "password_reset")
            await tx.end_sessions(user_id, reason=reason, actor=actor,
                                  stream_id=loaded.stream_id)
        await tx.commit()
        return new

    return await uow.transaction(work)


# ---- delete ------------------------------------------------------------------------------------


async def delete_user(uow: UnitOfWork, caller: Principal, user_id: int) -> None:
    async def work(tx: IdentityStore) -> None:
        loaded, _ = await visible_user(tx, caller, user_id, manage=True)
        actor = caller.actor()
        user = loaded.state
        keys = await tx.keys_of(user_id)
        await tx.record([
            *(key_deleted(k, actor) for k in keys),
            Append(stream_id=loaded.stream_id, stream_type=STREAM,
                   expected_version=loaded.version,
                   events=(UserDeleted(user_id=user.id, uuid=user.uuid, email=user.email,
                                       org_id=user.org_id),), actor=actor)])
        await tx.forget_password(user_id)
        await tx.end_sessions(user_id, reason="user_deleted", actor=actor,
                              stream_id=loaded.stream_id)
        await tx.commit()

    await uow.transaction(work)


# ---- change_pw ---------------------------------------------------------------------------------


async def change_password(uow: UnitOfWork, caller: Principal, body: dict[str, Any]) -> None:
    """`users/change_pw`: the caller's own password, under the policy."""
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise InvalidFieldsError({"password": ["A password is required."]},
                                 message="Password could not be changed.")
    if "confirm_password" in body and body["confirm_password"] != password:
        raise InvalidFieldsError({"password": [passwords.CONFIRM_MISMATCH]})
    async with uow.reads() as q:
        current_hash = await q.password_hash(caller.user_id)
        flags = await q.settings(["MISP.disable_user_password_change"])
    if flags["MISP.disable_user_password_change"] and not caller.is_site_admin:
        raise ForbiddenError("Password change has been disabled on this instance.")
    if current_hash and await verify_password(current_hash, password):
        raise InvalidFieldsError({"password": [passwords.SAME_AS_CURRENT]},
                                 message=passwords.SAME_AS_CURRENT)
    new_hash = await hash_password(password)
    now = datetime.now(UTC)

    async def work(tx: IdentityStore) -> None:
        problems = await _password_errors(tx, password)
        if problems:
            raise InvalidFieldsError({"password": problems}, message=problems[0])
        loaded = await tx.user(caller.user_id)
        if loaded is None:
            raise NotFoundError(INVALID_USER)
        current = loaded.state
        new = current.model_copy(update={"change_pw": False, "last_pw_change": now,
                                         "date_modified": now})
        changes = changes_between(current.model_dump(mode="json"), new.model_dump(mode="json"))
        changes["password"] = (REDACTED, REDACTED)
        await tx.record([Append(
            stream_id=loaded.stream_id, stream_type=STREAM, expected_version=loaded.version,
            events=(UserUpdated(user=new, changes=changes),
                    UserPasswordChanged(title=f"Password changed for user {current.id} "
                                              f"({current.email})",
                                        user_id=current.id, email=current.email,
                                        org_id=current.org_id, ip=caller.client_ip)),
            actor=caller.actor())])
        await tx.set_password(caller.user_id, new_hash)
        await tx.commit()

    await uow.transaction(work)


def system_actor() -> Actor:
    return Actor.system()
