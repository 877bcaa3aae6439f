"""`attributes/describeTypes.json`: MISP's attribute type catalogue, which PyMISP's constructor
reads. The data is `data/describe_types.json`, generated at build time from pymisp's own copy
(see `scripts/generate_describe_types.py`); pymisp is never imported at runtime."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from fastapi import APIRouter

from misp_platform.auth import CurrentPrincipal

router = APIRouter(tags=["attributes"])


@lru_cache(maxsize=1)
def describe_types() -> dict[str, Any]:
    raw = (resources.files("settings") / "data" / "describe_types.json").read_text("utf-8")
    result: dict[str, Any] = json.loads(raw)["result"]
    return {"result": result}


@router.get("/attributes/describeTypes")
async def get_describe_types(_principal: CurrentPrincipal) -> dict[str, Any]:
    return describe_types()
