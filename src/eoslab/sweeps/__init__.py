"""Sweeps: a grid of run configs, trained and analysed point by point (docs/math.md §8).

A sweep folder ``DIR`` holds ``sweep.toml`` (a copy of the sweep config), ``grid.parquet`` (one
row per point) and ``runs/<run_id>/``, one run directory per point (docs/rundir.md). The parts,
one concept each:

* :mod:`eoslab.sweeps.grid` -- the sweep config (``[base]`` + ``[grid]``) and its expansion into
  resolved run configs, one :class:`GridPoint` each, keyed by the config's hash;
* :mod:`eoslab.sweeps.point` -- one point: its :class:`PointStatus` read from its run directory,
  and :func:`run_point`, which trains and analyses it (a failure never stops the others);
* :mod:`eoslab.sweeps.executors` -- :func:`run_sweep`, on local worker processes
  (:mod:`~eoslab.sweeps.local_executor`) or on Ray (:mod:`~eoslab.sweeps.ray_executor`), each
  point's job in :mod:`~eoslab.sweeps.worker`; a rerun skips finished points and resumes the
  others from their snapshots;
* :mod:`eoslab.sweeps.collect` -- :func:`sweep_status` and :func:`collect`, the tidy table of the
  finished points that the report reads, with every axis of the grid as a column and a record of
  what it holds (:class:`CollectInfo`), so a stale table is recognised (:func:`stale_reason`).
"""

from .collect import (
    COLLECT_SCHEMA,
    CollectInfo,
    collect,
    collect_info,
    stale_reason,
    sweep_status,
    varying_axes,
)
from .executors import SweepResult, run_sweep
from .grid import GridPoint, Sweep, axis_columns, expand_grid, grid_table, load_sweep, parse_sweep
from .point import PointStatus, point_status, run_point

__all__ = [
    "COLLECT_SCHEMA",
    "CollectInfo",
    "GridPoint",
    "PointStatus",
    "Sweep",
    "SweepResult",
    "axis_columns",
    "collect",
    "collect_info",
    "expand_grid",
    "grid_table",
    "load_sweep",
    "parse_sweep",
    "point_status",
    "run_point",
    "run_sweep",
    "stale_reason",
    "sweep_status",
    "varying_axes",
]
