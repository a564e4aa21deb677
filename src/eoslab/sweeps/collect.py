"""Reading a sweep folder: where every point stands, and the collected table of the finished ones.

The collected table (:func:`collect`) carries where it came from in its schema metadata
(:class:`CollectInfo`: the sweep folder, how many of its points it holds, which were left out and
why, and a checksum of every included run's ``analysis.parquet``), so a table read back later can
be checked against the sweep as it is now (:func:`stale_reason`): the report never fits a table
that a sweep has since outgrown.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..config import flatten_config, from_dict
from ..provenance import recorded_codes
from ..rundir import ANALYSIS_SCHEMA, RunDir
from ..store import read_parquet
from .grid import GRID_FILE, RUN_COLUMNS, axis_columns, run_columns
from .point import PointStatus, analysis_table, exclusion_reason, point_dir, point_status, trajectory_rows

#: Columns every collected table starts with: the run columns; then come one typed column per
#: other axis of the sweep (:func:`eoslab.sweeps.grid.axis_columns`), then the rows of
#: ``analysis.parquet``. Without other axes the table's schema is exactly this one.
COLLECT_SCHEMA = pa.schema(list(RUN_COLUMNS) + list(ANALYSIS_SCHEMA))
#: Config fields the report's protocol states (:func:`eoslab.report.protocol.protocol`), carried as
#: columns whenever a run sets them, whether or not they vary between the runs.
PROTOCOL_FIELDS = ("data.options.encoder",)
#: Schema metadata key of :class:`CollectInfo`.
INFO_KEY = b"eoslab.collect"


def _grid(sweep_dir: Path) -> pa.Table:
    if not (sweep_dir / GRID_FILE).exists():
        raise FileNotFoundError(f"{sweep_dir} is not a sweep folder (no {GRID_FILE}); run `eoslab sweep` first")
    return read_parquet(sweep_dir / GRID_FILE)


def sweep_status(sweep_dir: str | Path, *, analysis: bool = True) -> list[tuple[dict, PointStatus]]:
    """``(grid row, status)`` of every point of the sweep in ``sweep_dir``, in grid order; a row
    holds the run columns and the sweep's other axes (``index`` and ``config`` dropped).
    """
    sweep_dir = Path(sweep_dir)
    grid = _grid(sweep_dir)
    rows = grid.drop_columns([c for c in ("index", "config") if c in grid.column_names]).to_pylist()
    return [(row, point_status(point_dir(sweep_dir, row["run_id"]), analysis=analysis)) for row in rows]


def varying_axes(rows: list[dict]) -> list[str]:
    """The columns of grid rows (or of any per-run dicts) whose values differ between the rows,
    in column order; ``run_id`` is never an axis.
    """
    if not rows:
        return []
    names = [k for k in rows[0] if k != "run_id"]
    return [k for k in names if len({json.dumps(r.get(k), sort_keys=True, default=str) for r in rows}) > 1]


@dataclass(frozen=True)
class LeftOut:
    """A point that is not in the collected table, its state and why
    (:func:`eoslab.sweeps.point.exclusion_reason`).
    """

    run_id: str
    state: str
    reason: str


@dataclass(frozen=True)
class CollectInfo:
    """Where a collected table came from (its schema metadata).

    Attributes:
        sweep: the sweep folder (absolute path at collect time).
        collected_at: when (UTC, ISO 8601).
        total: points in the sweep's grid.
        included: run_id → SHA-256 of its ``analysis.parquet`` at collect time, for every run in
            the table.
        left_out: the points that are not in it, with their state and reason.
        include_stopped: whether ``stopped`` runs were let in.
        grid: SHA-256 of the grid's run ids, in order.
        code: the code identities that ran the sweep (:func:`eoslab.provenance.recorded_codes`;
            empty for a sweep run before they were recorded).
        mixed: run_id → its code sittings (``<code> from step <s>``), for every included run that
            more than one version of eoslab trained (a resume by other code, docs/rundir.md).
        run_notes: run_id → the notes in its ``status.json`` (what training, the analysis or
            ``eoslab compact`` found and said: uncertified eigenvalues, thinned snapshots, a
            dropped warm start, ...), for every included run that has some.
    """

    sweep: str
    collected_at: str
    total: int
    included: dict[str, str]
    left_out: list[LeftOut] = field(default_factory=list)
    include_stopped: bool = False
    grid: str = ""
    code: list[str] = field(default_factory=list)
    mixed: dict[str, list[str]] = field(default_factory=dict)
    run_notes: dict[str, list[str]] = field(default_factory=dict)

    def code_text(self) -> str:
        """``ran at eoslab 0.1.0, git 8f149db``, or that the code was not recorded."""
        return "ran at " + "; ".join(self.code) if self.code else "code not recorded"

    def headline(self) -> str:
        """``8 of 11 runs (left out: 2 stopped, 1 failed; --include-stopped adds the stopped)``: the
        report's first line.
        """
        text = f"{len(self.included)} of {self.total} runs"
        if not self.left_out:
            return text
        counts = Counter(p.state for p in self.left_out)
        hint = "" if "stopped" not in counts else "; --include-stopped adds the stopped"
        return f"{text} (left out: {', '.join(f'{k} {state}' for state, k in counts.items())}{hint})"

    def left_out_lines(self, limit: int = 10) -> list[str]:
        """Why each left-out run is left out, ``run_id: reason``, at most ``limit`` lines (and how many more)."""
        lines = [f"{p.run_id}: {p.reason}" for p in self.left_out[:limit]]
        more = len(self.left_out) - limit
        return lines + ([f"... and {more} more (eoslab status lists them all)"] if more > 0 else [])

    def mixed_lines(self) -> list[str]:
        """A WARNING per included run that more than one version of eoslab trained."""
        return [
            f"WARNING: run {run_id} was trained by more than one version of eoslab: {'; '.join(sittings)}"
            for run_id, sittings in self.mixed.items()
        ]

    def note_lines(self) -> list[str]:
        """``run <id>: <note>`` for every note of an included run (the run's path, which a note may
        start with, left out).
        """
        lines = []
        for run_id, notes in self.run_notes.items():
            for note in notes:
                head, sep, rest = note.partition(": ")
                lines.append(f"run {run_id}: {rest if sep and head.endswith(run_id) else note}")
        return lines

    def to_json(self) -> str:
        """The metadata as JSON text."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> CollectInfo:
        """Parse :meth:`to_json`'s text."""
        data = json.loads(text)
        data["left_out"] = [LeftOut(**p) for p in data.get("left_out", [])]
        return cls(**data)


