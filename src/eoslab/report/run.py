"""One run directory at a glance: its summary (``eoslab show RUN``) and its report (``eoslab
report RUN``): the trajectory (loss, the step Δt and the top eigenvalues of H against flow time t,
docs/rundir.md) and the paper's figure families on its own analysis (docs/metrics.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from eoslab.config import RunConfig, config_hash, load_config
from eoslab.data import load_dataset
from eoslab.models.registry import describe
from eoslab.rundir import ANALYSIS_FILE, TRAJECTORY_FILE, RunDir
from eoslab.store import to_frame, write_text
from eoslab.sweeps.grid import GRID_FILE, run_columns
from eoslab.sweeps.point import trajectory_rows

from . import html as html_mod
from .collected import collected_frame
from .figures import (
    EDGE_BAND,
    T_LABEL,
    FigureJob,
    RunCurves,
    draw_gradient_descent,
    edge_text,
    gd_caption,
    panel_grid,
    percent,
    plan_curves,
    render_all,
    symbol,
    tidy_log_axis,
)
from .groups import Group, groups
from .sweep import ReportResult

#: Whole-network λ¹ of the analysis, by operator (Eq. 2).
SHARPNESS = {"H": "sharpness_H", "G": "sharpness_G", "R": "sharpness_R"}


@dataclass(frozen=True)
class Trend:
    """A quantity over a run: its first, peak (largest) and last value, and the peak's step."""

    first: float
    peak: float
    last: float
    peak_step: int

    @classmethod
    def of(cls, steps: np.ndarray, values: np.ndarray) -> Trend | None:
        """The trend of ``values`` at ``steps`` (NaN values ignored), None without a finite one."""
        keep = np.isfinite(values)
        if not keep.any():
            return None
        steps, values = steps[keep], values[keep]
        k = int(np.argmax(values))
        return cls(float(values[0]), float(values[k]), float(values[-1]), int(steps[k]))

    def text(self) -> str:
        """``4.4 → 7.38 (step 120) → 5.68``."""
        return f"{self.first:.4g} → {self.peak:.4g} (step {self.peak_step}) → {self.last:.4g}"


