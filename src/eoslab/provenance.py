"""Which code produced a result: eoslab's version and, in a git checkout, its commit.

A sweep appends one line per invocation to its folder's :data:`~eoslab.rundir.CODE_FILE`
(:func:`record_code`), and the collected table carries the distinct identities
(:class:`~eoslab.sweeps.collect.CollectInfo`), so a report merged from parts of a sweep run at
different times names the code of each part (docs/rundir.md). A run's manifest records the code of
each sitting that trained it, and a resume by other code is loud, not refused (X16 in
docs/decisions.md; :meth:`eoslab.rundir.RunDir.record_code`).
"""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from . import __version__
from .rundir import CODE_FILE


def code_identity() -> str:
    """``eoslab 0.1.0, git 8f149db``; ``, modified 1a2b3c4d`` when the package's files differ from
    that commit, with a digest of the difference (the diff and the untracked files), so two
    different uncommitted states are two identities; ``eoslab 0.1.0`` outside a git checkout of
    eoslab (an installed wheel, also one in a folder of another repository).
    """
    package = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    # the package must be a tracked part of that checkout: an eoslab installed into a virtual
    # environment inside someone's own repository (ignored there) is not that repository's commit
    if not commit or git("ls-files", "--error-unmatch", "__init__.py") is None:
        return f"eoslab {__version__}"
    identity = f"eoslab {__version__}, git {commit}"
    if not git("status", "--porcelain", "--", "."):
        return identity
    digest = hashlib.sha256((git("diff", "HEAD", "--", ".") or "").encode())
    for name in sorted((git("ls-files", "--others", "--exclude-standard", "--", ".") or "").splitlines()):
        digest.update(name.encode())
        try:
            digest.update((package / name).read_bytes())
        except OSError:
            digest.update(b"unreadable")
    return f"{identity}, modified {digest.hexdigest()[:8]}"


def record_code(folder: str | Path) -> None:
    """Append a line ``<UTC time> TAB <code_identity()>`` to ``folder``'s :data:`~eoslab.rundir.CODE_FILE`."""
    with open(Path(folder) / CODE_FILE, "a", encoding="utf-8") as f:
        f.write(f"{datetime.now(UTC).isoformat(timespec='seconds')}\t{code_identity()}\n")


def recorded_codes(folder: str | Path) -> list[str]:
    """The distinct code identities of ``folder``'s :data:`~eoslab.rundir.CODE_FILE`, in the order
    first seen; empty when there is none (a sweep run before it was kept).
    """
    path = Path(folder) / CODE_FILE
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return list(dict.fromkeys(line.split("\t", 1)[-1].strip() for line in lines if line.strip()))
