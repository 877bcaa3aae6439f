"""Import blocklists (`eventBlocklists/*`, `orgBlocklists/*`), import regexps (`admin/regexp/*`)
and the signature allowlist (`admin/allowedlists/*`, `allowedlists/index`) on MISP's paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.exc import IntegrityError

from misp_contracts.settings_catalogue import definition
from misp_platform.app import EngineDep
from misp_platform.auth import CurrentPrincipal, Principal, SiteAdmin, require_perm
from misp_platform.misp import (
    Forbidden,
    NamedParams,
    NotFound,
    ValidationFailed,
    as_misp,
    misp_record,
    read_body,
    render_value,
    success,
)
from misp_platform.misp.errors import request_url
from misp_platform.misp.paging import Page, Paging
from settings.adapters import queries
from settings.domain.errors import InvalidRuleError
from settings.domain.rules import compile_rule, normalise_uuid, parse_uuids
from settings.domain.settings import effective_value
from settings.handlers import lists
from settings.handlers.lists import ALLOWEDLIST, EVENT_BLOCKLIST, ORG_BLOCKLIST, REGEXP, ListKind

router = APIRouter(tags=["import rules"])

RegexpAccess = Annotated[Principal, Depends(require_perm("perm_regexp_access"))]
REMOVED = "Blocklist entry removed"


# ---- blocklists -------------------------------------------------------------------------------


async def _event_blocklister(principal: CurrentPrincipal, request: Request) -> Principal:
    """MISP: a site admin, or a user of the host organisation who can add events."""
    if principal.is_site_admin:
        return principal
    engine = request.app.state.engine
    async with engine.connect() as conn:
        current = await queries.current_setting(conn, "MISP.host_org_id")
    host_org = effective_value(definition("MISP.host_org_id"), current)
    if principal.org_id == host_org and principal.has("perm_add"):
        return principal
    raise Forbidden()


EventBlocklister = Annotated[Principal, Depends(_event_blocklister)]

_BLOCKLIST_FIELDS: dict[str, tuple[str, ...]] = {
    EVENT_BLOCKLIST.kind: ("comment", "event_info", "event_orgc"),
    ORG_BLOCKLIST.kind: ("comment", "org_name"),
}
_FILTERS: dict[str, tuple[str, ...]] = {
    EVENT_BLOCKLIST.kind: ("event_uuid", "comment", "event_info", "event_orgc"),
    ORG_BLOCKLIST.kind: ("org_uuid", "comment", "org_name"),
}
_MODEL = {EVENT_BLOCKLIST.kind: "EventBlocklist", ORG_BLOCKLIST.kind: "OrgBlocklist"}


def _text_fields(kind: ListKind, body: Mapping[str, Any], url: str = "") -> dict[str, str]:
    out = {}
    for name in _BLOCKLIST_FIELDS[kind.kind]:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValidationFailed("edit", _MODEL[kind.kind], url, {name: ["Invalid value."]})
        out[name] = str(value)
    return out


async def _blocklist_index(kind: ListKind, engine: Any, named: Mapping[str, str],
                           page: Page) -> list[dict[str, Any]]:
    """The filters (a field or any field holding a text) run in SQL, so a page is a slice of
    the filtered entries."""
    contains = {name: named[name] for name in _FILTERS[kind.kind] if named.get(name)}
    async with engine.connect() as conn:
        rows = await queries.list_entries(conn, kind.table, contains=contains,
                                          search=named.get("searchall") or None,
                                          offset=page.offset, limit=page.limit)
    return [render_value(lists.state_of(kind, r)) for r in rows]


async def _blocklist_add(kind: ListKind, request: Request, engine: Any,
                         principal: Principal) -> dict[str, Any]:
    body = await read_body(request, _MODEL[kind.kind])
    url = request_url(request)
    uuids = parse_uuids(body.get("uuids"))
    malformed = [u for u in uuids if normalise_uuid(u) is None]
    if malformed or not uuids:
        errors = ({"uuids": [f"Invalid UUID: {u}" for u in malformed]} if malformed
                  else {"uuids": ["No valid UUID given (a list, or one per line)."]})
        raise ValidationFailed("add", _MODEL[kind.kind], url, errors,
                               message="Could not add the blocklist entries: "
                                       + "; ".join(errors["uuids"]))
    fields = _text_fields(kind, body)
    column = kind.uuid_column
    assert column is not None
    rows = [{column: normalise_uuid(u), **fields} for u in dict.fromkeys(uuids)]
    with as_misp(request, "add", _MODEL[kind.kind]):
        added, refused = await lists.add_entries(engine, kind, rows, principal.actor())
    successes = [a[column] for a in added]
    fails = [r[column] for r in refused]
    return {"result": {"successes": successes, "fails": fails},
            "message": f"Done. Added {len(successes)} new entries to the blocklist. "
                       f"{len(fails)} entries could not be saved."}


async def _blocklist_edit(kind: ListKind, key: str, request: Request, engine: Any,
                          principal: Principal) -> dict[str, Any]:
    body = await read_body(request, _MODEL[kind.kind])
    fields = _text_fields(kind, body, request_url(request))
    with as_misp(request, "edit", _MODEL[kind.kind]):
        state = await lists.edit_entry(engine, kind, key, fields, principal.actor())
    return misp_record(_MODEL[kind.kind], state)


async def _blocklist_delete(kind: ListKind, key: str, request: Request, engine: Any,
                            principal: Principal) -> dict[str, Any]:
    with as_misp(request, "delete", _MODEL[kind.kind]):
        state = await lists.remove_entry(engine, kind, key, principal.actor())
    return success("delete", _MODEL[kind.kind], request_url(request), id=state["id"],
                   message=REMOVED)


@router.get("/eventBlocklists/index")
async def event_blocklist_index(_p: EventBlocklister, engine: EngineDep, named: NamedParams,
                                page: Paging) -> list[dict[str, Any]]:
    return await _blocklist_index(EVENT_BLOCKLIST, engine, named, page)


@router.post("/eventBlocklists/add")
async def event_blocklist_add(p: EventBlocklister, request: Request,
                              engine: EngineDep) -> dict[str, Any]:
    return await _blocklist_add(EVENT_BLOCKLIST, request, engine, p)


@router.post("/eventBlocklists/edit/{key}")
async def event_blocklist_edit(key: str, p: EventBlocklister, request: Request,
                               engine: EngineDep) -> dict[str, Any]:
    return await _blocklist_edit(EVENT_BLOCKLIST, key, request, engine, p)


@router.api_route("/eventBlocklists/delete/{key}", methods=["POST", "DELETE"])
async def event_blocklist_delete(key: str, p: EventBlocklister, request: Request,
                                 engine: EngineDep) -> dict[str, Any]:
    return await _blocklist_delete(EVENT_BLOCKLIST, key, request, engine, p)


@router.get("/orgBlocklists/index")
async def org_blocklist_index(_p: SiteAdmin, engine: EngineDep, named: NamedParams,
                              page: Paging) -> list[dict[str, Any]]:
    return await _blocklist_index(ORG_BLOCKLIST, engine, named, page)


@router.post("/orgBlocklists/add")
async def org_blocklist_add(p: SiteAdmin, request: Request, engine: EngineDep) -> dict[str, Any]:
    return await _blocklist_add(ORG_BLOCKLIST, request, engine, p)


@router.post("/orgBlocklists/edit/{key}")
async def org_blocklist_edit(key: str, p: SiteAdmin, request: Request,
                             engine: EngineDep) -> dict[str, Any]:
    return await _blocklist_edit(ORG_BLOCKLIST, key, request, engine, p)


@router.api_route("/orgBlocklists/delete/{key}", methods=["POST", "DELETE"])
async def org_blocklist_delete(key: str, p: SiteAdmin, request: Request,
                               engine: EngineDep) -> dict[str, Any]:
    return await _blocklist_delete(ORG_BLOCKLIST, key, request, engine, p)


# ---- import regexps -----------------------------------------------------------------------------


def _regexp_fields(body: Mapping[str, Any], url: str, action: str, *,
                   partial: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    if "regexp" in body or not partial:
        pattern = body.get("regexp")
        if not isinstance(pattern, str):
            errors["regexp"] = ["The regex can not be empty."]
        else:
            try:
                compile_rule(pattern)
                fields["regexp"] = pattern.strip()
            except InvalidRuleError as exc:
                errors["regexp"] = [exc.message]
    if "replacement" in body or not partial:
        replacement = body.get("replacement", "")
        if replacement is None:
            replacement = ""
        if not isinstance(replacement, str):
            errors["replacement"] = ["The replacement has to be a string."]
        else:
            fields["replacement"] = replacement
    if "type" in body or not partial or "all" in body:
        all_flag = str(body.get("all", "")).lower() in ("1", "true")
        type_ = "ALL" if all_flag or not body.get("type") else body.get("type")
        if not isinstance(type_, str) or len(type_) > 100:
            errors["type"] = ["Invalid type."]
        else:
            fields["type"] = type_
    if errors:
        raise ValidationFailed(action, "Regexp", url, errors,
                               message="; ".join(m for ms in errors.values() for m in ms))
    return fields


def _regexp_record(state: Mapping[str, Any]) -> dict[str, Any]:
    return misp_record("Regexp", state)


@router.get("/admin/regexp/index")
async def regexp_index(_p: RegexpAccess, engine: EngineDep,
                       page: Paging) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [_regexp_record(lists.state_of(REGEXP, r))
                for r in await queries.list_entries(conn, REGEXP.table, offset=page.offset,
                                                    limit=page.limit)]


@router.get("/admin/regexp/view/{entry_id}")
async def regexp_view(entry_id: str, _p: RegexpAccess, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = await queries.find_entry(conn, REGEXP.table, entry_id,
                                       uuid_column=REGEXP.uuid_column)
    if row is None:
        raise NotFound("Invalid Regexp")
    return _regexp_record(lists.state_of(REGEXP, row))


@router.post("/admin/regexp/add")
async def regexp_add(p: RegexpAccess, request: Request, engine: EngineDep) -> dict[str, Any]:
    body = await read_body(request, "Regexp")
    fields = _regexp_fields(body, request_url(request), "add", partial=False)
    with as_misp(request, "add", "Regexp"):
        [state], _ = await lists.add_entries(engine, REGEXP, [fields], p.actor())
    return _regexp_record(state)


@router.post("/admin/regexp/edit/{entry_id}")
async def regexp_edit(entry_id: str, p: RegexpAccess, request: Request,
                      engine: EngineDep) -> dict[str, Any]:
    body = await read_body(request, "Regexp")
    fields = _regexp_fields(body, request_url(request), "edit", partial=True)
    with as_misp(request, "edit", "Regexp"):
        state = await lists.edit_entry(engine, REGEXP, entry_id, fields, p.actor())
    return _regexp_record(state)


@router.api_route("/admin/regexp/delete/{entry_id}", methods=["POST", "DELETE"])
async def regexp_delete(entry_id: str, p: RegexpAccess, request: Request,
                        engine: EngineDep) -> dict[str, Any]:
    with as_misp(request, "delete", "Regexp"):
        state = await lists.remove_entry(engine, REGEXP, entry_id, p.actor())
    return success("delete", "Regexp", request_url(request), id=state["id"])


# MISP's admin_clean runs every regexp over the stored attributes, rewriting or deleting those
# that match, and reports the counts. This product stores no attributes (the rules apply as
# values come in, api/v1/settings/import-rules/apply), so every run finds them all clean.
CLEANED = "All done! Number of changed attributes: {changed} Number of deletions: {deleted}"


@router.post("/admin/regexp/clean")
async def regexp_clean(_p: SiteAdmin, request: Request) -> dict[str, Any]:
    return success("clean", "Regexp", request_url(request),
                   message=CLEANED.format(changed=0, deleted=0))


# ---- signature allowlist ----------------------------------------------------------------------


def _allowlist_name(body: Mapping[str, Any], url: str, action: str) -> str:
    name = body.get("name")
    try:
        if not isinstance(name, str):
            raise InvalidRuleError("The name can not be empty.")
        compile_rule(name)
    except InvalidRuleError as exc:
        raise ValidationFailed(action, "Allowedlist", url, {"name": [exc.message]},
                               message=exc.message) from exc
    return name.strip()


def _taken(url: str, action: str) -> ValidationFailed:
    message = "An allowlist entry with this name already exists."
    return ValidationFailed(action, "Allowedlist", url, {"name": [message]}, message=message)


async def _allowlist_index(engine: Any, page: Page) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [misp_record("Allowedlist", lists.state_of(ALLOWEDLIST, r))
                for r in await queries.list_entries(conn, ALLOWEDLIST.table,
                                                    offset=page.offset, limit=page.limit)]


@router.get("/admin/allowedlists/index")
async def allowedlist_admin_index(_p: RegexpAccess, engine: EngineDep,
                                  page: Paging) -> list[dict[str, Any]]:
    return await _allowlist_index(engine, page)


@router.get("/allowedlists/index")
async def allowedlist_index(_p: CurrentPrincipal, engine: EngineDep,
                            page: Paging) -> list[dict[str, Any]]:
    return await _allowlist_index(engine, page)


@router.post("/admin/allowedlists/add")
async def allowedlist_add(p: RegexpAccess, request: Request,
                          engine: EngineDep) -> dict[str, Any]:
    url = request_url(request)
    name = _allowlist_name(await read_body(request, "Allowedlist"), url, "add")
    with as_misp(request, "add", "Allowedlist"):
        added, _refused = await lists.add_entries(engine, ALLOWEDLIST, [{"name": name}],
                                                  p.actor())
    if not added:
        raise _taken(url, "add")
    return misp_record("Allowedlist", added[0])


@router.post("/admin/allowedlists/edit/{entry_id}")
async def allowedlist_edit(entry_id: str, p: RegexpAccess, request: Request,
                           engine: EngineDep) -> dict[str, Any]:
    url = request_url(request)
    name = _allowlist_name(await read_body(request, "Allowedlist"), url, "edit")
    try:
        with as_misp(request, "edit", "Allowedlist"):
            state = await lists.edit_entry(engine, ALLOWEDLIST, entry_id, {"name": name},
                                           p.actor())
    except IntegrityError as exc:  # the unique index: another entry has this name
        if "allowedlist_name_key" in str(exc):
            raise _taken(url, "edit") from exc
        raise
    return misp_record("Allowedlist", state)


@router.api_route("/admin/allowedlists/delete/{entry_id}", methods=["POST", "DELETE"])
async def allowedlist_delete(entry_id: str, p: RegexpAccess, request: Request,
                             engine: EngineDep) -> dict[str, Any]:
    with as_misp(request, "delete", "Allowedlist"):
        state = await lists.remove_entry(engine, ALLOWEDLIST, entry_id, p.actor())
    return success("delete", "Allowedlist", request_url(request), id=state["id"])