def collect_info(table: pa.Table) -> CollectInfo | None:
    """The :class:`CollectInfo` of a table written by :func:`collect`, or None for another table."""
    meta = table.schema.metadata or {}
    return CollectInfo.from_json(meta[INFO_KEY]) if INFO_KEY in meta else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _grid_hash(run_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(run_ids).encode()).hexdigest()


def current_info(sweep_dir: str | Path, *, include_stopped: bool = False) -> CollectInfo:
    """What :func:`collect` would record for the sweep as it is now (without reading the tables)."""
    sweep_dir = Path(sweep_dir)
    included, left_out, ids, mixed, run_notes = {}, [], [], {}, {}
    for row, status in sweep_status(sweep_dir):
        ids.append(row["run_id"])
        reason = exclusion_reason(status, include_stopped)
        if reason is None:
            run = RunDir(point_dir(sweep_dir, row["run_id"]))
            included[row["run_id"]] = _sha256(run.analysis_file)
            sittings = run.code_sittings()
            if len(sittings) > 1:
                mixed[row["run_id"]] = [f"{code} from step {step}" for step, code in sittings]
            notes = (run.read_status() or {}).get("notes", [])
            if notes:
                run_notes[row["run_id"]] = list(notes)
        else:
            left_out.append(LeftOut(row["run_id"], status.state, reason))
    return CollectInfo(
        sweep=str(sweep_dir.resolve()),
        collected_at=datetime.now(UTC).isoformat(timespec="seconds"),
        total=len(ids),
        included=included,
        left_out=left_out,
        include_stopped=include_stopped,
        grid=_grid_hash(ids),
        code=recorded_codes(sweep_dir),
        mixed=mixed,
        run_notes=run_notes,
    )


