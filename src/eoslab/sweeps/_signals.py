"""SIGTERM and SIGHUP as Ctrl-C while a sweep runs, so that its cleanup runs."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


def raise_interrupt(signum: int, frame: Any) -> None:
    """A signal handler that raises KeyboardInterrupt, as SIGINT does."""
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the sweep runs, SIGTERM and SIGHUP raise KeyboardInterrupt (as SIGINT does), so its
    cleanup runs (workers killed, a Ray instance it started shut down).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
