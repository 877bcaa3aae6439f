"""Logos: PNG only (checked by content), size and dimension limits, a stable URL per
organisation shown in the index and view, kept across renames, gone with the organisation."""

from __future__ import annotations

import hashlib
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ..support import auth
from ..unit.test_domain import png


async def test_a_png_logo_is_served_at_a_stable_url_survives_renames_and_goes_with_the_org(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine) -> None:
    admin = keys["site_admin"]
    org = (await client.post("/admin/organisations/add", headers=auth(admin),
                             json={"name": f"Logo {uuid.uuid4().hex[:8]}"})).json()["Organisation"]
    assert org["logo_url"] is None
    image = png(48, 48)
    uploaded = await client.post(f"/api/v1/orgs/organisations/{org['uuid']}/logo",
                                 content=image, headers={**auth(admin),
                                                         "Content-Type": "image/png"})
    assert uploaded.status_code == 200, uploaded.text
    url = f"/api/v1/orgs/organisations/{org['id']}/logo.png"
    assert uploaded.json()["Organisation"]["logo_url"] == url

    served = await client.get(url, headers=auth(keys["user"]))
    assert served.status_code == 200 and served.content == image
    assert served.headers["content-type"] == "image/png"
    etag = served.headers["etag"]
    assert etag == f'"{hashlib.sha256(image).hexdigest()}"'
    cached = await client.get(url, headers={**auth(admin), "If-None-Match": etag})
    assert cached.status_code == 304

    renamed = await client.post(f"/admin/organisations/edit/{org['id']}", headers=auth(admin),
                                json={"name": f"Renamed {uuid.uuid4().hex[:8]}"})
    assert renamed.json()["Organisation"]["logo_url"] == url
    assert (await client.get(url, headers=auth(admin))).content == image
    index = (await client.get(
        f"/organisations/index/searchall:{renamed.json()['Organisation']['name']}",
        headers=auth(admin))).json()
    assert index[0]["Organisation"]["logo_url"] == url

    deleted = await client.post(f"/admin/organisations/delete/{org['id']}", headers=auth(admin))
    assert deleted.status_code == 200
    assert (await client.get(url, headers=auth(admin))).status_code == 404
    async with orgs_engine.connect() as conn:
        assert (await conn.execute(text("SELECT logo FROM organisation WHERE id = :id"),
                                   {"id": int(org["id"])})).scalar() is None


async def test_what_is_not_an_acceptable_png_is_refused_and_the_old_logo_stays(
        client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    admin = keys["site_admin"]
    org = (await client.post("/admin/organisations/add", headers=auth(admin),
                             json={"name": f"Logo {uuid.uuid4().hex[:8]}"})).json()["Organisation"]
    path = f"/api/v1/orgs/organisations/{org['id']}/logo"
    good = png(48, 48)
    assert (await client.post(path, content=good, headers=auth(admin))).status_code == 200
    for body, status in ((b"GIF89a" + b"\x00" * 40, 400), (png(2000, 10), 400),
                         (good[:-12], 400), (b"\x89PNG\r\n\x1a\n" + b"\x00" * 300_000, 413),
                         (b"", 400)):
        response = await client.post(path, content=body, headers=auth(admin))
        assert response.status_code == status, response.text
        answer = response.json()
        assert answer["saved"] is False and answer["message"] == "Could not upload Logo"
        assert answer["errors"]["logo"][0]
    assert (await client.get(f"{path}.png", headers=auth(admin))).content == good
    refused = await client.post(path, content=good, headers=auth(keys["org_admin"]))
    assert refused.status_code == 403
    assert (await client.delete(path, headers=auth(admin))).status_code == 200
    assert (await client.get(f"{path}.png", headers=auth(admin))).status_code == 404
    unknown = await client.post("/api/v1/orgs/organisations/987654321/logo", content=good,
                                headers=auth(admin))
    assert unknown.status_code == 404
