"""Progress of a long operator command on stderr: a rich bar on a terminal, plain lines (a start,
one every few seconds, the end) when stderr is a file or a pipe, so logs stay readable."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

PLAIN_EVERY_S = 5.0


class Bar(Protocol):
    def advance(self, by: int = 1) -> None: ...

    def set_total(self, total: int | None) -> None: ...


class _PlainBar:
    """`<description>: <done>/<total>` lines, at most one per PLAIN_EVERY_S."""

    def __init__(self, description: str, total: int | None, out: TextIO) -> None:
        self.description, self.total, self.out = description, total, out
        self.done = 0
        self.last = time.monotonic()
        self._line("started")

    def _line(self, suffix: str = "") -> None:
        total = "?" if self.total is None else str(self.total)
        self.out.write(f"{self.description}: {self.done}/{total} {suffix}".rstrip() + "\n")
        self.out.flush()

    def advance(self, by: int = 1) -> None:
        self.done += by
        if time.monotonic() - self.last >= PLAIN_EVERY_S:
            self.last = time.monotonic()
            self._line()

    def set_total(self, total: int | None) -> None:
        self.total = total

    def finish(self) -> None:
        self._line("done")


class _RichBar:
    def __init__(self, bar: Progress, task: TaskID) -> None:
        self.bar, self.task = bar, task

    def advance(self, by: int = 1) -> None:
        self.bar.advance(self.task, by)

    def set_total(self, total: int | None) -> None:
        self.bar.update(self.task, total=total)


@contextmanager
def progress(description: str, total: int | None = None, *,
             out: TextIO | None = None) -> Iterator[Bar]:
    """A bar for `total` steps (None: unknown until `set_total`) on `out` (stderr)."""
    stream = out if out is not None else sys.stderr
    if not stream.isatty():
        plain = _PlainBar(description, total, stream)
        yield plain
        plain.finish()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(file=stream)) as bar:
        yield _RichBar(bar, bar.add_task(description, total=total))
