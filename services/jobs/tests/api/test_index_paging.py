"""jobs/index and tasks/index page as MISP does: `page`/`limit` as named params or in the query,
bad values ignored (page 1, no limit), every row up to MISP_INDEX_MAX_ROWS without a limit."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.handlers.tasks import seed_tasks

from ..support import auth

HUGE = "9" * 20


async def ids(client: httpx.AsyncClient, key: str, path: str, model: str) -> list[str]:
    response = await client.get(path, headers=auth(key))
    assert response.status_code == 200, response.text
    return [r[model]["id"] for r in response.json()]


async def test_the_job_index_pages(client: httpx.AsyncClient, admin_key: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(5):
        added = await client.post("/api/v1/jobs/jobs", json={"job_type": "noop"},
                                  headers=auth(admin_key))
        assert added.status_code == 200, added.text
    every = await ids(client, admin_key, "/jobs/index", "Job")
    assert len(every) == 5 and every == sorted(every, key=int, reverse=True)  # id DESC, 20 a page
    assert await ids(client, admin_key, "/jobs/index/page:1/limit:2", "Job") == every[:2]
    assert await ids(client, admin_key, "/jobs/index/page:2/limit:2.json", "Job") == every[2:4]
    assert await ids(client, admin_key, "/jobs/index?page=3&limit=2", "Job") == every[4:]
    assert await ids(client, admin_key, "/jobs/index/page:4/limit:2", "Job") == []
    assert await ids(client, admin_key, "/jobs/index/default/page:2/limit:3", "Job") == every[3:]
    for bad in ("page:\u00b2/limit:2", f"page:{HUGE}/limit:2", "page:-1/limit:2"):
        assert await ids(client, admin_key, f"/jobs/index/{bad}", "Job") == every[:2], bad
    assert await ids(client, admin_key, "/jobs/index/page:2/limit:0", "Job") == []  # 20 a page
    for bad in ("limit:-1", f"limit:{HUGE}", "limit:\u00b2", "limit:0"):
        assert await ids(client, admin_key, f"/jobs/index/{bad}", "Job") == every, bad
    monkeypatch.setenv("MISP_INDEX_MAX_ROWS", "3")
    assert await ids(client, admin_key, "/jobs/index/limit:50", "Job") == every[:3]
    assert await ids(client, admin_key, "/jobs/index/page:2/limit:50", "Job") == every[3:]


async def test_the_task_index_pages(client: httpx.AsyncClient, admin_key: str,
                                    jobs_engine: AsyncEngine,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    async with jobs_engine.begin() as conn:
        await seed_tasks(conn)
    every = await ids(client, admin_key, "/tasks/index", "Task")
    assert len(every) >= 3 and every == sorted(every, key=int)
    assert await ids(client, admin_key, "/tasks/index/page:2/limit:1", "Task") == every[1:2]
    assert await ids(client, admin_key, "/tasks/index?page=2&limit=2", "Task") == every[2:4]
    last = -(-len(every) // 2)
    assert await ids(client, admin_key, f"/tasks/index/page:{last}/limit:2", "Task") \
        == every[(last - 1) * 2:]
    assert await ids(client, admin_key, f"/tasks/index/page:{last + 1}/limit:2", "Task") == []
    assert await ids(client, admin_key, "/tasks/index/page:\u00b2/limit:1", "Task") == every[:1]
    assert await ids(client, admin_key, f"/tasks/index/limit:{HUGE}", "Task") == every
    monkeypatch.setenv("MISP_INDEX_MAX_ROWS", "2")
    assert await ids(client, admin_key, "/tasks/index", "Task") == every[:2]
