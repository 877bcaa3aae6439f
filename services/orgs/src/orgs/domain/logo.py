"""Logo checks by content: a PNG signature, a well-formed IHDR, an IEND, and the limits."""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

from orgs.domain.errors import InvalidLogoError, LogoTooLargeError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RECOMMENDED_SIZE = 48
# PNG's (colour type: allowed bit depths), from the specification's IHDR table.
_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}


@dataclass(frozen=True)
class Logo:
    data: bytes
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def check_png(data: bytes, *, max_bytes: int, max_width: int, max_height: int) -> Logo:
    """The logo if `data` is a PNG within the limits; InvalidLogoError saying why otherwise."""
    if not data:
        raise InvalidLogoError("No logo was uploaded.")
    if len(data) > max_bytes:
        raise LogoTooLargeError(f"The logo is too large: {len(data)} bytes, at most {max_bytes}.")
    if not data.startswith(PNG_SIGNATURE):
        raise InvalidLogoError("The logo must be a PNG image.")
    header = data[8:33]
    if len(header) < 25 or header[4:8] != b"IHDR" or struct.unpack(">I", header[:4])[0] != 13:
        raise InvalidLogoError("The logo is not a valid PNG image (no IHDR header).")
    fields = header[8:21]
    (crc,) = struct.unpack(">I", header[21:25])
    if zlib.crc32(b"IHDR" + fields) & 0xFFFFFFFF != crc:
        raise InvalidLogoError("The logo is not a valid PNG image (damaged IHDR header).")
    width, height, depth, colour, compression, filter_, interlace = struct.unpack(
        ">IIBBBBB", fields)
    if (width == 0 or height == 0 or depth not in _DEPTHS.get(colour, ())
            or compression != 0 or filter_ != 0 or interlace not in (0, 1)):
        raise InvalidLogoError("The logo is not a valid PNG image (bad IHDR values).")
    if not data.endswith(b"IEND\xaeB`\x82"):
        raise InvalidLogoError("The logo is not a valid PNG image (truncated).")
    if width > max_width or height > max_height:
        raise InvalidLogoError(
            f"The logo is {width}x{height} pixels, at most {max_width}x{max_height} is allowed "
            f"({RECOMMENDED_SIZE}x{RECOMMENDED_SIZE} is recommended).")
    return Logo(data=data, width=width, height=height)
