"""CakePHP URL conventions (`.json` suffix, `key:value` named params, bare controller paths) and
MISP's flat-or-wrapped request bodies.

`MispPathMiddleware` rewrites the request path before routing, so that a route declared as
`/admin/users/index` answers `/admin/users`, `/admin/users.json`, `/admin/users/index.json` and
`/admin/users/index/value:foo/searchorg:2` alike; the named params are in `NamedParams`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Protocol
from urllib.parse import quote, unquote, unquote_plus

from fastapi import Depends, Path, Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from misp_platform.misp.errors import BadRequest, InvalidJSON

# Only these extensions are stripped (Router::parseExtensions); other dots are data
# (`/servers/getSetting/MISP.baseurl`).
EXTENSIONS = ("json", "xml", "csv")
NAMED_SEPARATOR = ":"
_CACHE_LIMIT = 4096


class _HasRoutes(Protocol):
    @property
    def routes(self) -> Sequence[BaseRoute]: ...


def split_path(raw_path: str) -> tuple[str, dict[str, str], str | None]:
    """`(route path, named params, extension)` of a raw (still percent-encoded) URL path.

    The extension is taken off the last segment first (`/logs/index/page:1.json` is page 1), then
    every segment holding a literal `:` becomes a named param (Cake's default, greedy): the key is
    URL-decoded, the value too, with `+` meaning a space (PyMISP turns spaces into `+`). An encoded
    colon (`%3A`) is data, not a separator. A trailing slash is dropped.
    """
    extension: str | None = None
    head, sep, last = raw_path.rpartition("/")
    if sep:
        stem, dot, ext = last.rpartition(".")
        if dot and stem and ext in EXTENSIONS:
            raw_path, extension = f"{head}/{stem}", ext
    named: dict[str, str] = {}
    kept: list[str] = []
    for segment in raw_path.split("/"):
        if NAMED_SEPARATOR in segment:
            key, _, value = segment.partition(NAMED_SEPARATOR)
            if key:
                named[unquote(key)] = unquote_plus(value)
                continue
        kept.append(segment)
    path = "/".join(unquote(s) for s in kept)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    if not path.startswith("/"):
        path = "/" + path
    return path, named, extension


def index_candidate(path: str) -> str | None:
    """`/admin/<c>` or `/<c>` may mean its `index` action; anything longer never does."""
    parts = path.strip("/").split("/")
    if (len(parts) == 1 and parts[0]) or (len(parts) == 2 and parts[0] == "admin" and parts[1]):
        return path + "/index"
    return None


class MispPathMiddleware:
    """Pure ASGI: strip `.json`/`.xml`/`.csv`, lift named params, map `/admin/users` to its index.

    The index rule: a path of one segment, or two under `/admin/`, that no route matches is sent to
    `<path>/index` when a route matches that (decisions are cached per path). HEAD is served by
    the GET route, without a body. Sets in
    `scope["state"]`: `named_params` (dict), `original_path` (what the client asked for, used in
    error bodies as MISP's `url`), `url_extension` (`"json"` or None).
    """

    def __init__(self, app: ASGIApp, router: _HasRoutes | None = None, *,
                 head_as_get: bool = True) -> None:
        self.app = app
        self.router = router
        self.head_as_get = head_as_get
        self._index_cache: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        original = scope["path"]
        raw = scope.get("raw_path")
        raw_text = (raw.decode("latin-1").split("?", 1)[0] if raw
                    else quote(original, safe="/:@!$&'()*+,;="))
        path, named, extension = split_path(raw_text)
        if self.router is not None:
            path = self._with_index(path)
        state = scope.setdefault("state", {})
        state["named_params"] = named
        state["original_path"] = original
        state["url_extension"] = extension
        if path != original:
            scope["path"] = path
            scope["raw_path"] = quote(path).encode("latin-1")
        if scope.get("method") == "HEAD" and self.head_as_get:
            await self._head(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _head(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HEAD is GET without the body (FastAPI routes do not answer HEAD on their own).

        The server's scope keeps "HEAD" (it must not send a body); routing sees a copy with
        "GET", whose match is copied back for the metrics."""
        inner = dict(scope)
        inner["method"] = "GET"
        inner["state"]["original_method"] = "HEAD"

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {"type": "http.response.body", "body": b"",
                           "more_body": message.get("more_body", False)}
            await send(message)

        try:
            await self.app(inner, receive, send_headers_only)
        finally:
            for key in ("route", "fastapi", "endpoint", "path_params"):
                if key in inner:
                    scope[key] = inner[key]

    def _with_index(self, path: str) -> str:
        candidate = index_candidate(path)
        if candidate is None:
            return path
        cached = self._index_cache.get(path)
        if cached is not None:
            return cached
        result = candidate if (not self._matches(path) and self._matches(candidate)) else path
        if len(self._index_cache) >= _CACHE_LIMIT:
            self._index_cache.clear()
        self._index_cache[path] = result
        return result

    def _matches(self, path: str) -> bool:
        assert self.router is not None
        for route in self.router.routes:
            probe: Scope = {"type": "http", "path": path, "root_path": "", "method": "GET",
                            "headers": [], "query_string": b""}
            match, _ = route.matches(probe)
            if match is not Match.NONE:
                return True
        return False


async def get_named_params(request: Request) -> dict[str, str]:
    state = request.scope.get("state") or {}
    named = state.get("named_params")
    return named if isinstance(named, dict) else {}


NamedParams = Annotated[dict[str, str], Depends(get_named_params)]

# An integer id in a path: out of range is "not found" (404), never a database overflow (500).
MispId = Annotated[int, Path(ge=0, le=2**63 - 1)]


def unwrap(data: Any, model_name: str | None = None) -> dict[str, Any]:
    """A body as its fields: `{"request": {...}}` and `{"<Model>": {...}}` wrappers are removed.

    Like MISP, a `<Model>` key wins over sibling keys; an empty list (PHP's empty array) is `{}`.
    """
    if data is None or data == [] or data == "":
        return {}
    if not isinstance(data, dict):
        raise BadRequest("Invalid request body: a JSON object is expected.")
    inner = data.get("request")
    if isinstance(inner, dict):
        data = inner
    if model_name is not None:
        wrapped = data.get(model_name)
        if isinstance(wrapped, dict):
            data = wrapped
    return dict(data)


async def read_body(request: Request, model_name: str | None = None) -> dict[str, Any]:
    """The request's JSON object, flat or wrapped; `{}` for no body; 405 for malformed JSON."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJSON() from exc
    return unwrap(data, model_name)
