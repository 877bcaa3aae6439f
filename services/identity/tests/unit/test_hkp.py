"""The HKP client's reading of a key server: the machine-readable index, 404s, errors and the
bound on an answer's size (over httpx's mock transport; gpg is not involved here)."""

from __future__ import annotations

import httpx
import pytest

from identity.adapters import hkp

NOW = 1_700_000_000
INDEX = (
    "info:1:4\n"
    "pub:AAAA0000AAAA0000AAAA0000AAAA0000AAAA1111:22:256:1600000000::\n"
    "uid:First%20%3Cfirst%40example.test%3E:1600000000::\n"
    "uid:Last%20%3Clast%40example.test%3E:1600000000::\n"
    "pub:BBBB0000BBBB0000BBBB0000BBBB0000BBBB2222:22:256:1600000000:1650000000:\n"
    "uid:Expired%20%3Ce%40example.test%3E:1600000000::\n"
    "pub:CCCC0000CCCC0000CCCC0000CCCC0000CCCC3333:22:256:1600000000::r\n"
    "uid:Revoked%20%3Cr%40example.test%3E:1600000000::\n"
    "pub:dddd0000dddd0000dddd0000dddd0000dddd4444:1:4096:1600000000:1800000000:\n"
    "uid:Later%20%3Cl%40example.test%3E:1600000000::\n"
)


def test_the_index_keeps_current_keys_with_their_last_uid() -> None:
    found = hkp.parse_index(INDEX, now=NOW)
    assert found == [
        hkp.Candidate("AAAA0000AAAA0000AAAA0000AAAA0000AAAA1111", 1600000000,
                      "Last <last@example.test>"),
        hkp.Candidate("DDDD0000DDDD0000DDDD0000DDDD0000DDDD4444", 1600000000,
                      "Later <l@example.test>"),
    ]


def test_an_empty_or_odd_index_has_no_candidates() -> None:
    assert hkp.parse_index("", now=NOW) == []
    assert hkp.parse_index("<html>not an index</html>\nuid:x:1::\n", now=NOW) == []


def _transport(status: int, body: bytes) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.params["options"] == "mr"
        return httpx.Response(status, content=body)
    return httpx.MockTransport(answer)


async def test_a_404_is_no_key_and_an_error_names_the_url_and_status() -> None:
    assert await hkp.lookup("http://ks.test/", op="get", search="0xAB",
                            transport=_transport(404, b"")) is None
    with pytest.raises(hkp.KeyServerError) as error:
        await hkp.lookup("http://ks.test", op="get", search="0xAB",
                         transport=_transport(500, b"boom"))
    assert str(error.value) == ("Fetching the 'http://ks.test/pks/lookup?op=get&options=mr"
                                "&search=0xAB' failed with HTTP error 500: "
                                "Internal Server Error")


async def test_an_answer_over_the_bound_is_refused() -> None:
    with pytest.raises(hkp.KeyServerError, match="larger than"):
        await hkp.lookup("http://ks.test", op="get", search="0xAB",
                         transport=_transport(200, b"x" * (hkp.MAX_BYTES + 1)))
