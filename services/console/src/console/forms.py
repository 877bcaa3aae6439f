"""HTML form bodies (application/x-www-form-urlencoded), bounded before they are parsed."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

MAX_FORM_BYTES = 256 * 1024
CSRF_FIELD = "_csrf"


class FormTooLarge(Exception):
    pass


class Form:
    """A posted form: `form["email"]` (the last value, "" when absent), `form.all("role")`,
    `form.flag("disabled")` (a checkbox)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def __getitem__(self, name: str) -> str:
        return self.get(name) or ""

    def get(self, name: str) -> str | None:
        found = None
        for key, value in self._pairs:
            if key == name:
                found = value
        return found

    def all(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]

    def flag(self, name: str) -> bool:
        return (self.get(name) or "").lower() in ("1", "on", "true", "yes")

    def text(self, name: str) -> str:
        return self[name].strip()

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._pairs)


async def read_bounded(request: Request, max_bytes: int) -> bytes:
    """The request's body, FormTooLarge past `max_bytes` (before reading it all)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise FormTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request) -> Form:
    raw = (await read_bounded(request, MAX_FORM_BYTES)).decode("utf-8", "replace")
    return Form(parse_qsl(raw, keep_blank_values=True, max_num_fields=2000))
