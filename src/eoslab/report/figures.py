"""The paper's figure families, one figure file per family per group of runs
(:mod:`eoslab.report.groups`: dataset, criterion and every other axis that varies, but n and seeds).

Curves against flow time ``t``, one per exponential Euler run, coloured by the dataset size
``n`` on a log colour scale (docs/math.md §4-5; the paper's §4 "Results"):

* ``fig1_sharpness``: lambda^1 of H, G and R (Eq. 2; Fig. 1);
* ``fig2_overlap``: rho and E||J~||^2, whose product is lambda^1(G) (Eq. 3; Fig. 2);
* ``fig3_layer_sqnorm``: E||J~_i||^2 for layers 1, 3, 5, those of them the network has (Eq. 4; Fig. 3);
* ``layer_sqnorm_all``: E||J~_i||^2 for every layer (Eq. 4; supplement);
* ``fig4_eq7``: the five factors C1..C5 of Eq. 7 for layer 1 (Fig. 4);
* ``act_ratio``, ``layerjac_sqnorm``, ``align_ratio``: E[r_i], E||K_i||^2 and
  kappa(J^_{i+1}, K_i) per layer, the per-layer factors of Eq. 7 (supplement);

and two more:

* ``peak_alignment``: the ``y`` of Eq. 9 per run against ``n`` on log-log axes, with our fitted
  line and, where the group is a row of Table 2, the paper's;
* ``gd_vs_euler``: the edge of stability: lambda^1(H) of each gradient-descent run, pinned near
  2/eta (Eq. 1; its 2/eta line drawn), beside the exponential Euler flow on the same problem
  (same n, seeds and every other non-solver axis); one figure per problem group.

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot state) and saved as PNG
and PDF. Log axes carry at most a handful of labels (:func:`tidy_log_axis`).
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
from eoslab.report.groups import Group, groups, is_solver_column
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
    """A figure of curves against ``t``: one panel per (metric, layer) of ``panels``; ``{layers}``
    in the title and caption becomes the layers drawn.
    """

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
        "layerwise components, {layers}",
        "Layerwise components E‖J̃ᵢ‖² for {layers} (Eq. 4; paper Fig. 3: layers 1, 3 and 5)",
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
CONTRAST_CAPTION = (
    "The edge of stability: λ¹(H) of gradient descent settles at 2/η (dotted, Eq. 1) while the exponential "
    "Euler flow on the same problem (dashed) follows its own sharpness"
)


@dataclass(frozen=True)
class FigureJob:
    """A figure to draw: ``draw()`` returns the matplotlib Figure."""

    family: str
    group: Group
    caption: str
    draw: Callable[[], Figure]

    @property
    def stem(self) -> str:
        """File name without suffix, e.g. ``fig1_sharpness__cifar10_ce``."""
        return f"{self.family}__{self.group.slug}"


@dataclass(frozen=True)
class FigureFile:
    """A drawn figure and its files."""

    family: str
    group: Group
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
    else:
        tidy_log_axis(cax, "y")


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


def group_heading(group: Group) -> str:
    """``Dice · Cross-Entropy`` or ``Dice · Cross-Entropy · model.gain = 1``."""
    extra = group.extra_label()
    return f"{dataset_name(group.dataset)} · {criterion_name(group.criterion)}" + (f" · {extra}" if extra else "")


def _group_title(group: Group, what: str) -> str:
    return f"{group_heading(group)} — {what}"


def tidy_log_axis(ax, which: str = "y") -> None:
    """At most about five labelled ticks on a log axis of ``ax`` (``which``: x or y), none on
    the minor ticks: whole decades (thinned) over several decades, 1-3 or 1-2-5 steps over one
    or two, and about four plain numbers within one decade (where a log axis would label its
    crowded minor ticks).
    """
    from matplotlib.ticker import (
        FixedLocator,
        FuncFormatter,
        LogFormatterSciNotation,
        LogLocator,
        MaxNLocator,
        NullFormatter,
    )

    low, high = sorted(ax.get_ylim() if which == "y" else ax.get_xlim())
    axis = ax.yaxis if which == "y" else ax.xaxis
    decades = math.log10(high / low) if low > 0 and high > low else 0.0
    axis.set_minor_formatter(NullFormatter())
    if decades < 1.0:
        ticks = [v for v in MaxNLocator(nbins=4, min_n_ticks=2).tick_values(low, high) if low <= v <= high and v > 0]
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        return
    subs = (1.0, 2.0, 5.0) if decades <= 1.5 else (1.0, 3.0) if decades <= 2.5 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=6))
    axis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(math.inf, math.inf)))


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


def layers_text(panels: list[tuple[str, int | None]]) -> str:
    """``layer 1``, ``layers 1 and 3`` or ``layers 1, 3 and 5``: the layers of ``panels``."""
    layers = sorted({int(layer) for _, layer in panels if layer is not None})
    if not layers:
        return "the whole network"
    if len(layers) == 1:
        return f"layer {layers[0]}"
    return "layers " + ", ".join(map(str, layers[:-1])) + f" and {layers[-1]}"


def _draw_curves(family: CurveFamily, rows: pd.DataFrame, panels: list[tuple[str, int | None]], group: Group):
    """One panel per (metric, layer), one curve per run coloured by n, with a colour bar."""
    size_of = runs_of(rows).set_index("run_id")["n"]
    norm, cmap = _size_colours(size_of)
    fig, axes, cax = _grid(len(panels))
    for ax, (metric, layer) in zip(axes, panels):
        for run_id, curve in metric_rows(rows, metric, layer).sort_values("t").groupby("run_id"):
            ax.plot(curve["t"], curve["value"], color=cmap(norm(size_of[run_id])), lw=0.9, alpha=0.85)
        if family.log_y:
            ax.set_yscale("log", nonpositive="mask")
            tidy_log_axis(ax)
        ax.set_xlabel(T_LABEL)
        ax.set_ylabel(symbol(metric, layer))
        if metric in EQ7_TITLES:
            ax.set_title(EQ7_TITLES[metric](int(layer)), fontsize=10)
        elif layer is not None:
            ax.set_title(f"layer {layer}", fontsize=10)
        ax.grid(alpha=0.3)
    _size_bar(fig, cax, norm, cmap, size_of)
    fig.suptitle(_group_title(group, family.title.replace("{layers}", layers_text(panels))))
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
    tidy_log_axis(ax, "y")
    sizes = np.unique(peaks["n"])
    if sizes.size <= 8:
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(sizes, labels=[f"{n:g}" for n in sizes])
    else:
        tidy_log_axis(ax, "x")
    ax.set_xlabel(N_LABEL)
    layer = "" if group.layer is None else f", layer {group.layer}"
    ax.set_ylabel(f"$y$ = peak of {symbol(group.metric, group.layer)}{layer}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _size_bar(fig, cax, norm, cmap, peaks["n"])
    fig.suptitle(_group_title(group.group, "peak alignment (Eq. 9)"))
    return fig


@dataclass(frozen=True)
class EdgeOfStability:
    """The curves of one edge-of-stability figure: λ¹(H) against t of each GD run with its η, and
    of the exponential Euler runs of the same problems (each drawn once).

    Attributes:
        gd: ``(run label, η, curve)`` per GD run; a curve has columns ``t`` and ``value``.
        flows: ``(run label, curve)`` per exponential Euler partner.
    """

    gd: list[tuple[str, float, pd.DataFrame]]
    flows: list[tuple[str, pd.DataFrame]]


def _draw_edge_of_stability(eos: EdgeOfStability, group: Group):
    """λ¹(H) of the GD runs with their 2/η lines, beside the exponential Euler flow."""
    fig, (ax,), _ = _grid(1, width=5.5, height=3.6, colorbar=False)
    for label, curve in eos.flows:
        ax.plot(curve["t"], curve["value"], color="0.35", ls="--", lw=1.1, label=f"exponential Euler (flow), {label}")
    for k, (label, eta, curve) in enumerate(eos.gd):
        colour = f"C{k % 10}"
        ax.plot(curve["t"], curve["value"], color=colour, lw=1.0, label=rf"GD $\eta={eta:g}$, {label}")
        ax.axhline(2 / eta, color=colour, ls=":", lw=1.3, label=rf"$2/\eta={2 / eta:.3g}$")
    ax.set_xlabel(T_LABEL)
    ax.set_ylabel(symbol("sharpness_H"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(_group_title(group, "the edge of stability: GD beside the flow"))
    return fig


def _run_label(run: pd.Series) -> str:
    return f"n={run['n']}, seeds {run['init_seed']}/{run['subset_seed']}"


def edge_of_stability(frame: pd.DataFrame, skip_before: int) -> tuple[EdgeOfStability, list[str]]:
    """The GD runs of one problem group and their exponential Euler partners, and notes on misses.

    A GD run's partner is the exponential Euler run that agrees with it on every run column and
    axis that is not a solver setting (n, seeds, width, any other axis); failing that, one with
    the same n.
    """
    runs = runs_of(frame)
    problem = [c for c in runs.columns if c != "run_id" and not is_solver_column(c)]
    sharp = metric_rows(frame[frame["step"] >= skip_before], "sharpness_H").sort_values("t")
    euler = runs[runs["solver"] == ANALYSIS_SOLVER]
    gd_curves, flows, notes = [], {}, []
    for _, gd in runs[runs["solver"] == "gd"].iterrows():
        same = euler[np.logical_and.reduce([euler[c].astype(str) == str(gd[c]) for c in problem])]
        if same.empty:
            same = euler[euler["n"] == gd["n"]]
        if same.empty or not (gd["eta"] > 0):
            why = f"no exponential Euler run with n={gd['n']}" if same.empty else "its eta is not positive"
            notes.append(f"GD run {gd['run_id']} left out of the edge-of-stability figure: {why}")
            continue
        partner = same.iloc[0]
        gd_curves.append((_run_label(gd), float(gd["eta"]), sharp[sharp["run_id"] == gd["run_id"]]))
        flows.setdefault(partner["run_id"], (_run_label(partner), sharp[sharp["run_id"] == partner["run_id"]]))
    return EdgeOfStability(gd_curves, list(flows.values())), notes


def plan_figures(
    frame: pd.DataFrame,
    *,
    fits: list[GroupFit] | None = None,
    skip_before: int = SKIP_BEFORE,
    solver: str = ANALYSIS_SOLVER,
) -> tuple[list[FigureJob], list[str]]:
    """The figures of a collected frame and notes on skipped ones.

    Curve families: per group of the runs of ``solver`` (exponential Euler, as the paper;
    :func:`eoslab.report.groups.groups`), steps ``>= skip_before`` (D13, docs/decisions.md); a family without any
    data in a group is skipped with a note.
    ``fits`` (from :func:`eoslab.report.powerlaw.fit_power_laws`) adds the peak-alignment
    figures. The edge-of-stability figure: per problem group that has GD runs.
    """
    jobs: list[FigureJob] = []
    notes: list[str] = []
    curves = frame[(frame["solver"] == solver) & (frame["step"] >= skip_before)]
    fit_of = {g.group: g for g in fits or []}
    for group, rows in groups(curves):
        for family in CURVE_FAMILIES:
            panels = _expand(family, rows)
            if not panels:
                notes.append(f"{group.name}: no data for {family.key}; figure skipped.")
                continue
            caption = family.caption.replace("{layers}", layers_text(panels))
            jobs.append(
                FigureJob(family.key, group, caption, functools.partial(_draw_curves, family, rows, panels, group))
            )
        group_fit = fit_of.get(group)
        if group_fit is not None:
            if (group_fit.peaks["peak"] > 0).any():
                jobs.append(FigureJob("peak_alignment", group, PEAK_CAPTION, functools.partial(_draw_peaks, group_fit)))
            else:
                notes.append(f"{group.name}: no positive peak values; peak-alignment figure skipped.")
    if not (frame["solver"] == "gd").any():
        notes.append("The table has no gradient-descent run: the edge-of-stability figure is skipped.")
        return jobs, notes
    for group, rows in groups(frame, solver=False):
        if not (rows["solver"] == "gd").any():
            continue
        eos, missed = edge_of_stability(rows, skip_before)
        notes += [f"{group.name}: {m}" for m in missed]
        if eos.gd:
            draw = functools.partial(_draw_edge_of_stability, eos, group)
            jobs.append(FigureJob("gd_vs_euler", group, CONTRAST_CAPTION, draw))
    return jobs, notes


def render(job: FigureJob, out_dir: str | Path, *, dpi: int = 110) -> FigureFile:
    """Draw ``job`` and save it as ``out_dir/<stem>.png`` and ``.pdf``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = job.draw()
    png, pdf = out_dir / f"{job.stem}.png", out_dir / f"{job.stem}.pdf"
    fig.savefig(png, dpi=dpi)
    fig.savefig(pdf)
    return FigureFile(job.family, job.group, job.caption, png, pdf)
