"""Import rules: the event and organisation import blocklists (eventBlocklists/*,
orgBlocklists/*), the import regexps (admin/regexp/*, with a box that tries a value against them
through the API's `api/v1/settings/import-rules/apply`) and the signature allowlist
(admin/allowedlists/*), each at MISP's URLs: an index, an add form, an edit form, a delete.

The four lists differ only by their fields and the shape of their answers, so one `Screen`
describes each and one set of handlers and templates serves them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.forms import Form
from console.gateway import ApiError
from console.pages.common import api, page_number, posted_form, shown_on_the_form, viewer_of
from console.viewer import Viewer
from console.web import redirect, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
# An entry's key in a URL: an id or a uuid, nothing that could name another API path.
_KEY = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
ALL_TYPES = "ALL"


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    type: str = "text"  # text, textarea, select
    required: bool = False
    help: str | None = None


@dataclass(frozen=True)
class Screen:
    """One list: where it lives (the console's and the API's paths are the same), its columns,
    its form fields, and how its answers are shaped."""

    slug: str
    title: str
    noun: str
    base: str
    columns: tuple[tuple[str, str], ...]
    add_fields: tuple[Field, ...]
    edit_fields: tuple[Field, ...]
    model: str | None = None  # `[{"Regexp": {...}}]`; None: bare rows
    key: str = "id"  # the row's field that names it in a URL
    uuid_filter: str | None = None  # the index's named filter that finds an entry by uuid
    searchable: bool = False  # the index takes MISP's `searchall`
    view: bool = False  # the API has `<base>/view/<id>`
    extra: dict[str, Any] = field(default_factory=dict)

    def path(self, action: str, key: str | None = None) -> str:
        return f"{self.base}/{action}" + (f"/{quote(key, safe='')}" if key else "")


def _blocklist(slug: str, title: str, base: str, thing: str, uuid_column: str,
               name_column: str, name_label: str, extra: tuple[Field, ...] = ()) -> Screen:
    edit = (Field("comment", "Comment", "textarea"), Field(name_column, name_label), *extra)
    return Screen(
        slug=slug, title=title, noun="blocklist entry", base=base,
        columns=(("id", "Id"), (uuid_column, f"{thing} UUID"), (name_column, name_label),
                 ("comment", "Comment"), ("created", "Created")),
        add_fields=(Field("uuids", f"{thing} UUIDs", "textarea", required=True,
                          help="One UUID per line."), *edit),
        edit_fields=edit, key=uuid_column, uuid_filter=uuid_column, searchable=True)


EVENT_BLOCKLIST = _blocklist("event-blocklist", "Event blocklist", "/eventBlocklists", "Event",
                             "event_uuid", "event_info", "Event info",
                             (Field("event_orgc", "Creator organisation"),))
ORG_BLOCKLIST = _blocklist("org-blocklist", "Organisation blocklist", "/orgBlocklists",
                           "Organisation", "org_uuid", "org_name", "Organisation name")
_REGEXP_FIELDS = (
    Field("regexp", "Regexp", required=True,
          help="Delimited, with optional flags: /pattern/i (RE2: no backreferences)."),
    Field("replacement", "Replacement",
          help="Empty: a matching value is blocked. $1 or \\1 insert a group."),
    Field("type", "Attribute type", "select"),
)
REGEXP = Screen(slug="regexp", title="Import regexps", noun="regexp", base="/admin/regexp",
                columns=(("id", "Id"), ("regexp", "Regexp"), ("replacement", "Replacement"),
                         ("type", "Type")),
                add_fields=_REGEXP_FIELDS, edit_fields=_REGEXP_FIELDS, model="Regexp",
                view=True)
ALLOWEDLIST = Screen(slug="allowedlist", title="Signature allowlist", noun="allowlist entry",
                     base="/admin/allowedlists", columns=(("id", "Id"), ("name", "Name")),
                     add_fields=(Field("name", "Name", required=True,
                                       help="A delimited regexp, e.g. /\\.example\\.com$/i: "
                                            "matching values stay out of NIDS exports."),),
                     edit_fields=(Field("name", "Name", required=True),), model="Allowedlist")
SCREENS = (EVENT_BLOCKLIST, ORG_BLOCKLIST, REGEXP, ALLOWEDLIST)


def rows_of(screen: Screen, body: Any) -> list[dict[str, Any]]:
    """The API's list as plain entries (a `{"Regexp": {...}}` wrapper removed)."""
    out = []
    for item in body if isinstance(body, list) else []:
        if isinstance(item, dict):
            inner = item.get(screen.model) if screen.model else item
            if isinstance(inner, dict):
                out.append(inner)
    return out


