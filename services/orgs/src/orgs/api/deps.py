"""The orgs routes' dependencies: the unit of work a command runs in (`UowDep`), made per request
by the factory the composition root put in `app.state.unit_of_work` (bootstrap.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from orgs.adapters.ports import UnitOfWork


async def get_uow(request: Request) -> UnitOfWork:
    new: Callable[[], UnitOfWork] | None = getattr(request.app.state, "unit_of_work", None)
    if new is None:
        raise RuntimeError("no unit of work: bootstrap wires it in the app's lifespan")
    return new()


UowDep = Annotated[UnitOfWork, Depends(get_uow)]
