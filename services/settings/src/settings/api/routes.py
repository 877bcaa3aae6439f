"""`/api/v1/settings/...`: what MISP has no path for. `import-rules/apply` runs the import rules
on a candidate value, so they are usable (and testable) before any event module exists."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from misp_platform.app import EngineDep
from misp_platform.auth import CurrentPrincipal, Principal
from misp_platform.auth.dependency import permitted
from misp_platform.misp import BadRequest, Forbidden, read_body
from misp_platform.misp.errors import NO_PERMISSION
from settings.adapters import queries
from settings.domain.rules import allowed_by, apply_rules, normalise_uuid

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


def _optional_uuid(body: dict[str, Any], name: str) -> str | None:
    raw = body.get(name)
    if raw in (None, ""):
        return None
    value = normalise_uuid(raw) if isinstance(raw, str) else None
    if value is None:
        raise BadRequest(f"Invalid {name}: a UUID is expected.")
    return value


def sees_blocklists(principal: Principal) -> bool:
    """MISP shows the import blocklists to site admins; an importer (a sync user) meets them."""
    return principal.is_site_admin or principal.has("perm_sync")


async def _rule_user(request: Request, principal: CurrentPrincipal) -> Principal:
    """Who may try the import rules: those who import (sync users), who manage the regexps
    (`perm_regexp_access`) and site admins; nobody else learns what the rules hold."""
    return await permitted(request, principal, lambda p: sees_blocklists(p)
                           or p.has("perm_regexp_access"))


RuleUser = Annotated[Principal, Depends(_rule_user)]


@router.post("/import-rules/apply")
async def apply_import_rules(principal: RuleUser, request: Request,
                             engine: EngineDep) -> dict[str, Any]:
    """`{"value", "type"?, "event_uuid"?, "orgc_uuid"?}` -> what an import would store.

    `blocked` is true when an import regexp with a blank replacement matches, or the event or
    its creator organisation is on an import blocklist; `stored` is the rewritten value;
    `allowedlisted` names the signature-allowlist entry that keeps it out of NIDS exports.
    """
    body = await read_body(request)
    value = body.get("value")
    if not isinstance(value, str):
        raise BadRequest('Invalid input. Expected: {"value": "candidate value"}')
    attribute_type = body.get("type")
    if attribute_type is not None and not isinstance(attribute_type, str):
        raise BadRequest("Invalid type: a string is expected.")
    event_uuid = _optional_uuid(body, "event_uuid")
    orgc_uuid = _optional_uuid(body, "orgc_uuid")
    if (event_uuid or orgc_uuid) and not sees_blocklists(principal):
        raise Forbidden(NO_PERMISSION)  # a regexp manager may not probe the blocklists
    async with engine.connect() as conn:
        rules = await queries.regexp_rules(conn)
        patterns = await queries.allowlist_patterns(conn)
        event_blocked = event_uuid is not None and await queries.event_blocked(conn, event_uuid)
        org_blocked = orgc_uuid is not None and await queries.org_blocked(conn, orgc_uuid)
    outcome = apply_rules(value, rules, attribute_type)
    reason = None
    if event_blocked:
        reason = "Event blocked by event blocklist."
    elif org_blocked:
        reason = "Event blocked by organisation blocklist."
    elif outcome.blocked:
        reason = f"Value blocked by import regexp {outcome.blocked_by}."
    stored = None if reason else outcome.value
    return {
        "value": value,
        "type": attribute_type,
        "blocked": reason is not None,
        "reason": reason,
        "stored": stored,
        "applied_regexps": [str(i) for i in outcome.applied],
        "blocked_by_regexp": None if outcome.blocked_by is None else str(outcome.blocked_by),
        "allowedlisted": allowed_by(stored, patterns) if stored is not None else None,
    }