def collect(sweep_dir: str | Path, *, include_stopped: bool = False) -> pa.Table:
    """One tidy long table of a sweep: every finished point's analysis rows (``step, t, metric,
    layer, value``) and its trajectory's rows (:func:`eoslab.sweeps.point.trajectory_rows`: the
    loss at every step, λ¹(H) at every measured one), with the point's run columns and other axes
    in front, in grid order.

    Only ``done`` points go in (:func:`eoslab.sweeps.point.include_in_collect`; ``include_stopped``
    lets in the runs a step or time limit stopped); the others are listed, with their state and
    reason, in the table's :class:`CollectInfo` (:func:`collect_info`), which also records a
    checksum of every included analysis so that :func:`stale_reason` can tell later whether the
    table is current.
    """
    sweep_dir = Path(sweep_dir)
    info = current_info(sweep_dir, include_stopped=include_stopped)
    grid = _grid(sweep_dir)
    declared = [c for c in grid.column_names if c not in ("index", "config", *RUN_COLUMNS.names)]
    configs = [from_dict(tomllib.loads(text)) for text in grid["config"].to_pylist()]
    stated = [f for f in PROTOCOL_FIELDS if any(f in flatten_config(c) for c in configs)]
    axes = axis_columns(configs, [*declared, *stated])
    schema = pa.schema(
        list(RUN_COLUMNS) + [pa.field(k, v.type) for k, v in axes.items()] + list(ANALYSIS_SCHEMA),
        metadata={INFO_KEY: info.to_json()},
    )
    parts = []
    for i, run_id in enumerate(grid["run_id"].to_pylist()):
        if run_id not in info.included:
            continue
        run_dir = point_dir(sweep_dir, run_id)
        a = pa.concat_tables([analysis_table(run_dir), trajectory_rows(run_dir)])
        run = run_columns(run_id, configs[i])  # from the config: also for a grid older than a column
        cols: dict[str, Any] = {f.name: pa.repeat(pa.scalar(run[f.name], f.type), a.num_rows) for f in RUN_COLUMNS}
        cols.update({k: pa.repeat(v[i], a.num_rows).cast(v.type) for k, v in axes.items()})
        cols.update({f.name: a[f.name].cast(f.type) for f in ANALYSIS_SCHEMA})
        parts.append(pa.table(cols, schema=schema))
    return pa.concat_tables(parts) if parts else schema.empty_table()


def stale_reason(info: CollectInfo, sweep_dir: str | Path) -> str | None:
    """Why a table collected with ``info`` no longer matches the sweep in ``sweep_dir`` (runs
    finished, failed or re-analysed since, a different grid), or None when it is current.
    """
    now = current_info(sweep_dir, include_stopped=info.include_stopped)
    if now.grid != info.grid:
        return f"the sweep's grid changed since (now {now.total} points, the table's {info.total})"
    added = sorted(set(now.included) - set(info.included))
    gone = sorted(set(info.included) - set(now.included))
    changed = sorted(k for k in set(now.included) & set(info.included) if now.included[k] != info.included[k])
    parts = []
    if added:
        parts.append(f"{len(added)} run(s) finished since ({', '.join(added[:3])}{', ...' if len(added) > 3 else ''})")
    if gone:
        parts.append(f"{len(gone)} run(s) in the table are no longer done ({', '.join(gone[:3])})")
    if changed:
        parts.append(f"the analysis of {len(changed)} run(s) changed ({', '.join(changed[:3])})")
    if not parts:
        return None
    return (
        f"it holds {len(info.included)} of {info.total} runs, collected {info.collected_at}; the sweep now has "
        f"{len(now.included)} of {now.total}: " + "; ".join(parts)
    )
