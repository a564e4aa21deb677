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

and three more:

* ``peak_alignment``: the ``y`` of Eq. 9 per run against ``n`` on log-log axes, with our fitted
  line and, where the group is a row of Table 2, the paper's;
* ``gd_vs_euler``: the edge of stability: the loss and lambda^1(H) of each gradient-descent run
  at every step its trajectory measured (the collected table's trajectory rows), with 2/eta
  (Eq. 1), beside the exponential Euler flow on the same problem (same n, seeds and every other
  non-solver axis); one figure per problem group, first among the group's figures, its caption
  computed from the data (:class:`EdgeBand`);
* ``gd_run``: the same for one GD run against its step, the band within 10 % of 2/eta shaded:
  one per GD run (a GD run's own report opens with it).

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot state) and saved as PNG
and PDF. Log axes carry at most a handful of labels (:func:`tidy_log_axis`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import pandas as pd

from eoslab.constants import SKIP_BEFORE
from eoslab.report.collected import ANALYSIS_SOLVER, metric_rows, runs_of, split_trajectory
from eoslab.report.groups import Group, groups, is_solver_column
from eoslab.report.protocol import criterion_name, dataset_name
from eoslab.report.table2 import GroupFit
from eoslab.sweeps.point import TRAJECTORY_METRICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Marks a panel list that expands to every layer the metric has in the group.
ALL_LAYERS: Final = "all"

#: J-check of Eq. 7 in mathtext (its ``\\check`` accent is misplaced on an italic J).
CHECK_J = r"\overset{\vee}{J}"


def _next(layer: int | None) -> int:
    """The layer after ``layer`` (a layer-wise symbol's, which always has one)."""
    assert layer is not None
    return layer + 1


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
    "align_ratio": lambda i: rf"\kappa({CHECK_J}_{{{_next(i)}}}, K_{{{i}}})",
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
    panels: tuple[tuple[str, int | Literal["all"] | None], ...]
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


@dataclass(frozen=True)
class FigureJob:
    """A figure to draw: ``draw()`` returns the matplotlib Figure."""

    family: str
    group: Group
    caption: str
    draw: Callable[[], Figure]
    run_id: str = ""

    @property
    def stem(self) -> str:
        """File name without suffix, e.g. ``fig1_sharpness__cifar10_ce``, or with the run of a
        one-run figure ``gd_run__dice_ce__7326f09dbc18``.
        """
        return f"{self.family}__{self.group.slug}" + (f"__{self.run_id}" if self.run_id else "")


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
    # matplotlib (a second to import) loads only when a figure is drawn, not for `eoslab show`
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    low, high = float(sizes.min()), float(sizes.max())
    if low == high:
        low, high = low / 2, high * 2
    return LogNorm(vmin=low, vmax=high), colormaps["viridis"]


def _one_size(sizes) -> str:
    """`` (n = 256)`` when every run has the same n (a figure without a colour bar then), else empty."""
    unique = np.unique(np.asarray(sizes))
    return f" (n = {unique[0]:g})" if unique.size == 1 else ""


def _size_bar(fig, cax, norm, cmap, sizes) -> None:
    """The colour bar of dataset sizes, ticked at the sizes themselves when there are few."""
    # matplotlib (a second to import) loads only when a figure is drawn, not for `eoslab show`
    from matplotlib.cm import ScalarMappable

    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, label=N_LABEL)
    ticks = np.unique(np.asarray(sizes))
    if ticks.size <= 8:
        bar.minorticks_off()
        bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    else:
        tidy_log_axis(cax, "y")


def panel_grid(n_panels: int, width: float = 3.0, height: float = 2.3, colorbar: bool = True):
    """A Figure with ``n_panels`` axes of ``width`` x ``height`` inches in at most three columns,
    and an axis for a colour bar on the right (None without ``colorbar``).

    Margins are fixed in inches rather than found by a layout engine, which would cost most of
    the drawing time; they leave room for mathtext labels, panel titles and the suptitle.
    """
    # matplotlib (a second to import) loads only when a figure is drawn, not for `eoslab show`
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
    crowded minor ticks), with as many significant digits as tell them apart (``1.005, 1.01,
    1.015``, not three ``1.01``).
    """
    # matplotlib (a second to import) loads only when a figure is drawn, not for `eoslab show`
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
        digits = next(d for d in range(3, 17) if len({f"{v:.{d}g}" for v in ticks}) == len(ticks))
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.{digits}g}"))
        return
    subs = (1.0, 2.0, 5.0) if decades <= 1.5 else (1.0, 3.0) if decades <= 2.5 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=6))
    axis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(math.inf, math.inf)))


def _expand(family: CurveFamily, rows: pd.DataFrame) -> list[tuple[str, int | None]]:
    """The family's (metric, layer) panels that have data in ``rows``."""
    panels: list[tuple[str, int | None]] = []
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
    """One panel per (metric, layer), one curve per run coloured by n, with a colour bar (with a
    single n, the title names it instead).
    """
    size_of = runs_of(rows).set_index("run_id")["n"]
    norm, cmap = _size_colours(size_of)
    single = _one_size(size_of)
    fig, axes, cax = panel_grid(len(panels), colorbar=not single)
    for ax, (metric, layer) in zip(axes, panels):
        for run_id, curve in metric_rows(rows, metric, layer).sort_values("t").groupby("run_id"):
            ax.plot(curve["t"], curve["value"], color=cmap(norm(size_of[run_id])), lw=0.9, alpha=0.85)
        if family.log_y:
            ax.set_yscale("log", nonpositive="mask")
            tidy_log_axis(ax)
        ax.set_xlabel(T_LABEL)
        ax.set_ylabel(symbol(metric, layer))
        if layer is not None:
            ax.set_title(EQ7_TITLES[metric](layer) if metric in EQ7_TITLES else f"layer {layer}", fontsize=10)
        ax.grid(alpha=0.3)
    if cax is not None:
        _size_bar(fig, cax, norm, cmap, size_of)
    fig.suptitle(_group_title(group, family.title.replace("{layers}", layers_text(panels))) + single)
    return fig


