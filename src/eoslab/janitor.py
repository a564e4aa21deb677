"""The watchdog of a Ray instance a sweep starts (Linux): ``python -m eoslab.janitor PARENT_PID``.

It records the descendants of the sweep process ``PARENT_PID`` every second and, once its stdin
closes (the sweep ended, or died even by SIGKILL), kills those still alive: SIGTERM, then SIGKILL
after 3 s (Ray's GCS, raylet, agents and workers). A process is known by its pid and its start
time, so a pid reused by an unrelated process is left alone. It imports nothing but the standard
library (and lives outside :mod:`eoslab.sweeps`), so it starts at once, before Ray does;
:class:`RayJanitor` starts it from the sweep (:mod:`eoslab.sweeps.ray_executor`).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

#: Seconds between two records of the sweep's descendants.
SCAN_S = 1.0


def _stat(pid: int | str) -> tuple[int, str]:
    """The parent pid and the start time of process ``pid`` (from ``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), fields[19]


def _record(parent: int, me: int, seen: dict[int, str]) -> None:
    """Add every descendant of ``parent`` (but ``me``) to ``seen``, as {pid: start time}."""
    children: dict[int, list[tuple[int, str]]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid, start = _stat(d)
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append((int(d), start))
    todo = [parent]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid != me:
                seen[pid] = start
                todo.append(pid)


def main(parent: int) -> None:
    """Watch the sweep process ``parent`` until stdin closes, then kill what it left behind."""
    me = os.getpid()
    seen: dict[int, str] = {}  # {pid: start time} of every descendant seen
    while True:
        _record(parent, me, seen)
        if select.select([sys.stdin], [], [], SCAN_S)[0] and not os.read(sys.stdin.fileno(), 1):
            break
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
        alive = [p for p, s in seen.items() if os.path.exists(f"/proc/{p}") and _stat(p)[1] == s]
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [p for p in alive if os.path.exists(f"/proc/{p}")]


class RayJanitor:
    """A watchdog process for a Ray instance this sweep starts (Linux; :func:`main`): when the
    sweep ends, or dies even by SIGKILL, it kills every process the sweep started and left behind
    (Ray's GCS, raylet, agents and workers). Elsewhere it does nothing.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if sys.platform.startswith("linux"):
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "eoslab.janitor", str(os.getpid())],
                stdin=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C in the terminal does not reach it
            )

    def close(self) -> None:
        """Let it clean up now (after ``ray.shutdown()``) and wait for it."""
        if self.proc is not None:
            assert self.proc.stdin is not None  # made with stdin=PIPE
            self.proc.stdin.close()
            self.proc.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]))
