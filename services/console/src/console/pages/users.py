"""Users: MISP's "List Users" (admin/users/index, with its filters and search)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.pages.common import api, page_number, records, viewer_of
from console.web import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
# The index's filters, as MISP names them (named parameters of admin/users/index).
USER_FILTERS = ("value", "searchemail", "searchorg", "searchrole", "disabled", "searchinactive")


def named(values: dict[str, str]) -> str:
    """`/value:foo/searchorg:2` from the filters that are set (MISP's named parameters)."""
    parts = []
    for key, value in values.items():
        text = value.strip()
        if text:
            parts.append(f"/{key}:{text.replace('/', ' ')}")
    return "".join(parts)


@router.get("/admin/users/index")
@router.get("/admin/users")
async def index(request: Request) -> Response:
    viewer = await viewer_of(request)
    filters = {key: request.query_params.get(key, "") for key in USER_FILTERS}
    page = page_number(request)
    body = await api(request, viewer, "GET",
                     f"/admin/users/index{named(filters)}/page:{page}/limit:{PAGE_SIZE}")
    users = records(body, "User")
    return render(request, "users/index.html", viewer=viewer, users=users, filters=filters,
                  page=page, has_next=len(users) == PAGE_SIZE)