@dataclass(frozen=True)
class RunSummary:
    """What ``eoslab show`` prints of a run.

    Attributes:
        path: the run directory.
        config: its resolved config.
        status: ``status.json`` (``state``, ``reason``, ``step``, ``t``, ``loss``); empty if missing.
        steps, t: steps taken and flow time reached (from the trajectory).
        loss: the loss at the first and the last step.
        sharpness: λ¹ of H, G and R over the analysed snapshots (Eq. 2); without an analysis, λ¹(H)
            from the trajectory's eigenvalues under ``H``.
        eq7: the five factors C1..C5 of Eq. 7 for layer 1 over the analysed snapshots.
        analysed, snapshots: analysed snapshots, and snapshots in all (on disk or analysed: a compacted
            run keeps no parameter file of its analysed steps, `eoslab compact`).
        sharpness_source: ``analysis`` or ``trajectory`` (or empty without any).
        edge: gradient descent: how its measured λ¹(H) meets 2/η
            (:func:`eoslab.report.figures.edge_text`, Eq. 1); empty for the flow.
        code: ``(step, code)`` of each sitting that trained the run with other code than the one
            before (:meth:`eoslab.rundir.RunDir.code_sittings`); empty when not recorded.
    """

    path: Path
    config: RunConfig
    status: dict
    steps: int
    t: float
    loss: tuple[float, float] | None
    sharpness: dict[str, Trend] = field(default_factory=dict)
    eq7: dict[str, Trend] = field(default_factory=dict)
    analysed: int = 0
    snapshots: int = 0
    sharpness_source: str = ""
    edge: str = ""
    threshold: str = ""
    code: list[tuple[int, str]] = field(default_factory=list)

    def lines(self) -> list[tuple[str, str]]:
        """``(label, text)`` pairs, in the order shown."""
        c, s = self.config, self.status
        model = describe(c.model.kind, depth=c.model.depth, width=c.model.width, options=c.model.options)
        step_size = f"η = {c.solver.eta:g}" if c.solver.method == "gd" else f"η_max = {c.solver.eta_max:g}"
        out = [
            ("run", str(self.path)),
            ("state", f"{s.get('state', 'unknown')}" + (f" ({s['reason']})" if s.get("reason") else "")),
            (
                "problem",
                f"{c.data.name} n={c.data.n} {c.criterion.name}, {model}, "
                f"seeds {c.model.init_seed}/{c.data.subset_seed}, {c.model.dtype}",
            ),
            (
                "solver",
                f"your own loop, tracked by eoslab.Tracker (optimizer: see threshold), "
                f"target loss {c.train.target_loss:g}"
                if self.threshold
                else f"{c.solver.method}, {step_size}, target loss {c.train.target_loss:g}",
            ),
            ("progress", f"{self.steps} steps, t = {self.t:.6g}"),
        ]
        if self.loss is not None:
            out.append(("loss", f"{self.loss[0]:.4g} → {self.loss[1]:.4g}"))
        if self.threshold:  # a tracker's run: the optimizer's own threshold, recorded per step
            out.append(("threshold", self.threshold))
            out.append(("edge", self.edge))
        elif c.solver.method == "gd":
            assert c.solver.eta is not None  # a run's config is resolved
            out.append(("2/η", f"{2 / c.solver.eta:.4g} (the edge of stability, Eq. 1)"))
            out.append(("edge", self.edge))
        for name, trend in self.sharpness.items():
            out.append((f"λ¹({name})", trend.text() + f"  [{self.sharpness_source}]"))
        for name, trend in self.eq7.items():
            out.append((f"{name} (layer 1)", trend.text()))
        out.append(("analysis", f"{self.analysed} of {self.snapshots} snapshots analysed"))
        if self.code:
            code = "; ".join(f"{c} from step {step}" for step, c in self.code)
            out.append(("code", code + (" (MIXED: two versions trained this run)" if len(self.code) > 1 else "")))
        out += [("note", str(note)) for note in self.status.get("notes", [])]
        return out


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory (it holds ``config.toml``) and not a sweep folder."""
    path = Path(path)
    return RunDir(path).config_file.is_file() and not (path / GRID_FILE).exists()


def _read(run_dir: Path) -> tuple[RunConfig, dict, pd.DataFrame, pd.DataFrame | None]:
    """Config, status, trajectory and analysis (None when not analysed) of a run directory, the
    tables checked against the run's manifest (docs/rundir.md).

    Raises:
        FileNotFoundError: not a run directory, or no trajectory yet.
        eoslab.rundir.RunDirError: a table that does not match its checksum (the message says how to
            rebuild it).
    """
    run = RunDir(run_dir)
    if not run.config_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.toml)")
    if not run.trajectory_file.is_file():
        raise FileNotFoundError(f"{run_dir} has no {TRAJECTORY_FILE} yet: the run has not taken a step")
    config = load_config(run.config_file)
    manifest = run.manifest()
    trajectory = run.read_table(TRAJECTORY_FILE, manifest, f"rerun `eoslab train` on {run_dir} to rebuild it")
    analysis = None
    if run.analysis_file.is_file():
        analysis = run.read_table(ANALYSIS_FILE, manifest, f"rerun `eoslab analyze {run_dir}` to rebuild it")
    return (
        config,
        run.read_status(manifest) or {},
        to_frame(trajectory),
        None if analysis is None else to_frame(analysis),
    )


def run_summary(run_dir: str | Path) -> RunSummary:
    """The :class:`RunSummary` of a run directory."""
    run_dir = Path(run_dir)
    config, status, traj, analysis = _read(run_dir)
    steps = traj["step"].to_numpy()
    loss = traj["loss"].to_numpy(dtype=float)
    sharpness, eq7, source, analysed_steps = {}, {}, "", set()
    if analysis is not None and not analysis.empty:  # compacted runs keep no snapshot of their analysed steps
        source, analysed_steps = "analysis", {int(s) for s in analysis["step"].unique()}
        for name, metric in SHARPNESS.items():
            rows = analysis[(analysis["metric"] == metric) & analysis["layer"].isna()].sort_values("step")
            trend = Trend.of(rows["step"].to_numpy(), rows["value"].to_numpy(dtype=float))
            if trend is not None:
                sharpness[name] = trend
        for k in range(1, 6):
            rows = analysis[(analysis["metric"] == f"eq7_c{k}") & (analysis["layer"] == 1)].sort_values("step")
            trend = Trend.of(rows["step"].to_numpy(), rows["value"].to_numpy(dtype=float))
            if trend is not None:
                eq7[f"C{k}"] = trend
    else:
        top = trajectory_eigenvalues(traj)
        trend = Trend.of(top["step"].to_numpy(), top["eig_1"].to_numpy()) if "eig_1" in top else None
        if trend is not None:
            sharpness, source = {"H": trend}, "trajectory"
    edge, threshold = "", ""
    if is_tracker_trajectory(traj):
        threshold, edge = tracker_edge(traj)
    elif config.solver.method == "gd":
        assert config.solver.eta is not None  # a run's config is resolved
        top = trajectory_eigenvalues(traj)
        measured = pd.DataFrame({"step": top["step"], "value": top.get("eig_1", pd.Series(dtype=float))})
        edge = edge_text(measured, config.solver.eta)
    return RunSummary(
        path=run_dir,
        config=config,
        status=status,
        steps=int(steps.max()) if steps.size else 0,
        t=float(traj["t"].max()) if len(traj) else 0.0,
        loss=(float(loss[0]), float(loss[-1])) if loss.size else None,
        sharpness=sharpness,
        eq7=eq7,
        analysed=len(analysed_steps),
        snapshots=len(set(RunDir(run_dir).snapshot_steps("step")) | analysed_steps),
        sharpness_source=source,
        edge=edge,
        threshold=threshold,
        code=RunDir(run_dir).code_sittings(),
    )


def is_tracker_trajectory(traj: pd.DataFrame) -> bool:
    """Whether the trajectory was written by :class:`eoslab.Tracker` (it records the optimizer's
    threshold per measured step; the config's ``solver`` then only names GD's first η).
    """
    return "threshold" in traj.columns


def _tracker_measured(traj: pd.DataFrame) -> pd.DataFrame:
    """step, threshold and the (preconditioned) sharpness it applies to, on the measured steps."""
    rows = traj[["step", "threshold", "preconditioned_sharpness"]].dropna()
    return rows[rows["threshold"].map(math.isfinite) & (rows["threshold"] > 0)]


def tracker_edge(traj: pd.DataFrame) -> tuple[str, str]:
    """The ``threshold`` and ``edge`` lines of a tracker's run: the optimizer's stability threshold
    as recorded (a schedule moves it), and how its preconditioned sharpness (λ¹(H) for SGD without
    preconditioning) meets it: the first measured step at or above it and the share of measured
    steps from there within 10 % of it — never GD's 2/η of the config's first η.
    """
    rows = _tracker_measured(traj)
    optimizer = next((o for o in traj.get("optimizer", pd.Series(dtype=str)) if o), "the optimizer")
    if rows.empty:
        return f"{optimizer}: no threshold known", "no measured step with a threshold"
    first, last = float(rows["threshold"].iloc[0]), float(rows["threshold"].iloc[-1])
    span = f"{first:.4g}" if math.isclose(first, last, rel_tol=1e-9) else f"{first:.4g} → {last:.4g}"
    threshold = f"{span} ({optimizer}; recorded at each measured step)"
    ratio = (rows["preconditioned_sharpness"] / rows["threshold"]).to_numpy(dtype=float)
    steps = rows["step"].to_numpy()
    above = (ratio >= 1).nonzero()[0]
    if not above.size:
        return threshold, f"stays below its threshold: at most {percent(float(ratio.max()))} of it"
    after = ratio[above[0] :]
    within = float((abs(after - 1) <= EDGE_BAND).mean())
    edge = (
        f"first reaches its threshold at step {int(steps[above[0]])}; from there on {percent(within)} of "
        f"{after.size} measured steps are within {percent(EDGE_BAND)} of it "
        f"(ratio {after.min():.3g}–{after.max():.3g})"
    )
    return threshold, edge


def trajectory_eigenvalues(traj: pd.DataFrame) -> pd.DataFrame:
    """The trajectory's eigenvalues of H, one column per rank (``eig_1`` the largest), on the
    steps that computed them, with ``step`` and ``t``.
    """
    rows = [
        (s, t, list(e)) for s, t, e in zip(traj["step"], traj["t"], traj["eigenvalues"]) if e is not None and len(e)
    ]
    if not rows:
        return pd.DataFrame(columns=["step", "t"])
    width = max(len(e) for _, _, e in rows)
    data = {"step": [r[0] for r in rows], "t": [r[1] for r in rows]}
    for j in range(width):
        data[f"eig_{j + 1}"] = [e[j] if j < len(e) else math.nan for _, _, e in rows]
    return pd.DataFrame(data)


def _draw_tracker(traj: pd.DataFrame, title: str):
    """A tracker's run: its loss, and its (preconditioned) sharpness with the threshold, per step."""
    fig, (ax_loss, ax_sharp), _ = panel_grid(2, colorbar=False)
    ax_loss.plot(traj["step"], traj["loss"], color="C0", lw=1.0)
    ax_loss.set_yscale("log", nonpositive="mask")
    tidy_log_axis(ax_loss)
    ax_loss.set_ylabel(r"loss $\tilde L$ (measured batch)")
    rows = _tracker_measured(traj)
    ax_sharp.plot(rows["step"], rows["preconditioned_sharpness"], color="C2", lw=1.0, label="sharpness")
    ax_sharp.plot(rows["step"], rows["threshold"], color="0.3", ls=":", lw=1.3, label="threshold")
    ax_sharp.set_ylabel("(preconditioned) sharpness")
    ax_sharp.legend(fontsize=7)
    for ax in (ax_loss, ax_sharp):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def _draw_trajectory(config: RunConfig, traj: pd.DataFrame, title: str):
    """Loss, Δt and the trajectory's top eigenvalues of H against t (a flow run's trajectory figure)."""
    fig, (ax_loss, ax_dt, ax_eig), _ = panel_grid(3, colorbar=False)
    moving = traj[traj["dt"] > 0]
    ax_loss.plot(traj["t"], traj["loss"], color="C0", lw=1.0)
    ax_loss.axhline(config.train.target_loss, color="0.4", ls=":", lw=1.0, label="target loss")
    ax_loss.set_yscale("log", nonpositive="mask")
    tidy_log_axis(ax_loss)
    ax_loss.set_ylabel(r"loss $\tilde L$")
    ax_loss.legend(fontsize=7)
    ax_dt.plot(moving["t"], moving["dt"], color="C1", lw=1.0)
    ax_dt.set_ylabel(r"step $\Delta t$")
    eig = trajectory_eigenvalues(traj)
    ranks = [c for c in eig.columns if c.startswith("eig_")]
    for j, column in enumerate(ranks):
        label = symbol("sharpness_H") if j == 0 else None
        ax_eig.plot(eig["t"], eig[column], lw=1.0 if j == 0 else 0.6, color="C2" if j == 0 else "0.6", label=label)
    if len(ranks) > 1:
        ax_eig.set_ylabel(f"top {len(ranks)} eigenvalues of $\\mathbf{{H}}$")
    else:
        ax_eig.set_ylabel(symbol("sharpness_H") if ranks else "no eigenvalues computed")
    if ranks:
        ax_eig.legend(fontsize=7)
    for ax in (ax_loss, ax_dt, ax_eig):
        ax.set_xlabel(T_LABEL)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def run_frame(run_dir: str | Path) -> pd.DataFrame | None:
    """The run's analysis as a one-run collected frame (:func:`eoslab.report.collected_frame`), or
    None when it has no analysis rows.
    """
    config, _, _, analysis = _read(Path(run_dir))
    if analysis is None or analysis.empty:
        return None
    return collected_frame(analysis.assign(**_run_columns(config)))


