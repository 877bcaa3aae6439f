"""How a posted user setting value is read: JSON text decoded as MISP does, and the bytes repr
that PyMISP sends for a dict when orjson is installed (`str(orjson.dumps(value))`)."""

from __future__ import annotations

import orjson
import pytest

from identity.domain.user_settings import MAX_VALUE_BYTES, parse_value


def test_json_text_is_decoded_and_other_text_kept() -> None:
    assert parse_value('{"path": "/x"}') == ({"path": "/x"}, None)
    assert parse_value("plain") == ("plain", None)
    assert parse_value(7) == (7, None)


@pytest.mark.parametrize("value", [{"path": "/events/index"}, ["a", 1],
                                   {"quote": "it's \"here\"", "accent": "é"}])
def test_pymisps_orjson_bytes_repr_reads_back_as_the_value(value: object) -> None:
    assert parse_value(str(orjson.dumps(value))) == (value, None)


@pytest.mark.parametrize("text", ["b'hello'", "b'", "b'1'", "b\"{}\" + 'x'", "bad'"])
def test_a_bytes_repr_without_a_json_object_or_array_is_kept_as_text(text: str) -> None:
    assert parse_value(text) == (text, None)


def test_a_value_too_large_is_refused() -> None:
    value, error = parse_value({"x": "y" * MAX_VALUE_BYTES})
    assert value is None and error is not None
