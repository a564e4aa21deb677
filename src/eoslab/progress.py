"""The one progress bar of eoslab's long loops (training, analysis, sweeps, downloads, embeddings).

A :class:`ProgressBar` is rich's progress display with one task, on stderr (stdout stays for
results), laid out as ``description  bar  count  time``, or, with a ``label``,
``label  bar  count  description  time`` (a fixed bold word first and a changing description
after the count). The count is done/total (``unit="items"``), size and speed (``"bytes"``) or
none (None: the bar alone shows a fraction); the time is elapsed or remaining. Disabled, it shows
nothing and every call does nothing, so a loop calls it unconditionally::

    with ProgressBar("analyse run", total=len(steps), enabled=progress) as bar:
        for step in steps:
            ...
            bar.advance()
"""

from __future__ import annotations

from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

_COUNTS: dict[str | None, tuple[type[ProgressColumn], ...]] = {
    "items": (MofNCompleteColumn,),
    "bytes": (DownloadColumn, TransferSpeedColumn),
    None: (),
}
_CLOCKS: dict[str | None, tuple[type[ProgressColumn], ...]] = {
    "elapsed": (TimeElapsedColumn,),
    "remaining": (TimeRemainingColumn,),
    None: (),
}


class ProgressBar:
    """A progress bar of one task on stderr, or nothing when ``enabled`` is false (module docstring).

    Args:
        description: the text beside the bar (:meth:`advance` and :meth:`update` may change it).
        total: the amount at completion (None: unknown, an indeterminate bar).
        enabled: show it; when false, nothing is shown.
        label: a fixed bold word before the bar; the description then follows the count.
        unit: the count shown: ``"items"`` (done/total), ``"bytes"`` (size and transfer speed)
            or None (none).
        clock: ``"elapsed"``, ``"remaining"`` or None (no time shown).
        completed: the amount already done when it starts.
        transient: remove the bar from the terminal when it stops.
    """

    def __init__(
        self,
        description: str = "",
        *,
        total: float | None,
        enabled: bool = True,
        label: str | None = None,
        unit: Literal["items", "bytes"] | None = "items",
        clock: Literal["elapsed", "remaining"] | None = "remaining",
        completed: int = 0,
        transient: bool = False,
    ) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        if not enabled:
            return
        counts = [column() for column in _COUNTS[unit]]
        clocks = [column() for column in _CLOCKS[clock]]
        if label is None:
            columns = [TextColumn("[progress.description]{task.description}"), BarColumn(), *counts, *clocks]
        else:
            columns = [TextColumn(f"[bold]{label}"), BarColumn(), *counts, TextColumn("{task.description}"), *clocks]
        self._progress = Progress(*columns, console=Console(stderr=True), transient=transient)
        self._task = self._progress.add_task(description, total=total, completed=completed)

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, amount: float = 1, *, description: str | None = None) -> None:
        """Add ``amount`` to the amount done (and change the description, when given)."""
        if self._progress is not None:
            self._progress.update(self._task, advance=amount, description=description)

    def update(self, *, completed: float | None = None, description: str | None = None) -> None:
        """Set the amount done and/or the description."""
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, description=description)

    def print(self, text: str) -> None:
        """Print one line (rich markup) above the bar."""
        if self._progress is not None:
            self._progress.console.print(text, highlight=False)
