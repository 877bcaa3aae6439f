"""One module finds the client's address (issue 15, item 3): misp_platform.client_address reads
the request's peer and its forwarded headers, behind the trusted proxies of the settings. Every
other module of libs/ and services/ takes `client_address(request)` (or the Principal's
`client_ip`): none reads `request.client`, the ASGI scope's `client`, `X-Forwarded-For`,
`X-Real-IP`, `Forwarded` or `X-Forwarded-Proto`, and none turns uvicorn's proxy handling on.
Docstrings and comments may name the headers: the check reads the code (ast)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THE_MODULE = Path("libs/platform/src/misp_platform/client_address.py")

HEADER = re.compile(r"(http_)?(x[-_]forwarded[-_](for|proto|host)|x[-_]real[-_]ip|forwarded)",
                    re.IGNORECASE)
CONNECTIONS = {"request", "req", "websocket", "connection", "conn"}


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def address_reads(source: str, name: str = "<source>") -> list[str]:
    """`line: what` for each place that reads a client address the module should take from
    client_address."""
    tree = ast.parse(source, name)
    docstrings = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        what: str | None = None
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            value = node.value
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if isinstance(text, str) and HEADER.fullmatch(text.strip()):
                what = f"the header {text.strip()!r}"
        elif isinstance(node, ast.Attribute) and node.attr == "client" and (
                isinstance(node.value, ast.Name) and node.value.id in CONNECTIONS):
            what = f"{node.value.id}.client"
        elif isinstance(node, ast.Attribute) and node.attr == "host" and (
                isinstance(node.value, ast.Attribute) and node.value.attr == "client"):
            what = ".client.host"
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and (
                node.slice.value == "client"):
            what = "scope['client']"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                node.func.attr == "get" and node.args and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == "client"):
            what = ".get('client')"
        elif isinstance(node, ast.keyword) and (node.arg == "forwarded_allow_ips" or (
                node.arg == "proxy_headers" and not (isinstance(node.value, ast.Constant)
                                                     and node.value.value is False))):
            what = f"uvicorn's {node.arg}"
        if what is not None:
            found.append(f"{getattr(node, 'lineno', '?')}: {what}")
    return found


def sources() -> list[Path]:
    return sorted(p.relative_to(ROOT) for pattern in ("libs/*/src/**/*.py",
                                                       "services/*/src/**/*.py")
                  for p in ROOT.glob(pattern))


def test_only_the_one_module_reads_the_client_address() -> None:
    paths = sources()
    assert THE_MODULE in paths
    assert address_reads((ROOT / THE_MODULE).read_text()), "the check no longer sees anything"
    found = [f"{path}:{use}" for path in paths if path != THE_MODULE
             for use in address_reads((ROOT / path).read_text(), str(path))]
    assert not found, ("read the client's address with misp_platform.client_address."
                       "client_address(request) instead:\n" + "\n".join(found))


def test_the_check_sees_each_way_of_reading_it() -> None:
    source = '''
"""Docstrings may name X-Forwarded-For."""
def route(request, scope, headers):
    """x-forwarded-for"""
    # X-Real-IP in a comment
    a = request.client.host
    b = headers.get("X-Forwarded-For")
    c = scope["client"]
    d = scope.get("client")
    e = [v for k, v in headers if k == b"x-forwarded-for"]
    f = headers["x-real-ip"], headers.get("forwarded"), headers.get("X-Forwarded-Proto")
    g = websocket.client
    uvicorn.run(app, proxy_headers=True, forwarded_allow_ips="*")
    uvicorn.run(app, proxy_headers=False)
    self.client.get("/x"), settings["client_ip"], "the X-Forwarded-For header is ignored"
'''
    assert sorted(line.split(": ", 1)[1] for line in address_reads(source)) == sorted([
        "request.client", ".client.host", "the header 'X-Forwarded-For'", "scope['client']",
        ".get('client')", "the header 'x-forwarded-for'", "the header 'x-real-ip'",
        "the header 'forwarded'", "the header 'X-Forwarded-Proto'", "websocket.client",
        "uvicorn's proxy_headers", "uvicorn's forwarded_allow_ips"])
