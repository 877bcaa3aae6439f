"""organisations/index pages as every MISP index does (misp_platform.misp.paging): `page` and
`limit` as named params or in the query, after the search, in name order; bad values are
ignored (page 1, no limit) and no limit means every row up to MISP_INDEX_MAX_ROWS."""

from __future__ import annotations

import httpx
import pytest

from ..support import auth

HUGE = "9" * 20


async def names(client: httpx.AsyncClient, key: str, path: str) -> list[str]:
    response = await client.get(path, headers=auth(key))
    assert response.status_code == 200, response.text
    return [r["Organisation"]["name"] for r in response.json()]


async def test_the_organisation_index_pages(client: httpx.AsyncClient, keys: dict[str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    key = keys["site_admin"]
    for letter in "edcba":
        added = await client.post("/admin/organisations/add", json={"name": f"Paged {letter}"},
                                  headers=auth(key))
        assert added.status_code == 200, added.text
    await client.post("/admin/organisations/add", json={"name": "Other"}, headers=auth(key))
    base = "/organisations/index/scope:all/searchall:Paged"
    every = await names(client, key, base)
    assert every == [f"Paged {c}" for c in "abcde"]
    assert await names(client, key, f"{base}/page:1/limit:2") == every[:2]
    assert await names(client, key, f"{base}/page:2/limit:2.json") == every[2:4]
    assert await names(client, key, f"{base}/page:3/limit:2") == every[4:]
    assert await names(client, key, f"{base}?page=3&limit=2") == every[4:]
    assert await names(client, key, f"{base}/page:4/limit:2") == []
    for bad in ("page:\u00b2/limit:2", f"page:{HUGE}/limit:2", "page:0/limit:2"):
        assert await names(client, key, f"{base}/{bad}") == every[:2], bad
    for bad in ("limit:-1", f"limit:{HUGE}", "limit:\u00b2", "page:2"):
        assert await names(client, key, f"{base}/{bad}") == every, bad
    monkeypatch.setenv("MISP_INDEX_MAX_ROWS", "3")
    assert await names(client, key, base) == every[:3]
    assert await names(client, key, f"{base}/page:2/limit:10") == every[3:]
