"""The blocklist, regexp and allowlist indexes page as every MISP index does
(misp_platform.misp.paging): `page`/`limit` as named params or in the query, in id order, after
the blocklists' filters (which run in SQL); bad values are ignored (page 1, no limit) and no
limit means every row up to MISP_INDEX_MAX_ROWS."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from ..conftest import Keys

HUGE = "9" * 20


async def get(client: httpx.AsyncClient, key: str, path: str) -> list[Any]:
    response = await client.get(path, headers={"Authorization": key, "Accept": "application/json"})
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_blocklist_indexes_page_after_their_filters(client: httpx.AsyncClient,
                                                          keys: Keys) -> None:
    admin = keys["site_admin"]
    headers = {"Authorization": admin, "Accept": "application/json"}
    marker = uuid.uuid4().hex[:8]
    for i in range(5):
        added = await client.post("/eventBlocklists/add", headers=headers, json={
            "uuids": [str(uuid.uuid4())], "comment": f"paged {marker}", "event_info": f"e{i}"})
        assert added.status_code == 200, added.text
    await client.post("/eventBlocklists/add", headers=headers,
                      json={"uuids": [str(uuid.uuid4())], "comment": "other"})
    base = f"/eventBlocklists/index/comment:{marker}"
    every = [e["id"] for e in await get(client, admin, base)]
    assert len(every) == 5 and every == sorted(every, key=int)
    assert [e["event_info"] for e in await get(client, admin, base)] == [f"e{i}" for i in range(5)]

    async def ids(path: str) -> list[str]:
        return [e["id"] for e in await get(client, admin, path)]

    assert await ids(f"{base}/page:1/limit:2") == every[:2]
    assert await ids(f"{base}/page:2/limit:2.json") == every[2:4]
    assert await ids(f"{base}?page=3&limit=2") == every[4:]
    assert await ids(f"{base}/page:4/limit:2") == []
    assert await ids(f"/eventBlocklists/index/searchall:{marker}/page:2/limit:3") == every[3:]
    assert await ids(f"{base}/page:\u00b2/limit:2") == every[:2]
    assert await ids(f"{base}/page:2/limit:-1") == every

    for i in range(3):
        await client.post("/orgBlocklists/add", headers=headers, json={
            "uuids": [str(uuid.uuid4())], "org_name": f"Org {marker} {i}"})
    org_base = f"/orgBlocklists/index/org_name:{marker}"
    orgs = [e["org_name"] for e in await get(client, admin, org_base)]
    assert orgs == [f"Org {marker} {i}" for i in range(3)]
    assert [e["org_name"] for e in await get(client, admin, f"{org_base}/page:2/limit:2")] \
        == orgs[2:]


async def test_regexp_and_allowlist_indexes_page(client: httpx.AsyncClient, keys: Keys,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    who = keys["regexp"]
    every = [r["Regexp"]["id"] for r in await get(client, who, "/admin/regexp/index")]
    assert len(every) == 29 and every == sorted(every, key=int)

    async def regexps(path: str) -> list[str]:
        return [r["Regexp"]["id"] for r in await get(client, who, path)]

    assert await regexps("/admin/regexp/index/page:2/limit:10") == every[10:20]
    assert await regexps("/admin/regexp/index?page=3&limit=10") == every[20:]
    assert await regexps("/admin/regexp/index/page:4/limit:10") == []
    assert await regexps(f"/admin/regexp/index/page:{HUGE}/limit:10") == every[:10]
    assert await regexps(f"/admin/regexp/index/limit:{HUGE}") == every

    headers = {"Authorization": who, "Accept": "application/json"}
    for i in range(3):
        added = await client.post("/admin/allowedlists/add", headers=headers,
                                  json={"name": f"/paged{i}-{uuid.uuid4().hex[:6]}/"})
        assert added.status_code == 200, added.text
    names = [e["Allowedlist"]["name"] for e in await get(client, who, "/admin/allowedlists/index")]
    assert len(names) == 3
    for key, path in ((who, "/admin/allowedlists/index"), (keys["user"], "/allowedlists/index")):
        page = await get(client, key, f"{path}/page:2/limit:2")
        assert [e["Allowedlist"]["name"] for e in page] == names[2:]
    monkeypatch.setenv("MISP_INDEX_MAX_ROWS", "4")
    assert await regexps("/admin/regexp/index") == every[:4]
    assert await regexps("/admin/regexp/index/page:2/limit:100") == every[4:8]
