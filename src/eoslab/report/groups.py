"""Which runs belong together: one group per combination of the axes that vary between runs,
other than the dataset size ``n`` and the seeds.

Eq. 9 is a law in ``n`` at fixed everything else (docs/math.md §5): runs that differ in anything
but ``n`` and their seeds (the gain, the width, η_max, the loader options, ...) must not share a
fit, or a setting's effect would pass for scatter over seeds. A group is always keyed by dataset
and criterion (the paper's Table 2 rows), then by every other run column or sweep axis whose
values differ among the runs at hand. *Problem* groups leave out the solver's settings as well,
so that gradient-descent runs meet the exponential Euler runs of the same problem (the
edge-of-stability figure).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, TypeGuard

import pandas as pd

from eoslab.report.collected import runs_of

#: Columns that vary within a group: the dataset size and the seeds.
WITHIN_GROUP = ("run_id", "n", "init_seed", "subset_seed")
#: Columns every group is keyed by (the paper's Table 2 rows).
ALWAYS = ("dataset", "criterion")
#: Run columns that are the solver's settings (with every sweep axis ``solver.*``).
SOLVER_COLUMNS = ("solver", "eta", "eta_max")


def is_solver_column(column: str) -> bool:
    """Whether a run column or axis is a setting of the solver."""
    return column in SOLVER_COLUMNS or column.startswith("solver.")


def _distinct(values: pd.Series) -> int:
    return values.map(_text).nunique()


def _text(value: Any) -> str:
    """A value as shown in labels: floats with up to 6 significant digits, NaN/None as ``–``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@dataclass(frozen=True)
class Group:
    """One group of runs: the values of its key columns, ``dataset`` and ``criterion`` first.

    Attributes:
        keys: ``((column, value), ...)`` in key order.
    """

    keys: tuple[tuple[str, Any], ...]

    @property
    def dataset(self) -> str:
        """The group's dataset."""
        return dict(self.keys)["dataset"]

    @property
    def criterion(self) -> str:
        """The group's criterion."""
        return dict(self.keys)["criterion"]

    @property
    def extra(self) -> dict[str, Any]:
        """The key columns besides dataset and criterion, e.g. ``{"model.gain": 1.0}``."""
        return {k: v for k, v in self.keys if k not in ALWAYS}

    def extra_label(self) -> str:
        """``model.gain = 1, solver = gd`` (empty without other keys)."""
        return ", ".join(f"{k} = {_text(v)}" for k, v in self.extra.items())

    @property
    def name(self) -> str:
        """``dice/ce`` or ``dice/ce (model.gain = 1)``: names the group in messages."""
        extra = self.extra_label()
        return f"{self.dataset}/{self.criterion}" + (f" ({extra})" if extra else "")

    @property
    def slug(self) -> str:
        """A file-name part, e.g. ``dice_ce`` or ``dice_ce__model.gain=1.5``."""
        text = f"{self.dataset}_{self.criterion}" + "".join(f"__{k}={_text(v)}" for k, v in self.extra.items())
        return re.sub(r"[^A-Za-z0-9._=+-]", "_", text)

    def sort_key(self) -> tuple[tuple[int, float, str], ...]:
        """Order groups by their key values: finite numbers by value (width 64 before 128), the
        rest as text, after the numbers.
        """
        return tuple(_order(v) for _, v in self.keys)


def key_columns(runs: pd.DataFrame, *, solver: bool = True) -> list[str]:
    """The key columns of groups of ``runs`` (one row per run): dataset, criterion, then every
    other run column or axis that varies among them, except ``n`` and the seeds (and the solver's
    settings when ``solver`` is False).
    """
    columns = [c for c in runs.columns if c not in WITHIN_GROUP and c not in ALWAYS]
    varying = [c for c in columns if _distinct(runs[c]) > 1 and (solver or not is_solver_column(c))]
    return [*ALWAYS, *varying]


def groups(frame: pd.DataFrame, *, solver: bool = True) -> list[tuple[Group, pd.DataFrame]]:
    """``frame``'s rows split into groups (see the module docstring), sorted by key; with
    ``solver`` False the solver's settings do not split groups (problem groups).
    """
    if frame.empty:
        return []
    runs = runs_of(frame)
    keys = key_columns(runs, solver=solver)
    out = []
    labels = runs[keys].map(_text)  # NaN and None group like any value
    for _, members in runs.groupby([labels[k] for k in keys], sort=False, dropna=False):
        first = members.iloc[0]
        group = Group(tuple((k, _plain(first[k])) for k in keys))
        out.append((group, frame[frame["run_id"].isin(members["run_id"])]))
    return sorted(out, key=lambda item: item[0].sort_key())


def finite_number(value: Any) -> TypeGuard[numbers.Real]:
    """Whether a key value is a finite number (not a bool): a setting a study can put on an axis."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _order(value: Any) -> tuple[int, float, str]:
    """A key value's place in :meth:`Group.sort_key`."""
    return (0, float(value), "") if finite_number(value) else (1, 0.0, _text(value))


def _plain(value: Any) -> Any:
    """A numpy scalar as a plain Python value."""
    return value.item() if hasattr(value, "item") else value


__all__ = ["Group", "finite_number", "groups", "is_solver_column", "key_columns"]
