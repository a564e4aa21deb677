"""The protocol of a group of runs, stated beside each of its fits (dataset, network, criterion, step
rule, target loss, sizes, runs per size, encoder), so that no exponent stands beside the paper's
without the setting it was measured in; and the paper's names of our datasets and criteria.
"""

from __future__ import annotations

import pandas as pd

#: How the paper's tables name our datasets and criteria.
DATASET_NAMES = {
    "dice": "Dice",
    "cifar10": "CIFAR-10",
    "atrial_fibrillation": "AtrialFibrillation",
    "sst": "SST",
    "synthetic": "Synthetic",
}
CRITERION_NAMES = {"ce": "Cross-Entropy", "mse": "MSE"}


def dataset_name(dataset: str) -> str:
    """The paper's name of a dataset (``atrial_fibrillation`` → ``AtrialFibrillation``)."""
    return DATASET_NAMES.get(dataset, dataset)


def criterion_name(criterion: str) -> str:
    """The paper's name of a criterion (``ce`` → ``Cross-Entropy``)."""
    return CRITERION_NAMES.get(criterion, criterion)


def _distinct(values: pd.Series) -> str:
    """The distinct values of a column, in order, as text (floats as ``%g``)."""
    return ", ".join(dict.fromkeys(format(v, "g") if isinstance(v, float) else str(v) for v in values))


def protocol(runs: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    """The protocol of a group's runs (one row per run, :func:`eoslab.report.runs_of`), as the
    report states it beside the fit: dataset, network, criterion, solver with η_max or η, target
    loss, sizes, runs per size and, for SST, the encoder. A value the collected table does not
    record (it holds the run columns and only the axes that vary in the sweep) says so.
    """
    absent = "not recorded in the collected table"

    def column(name: str) -> str:
        return _distinct(runs[name]) if name in runs else ""

    kind = column("model.kind")
    if kind and kind != "mlp":
        network = kind
    elif (runs["depth"] > 0).all() and (runs["width"] > 0).all():
        network = f"MLP, depth {column('depth')} × width {column('width')}"
    else:
        network = f"MLP, depth and width {absent}"
    steps = {"exp_euler": ("exponential Euler", "η_max", "eta_max"), "gd": ("gradient descent", "η", "eta")}
    solvers = []
    for solver, rows in runs.groupby("solver", sort=False):
        name, symbol, step = steps.get(solver, (solver, "", ""))
        if step:
            value = rows[step].dropna()
            name += f", {symbol} = {_distinct(value)}" if len(value) else f", {symbol} {absent}"
        solvers.append(name)
    counts = runs["n"].value_counts().sort_index()
    per_size = str(counts.iloc[0]) if counts.nunique() == 1 else ", ".join(f"{n}: {c}" for n, c in counts.items())
    items = [
        ("dataset", ", ".join(dataset_name(d) for d in dict.fromkeys(runs["dataset"]))),
        ("network", network),
        ("criterion", ", ".join(criterion_name(c) for c in dict.fromkeys(runs["criterion"]))),
        ("solver", "; ".join(solvers)),
        ("target loss", _distinct(runs["target_loss"].dropna()) or absent),
        ("sizes n", ", ".join(str(n) for n in counts.index)),
        ("runs per size", per_size),
    ]
    if "sst" in set(runs["dataset"]):
        items.append(("encoder", column("data.options.encoder") or absent))
    return tuple(items)


def protocol_text(items: tuple[tuple[str, str], ...]) -> str:
    """``dataset AtrialFibrillation · network MLP, depth 6 × width 128 · …``: the protocol in one line."""
    return " · ".join(f"{k} {v}" for k, v in items)
