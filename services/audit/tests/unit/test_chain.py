"""The hash chain and signed checkpoints, without a database."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.domain.chain import GENESIS, Entry, Mark, canonical_form, entry_hash, verify_chain
from audit.domain.checkpoint import (
    ChainState,
    make_checkpoint,
    public_raw,
    verify_checkpoints,
)


def chain(n: int) -> list[Entry]:
    out: list[Entry] = []
    prev = GENESIS
    for i in range(1, n + 1):
        e = Entry(id=i, source_event_id=f"e{i}", source_type="t", chain="c", seq=i,
                  prev_hash=prev, hash="", created=datetime(2026, 1, 1, tzinfo=UTC),
                  model="User", model_id=i, action="add", user_id=1, title=f"User ({i})",
                  change="", email="a@b", org="O", description="", ip=None, org_id=1,
                  authkey_id=None, request_id=None, request_type=2, change_json={"a": [1, 2]})
        e = e._replace(hash=entry_hash(e))
        prev = e.hash
        out.append(e)
    return out


def test_an_intact_chain_verifies_and_each_kind_of_damage_is_found() -> None:
    good = chain(5)
    assert verify_chain("c", good).broken is None
    edited = [*good[:2], good[2]._replace(title="x"), *good[3:]]
    assert verify_chain("c", edited).broken.reason == "content does not match its hash"  # type: ignore[union-attr]
    deleted = good[:2] + good[3:]
    assert "missing" in verify_chain("c", deleted).broken.reason  # type: ignore[union-attr]
    swapped = [good[0], good[2], good[1], *good[3:]]
    assert verify_chain("c", swapped).broken is not None


def test_a_rewrite_with_recomputed_hashes_only_fails_against_signed_heads() -> None:
    good = chain(4)
    rewritten: list[Entry] = []
    prev = GENESIS
    for e in good:
        e2 = e._replace(prev_hash=prev, title=e.title + " (forged)")
        e2 = e2._replace(hash=entry_hash(e2))
        prev = e2.hash
        rewritten.append(e2)
    assert verify_chain("c", rewritten).broken is None
    broken = verify_chain("c", rewritten, signed={3: good[2].hash}).broken
    assert broken is not None and "rewritten" in broken.reason


def test_checkpoints_are_signed_linked_and_forged_ones_are_refused() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    states = {"c": ChainState(Mark(3, "a" * 64), Mark(0, GENESIS))}
    one = make_checkpoint(key, number=1, epoch=1, kind="periodic", created_at=now, prev=None,
                          chains=states)
    two = make_checkpoint(key, number=2, epoch=1, kind="periodic", created_at=now,
                          prev=one.hash, chains=states)
    assert verify_checkpoints([one, two], public_raw(key)).problem is None
    forged = make_checkpoint(other, number=2, epoch=1, kind="periodic", created_at=now,
                             prev=one.hash, chains=states)
    assert "signature" in (verify_checkpoints([one, forged], public_raw(key)).problem or "")
    three = make_checkpoint(key, number=3, epoch=1, kind="periodic", created_at=now,
                            prev=two.hash, chains=states)
    assert "missing" in (verify_checkpoints([one, three], public_raw(key)).problem or "")
    report = verify_checkpoints([one], public_raw(key), published=[one, two])
    assert "not in the database" in (report.problem or "")


# The hash is computed by orjson where that gives canonical_form's bytes, by canonical_form
# itself elsewhere: either way the bytes (and the hashes already stored) are the same.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(change_json=JSON_VALUES, title=st.text(), ip=st.none() | st.text())
def test_the_hash_is_that_of_the_canonical_form(change_json: object, title: str,
                                                ip: str | None) -> None:
    e = chain(1)[0]._replace(change_json=change_json, title=title, ip=ip)
    try:
        expected = hashlib.sha256(canonical_form(e).encode("utf-8")).hexdigest()
    except UnicodeEncodeError:  # a lone surrogate: not storable either way
        with pytest.raises(UnicodeEncodeError):
            entry_hash(e)
        return
    assert entry_hash(e) == expected


def test_a_hash_stored_by_the_first_canonical_form_still_verifies() -> None:
    """Pinned: this entry's hash as the first implementation (json.dumps) computed it."""
    e = chain(1)[0]._replace(title="Tést\t\u2028\x7f", change_json={"b": [1, None, True],
                                                                  "a": {"é": "x\u0001"}})
    assert entry_hash(e) == PINNED_HASH


PINNED_HASH = "e89eafdbd046016b8393dcce30c27bc0476168369f6f3d94006e11365eccdbdf"


def test_a_time_is_canonical_in_utc_whatever_its_zone() -> None:
    from datetime import timedelta, timezone
    from zoneinfo import ZoneInfo

    from audit.domain.chain import canonical_time

    moment = datetime(2026, 1, 1, 12, 0, 0, 5, tzinfo=UTC)
    expected = "2026-01-01T12:00:00.000005+00:00"
    for zone in (UTC, ZoneInfo("UTC"), timezone(timedelta(hours=2)), ZoneInfo("Europe/Paris")):
        assert canonical_time(moment.astimezone(zone)) == expected
    assert canonical_time(moment.replace(tzinfo=None)) == expected  # naive: taken as UTC
