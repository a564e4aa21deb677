"""The paper's figure families, one figure file per family per (dataset, criterion) group.

Curves against flow time ``t``, one per exponential Euler run, coloured by the dataset size
``n`` on a log colour scale (docs/math.md §4-5; the paper's §4 "Results"):

* ``fig1_sharpness``: lambda^1 of H, G and R (Eq. 2; Fig. 1);
* ``fig2_overlap``: rho and E||J~||^2, whose product is lambda^1(G) (Eq. 3; Fig. 2);
* ``fig3_layer_sqnorm``: E||J~_i||^2 for layers 1, 3, 5 (Eq. 4; Fig. 3);
* ``layer_sqnorm_all``: E||J~_i||^2 for every layer (Eq. 4; supplement);
* ``fig4_eq7``: the five factors C1..C5 of Eq. 7 for layer 1 (Fig. 4);
* ``act_ratio``, ``layerjac_sqnorm``, ``align_ratio``: E[r_i], E||K_i||^2 and
  kappa(J^_{i+1}, K_i) per layer, the per-layer factors of Eq. 7 (supplement);

and two more:

* ``peak_alignment``: the ``y`` of Eq. 9 per run against ``n`` on log-log axes, with our fitted
  line and, where the group is a row of Table 2, the paper's;
* ``gd_vs_euler``: lambda^1(H) of gradient descent, pinned near 2/eta (Eq. 1; the 2/eta line
  drawn), against exponential Euler on the same problem.

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot state) and saved as PNG
and PDF.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eoslab.report import ANALYSIS_SOLVER, SKIP_BEFORE, metric_rows, runs_of
from eoslab.report.powerlaw import GroupFit, criterion_name, dataset_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Marks a panel list that expands to every layer the metric has in the group.
ALL_LAYERS = "all"

#: J-check of Eq. 7 in mathtext (its ``\\check`` accent is misplaced on an italic J).
CHECK_J = r"\overset{\vee}{J}"
#: Axis label (mathtext, without the dollars) of each metric; layer-wise ones take the layer.
SYMBOLS: dict[str, Callable[[int | None], str]] = {
    "sharpness_H": lambda i: r"\lambda^1(\mathbf{H})",
    "sharpness_G": lambda i: r"\lambda^1(G)",
    "sharpness_R": lambda i: r"\lambda^1(R)",
    "overlap_ratio": lambda i: r"\rho(\tilde J)",
    "jtilde_sqnorm": lambda i: r"\mathbb{E}\|\tilde J\|^2",
    "layer_sqnorm": lambda i: rf"\mathbb{{E}}\|\tilde J_{{{i}}}\|^2",
    "act_ratio": lambda i: rf"\mathbb{{E}}[r_{{{i}}}]",
    "layerjac_sqnorm": lambda i: rf"\mathbb{{E}}\|K_{{{i}}}\|^2",
    "align_ratio": lambda i: rf"\kappa({CHECK_J}_{{{i + 1}}}, K_{{{i}}})",
    "eq7_c1": lambda i: r"C_1",
    "eq7_c2": lambda i: r"C_2",
    "eq7_c3": lambda i: r"C_3",
    "eq7_c4": lambda i: r"C_4",
    "eq7_c5": lambda i: r"C_5",
}
#: Panel titles of the factors of Eq. 7 for layer i (their definitions).
EQ7_TITLES: dict[str, Callable[[int], str]] = {
    "eq7_c1": lambda i: rf"$\prod_{{k\geq {i}}}\,\kappa(r_k^{{1/2}}, {CHECK_J}_{{k+1}}K_k)$",
    "eq7_c2": lambda i: rf"$\prod_{{k\geq {i}}}\,\mathbb{{E}}[r_k]$",
    "eq7_c3": lambda i: r"$\mathbb{E}\|\tilde J_L\|^2$",
    "eq7_c4": lambda i: rf"$\prod_{{k\geq {i}}}\,\mathbb{{E}}\|K_k\|^2$",
    "eq7_c5": lambda i: rf"$\prod_{{k\geq {i}}}\,\kappa({CHECK_J}_{{k+1}}, K_k)$",
}
T_LABEL = r"flow time $t$"
N_LABEL = r"dataset size $n$"


def symbol(metric: str, layer: int | None = None) -> str:
    """The mathtext symbol of a metric, ``$...$`` included (the metric's name if unknown)."""
    make = SYMBOLS.get(metric)
    return f"${make(None if layer is None else int(layer))}$" if make else metric


@dataclass(frozen=True)
class CurveFamily:
    """A figure of curves against ``t``: one panel per (metric, layer) of ``panels``."""

    key: str
    title: str
    caption: str
    panels: tuple[tuple[str, int | str | None], ...]
    log_y: bool = False


CURVE_FAMILIES: tuple[CurveFamily, ...] = (
    CurveFamily(
        "fig1_sharpness",
        "sharpness of H, G and R",
        "Top eigenvalues of H, G and R = H − G against flow time (Eq. 2; paper Fig. 1)",
        (("sharpness_H", None), ("sharpness_G", None), ("sharpness_R", None)),
    ),
    CurveFamily(
        "fig2_overlap",
        r"overlap ratio and $\mathbb{E}\|\tilde J\|^2$",
        "Overlap ratio ρ and E‖J̃‖², whose product is λ¹(G) (Eq. 3; paper Fig. 2)",
        (("overlap_ratio", None), ("jtilde_sqnorm", None)),
    ),
    CurveFamily(
        "fig3_layer_sqnorm",
        "layerwise components, layers 1, 3, 5",
        "Layerwise components E‖J̃ᵢ‖² for layers 1, 3 and 5 (Eq. 4; paper Fig. 3)",
        (("layer_sqnorm", 1), ("layer_sqnorm", 3), ("layer_sqnorm", 5)),
    ),
    CurveFamily(
        "layer_sqnorm_all",
        "layerwise components, all layers",
        "Layerwise components E‖J̃ᵢ‖² for every layer (Eq. 4; supplement)",
        (("layer_sqnorm", ALL_LAYERS),),
    ),
    CurveFamily(
        "fig4_eq7",
        r"the five factors of $\mathbb{E}\|\tilde J_1\|^2$ (Eq. 7)",
        "The five factors C₁…C₅ of E‖J̃₁‖² (Eq. 7, layer 1; paper Fig. 4)",
        tuple((f"eq7_c{k}", 1) for k in range(1, 6)),
        log_y=True,
    ),
    CurveFamily(
        "act_ratio",
        "activation ratios",
        "Expected squared activation ratios E[rᵢ] per layer (Eq. 7; supplement)",
        (("act_ratio", ALL_LAYERS),),
    ),
    CurveFamily(
        "layerjac_sqnorm",
        "layerwise Jacobian norms",
        "Expected squared operator norms E‖Kᵢ‖² of the layerwise Jacobians (Eq. 7; supplement)",
        (("layerjac_sqnorm", ALL_LAYERS),),
        log_y=True,
    ),
    CurveFamily(
        "align_ratio",
        "alignment ratios",
        "Alignment ratios κ(J̌ᵢ₊₁, Kᵢ) per layer (Eqs. 6, 7; supplement)",
        (("align_ratio", ALL_LAYERS),),
        log_y=True,
    ),
)
PEAK_CAPTION = "Peak alignment y against dataset size n with the fitted power law (Eq. 9; Table 2)"
CONTRAST_CAPTION = "Gradient descent on the edge of stability (λ¹(H) ≈ 2/η, Eq. 1) vs exponential Euler"


@dataclass(frozen=True)
class FigureJob:
    """A figure to draw: ``draw()`` returns the matplotlib Figure."""

    family: str
    dataset: str
    criterion: str
    caption: str
    draw: Callable[[], Figure]

    @property
    def stem(self) -> str:
        """File name without suffix, e.g. ``fig1_sharpness__cifar10_ce``."""
        return f"{self.family}__{self.dataset}_{self.criterion}"


@dataclass(frozen=True)
class FigureFile:
    """A drawn figure and its files."""

    family: str
    dataset: str
    criterion: str
    caption: str
    png: Path
    pdf: Path


def _size_colours(sizes: pd.Series):
    """Log colour scale over the dataset sizes, and its colour map."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    low, high = float(sizes.min()), float(sizes.max())
    if low == high:
        low, high = low / 2, high * 2
    return LogNorm(vmin=low, vmax=high), colormaps["viridis"]


def _size_bar(fig, cax, norm, cmap, sizes) -> None:
    """The colour bar of dataset sizes, ticked at the sizes themselves when there are few."""
    from matplotlib.cm import ScalarMappable

    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, label=N_LABEL)
    ticks = np.unique(np.asarray(sizes))
    if ticks.size <= 8:
        bar.minorticks_off()
        bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])


def _grid(n_panels: int, width: float = 3.0, height: float = 2.3, colorbar: bool = True):
    """A Figure with ``n_panels`` axes of ``width`` x ``height`` inches in at most three columns,
    and an axis for a colour bar on the right (None without ``colorbar``).

    Margins are fixed in inches rather than found by a layout engine, which would cost most of
    the drawing time; they leave room for mathtext labels, panel titles and the suptitle.
    """
    from matplotlib.figure import Figure

    left, right, bottom, top, gap_w, gap_h, bar = 0.95, 1.3 if colorbar else 0.3, 0.55, 0.8, 1.05, 1.0, 0.15
    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    fig_w = left + cols * width + (cols - 1) * gap_w + right
    fig_h = bottom + rows * height + (rows - 1) * gap_h + top
    fig = Figure(figsize=(fig_w, fig_h))
    axes = fig.subplots(
        rows,
        cols,
        squeeze=False,
        gridspec_kw=dict(
            left=left / fig_w,
            right=1 - right / fig_w,
            bottom=bottom / fig_h,
            top=1 - top / fig_h,
            wspace=gap_w / width,
            hspace=gap_h / height,
        ),
    ).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    cax = None
    if colorbar:
        cax = fig.add_axes((1 - (right - 0.25) / fig_w, bottom / fig_h, bar / fig_w, 1 - (bottom + top) / fig_h))
    return fig, list(axes[:n_panels]), cax


def _group_title(dataset: str, criterion: str, what: str) -> str:
    return f"{dataset_name(dataset)} · {criterion_name(criterion)} — {what}"


def _expand(family: CurveFamily, rows: pd.DataFrame) -> list[tuple[str, int | None]]:
    """The family's (metric, layer) panels that have data in ``rows``."""
    panels = []
    for metric, layer in family.panels:
        present = rows[rows["metric"] == metric]
        if layer == ALL_LAYERS:
            panels += [(metric, int(i)) for i in sorted(present["layer"].dropna().unique())]
        elif not metric_rows(present, metric, layer).empty:
            panels.append((metric, layer))
    return panels


def _draw_curves(
    family: CurveFamily, rows: pd.DataFrame, panels: list[tuple[str, int | None]], dataset: str, criterion: str
):
    """One panel per (metric, layer), one curve per run coloured by n, with a colour bar."""
    size_of = runs_of(rows).set_index("run_id")["n"]
    norm, cmap = _size_colours(size_of)
    fig, axes, cax = _grid(len(panels))
    for ax, (metric, layer) in zip(axes, panels):
        for run_id, curve in metric_rows(rows, metric, layer).sort_values("t").groupby("run_id"):
            ax.plot(curve["t"], curve["value"], color=cmap(norm(size_of[run_id])), lw=0.9, alpha=0.85)
        if family.log_y:
            ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel(T_LABEL)
        ax.set_ylabel(symbol(metric, layer))
        if metric in EQ7_TITLES:
            ax.set_title(EQ7_TITLES[metric](int(layer)), fontsize=10)
        elif layer is not None:
            ax.set_title(f"layer {layer}", fontsize=10)
        ax.grid(alpha=0.3)
    _size_bar(fig, cax, norm, cmap, size_of)
    fig.suptitle(_group_title(dataset, criterion, family.title))
    return fig


def _draw_peaks(group: GroupFit):
    """Y of Eq. 9 per run against n, log-log, with our fit and the paper's line."""
    from matplotlib.ticker import NullLocator

    peaks = group.peaks[np.isfinite(group.peaks["peak"]) & (group.peaks["peak"] > 0)]
    norm, cmap = _size_colours(peaks["n"])
    fig, (ax,), cax = _grid(1, width=4.5, height=3.4)
    ax.scatter(peaks["n"], peaks["peak"], c=cmap(norm(peaks["n"].to_numpy())), s=22, zorder=3, label="runs")
    grid = np.geomspace(peaks["n"].min() / 1.2, peaks["n"].max() * 1.2, 50)
    if group.fit is not None:
        f = group.fit
        ax.plot(grid, f.predict(grid), color="C3", label=rf"ours: $y={f.a:.2g}\,n^{{{f.b:.2f}}}$, $R^2={f.r2:.2f}$")
    else:
        ax.text(0.02, 0.02, f"not fitted: {group.error}", transform=ax.transAxes, fontsize=7, wrap=True)
    if group.paper is not None:
        a, b, r2 = group.paper
        ax.plot(grid, a * grid**b, color="0.4", ls="--", label=rf"paper: $y={a:g}\,n^{{{b:.2f}}}$, $R^2={r2:.2f}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = np.unique(peaks["n"])
    if sizes.size <= 8:
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(sizes, labels=[f"{n:g}" for n in sizes])
    ax.set_xlabel(N_LABEL)
    layer = "" if group.layer is None else f", layer {group.layer}"
    ax.set_ylabel(f"$y$ = peak of {symbol(group.metric, group.layer)}{layer}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _size_bar(fig, cax, norm, cmap, peaks["n"])
    fig.suptitle(_group_title(group.dataset, group.criterion, "peak alignment (Eq. 9)"))
    return fig


def _draw_contrast(pairs: list[tuple[pd.DataFrame, float, pd.DataFrame]], dataset: str, criterion: str):
    """lambda^1(H) of GD runs with their 2/eta lines, and of their exponential Euler partners."""
    fig, (ax,), _ = _grid(1, width=5.5, height=3.6, colorbar=False)
    for k, (gd, eta, euler) in enumerate(pairs):
        colour = f"C{k % 10}"
        ax.plot(gd["t"], gd["value"], color=colour, lw=1.0, label=rf"GD, $\eta={eta:g}$")
        ax.axhline(2 / eta, color=colour, ls=":", lw=1.2, label=rf"$2/\eta={2 / eta:g}$")
        ax.plot(
            euler["t"],
            euler["value"],
            color=colour,
            ls="--",
            lw=1.0,
            alpha=0.9,
            label="exponential Euler, same problem",
        )
    ax.set_xlabel(T_LABEL)
    ax.set_ylabel(symbol("sharpness_H"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(_group_title(dataset, criterion, "gradient descent vs exponential Euler"))
    return fig


#: Run columns that make two runs "the same problem" (all but the solver and its step size).
PROBLEM_COLUMNS = ("n", "init_seed", "subset_seed", "width", "depth")


def _contrast_pairs(frame: pd.DataFrame, skip_before: int) -> tuple[list, list[str]]:
    """(GD curve, η, exponential Euler curve) per GD run of one group, and notes on misses.

    The partner is the exponential Euler run with the same size, seeds, width and depth; failing
    that, one with the same size n.
    """
    runs = runs_of(frame)
    sharp = metric_rows(frame[frame["step"] >= skip_before], "sharpness_H").sort_values("t")
    euler = runs[runs["solver"] == ANALYSIS_SOLVER]
    pairs, notes = [], []
    for _, gd in runs[runs["solver"] == "gd"].iterrows():
        same = euler[np.logical_and.reduce([euler[c] == gd[c] for c in PROBLEM_COLUMNS])]
        if same.empty:
            same = euler[euler["n"] == gd["n"]]
        if same.empty or not (gd["eta"] > 0):
            why = f"no exponential Euler run with n={gd['n']}" if same.empty else "its eta is not positive"
            notes.append(f"GD run {gd['run_id']} left out of the contrast figure: {why}")
            continue
        partner = same["run_id"].iloc[0]
        pairs.append((sharp[sharp["run_id"] == gd["run_id"]], float(gd["eta"]), sharp[sharp["run_id"] == partner]))
    return pairs, notes


def plan_figures(
    frame: pd.DataFrame, *, fits: list[GroupFit] | None = None, skip_before: int = SKIP_BEFORE
) -> tuple[list[FigureJob], list[str]]:
    """The figures of a collected frame, per (dataset, criterion) group, and notes on skipped ones.

    Curve families use the exponential Euler runs and steps ``>= skip_before`` (D13, docs/decisions.md); a family
    without any data in a group is skipped with a note. ``fits`` (from
    :func:`eoslab.report.powerlaw.fit_power_laws`) adds the peak-alignment figures.
    """
    jobs: list[FigureJob] = []
    notes: list[str] = []
    has_gd = bool((frame["solver"] == "gd").any())
    if not has_gd:
        notes.append("The table has no gradient-descent run: the GD vs exponential Euler figure is skipped.")
    fit_of = {(g.dataset, g.criterion): g for g in fits or []}
    for (dataset, criterion), group in frame.groupby(["dataset", "criterion"], sort=True):
        where = f"{dataset}/{criterion}"
        rows = group[(group["solver"] == ANALYSIS_SOLVER) & (group["step"] >= skip_before)]
        for family in CURVE_FAMILIES if not rows.empty else ():
            panels = _expand(family, rows)
            if not panels:
                notes.append(f"{where}: no data for {family.key}; figure skipped.")
                continue
            draw = functools.partial(_draw_curves, family, rows, panels, dataset, criterion)
            jobs.append(FigureJob(family.key, dataset, criterion, family.caption, draw))
        group_fit = fit_of.get((dataset, criterion))
        if group_fit is not None:
            if (group_fit.peaks["peak"] > 0).any():
                draw = functools.partial(_draw_peaks, group_fit)
                jobs.append(FigureJob("peak_alignment", dataset, criterion, PEAK_CAPTION, draw))
            else:
                notes.append(f"{where}: no positive peak values; peak-alignment figure skipped.")
        if has_gd:
            pairs, missed = _contrast_pairs(group, skip_before)
            notes += [f"{where}: {m}" for m in missed]
            if pairs:
                draw = functools.partial(_draw_contrast, pairs, dataset, criterion)
                jobs.append(FigureJob("gd_vs_euler", dataset, criterion, CONTRAST_CAPTION, draw))
            elif not missed:
                notes.append(f"{where}: no gradient-descent run; contrast figure skipped.")
    return jobs, notes


def render(job: FigureJob, out_dir: str | Path, *, dpi: int = 110) -> FigureFile:
    """Draw ``job`` and save it as ``out_dir/<stem>.png`` and ``.pdf``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = job.draw()
    png, pdf = out_dir / f"{job.stem}.png", out_dir / f"{job.stem}.pdf"
    fig.savefig(png, dpi=dpi)
    fig.savefig(pdf)
    return FigureFile(job.family, job.dataset, job.criterion, job.caption, png, pdf)
