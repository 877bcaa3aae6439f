"""The console's home: the administration screens the viewer's role may open."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.pages.common import viewer_of
from console.web import render

router = APIRouter(include_in_schema=False)


@router.get("/")
async def home(request: Request) -> Response:
    viewer = await viewer_of(request)
    return render(request, "home.html", viewer=viewer)