def _run_columns(config: RunConfig) -> dict:
    """The run's columns of a collected table (:func:`eoslab.sweeps.grid.run_columns`), ``n`` the
    split's size for a run trained on a whole split.
    """
    columns = run_columns(config_hash(config), config)
    if columns["n"] is None:
        d = config.data
        columns["n"] = len(load_dataset(d.name, d.split, data_root=d.data_root, **d.options))
    return columns


def _trajectory_job(run_dir: Path, config: RunConfig, traj: pd.DataFrame, group) -> FigureJob:
    """The run's trajectory figure: for gradient descent its loss and λ¹(H) at every measured step
    with 2/η (:func:`eoslab.report.figures.draw_gradient_descent`, the sweep report's ``gd_run``
    figure, caption from the data); for the flow its loss, Δt and top eigenvalues of H.
    """
    title = f"{run_dir.name}: {config.solver.method}, {config.data.name} n={config.data.n} — trajectory"
    if is_tracker_trajectory(traj):
        caption = "Loss, and the optimizer's (preconditioned) sharpness against its threshold at every measured step: "
        return FigureJob("trajectory", group, caption + tracker_edge(traj)[1], lambda: _draw_tracker(traj, title))
    if config.solver.method != "gd":
        caption = "Loss, step Δt and the top eigenvalues of H the integrator computed, against flow time t"
        return FigureJob("trajectory", group, caption, lambda: _draw_trajectory(config, traj, title))
    run = pd.Series(_run_columns(config))
    curves = RunCurves.of(to_frame(trajectory_rows(run_dir)).assign(run_id=run["run_id"]), run)
    draw = functools.partial(draw_gradient_descent, [curves], [], title, x="step", target_loss=config.train.target_loss)
    return FigureJob("trajectory", group, gd_caption(curves), draw)