def _draw_peaks(group: GroupFit):
    """Y of Eq. 9 per run against n, log-log, with our fit and the paper's line; our points and fit
    set the y range (the paper's line is drawn within it, and its label says where it runs when
    it is off the axes); a colour bar of n, or with a single n the title names it.
    """
    # matplotlib (a second to import) loads only when a figure is drawn, not for `eoslab show`
    from matplotlib.ticker import NullLocator

    peaks = group.peaks[np.isfinite(group.peaks["peak"]) & (group.peaks["peak"] > 0)]
    norm, cmap = _size_colours(peaks["n"])
    single = _one_size(peaks["n"])
    fig, (ax,), cax = panel_grid(1, width=4.5, height=3.4, colorbar=not single)
    ax.scatter(peaks["n"], peaks["peak"], c=cmap(norm(peaks["n"].to_numpy())), s=22, zorder=3, label="runs")
    grid = np.geomspace(peaks["n"].min() / 1.2, peaks["n"].max() * 1.2, 50)
    ours = peaks["peak"].to_numpy()
    if group.fit is not None:
        f = group.fit
        ax.plot(grid, f.predict(grid), color="C3", label=rf"ours: $y={f.a:.2g}\,n^{{{f.b:.2f}}}$, $R^2={f.r2:.2f}$")
        ours = np.concatenate([ours, f.predict(grid)])
    else:
        ax.text(0.02, 0.02, f"not fitted: {group.error}", transform=ax.transAxes, fontsize=7, wrap=True)
    low, high = ours.min() / 1.3, ours.max() * 1.3
    if group.paper is not None:
        a, b, r2 = group.paper
        line = a * grid**b
        where = " (above the axes)" if line.min() > high else " (below the axes)" if line.max() < low else ""
        label = rf"paper: $y={a:g}\,n^{{{b:.2f}}}$, $R^2={r2:.2f}${where}"
        ax.plot(grid, line, color="0.4", ls="--", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(low, high)
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
    if cax is not None:
        _size_bar(fig, cax, norm, cmap, peaks["n"])
    fig.suptitle(_group_title(group.group, "peak alignment (Eq. 9)") + single)
    return fig


#: How near 2/η counts as "at the edge of stability" in the captions: within this fraction of 2/η.
EDGE_BAND = 0.1


def percent(share: float) -> str:
    """``88 %``."""
    return f"{100 * share:.0f} %"


@dataclass(frozen=True)
class EdgeBand:
    """How λ¹(H) of a gradient-descent run meets 2/η (Eq. 1), from its measured steps.

    Attributes:
        edge: 2/η.
        measured: how many steps measured λ¹.
        peak: the largest λ¹ measured.
        crossing: the first measured step with λ¹ >= 2/η (None: λ¹ stays below).
        after: measured steps from the crossing on.
        within: the share of those with |λ¹ − 2/η| <= :data:`EDGE_BAND` · 2/η.
        low, high: λ¹'s range from the crossing on.
    """

    edge: float
    measured: int
    peak: float
    crossing: int | None = None
    after: int = 0
    within: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")

    @classmethod
    def of(cls, sharpness: pd.DataFrame, eta: float) -> EdgeBand | None:
        """The band of a run's measured λ¹ (rows ``step``, ``value``; NaN values ignored), None
        without a finite one.
        """
        rows = sharpness[np.isfinite(sharpness["value"])].sort_values("step")
        if rows.empty:
            return None
        edge, values, steps = 2 / eta, rows["value"].to_numpy(), rows["step"].to_numpy()
        band = cls(edge, len(values), float(values.max()))
        above = np.flatnonzero(values >= edge)
        if not above.size:
            return band
        rest = values[above[0] :]
        within = float(np.mean(np.abs(rest - edge) <= EDGE_BAND * edge))
        crossing = int(steps[above[0]])
        return replace(band, crossing=crossing, after=rest.size, within=within, low=rest.min(), high=rest.max())

    def text(self) -> str:
        """``λ¹(H) first reaches 2/η = 2.5 at step 120; from there on 93 % of 108 measured steps are
        within 10 % of 2/η (λ¹ 2.25–2.6)``, or how far below 2/η it stays.
        """
        edge = f"2/η = {self.edge:.3g}"
        if self.crossing is None:
            return (
                f"λ¹(H) stays below {edge}: at most {self.peak:.3g} ({percent(self.peak / self.edge)} of it) "
                f"over {self.measured} measured steps"
            )
        return (
            f"λ¹(H) first reaches {edge} at step {self.crossing}; from there on {percent(self.within)} of "
            f"{self.after} measured steps are within {percent(EDGE_BAND)} of 2/η (λ¹ {self.low:.3g}–{self.high:.3g})"
        )


@dataclass(frozen=True)
class RunCurves:
    """One run's trajectory rows (:data:`eoslab.sweeps.point.TRAJECTORY_METRICS`): the loss at every
    step and λ¹(H) at every measured step, each with columns ``step``, ``t``, ``value``.

    Attributes:
        run_id, label: the run, and ``n=256, seeds 0/0`` (init/subset seed).
        loss, sharpness: the curves.
        eta: GD's η; None for the flow.
    """

    run_id: str
    label: str
    loss: pd.DataFrame
    sharpness: pd.DataFrame
    eta: float | None = None

    @classmethod
    def of(cls, trajectory: pd.DataFrame, run: pd.Series) -> RunCurves:
        """The curves of ``run`` (a row of :func:`eoslab.report.runs_of`) in trajectory rows."""
        rows = trajectory[trajectory["run_id"] == run["run_id"]].sort_values("step")
        loss, sharpness = (rows.loc[rows["metric"] == m, ["step", "t", "value"]] for m in TRAJECTORY_METRICS)
        eta = float(run["eta"]) if run["solver"] == "gd" else None
        label = f"n={run['n']}, seeds {run['init_seed']}/{run['subset_seed']}"
        return cls(str(run["run_id"]), label, loss, sharpness, eta)

    def band_text(self) -> str:
        """The run's :func:`edge_text` (a GD run's)."""
        assert self.eta is not None  # a GD run
        return edge_text(self.sharpness, self.eta)


def edge_text(sharpness: pd.DataFrame, eta: float) -> str:
    """The :class:`EdgeBand` of a GD run's measured λ¹ (rows ``step``, ``value``) as text, or that
    it measured none.
    """
    band = EdgeBand.of(sharpness, eta)
    return band.text() if band else "λ¹(H) not measured (solver.measure_sharpness_every = 0)"


def draw_gradient_descent(
    gd: list[RunCurves], flows: list[RunCurves], title: str, *, x: str = "t", target_loss: float | None = None
):
    """The loss and λ¹(H) of gradient-descent runs at every measured step with their 2/η lines
    (Eq. 1; one run: its ±:data:`EDGE_BAND` band shaded), beside exponential Euler flows (dashed),
    against ``x`` (``t`` or ``step``).
    """
    fig, (ax_loss, ax_sharp), _ = panel_grid(2, width=4.6, height=3.2, colorbar=False)
    for run in flows:
        style = dict(color="0.35", ls="--", lw=1.0, label=f"exponential Euler (flow), {run.label}")
        ax_loss.plot(run.loss[x], run.loss["value"], **style)
        ax_sharp.plot(run.sharpness[x], run.sharpness["value"], **style)
    for k, run in enumerate(gd):
        assert run.eta is not None  # a GD run
        colour = f"C{k % 10}"
        label = rf"GD $\eta={run.eta:g}$, {run.label}"
        ax_loss.plot(run.loss[x], run.loss["value"], color=colour, lw=0.9, label=label)
        ax_sharp.plot(run.sharpness[x], run.sharpness["value"], color=colour, lw=0.9, label=label)
        edge = 2 / run.eta
        ax_sharp.axhline(edge, color=colour, ls=":", lw=1.3, label=rf"$2/\eta={edge:.3g}$")
        if len(gd) == 1:
            ax_sharp.axhspan((1 - EDGE_BAND) * edge, (1 + EDGE_BAND) * edge, color=colour, alpha=0.1, lw=0)
    if target_loss is not None:
        ax_loss.axhline(target_loss, color="0.4", ls=":", lw=1.0, label="target loss")
    ax_loss.set_yscale("log", nonpositive="mask")
    tidy_log_axis(ax_loss)
    ax_loss.set_ylabel(r"loss $\tilde L$")
    ax_sharp.set_ylabel(symbol("sharpness_H"))
    for ax in (ax_loss, ax_sharp):
        ax.set_xlabel(T_LABEL if x == "t" else "step")
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=7)
    ax_sharp.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def gd_caption(run: RunCurves) -> str:
    """The caption of one GD run's figure, its :class:`EdgeBand` computed from the data."""
    return (
        f"Gradient descent, η = {run.eta:g}, {run.label}: the loss and λ¹(H) at every measured step, 2/η dotted "
        f"and ±{percent(EDGE_BAND)} shaded (the edge of stability, Eq. 1). {run.band_text()}."
    )


