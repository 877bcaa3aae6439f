"""The paths every service serves, read from their OpenAPI documents (for MISP's queryACL)."""

from __future__ import annotations

import asyncio

import httpx


class ServiceRoutesUnavailableError(Exception):
    """A service's OpenAPI document could not be read: its functions would go unlisted."""


async def _paths(client: httpx.AsyncClient, name: str, url: str) -> list[str]:
    try:
        response = await client.get(url)
        response.raise_for_status()
        return list(response.json()["paths"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ServiceRoutesUnavailableError(
            f"The routes of {name} could not be read ({type(exc).__name__}).") from exc


async def service_paths(urls: dict[str, str], timeout_s: float) -> dict[str, list[str]]:
    """Each service's path templates, asked concurrently; one unreachable service fails all."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        found = await asyncio.gather(*(_paths(client, n, u) for n, u in sorted(urls.items())))
    return dict(zip(sorted(urls), found, strict=True))