def record_of(screen: Screen, body: Any) -> dict[str, Any] | None:
    rows = rows_of(screen, [body])
    return rows[0] if rows else None


def named_path(values: dict[str, str]) -> str:
    """`/searchall:acme` from the filters that are set, each value quoted (a `/` would end the
    parameter, so it becomes a space)."""
    return "".join(f"/{key}:{quote(value.strip().replace('/', ' '), safe='')}"
                   for key, value in values.items() if value.strip())


def entry_body(screen: Screen, form: Form, fields: tuple[Field, ...]) -> dict[str, Any]:
    """The JSON of an add or edit from the form's fields."""
    body: dict[str, Any] = {}
    for spec in fields:
        value = form[spec.name] if spec.type == "textarea" else form.text(spec.name)
        if spec.name == "uuids":
            body["uuids"] = [line.strip() for line in value.splitlines() if line.strip()]
        elif spec.name == "type":
            body["type"] = value or ALL_TYPES
        else:
            body[spec.name] = value
    return body


def good_key(key: str) -> str:
    if not _KEY.match(key):
        raise ApiError(404, "Invalid entry.")
    return key


async def find_entry(request: Request, viewer: Viewer, screen: Screen,
                     key: str) -> dict[str, Any]:
    """The entry a URL names (its id, or a blocklist's uuid), as the index or view shows it."""
    if screen.view:
        found = record_of(screen, await api(request, viewer, "GET", screen.path("view", key)))
        if found is None:
            raise ApiError(404, "Invalid entry.")
        return found
    filters = {screen.uuid_filter: key} if screen.uuid_filter and _UUID.match(key) else {}
    body = await api(request, viewer, "GET", screen.path("index") + named_path(filters))
    for row in rows_of(screen, body):
        if key.lower() in (str(row.get("id", "")), str(row.get(screen.key, "")).lower()):
            return row
    raise ApiError(404, "Invalid entry.")


async def type_options(request: Request, viewer: Viewer) -> list[tuple[str, str]]:
    """ALL and the attribute types (attributes/describeTypes), for a regexp's type."""
    body = await api(request, viewer, "GET", "/attributes/describeTypes.json")
    result = body.get("result", body) if isinstance(body, dict) else {}
    types = result.get("types") if isinstance(result, dict) else None
    names = [str(t) for t in types] if isinstance(types, list) else []
    return [(ALL_TYPES, "All types"), *((t, t) for t in names)]


async def _form_page(request: Request, viewer: Viewer, screen: Screen, *, action: str,
                     values: dict[str, Any], key: str | None = None,
                     errors: dict[str, str] | None = None, message: str | None = None,
                     status_code: int = 200) -> Response:
    fields = screen.add_fields if action == "add" else screen.edit_fields
    options = await type_options(request, viewer) if any(f.type == "select" for f in fields) \
        else []
    return render(request, "lists/form.html", viewer=viewer, screen=screen, screens=SCREENS,
                  action=action, fields=fields, values=values, key=key, errors=errors or {},
                  message=message, options=options, status_code=status_code,
                  title=f"{'Add' if action == 'add' else 'Edit'} {screen.noun}")


async def _index_page(request: Request, screen: Screen, *, tried: dict[str, Any] | None = None,
                      status_code: int = 200) -> Response:
    viewer = await viewer_of(request)
    page = page_number(request)
    search = request.query_params.get("searchall", "").strip() if screen.searchable else ""
    filters = {"searchall": search} if search else {}
    body = await api(request, viewer, "GET", screen.path("index") + named_path(filters)
                     + f"/page:{page}/limit:{PAGE_SIZE}")
    rows = rows_of(screen, body)
    options = await type_options(request, viewer) if screen is REGEXP else []
    return render(request, "lists/index.html", viewer=viewer, screen=screen, screens=SCREENS,
                  rows=rows, page=page, has_next=len(rows) == PAGE_SIZE, search=search,
                  values=filters, tried=tried, options=options, title=screen.title,
                  status_code=status_code)


