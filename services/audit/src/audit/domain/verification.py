"""What a verification covers: the whole log, or only the entries after one signed checkpoint
(whose chain heads are trusted once its signature verifies), its size from the chains' heads,
and the range the API picks when the caller names none. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from audit.domain.chain import START, Mark
from audit.domain.checkpoint import ChainState, Checkpoint
from misp_platform.errors import BadRequestError


class VerifyRangeError(BadRequestError):
    """A range the API cannot verify (no such checkpoint, an older epoch's, too many entries
    for a request): answered 400 with this message."""


def starts_after(since: Checkpoint | None,
                 pruned: Mapping[str, Mark]) -> dict[str, Mark]:
    """Where each chain's walk starts: after `since`'s signed head (the whole chain when
    `since` is None), never before the chain's signed pruned mark."""
    out = dict(pruned)
    if since is not None:
        for chain, head in since.heads.items():
            if head.seq > out.get(chain, START).seq:
                out[chain] = head
    return out


def entries_after(since: Checkpoint | None, states: Mapping[str, ChainState]) -> int:
    """How many entries a walk from `since` reads, by the chains' heads: a chain's seq numbers
    are dense, so its entries after a mark are its head's seq minus the mark's."""
    total = 0
    for chain, state in states.items():
        floor = state.pruned.seq
        if since is not None and chain in since.heads:
            floor = max(floor, since.heads[chain].seq)
        total += max(0, state.head.seq - floor)
    return total


def default_since(newest_first: Iterable[Checkpoint], states: Mapping[str, ChainState], *,
                  budget: int) -> Checkpoint | None:
    """The range of a verification that names none: the whole log (None) when it holds at most
    `budget` entries, else from the oldest checkpoint with at most `budget` entries after it
    (the newest checkpoint when even it has more: its range is bounded by the checkpoint
    interval). None too when there is no checkpoint to start from."""
    if entries_after(None, states) <= budget:
        return None
    chosen: Checkpoint | None = None
    for cp in newest_first:
        if chosen is not None and entries_after(cp, states) > budget:
            break
        chosen = cp
    return chosen
