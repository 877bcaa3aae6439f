"""The SIEM record of a log entry: ECS field names, MISP's Log row under `misp.log`. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from audit.domain.chain import Entry
from audit.domain.mapping import SYSTEM, LogRow
from misp_contracts.events.audit import (
    AuditLogRecorded,
    ChainLink,
    EcsEvent,
    EcsOrganization,
    EcsRelated,
    EcsSource,
    EcsUser,
    EcsUserTarget,
    MispAuditFields,
    MispLogRow,
)

MISP_TIME = "%Y-%m-%d %H:%M:%S"
AUTH_ACTIONS = frozenset({"auth", "auth_fail", "auth_alert", "change_pw", "login", "login_fail",
                          "logout", "password_reset", "forgot"})
IAM_MODELS = frozenset({"User", "Role", "AuthKey", "Organisation", "UserSetting", "Inbox",
                        "Bruteforce"})
TYPES = {"add": "creation", "edit": "change", "delete": "deletion", "login": "start",
         "auth": "start", "auth_fail": "start", "login_fail": "start", "logout": "end",
         "change_pw": "change", "password_reset": "change", "merge": "change",
         "serverSettingsEdit": "change", "enable": "change", "disable": "change"}
IAM_KINDS = {"User": "user", "Role": "group", "Organisation": "group", "AuthKey": "user"}


def categories(row: LogRow) -> tuple[list[str], list[str]]:
    kind = TYPES.get(row.action, "info")
    if row.action in AUTH_ACTIONS:
        category = ["authentication"]
    elif row.model in IAM_MODELS:
        category = ["iam"]
    elif row.model == "Server":
        category = ["configuration"]
    else:
        category = ["api"]
    types = [kind]
    if category == ["iam"] and row.model in IAM_KINDS:
        types.append(IAM_KINDS[row.model])
    return category, types


def siem_record(entry: Entry, row: LogRow) -> AuditLogRecorded:
    category, types = categories(row)
    actor_email = row.email if row.email != SYSTEM else None
    related_users = [u for u in dict.fromkeys((actor_email, row.target_email)) if u]
    target = (EcsUserTarget(id=str(row.target_user_id) if row.target_user_id else None,
                            email=row.target_email, name=row.target_email)
              if row.target_user_id or row.target_email else None)
    return AuditLogRecorded.model_validate({
        "@timestamp": entry.created,
        "message": row.title,
        "event": EcsEvent(id=str(entry.id), action=row.action, category=category, type=types,
                          outcome=row.outcome, created=entry.created),
        "user": EcsUser(id=str(row.user_id) if row.user_id else None, email=actor_email,
                        name=row.email, target=target),
        "organization": EcsOrganization(id=str(row.org_id) if row.org_id else None,
                                        name=row.org),
        "source": EcsSource(ip=row.ip) if row.ip else None,
        "related": EcsRelated(user=related_users, ip=[row.ip] if row.ip else []),
        "misp": MispAuditFields(
            log=MispLogRow(id=str(entry.id), title=row.title,
                           created=entry.created.astimezone(UTC).strftime(MISP_TIME),
                           model=row.model,
                           model_id=str(row.model_id), action=row.action,
                           user_id=str(row.user_id), change=row.change, email=row.email,
                           org=row.org, description=row.description, ip=row.ip),
            source_event_id=entry.source_event_id, source_event_type=entry.source_type,
            chain=ChainLink(chain=entry.chain, seq=entry.seq, prev_hash=entry.prev_hash,
                            hash=entry.hash)),
    })


def json_time(value: datetime) -> str:
    """A time as pydantic writes it in JSON: ISO 8601, UTC as `Z`."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class SiemTemplate:
    """What of an entry's SIEM document its Log row and time alone decide: all but the entry's
    id and place in its chain, so that it can be made before the entry is (the consumer makes
    it while the batch before is written)."""

    document: dict[str, Any]
    event: dict[str, Any]  # `event` but its id
    log: dict[str, Any]  # `misp.log` but its id


def siem_template(row: LogRow, created: datetime) -> SiemTemplate:
    category, types = categories(row)
    created_text = json_time(created)
    actor_email = row.email if row.email != SYSTEM else None
    related_users = [u for u in dict.fromkeys((actor_email, row.target_email)) if u]
    event = {"action": row.action, "category": category, "type": types,
             "outcome": row.outcome, "kind": "event", "dataset": "misp.audit",
             "created": created_text}
    document: dict[str, Any] = {
        "@timestamp": created_text,
        "message": row.title,
        "event": None,
        "user": _present(id=str(row.user_id) if row.user_id else None, email=actor_email,
                         name=row.email),
        "organization": _present(id=str(row.org_id) if row.org_id else None, name=row.org),
    }
    if row.target_user_id or row.target_email:
        document["user"]["target"] = _present(
            id=str(row.target_user_id) if row.target_user_id else None,
            email=row.target_email, name=row.target_email)
    if row.ip:
        document["source"] = {"ip": row.ip}
    document["related"] = {"user": related_users, "ip": [row.ip] if row.ip else []}
    document["misp"] = None
    log = _present(title=row.title, created=created.astimezone(UTC).strftime(MISP_TIME),
                   model=row.model, model_id=str(row.model_id), action=row.action,
                   user_id=str(row.user_id), change=row.change, email=row.email, org=row.org,
                   description=row.description, ip=row.ip)
    return SiemTemplate(document, event, log)


def siem_document(entry: Entry, row: LogRow,
                  template: SiemTemplate | None = None) -> dict[str, Any]:
    """`siem_record(entry, row)` as its JSON document (by alias, without nulls), built directly:
    the consumer writes one per entry, and the models' validation and dump cost more than the
    rest of the entry (tests/unit/test_siem.py holds the two to the same document).
    `template`: `siem_template(row, entry.created)`, made ahead (used once: it is filled in)."""
    t = template if template is not None else siem_template(row, entry.created)
    entry_id = str(entry.id)
    document = t.document
    document["event"] = {"id": entry_id, **t.event}
    document["misp"] = {
        "log": {"id": entry_id, **t.log},
        "source_event_id": entry.source_event_id, "source_event_type": entry.source_type,
        "chain": {"chain": entry.chain, "seq": entry.seq, "prev_hash": entry.prev_hash,
                  "hash": entry.hash}}
    return document
