"""A progress bar for long runs, on stderr, only where a person watches it.

rich is imported only when a bar is shown, so scripted runs do not pay for it.
Lines printed while the bar is up go through :meth:`StoreProgress.print` so that
they appear above it instead of tearing it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # pragma: no cover
    from rich.progress import TaskID


class StoreProgress:
    """Files and bytes sent, MB/s and time left; a context manager."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._console = Console(file=stream)
        self._progress = Progress(
            TextColumn("[bold]C-STORE"),
            BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> "StoreProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def start(self, files: int, size: int) -> None:
        self._task = self._progress.add_task("store", total=size or None, files=files, done=0)
        self._files_done = 0

    def advance(self, size: int) -> None:
        if self._task is not None:
            self._files_done += 1
            self._progress.update(self._task, advance=size, done=self._files_done)

    def print(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)


class RetrieveProgress:
    """Sub-operations done of the total the server announces, from pending responses."""

    def __init__(self, title: str, stream: TextIO = sys.stderr) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn(f"[bold]{title}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[detail]}"), TimeRemainingColumn(),
                                  console=Console(file=stream), transient=True)
        self._task = self._progress.add_task(title, total=None, detail="")

    def __enter__(self) -> "RetrieveProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def update(self, report) -> None:
        done = report.completed + report.failed + report.warning
        total = report.total or None
        detail = f"{report.failed} failed" if report.failed else ""
        self._progress.update(self._task, completed=done, total=total, detail=detail)