def plan_edge_of_stability(frame: pd.DataFrame, trajectory: pd.DataFrame) -> tuple[list[FigureJob], list[str]]:
    """The edge-of-stability figures of a collected table: per problem group with GD runs
    (:func:`eoslab.report.groups.groups` without the solver's settings), ``gd_vs_euler`` (every GD
    run's loss and λ¹(H) from the trajectory rows, beside the exponential Euler flow on the same
    problem) and one ``gd_run`` figure per GD run; and notes on what is missing.

    A GD run's partner is the exponential Euler run that agrees with it on every run column and
    axis that is not a solver setting (n, seeds, width, any other axis); failing that, one with
    the same n; failing that, the GD run is drawn alone.
    """
    if not (frame["solver"] == "gd").any():
        return [], ["The table has no gradient-descent run: the edge-of-stability figures are skipped."]
    if trajectory.empty:
        return [], [
            "The table holds no trajectory rows (collected by an eoslab before they were collected): "
            "`eoslab collect` the sweep again for the edge-of-stability figures."
        ]
    jobs, notes = [], []
    for group, rows in groups(trajectory, solver=False):
        runs = runs_of(rows)
        problem = [c for c in runs.columns if c != "run_id" and not is_solver_column(c)]
        euler = runs[runs["solver"] == ANALYSIS_SOLVER]
        gd: list[RunCurves] = []
        flows: dict[str, RunCurves] = {}  # {run id: the flow beside a GD run}
        for _, run in runs[runs["solver"] == "gd"].iterrows():
            if not run["eta"] > 0:
                notes.append(f"{group.name}: GD run {run['run_id']} left out: its eta is not positive")
                continue
            gd.append(RunCurves.of(rows, run))
            same = euler[np.logical_and.reduce([euler[c].astype(str) == str(run[c]) for c in problem])]
            if same.empty:
                same = euler[euler["n"] == run["n"]]
            if same.empty:
                notes.append(f"{group.name}: no exponential Euler run with n={run['n']} beside GD run {run['run_id']}")
            else:
                flows.setdefault(same.iloc[0]["run_id"], RunCurves.of(rows, same.iloc[0]))
        if not gd:
            continue
        flows_drawn = list(flows.values())
        title = _group_title(group, "the edge of stability: GD beside the flow")
        caption = (
            "The edge of stability (Eq. 1): the loss and λ¹(H) of gradient descent at every measured step, 2/η "
            "dotted, beside the exponential Euler flow on the same problem (dashed). "
            + " ".join(f"GD η = {run.eta:g}, {run.label}: {run.band_text()}." for run in gd)
        )
        draw = functools.partial(draw_gradient_descent, gd, flows_drawn, title)
        jobs.append(FigureJob("gd_vs_euler", group, caption, draw))
        for run in gd:
            title = _group_title(group, f"GD η = {run.eta:g}, {run.label}")
            draw = functools.partial(draw_gradient_descent, [run], [], title, x="step")
            jobs.append(FigureJob("gd_run", group, gd_caption(run), draw, run.run_id))
    return jobs, notes