def _register(screen: Screen) -> None:
    async def index(request: Request) -> Response:
        return await _index_page(request, screen)

    async def add_form(request: Request) -> Response:
        viewer = await viewer_of(request)
        # the API's own rule on who may see (and so change) the list: refused as a page
        await api(request, viewer, "GET", screen.path("index") + "/page:1/limit:1")
        return await _form_page(request, viewer, screen, action="add",
                                values={"type": ALL_TYPES})

    async def add(request: Request) -> Response:
        viewer = await viewer_of(request)
        form = await posted_form(request, viewer)
        values = entry_body(screen, form, screen.add_fields)
        try:
            answer = await api(request, viewer, "POST", screen.path("add"), json=values)
        except ApiError as exc:
            if not shown_on_the_form(exc):
                raise
            values["uuids"] = form["uuids"]
            return await _form_page(request, viewer, screen, action="add", values=values,
                                    errors=exc.field_errors, message=exc.message,
                                    status_code=exc.status)
        return _added(screen, answer)

    async def edit_form(request: Request, key: str) -> Response:
        viewer = await viewer_of(request)
        entry = await find_entry(request, viewer, screen, good_key(key))
        return await _form_page(request, viewer, screen, action="edit", values=entry, key=key)

    async def edit(request: Request, key: str) -> Response:
        viewer = await viewer_of(request)
        form = await posted_form(request, viewer)
        values = entry_body(screen, form, screen.edit_fields)
        try:
            await api(request, viewer, "POST", screen.path("edit", good_key(key)), json=values)
        except ApiError as exc:
            if exc.status == 404 or not shown_on_the_form(exc):
                raise
            return await _form_page(request, viewer, screen, action="edit", values=values,
                                    key=key, errors=exc.field_errors, message=exc.message,
                                    status_code=exc.status)
        return redirect(screen.path("index"), flash=f"The {screen.noun} was saved.")

    async def delete_form(request: Request, key: str) -> Response:
        viewer = await viewer_of(request)
        entry = await find_entry(request, viewer, screen, good_key(key))
        return render(request, "lists/delete.html", viewer=viewer, screen=screen,
                      screens=SCREENS, entry=entry, key=key, title=f"Delete {screen.noun}")

    async def delete(request: Request, key: str) -> Response:
        viewer = await viewer_of(request)
        await posted_form(request, viewer)
        answer = await api(request, viewer, "POST", screen.path("delete", good_key(key)))
        message = answer.get("message") if isinstance(answer, dict) else None
        return redirect(screen.path("index"), flash=str(message or f"The {screen.noun} "
                                                                   "was deleted."))

    name = screen.slug
    router.add_api_route(screen.path("index"), index, methods=["GET"], name=f"{name}-index")
    router.add_api_route(screen.base, index, methods=["GET"], name=f"{name}-base")
    router.add_api_route(screen.path("add"), add_form, methods=["GET"], name=f"{name}-add-form")
    router.add_api_route(screen.path("add"), add, methods=["POST"], name=f"{name}-add")
    router.add_api_route(screen.base + "/edit/{key}", edit_form, methods=["GET"],
                         name=f"{name}-edit-form")
    router.add_api_route(screen.base + "/edit/{key}", edit, methods=["POST"],
                         name=f"{name}-edit")
    router.add_api_route(screen.base + "/delete/{key}", delete_form, methods=["GET"],
                         name=f"{name}-delete-form")
    router.add_api_route(screen.base + "/delete/{key}", delete, methods=["POST"],
                         name=f"{name}-delete")


def _added(screen: Screen, answer: Any) -> Response:
    """A blocklist's add answers how many uuids it took and which it refused (already listed)."""
    if isinstance(answer, dict) and isinstance(answer.get("result"), dict):
        fails = answer["result"].get("fails") or []
        message = str(answer.get("message") or "Done.")
        if fails:
            message += " Already listed: " + ", ".join(str(f) for f in fails[:20])
        return redirect(screen.path("index"), flash=message, kind="info" if fails else "ok")
    return redirect(screen.path("index"), flash=f"The {screen.noun} was added.")


@router.post("/admin/regexp/test")
async def try_regexps(request: Request) -> Response:
    """The regexps' test box: what an import would store of a value (the API applies them)."""
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    body: dict[str, Any] = {"value": form["value"]}
    if form.text("type") and form.text("type") != ALL_TYPES:
        body["type"] = form.text("type")
    try:
        result = await api(request, viewer, "POST", "/api/v1/settings/import-rules/apply",
                           json=body)
    except ApiError as exc:
        if not shown_on_the_form(exc):
            raise
        return await _index_page(request, REGEXP, status_code=exc.status,
                                 tried={**body, "error": exc.message})
    return await _index_page(request, REGEXP, tried={**body, "result": result})


for _screen in SCREENS:
    _register(_screen)