def write_run_report(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    skip_before: int | None = None,
    track: Callable[[Sequence[FigureJob]], Iterable[FigureJob]] = lambda jobs: jobs,
) -> ReportResult:
    """Write the report of one run into ``out_dir``: ``summary.md``, ``figures/`` (the trajectory
    figure and the figure families of its analysis, steps >= ``skip_before``, default the run's
    ``analysis.skip_before``) and ``index.html``.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    summary = run_summary(run_dir)
    config, _, traj, _ = _read(run_dir)
    skip = config.analysis.skip_before if skip_before is None else skip_before
    frame = run_frame(run_dir)
    notes: list[str] = []
    jobs: list[FigureJob] = []
    if frame is None:
        notes.append(f"No analysis yet: run `eoslab analyze {run_dir}` for the figures of Eqs. 2–8.")
        group = Group((("dataset", config.data.name), ("criterion", config.criterion.name)))
    else:
        jobs, notes = plan_curves(frame, skip_before=skip, solver=config.solver.method)
        group = groups(frame)[0][0]
    trajectory = _trajectory_job(run_dir, config, traj, group)
    figures, removed = render_all(track([trajectory, *jobs]), out_dir / "figures")
    notes += removed
    lines = summary.lines()
    write_text("\n".join(f"- **{k}**: {v}" for k, v in lines) + "\n", out_dir / "summary.md")
    index = out_dir / "index.html"
    write_text(html_mod.run_index_html(lines=lines, figures=figures, notes=notes, out_dir=out_dir), index)
    return ReportResult(out_dir=out_dir, index=index, fits=[], studies=[], checks=[], figures=figures, notes=notes)