def plan_curves(
    frame: pd.DataFrame,
    *,
    fits: list[GroupFit] | None = None,
    skip_before: int = SKIP_BEFORE,
    solver: str = ANALYSIS_SOLVER,
) -> tuple[list[FigureJob], list[str]]:
    """The curve families and peak-alignment figures of the analysis rows of a collected frame,
    and notes on skipped ones.

    Curve families: per group of the runs of ``solver`` (exponential Euler, as the paper;
    :func:`eoslab.report.groups.groups`), steps ``>= skip_before`` (D13, docs/decisions.md); a family without any
    data in a group is skipped with a note.
    ``fits`` (from :func:`eoslab.report.table2.fit_power_laws`) adds the peak-alignment
    figures.
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
    return jobs, notes


def plan_figures(
    frame: pd.DataFrame, *, fits: list[GroupFit] | None = None, skip_before: int = SKIP_BEFORE
) -> tuple[list[FigureJob], list[str]]:
    """The figures of a collected frame (analysis and trajectory rows,
    :func:`eoslab.report.split_trajectory`) and notes on skipped ones: the edge-of-stability
    figures (:func:`plan_edge_of_stability`) and the curves (:func:`plan_curves`), group by group
    (groups in the order of the curves), a group's edge-of-stability figures first.
    """
    analysis, trajectory = split_trajectory(frame)
    curves, notes = plan_curves(analysis, fits=fits, skip_before=skip_before)
    edge, edge_notes = plan_edge_of_stability(analysis, trajectory)
    rank = {group: k for k, group in enumerate(dict.fromkeys(job.group for job in [*curves, *edge]))}
    return sorted([*edge, *curves], key=lambda job: rank[job.group]), notes + edge_notes


def render_all(jobs: Iterable[FigureJob], out_dir: str | Path, *, dpi: int = 110) -> tuple[list[FigureFile], list[str]]:
    """Draw every job into ``out_dir`` (:func:`render`), then remove the PNG and PDF files there
    that this call did not write: the figures of an earlier report into the same folder (a group,
    run or family this one no longer has), which would otherwise stand beside the new ones as if
    they were its own. Returns the figures and the report's note naming what was removed (none
    when nothing was).
    """
    out_dir = Path(out_dir)
    figures = [render(job, out_dir, dpi=dpi) for job in jobs]
    written = {path for figure in figures for path in (figure.png, figure.pdf)}
    stale = [p for p in (*out_dir.glob("*.png"), *out_dir.glob("*.pdf")) if p not in written]
    for path in stale:
        path.unlink()
    stems = sorted({path.stem for path in stale})
    removed = ", ".join(stems)
    note = f"Removed {len(stems)} figure(s) of an earlier report in this folder, not drawn this time: {removed}."
    return figures, [note] if stems else []


def render(job: FigureJob, out_dir: str | Path, *, dpi: int = 110) -> FigureFile:
    """Draw ``job`` and save it as ``out_dir/<stem>.png`` and ``.pdf``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = job.draw()
    png, pdf = out_dir / f"{job.stem}.png", out_dir / f"{job.stem}.pdf"
    fig.savefig(png, dpi=dpi)
    fig.savefig(pdf)
    return FigureFile(job.family, job.group, job.caption, png, pdf)
