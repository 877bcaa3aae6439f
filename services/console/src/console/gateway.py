"""MISP's REST API, called through the gateway as the browser's user.

The console forwards what makes a call the user's own: the session cookie, the CSRF token of an
unsafe call, and the browser's address (X-Forwarded-For, which the gateway and the services
believe from a trusted proxy, so that the login limits and the audit log see the browser, not the
console). It keeps no cookie of its own: the client's jar refuses every cookie, so no answer to
one user can leak into the next user's call.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
from starlette.requests import Request

from misp_platform.client_address import forwarding_headers

SESSION_COOKIE = "MISP-session"
CSRF_HEADER = "X-CSRF-Token"


class ApiError(Exception):
    """A 4xx or 5xx answer of the API, with MISP's message and field errors."""

    def __init__(self, status: int, message: str, errors: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    @property
    def field_errors(self) -> dict[str, str]:
        """MISP's `errors` as one message per field (`{"email": ["..."]}` or nested)."""
        found: dict[str, str] = {}

        def walk(value: Any, name: str | None) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    walk(inner, str(key))
            elif isinstance(value, list | tuple):
                for inner in value:
                    walk(inner, name)
            elif value is not None and name is not None:
                found.setdefault(name, str(value))

        walk(self.errors, None)
        return found


def _message_of(status: int, body: Any) -> tuple[str, Any]:
    if isinstance(body, dict):
        errors = body.get("errors")
        message = body.get("message") or body.get("name")
        if isinstance(errors, str) and not message:
            message = errors
        return str(message or f"HTTP {status}"), errors
    return f"HTTP {status}", None


@dataclass
class Answer:
    status: int
    body: Any
    headers: httpx.Headers
    cookies: dict[str, str] = field(default_factory=dict)


def _refuse_all_cookies() -> httpx.Cookies:
    return httpx.Cookies(CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))


def trusting(ca: str) -> ssl.SSLContext:
    """A client context that trusts the certificates of the PEM file `ca`, each as an anchor of
    its own (a partial chain): the gateway's own certificate, self-signed or not, is enough.
    Hostnames and validity are checked as always."""
    context = ssl.create_default_context(cafile=ca)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


class Gateway:
    """One pooled client for the process; every call names the browser request it serves.

    `tls_name`: the name the gateway's certificate is for, when the URL's host is not it (in
    containers the URL is https://gateway:8443, the certificate the operator's, for the name
    clients use): the handshake sends it as SNI and verifies the certificate against it."""

    def __init__(self, base_url: str, *, timeout_s: float, ca: str | None = None,
                 tls_name: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s, cookies=_refuse_all_cookies(),
            verify=trusting(ca) if ca else True, transport=transport, follow_redirects=False)
        self._extensions: dict[str, Any] = {"sni_hostname": tls_name} if tls_name else {}

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self, request: Request, *, session: str | None, csrf: str | None,
                 cookies: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        token = session if session is not None else request.cookies.get(SESSION_COOKIE)
        sent = {SESSION_COOKIE: token} if token else {}
        sent.update(cookies or {})
        if sent:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in sent.items())
        if csrf:
            headers[CSRF_HEADER] = csrf
        headers.update(forwarding_headers(request))
        request_id = (request.scope.get("state") or {}).get("request_id")
        if isinstance(request_id, str):
            headers["X-Request-ID"] = request_id
        agent = request.headers.get("user-agent")
        if agent:
            headers["User-Agent"] = agent[:512]
        return headers

    async def send(self, request: Request, method: str, path: str, *, json: Any = None,
                   params: dict[str, Any] | None = None, csrf: str | None = None,
                   session: str | None = None, content: bytes | None = None,
                   cookies: dict[str, str] | None = None) -> Answer:
        """The API's answer, whatever its status. `content`: a raw body (a file) instead of
        JSON, sent as application/octet-stream; `cookies`: others than the session's (a
        pending login's)."""
        headers = self._headers(request, session=session, csrf=csrf, cookies=cookies)
        if content is not None:
            headers["Content-Type"] = "application/octet-stream"
        answer = await self._client.request(
            method, path, json=json, params=params, content=content, headers=headers,
            extensions=self._extensions)
        try:
            body = answer.json() if answer.content else None
        except ValueError:
            body = answer.text
        cookies = {}
        for header in answer.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            cookies[name.strip()] = rest.split(";", 1)[0]
        return Answer(answer.status_code, body, answer.headers, cookies)

    async def call(self, request: Request, method: str, path: str, *, json: Any = None,
                   params: dict[str, Any] | None = None, csrf: str | None = None,
                   content: bytes | None = None) -> Any:
        """The body of a 2xx answer; otherwise ApiError with MISP's message."""
        answer = await self.send(request, method, path, json=json, params=params, csrf=csrf,
                                 content=content)
        if answer.status >= 400:
            message, errors = _message_of(answer.status, answer.body)
            raise ApiError(answer.status, message, errors)
        return answer.body

    async def get(self, request: Request, path: str, **params: Any) -> Any:
        return await self.call(request, "GET", path, params=params or None)
