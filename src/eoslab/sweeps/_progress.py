"""The progress of a sweep on stderr: a bar (:class:`eoslab.progress.ProgressBar`) on a terminal,
one line per finished point elsewhere (a log file, a pipe).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rich.markup import escape

from ..progress import ProgressBar
from .grid import GridPoint
from .point import PointStatus, final_without_work


class SweepProgress:
    """The progress of a sweep on stderr: a bar (points finished / total, counts by state) on a
    terminal, with failures printed above it; elsewhere (a log file, a pipe) one line per finished
    point. Nothing when not ``enabled``.
    """

    def __init__(self, enabled: bool, total: int, skipped: int, initial: Iterable[PointStatus]) -> None:
        self.enabled, self.total, self.finished_count = enabled, total, skipped
        self.counts = Counter(s.state for s in initial if final_without_work(s))
        self.start = time.monotonic()
        self.bar = ProgressBar(
            self._text(),
            total=total,
            enabled=enabled and sys.stderr.isatty(),
            label="sweep",
            clock="elapsed",
            completed=skipped,
        )

    def __enter__(self) -> SweepProgress:
        self.bar.__enter__()
        return self

    def _text(self) -> str:
        return ", ".join(f"{k} {state}" for state, k in sorted(self.counts.items())) or "0 done"

    def finished(self, point: GridPoint, status: PointStatus) -> None:
        """Count ``point``, which ended with ``status``, and show it."""
        self.counts[status.state] += 1
        self.finished_count += 1
        if not self.enabled:
            return
        if not self.bar.enabled:
            reason = f": {status.reason}" if status.state != "done" and status.reason else ""
            print(
                f"sweep [{self.finished_count}/{self.total}] {status.state} {point.run_id} ({point.label()}){reason} "
                f"· {time.monotonic() - self.start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            return
        if status.state == "failed":
            self.bar.print(f"[red]failed[/red] {point.run_id} ({escape(point.label())}): {escape(str(status.reason))}")
        self.bar.advance(description=self._text())

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)
