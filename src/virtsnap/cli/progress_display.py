"""A progress bar on stderr (rich, imported only when a long operation first reports) for CLI commands.

Shown only when stderr is a terminal and -q was not given, so scripted output stays byte-identical to virsh.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from .. import progress

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

_LABELS = {"save": "saving snapshot", "load": "loading snapshot", "delete": "deleting snapshot"}


class _Bar:
    def __init__(self) -> None:
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if self._progress is None:
            from rich.console import Console  # heavy: only once an operation reports progress
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                      TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self._progress.start()
        label = _LABELS.get(what, what)
        if total <= 0:
            if what not in _LABELS:  # a message, e.g. that an interrupt waits for the current step
                self._progress.console.print(label)
            return
        task = self._tasks.get(label)
        if task is None:
            task = self._tasks[label] = self._progress.add_task(label, total=total)
        self._progress.update(task, completed=done, total=total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextlib.contextmanager
def progress_bar(quiet: bool) -> Iterator[None]:
    if quiet or not sys.stderr.isatty():
        yield
        return
    bar = _Bar()
    try:
        with progress.reporting(bar):
            yield
    finally:
        bar.close()
