"""Reading a sweep folder: where every point stands, and the collected table of the finished ones."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..rundir import ANALYSIS_SCHEMA, RunDir
from .grid import GRID_FILE, RUN_COLUMNS, RUNS_DIR
from .point import PointStatus, point_status

#: Columns of the collected table (the report's input, :mod:`eoslab.report`): the run columns,
#: then the rows of ``analysis.parquet``.
COLLECT_SCHEMA = pa.schema(list(RUN_COLUMNS) + list(ANALYSIS_SCHEMA))


def _grid(sweep_dir: Path) -> pa.Table:
    from ..store import read_parquet

    if not (sweep_dir / GRID_FILE).exists():
        raise FileNotFoundError(f"{sweep_dir} is not a sweep folder (no {GRID_FILE}); run `eoslab sweep` first")
    return read_parquet(sweep_dir / GRID_FILE)


def sweep_status(sweep_dir: str | Path, *, analysis: bool = True) -> list[tuple[dict, PointStatus]]:
    """``(grid row, status)`` of every point of the sweep in ``sweep_dir``, in grid order."""
    sweep_dir = Path(sweep_dir)
    return [
        (row, point_status(sweep_dir / RUNS_DIR / row["run_id"], analysis=analysis))
        for row in _grid(sweep_dir).drop_columns(["config"]).to_pylist()
    ]


def collect(sweep_dir: str | Path) -> pa.Table:
    """One tidy long table of a sweep: every finished point's analysis rows (``step, t, metric,
    layer, value``) with the point's run columns in front (:data:`COLLECT_SCHEMA`), in grid order.

    Points that are not done (pending, running, failed, not fully analysed) are left out.
    """
    from ..store import read_parquet

    sweep_dir = Path(sweep_dir)
    parts = []
    for row, status in sweep_status(sweep_dir):
        if status.state != "done":
            continue
        a = read_parquet(RunDir(sweep_dir / RUNS_DIR / row["run_id"]).analysis_file)
        cols = {f.name: pa.array([row[f.name]] * a.num_rows, f.type) for f in RUN_COLUMNS}
        cols.update({f.name: a[f.name].cast(f.type) for f in ANALYSIS_SCHEMA})
        parts.append(pa.table(cols, schema=COLLECT_SCHEMA))
    return pa.concat_tables(parts) if parts else COLLECT_SCHEMA.empty_table()
