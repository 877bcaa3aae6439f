"""Organisations: MISP's "List Organisations" (local / remote / all, with search), the view of
one (its details, logo and users), add, edit (and its logo), delete and merge.

The orgs service owns them; its answers are shown as they come. The logo has no MISP REST path:
the orgs service takes it at `/api/v1/orgs/organisations/{id}/logo` (the PNG as the body) and
serves it at the `logo_url` of the organisation's record.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.forms import CSRF_FIELD, Form
from console.gateway import ApiError
from console.multipart import NotMultipart, read_multipart
from console.pages.answers import record_of, refusal, refused_form, shown_as_flash
from console.pages.common import api, page_number, posted_form, records, viewer_of
from console.viewer import Viewer, check_csrf
from console.web import redirect, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
SCOPES = {"local": "Local organisations", "external": "Remote organisations",
          "all": "All organisations"}
TEXT_FIELDS = ("name", "uuid", "description", "type", "nationality", "sector", "contacts")
# The merge dialog's choices of target (MISP's targetType 0 = local, 1 = external), and one
# organisation made for the merge.
TARGET_TYPES = {"local": "A local organisation", "external": "A remote organisation",
                "new": "A new organisation"}
MERGE_CHOICES = 200
LOGO_FIELD = "logo"
NOT_ALLOWED = "You do not have permission to use this functionality."


def org_path(org_id: Any) -> str:
    return quote(str(org_id), safe="")


def named_params(raw: str) -> dict[str, str]:
    """`scope:local/searchall:acme` (MISP's named parameters in a path) as a dict."""
    out: dict[str, str] = {}
    for part in raw.split("/"):
        key, sep, value = part.partition(":")
        if sep and key:
            out[key] = value
    return out


def index_path(scope: str, search: str, page: int) -> str:
    """The API's index path for these filters (a `/` in the search would end the param)."""
    path = f"/organisations/index/scope:{scope}"
    text = search.strip().replace("/", " ")
    if text:
        path += f"/searchall:{quote(text, safe='')}"
    return f"{path}/page:{page}/limit:{PAGE_SIZE}"


def org_body(form: Form, *, creating: bool) -> dict[str, Any]:
    """The organisation as MISP's add/edit take it, from the form. A uuid left empty on add is
    the API's to make; `local` is a checkbox; the domains one per line."""
    body: dict[str, Any] = {name: form.text(name) if name == "name" else form[name]
                            for name in TEXT_FIELDS}
    body["uuid"] = body["uuid"].strip()
    if creating and not body["uuid"]:
        del body["uuid"]
    body["local"] = form.flag("local")
    body["restricted_to_domain"] = [line.strip() for line in
                                    form["restricted_to_domain"].splitlines() if line.strip()]
    return body


def organisation(body: Any) -> dict[str, Any]:
    return record_of(body, "Organisation")


def may_see_users(viewer: Viewer, org_id: int) -> bool:
    """admin/users/index answers a site admin for any organisation, an org admin for theirs."""
    return viewer.is_site_admin or (viewer.is_admin and org_id == viewer.org_id)


def nationality_options(countries: list[str], current: str) -> list[tuple[str, str]]:
    """The nationality drop-down: none, the current value when it is no country of the list
    (MISP's clients may send any text), then the countries."""
    options = [("", "Not given")]
    if current and current not in countries:
        options.append((current, current))
    return options + [(country, country) for country in countries]


async def _countries(request: Request, viewer: Viewer) -> list[str]:
    try:
        body = await api(request, viewer, "GET", "/api/v1/orgs/countries")
    except ApiError:
        return []  # the nationality stays free text in MISP: a plain field then
    return [str(c) for c in body] if isinstance(body, list) else []


# ---- the index and the view -------------------------------------------------------------------


async def _index(request: Request, named: dict[str, str]) -> Response:
    viewer = await viewer_of(request)
    scope = request.query_params.get("scope") or named.get("scope") or "local"
    if scope not in SCOPES:
        scope = "local"
    search = request.query_params.get("searchall") or named.get("searchall") or ""
    page = page_number(request)
    body = await api(request, viewer, "GET", index_path(scope, search, page))
    orgs = [row["Organisation"] for row in records(body, "Organisation")]
    return render(request, "orgs/index.html", viewer=viewer, orgs=orgs, scope=scope,
                  scopes=SCOPES, search=search, page=page, has_next=len(orgs) == PAGE_SIZE,
                  title=SCOPES[scope])


@router.get("/organisations/index")
@router.get("/organisations")
async def index(request: Request) -> Response:
    return await _index(request, {})


@router.get("/organisations/index/{params:path}")
async def index_named(request: Request, params: str) -> Response:
    return await _index(request, named_params(params))


@router.get("/organisations/view/{key}")
async def view(request: Request, key: str) -> Response:
    viewer = await viewer_of(request)
    org = organisation(await api(request, viewer, "GET", f"/organisations/view/{org_path(key)}"))
    org_id = int(org.get("id") or 0)
    users: list[dict[str, Any]] | None = None
    if may_see_users(viewer, org_id):
        try:
            users = records(await api(request, viewer, "GET",
                                      f"/admin/users/index/searchorg:{org_id}/limit:500"),
                            "User")
        except ApiError as exc:
            if exc.status not in (403, 404):
                raise
    return render(request, "orgs/view.html", viewer=viewer, org=org, users=users,
                  title=org.get("name") or "Organisation")


# ---- add and edit -----------------------------------------------------------------------------


async def _form(request: Request, viewer: Viewer, org: dict[str, Any], *, creating: bool,
                errors: dict[str, str] | None = None, message: str | None = None,
                status_code: int = 200) -> Response:
    domains = org.get("restricted_to_domain") or []
    countries = await _countries(request, viewer)
    nationalities = nationality_options(countries, str(org.get("nationality") or ""))
    return render(request, "orgs/form.html", viewer=viewer, org=org, creating=creating,
                  nationalities=nationalities if countries else [], errors=errors or {},
                  message=message, status_code=status_code,
                  domains="\n".join(domains) if isinstance(domains, list) else str(domains),
                  title="Add organisation" if creating else f"Edit {org.get('name', '')}")


async def _admin_and_org(request: Request, key: str) -> tuple[Viewer, dict[str, Any]]:
    """A site admin's page about one organisation: the viewer and the organisation."""
    viewer = await viewer_of(request)
    if not viewer.is_site_admin:
        raise ApiError(403, NOT_ALLOWED)
    return viewer, organisation(await api(request, viewer, "GET",
                                          f"/organisations/view/{org_path(key)}"))


@router.get("/admin/organisations/add")
async def add_form(request: Request) -> Response:
    viewer = await viewer_of(request)
    if not viewer.is_site_admin:
        raise ApiError(403, NOT_ALLOWED)
    return await _form(request, viewer, {"local": True}, creating=True)


@router.post("/admin/organisations/add")
async def add(request: Request) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    body = org_body(form, creating=True)
    try:
        created = organisation(await api(request, viewer, "POST", "/admin/organisations/add",
                                         json={"Organisation": body}))
    except ApiError as exc:
        if not refused_form(exc):
            raise
        return await _form(request, viewer, body, creating=True, errors=exc.field_errors,
                           message=exc.message, status_code=exc.status)
    return redirect(f"/organisations/view/{org_path(created.get('id'))}",
                    flash="The organisation has been saved.")


@router.get("/admin/organisations/edit/{key}")
async def edit_form(request: Request, key: str) -> Response:
    viewer, org = await _admin_and_org(request, key)
    return await _form(request, viewer, org, creating=False)


@router.post("/admin/organisations/edit/{key}")
async def edit(request: Request, key: str) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    body = org_body(form, creating=False)
    try:
        saved = organisation(await api(request, viewer, "POST",
                                       f"/admin/organisations/edit/{org_path(key)}",
                                       json={"Organisation": body}))
    except ApiError as exc:
        if not refused_form(exc):
            raise
        current = organisation(await api(request, viewer, "GET",
                                         f"/organisations/view/{org_path(key)}"))
        return await _form(request, viewer, {**current, **body}, creating=False,
                           errors=exc.field_errors, message=exc.message,
                           status_code=exc.status)
    return redirect(f"/organisations/view/{org_path(saved.get('id'))}",
                    flash="The organisation has been saved.")


@router.post("/admin/organisations/logo/{key}")
async def logo(request: Request, key: str) -> Response:
    """The edit page's logo form: a PNG uploaded (multipart) or the logo removed."""
    viewer = await viewer_of(request)
    target = f"/admin/organisations/edit/{org_path(key)}"
    try:
        posted = await read_multipart(request)
    except NotMultipart:
        form = await posted_form(request, viewer)  # the remove button: a plain form
        api_path = f"/api/v1/orgs/organisations/{org_path(key)}/logo"
        if not form.flag("remove"):
            return redirect(target, flash="Choose a PNG file to upload.", kind="error")
        await api(request, viewer, "DELETE", api_path)
        return redirect(target, flash="The logo has been removed.")
    check_csrf(viewer, posted.form.get(CSRF_FIELD))
    upload = posted.files.get(LOGO_FIELD)
    if upload is None or not upload.data:
        return redirect(target, flash="Choose a PNG file to upload.", kind="error")
    try:
        await api(request, viewer, "POST", f"/api/v1/orgs/organisations/{org_path(key)}/logo",
                  content=upload.data)
    except ApiError as exc:
        if exc.status in (401, 403, 404) or exc.status >= 500:
            raise
        return redirect(target, flash=f"The logo was refused: {exc.message}", kind="error")
    return redirect(target, flash="The logo has been saved.")


# ---- delete and merge -------------------------------------------------------------------------


@router.get("/admin/organisations/delete/{key}")
async def delete_form(request: Request, key: str) -> Response:
    viewer, org = await _admin_and_org(request, key)
    return render(request, "orgs/confirm.html", viewer=viewer, title="Delete organisation",
                  question=f"Delete the organisation {org.get('name', '')}?",
                  detail="An organisation that still has users cannot be deleted: move them "
                         "first, or merge the organisation into another one.",
                  action=f"/admin/organisations/delete/{org_path(org.get('id'))}",
                  button="Delete", danger=True,
                  back=f"/organisations/view/{org_path(org.get('id'))}")


@router.post("/admin/organisations/delete/{key}")
async def delete(request: Request, key: str) -> Response:
    viewer = await viewer_of(request)
    await posted_form(request, viewer)
    try:
        answer = await api(request, viewer, "POST",
                           f"/admin/organisations/delete/{org_path(key)}")
    except ApiError as exc:
        if not shown_as_flash(exc):
            raise
        hint = "" if exc.errors else (" An organisation that has users cannot be deleted: "
                                      "move them, or merge it into another one.")
        return redirect(f"/organisations/view/{org_path(key)}", kind="error",
                        flash=f"{refusal(exc)}.{hint}")
    message = answer.get("message") if isinstance(answer, dict) else None
    return redirect("/organisations/index", flash=str(message or "Organisation deleted."))


async def _choices(request: Request, viewer: Viewer, scope: str, search: str,
                   source_id: int) -> list[dict[str, Any]]:
    path = f"/organisations/index/scope:{scope}"
    if search.strip():
        path += f"/searchall:{quote(search.strip().replace('/', ' '), safe='')}"
    body = await api(request, viewer, "GET", f"{path}/limit:{MERGE_CHOICES}")
    return [row["Organisation"] for row in records(body, "Organisation")
            if str(row["Organisation"].get("id")) != str(source_id)]


async def _merge_form(request: Request, viewer: Viewer, source: dict[str, Any], *,
                      values: dict[str, str], errors: dict[str, str] | None = None,
                      message: str | None = None, status_code: int = 200) -> Response:
    search = values.get("search", "")
    source_id = int(source.get("id") or 0)
    return render(request, "orgs/merge.html", viewer=viewer, source=source, values=values,
                  local=await _choices(request, viewer, "local", search, source_id),
                  external=await _choices(request, viewer, "external", search, source_id),
                  target_types=TARGET_TYPES, errors=errors or {}, message=message,
                  status_code=status_code, title=f"Merge {source.get('name', '')}")


@router.get("/admin/organisations/merge/{key}")
async def merge_form(request: Request, key: str) -> Response:
    viewer, source = await _admin_and_org(request, key)
    values = {"search": request.query_params.get("search", ""),
              "targetType": request.query_params.get("targetType", "local")}
    return await _merge_form(request, viewer, source, values=values)


def merge_target(form: Form) -> tuple[str, str | None]:
    """(target type, the chosen organisation's id, or the new one's name), as the form says;
    (type, None) when nothing was chosen."""
    kind = form["targetType"] if form["targetType"] in TARGET_TYPES else "local"
    if kind == "new":
        name = form.text("new_name")
        return kind, name or None
    chosen = form.text("orgsExternal" if kind == "external" else "orgsLocal")
    return kind, chosen or None


@router.post("/admin/organisations/merge/{key}")
async def merge(request: Request, key: str) -> Response:
    """MISP's merge dialog: choose the target, confirm, then the API merges (the source's users
    move to the target, the source is deleted) and the answer is shown on the target's page."""
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    source = organisation(await api(request, viewer, "GET",
                                    f"/organisations/view/{org_path(key)}"))
    kind, chosen = merge_target(form)
    values = {name: form[name] for name in ("targetType", "orgsLocal", "orgsExternal",
                                            "new_name", "search")}
    if chosen is None:
        field = {"new": "new_name", "external": "orgsExternal"}.get(kind, "orgsLocal")
        return await _merge_form(request, viewer, source, values=values, status_code=400,
                                 errors={field: "Choose the organisation to merge into."})
    target: dict[str, Any] = {"name": chosen}
    if kind != "new":
        target = organisation(await api(request, viewer, "GET",
                                        f"/organisations/view/{org_path(chosen)}"))
    if not form.flag("confirmed"):
        return render(request, "orgs/merge_confirm.html", viewer=viewer, source=source,
                      target=target, kind=kind, values=values,
                      title=f"Merge {source.get('name', '')}")
    if kind == "new":
        try:
            target = organisation(await api(
                request, viewer, "POST", "/admin/organisations/add",
                json={"Organisation": {"name": chosen, "local": True}}))
        except ApiError as exc:
            if not refused_form(exc):
                raise
            errors = {"new_name": exc.field_errors.get("name", exc.message)}
            return await _merge_form(request, viewer, source, values=values, errors=errors,
                                     message=exc.message, status_code=exc.status)
    try:
        answer = await api(request, viewer, "POST",
                           f"/admin/organisations/merge/{org_path(source.get('id'))}",
                           json={"target_id": target.get("id")})
    except ApiError as exc:
        if not refused_form(exc):
            raise
        return await _merge_form(request, viewer, source, values=values,
                                 errors=exc.field_errors, message=exc.message,
                                 status_code=exc.status)
    return redirect(f"/organisations/view/{org_path(target.get('id'))}",
                    flash=await merge_report(request, viewer, answer))


async def merge_report(request: Request, viewer: Viewer, answer: Any) -> str:
    """The API's answer for people: its message, and the users moved once it completed."""
    body = answer if isinstance(answer, dict) else {}
    text = str(body.get("message") or "Organisation merge started.")
    status = str(body.get("status") or "")
    merge_id = body.get("merge_id")
    if merge_id:
        try:
            state = await api(request, viewer, "GET",
                              f"/api/v1/orgs/merges/{quote(str(merge_id), safe='')}")
        except ApiError:
            state = None
        merge = state.get("Merge") if isinstance(state, dict) else None
        if isinstance(merge, dict):
            status = str(merge.get("status") or status)
            if status == "completed":
                moved = merge.get("users_moved") or 0
                text += f" {moved} user{'s' if str(moved) != '1' else ''} moved."
    if status and status != "completed":
        text += f" Status: {status} (the users are being moved)."
    return text
