"""multipart/form-data bodies (a form with a file, such as an organisation's logo), bounded
before they are parsed. The standard library's MIME parser does the parsing: no dependency."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP

from starlette.requests import Request

from console.forms import Form, read_bounded

MAX_MULTIPART_BYTES = 1024 * 1024
MAX_PARTS = 50


class NotMultipart(Exception):
    """The body is not multipart/form-data (or has no boundary)."""


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass
class MultipartForm:
    """The text fields (as a Form: `form["name"]`, the CSRF field) and the files by field name
    (an empty file input sends a part with no filename: it is left out)."""

    form: Form
    files: dict[str, Upload] = field(default_factory=dict)


def is_multipart(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "multipart/form-data" and "boundary=" in content_type


def parse_multipart(content_type: str, body: bytes) -> MultipartForm:
    """The fields and files of a multipart/form-data body with this Content-Type header."""
    if not is_multipart(content_type):
        raise NotMultipart()
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise NotMultipart()
    pairs: list[tuple[str, str]] = []
    files: dict[str, Upload] = {}
    parts = message.get_payload()
    assert isinstance(parts, list)
    for part in parts[:MAX_PARTS]:
        if not isinstance(part, Message):
            continue
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        data = part.get_payload(decode=True)
        raw = data if isinstance(data, bytes) else b""
        filename = part.get_param("filename", header="content-disposition")
        if filename is None:
            pairs.append((name, raw.decode("utf-8", "replace")))
        elif isinstance(filename, str) and filename:
            files[name] = Upload(filename=filename, content_type=part.get_content_type(),
                                 data=raw)
    return MultipartForm(Form(pairs), files)


async def read_multipart(request: Request, max_bytes: int = MAX_MULTIPART_BYTES) -> MultipartForm:
    """The posted multipart form, refusing a body over `max_bytes` before parsing it.
    NotMultipart, the body left unread, when the request is no multipart form."""
    content_type = request.headers.get("content-type", "")
    if not is_multipart(content_type):
        raise NotMultipart()
    return parse_multipart(content_type, await read_bounded(request, max_bytes))
