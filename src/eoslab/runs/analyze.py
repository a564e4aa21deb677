"""The analysis of a run directory: :func:`analyze_run` writes ``analysis.parquet`` (docs/rundir.md).

It applies :func:`eoslab.analysis.analyze_snapshot` to the snapshots of a run directory, with
one :class:`~eoslab.analysis.AnalysisSpec` built from the run's ``analysis`` config, and writes the
long-format table ``step, t, metric, layer, value`` (docs/metrics.md), resumably.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..analysis import DEFAULT_CHUNK_SIZE, SHARPNESS_SOLVER, AnalysisSpec, analyze_snapshot
from ..constants import LAYER_RATIO_BOUND
from ..progress import ProgressBar
from ..rundir import ANALYSIS_FILE, ANALYSIS_SCHEMA, CorruptFileError
from ..spectrum import spectrum_summary
from .records import steps_text
from .run import Run, load_run


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Long-format rows (:meth:`SnapshotAnalysis.rows`) as a table of the ``analysis.parquet`` schema."""
    return pa.Table.from_pylist(rows, schema=ANALYSIS_SCHEMA)


def _first_c5(table: pa.Table, step: int) -> float | None:
    """C5 of layer 1 stored for ``step`` (D15's C5(t0) when resuming), None if absent."""
    for row in table.filter(pc.equal(table["step"], step)).to_pylist():
        if row["metric"] == "eq7_c5" and row["layer"] == 1:
            return row["value"]
    return None


def analyze_run(
    run_dir: str | Path,
    *,
    every: int | None = None,
    skip_before: int | None = None,
    tol: float | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> Path:
    """Write ``RUN_DIR/analysis.parquet``: :func:`analyze_snapshot` for the run's snapshots.

    Holds the run directory's lock; the run's config.toml and data must be those it was created
    with, and every snapshot to analyse must match its checksum (checked before any work;
    :class:`~eoslab.rundir.CorruptFileError` otherwise). A stored ``analysis.parquet`` that does
    not verify is recomputed, loudly; values a degenerate snapshot leaves undefined are NaN, with
    the reason in ``status.json``'s notes (:meth:`SnapshotAnalysis.degenerate`), and so are the
    snapshots where a layer's E‖J̃_i‖² exceeds 1.37 E‖J̃_1‖², the premise of ``stability_bound``
    (:meth:`SnapshotAnalysis.layer_ratio`); a λ¹ solve that did not meet its tolerance within its
    iteration limit (200), or with ``analysis.spectrum`` a λ_min or per-group λ¹ solve
    (:meth:`~eoslab.spectrum.SpectrumSummary.unconverged`), is kept as the solver's estimate and
    named in a warning and in the notes (step and operator).

    Snapshots with step < ``skip_before`` are skipped (D13), then every ``every``-th is kept.
    C5(t0) of the stability bound is layer 1's C5 at the first kept snapshot (D15): the file's first
    step when it holds an earlier one than the snapshots on disk (a compacted run,
    :func:`~eoslab.runs.compact_run`). The file is
    rewritten atomically after each snapshot, and a rerun skips the steps it already holds, so an
    interrupted analysis resumes. The λ¹ solves are warm-started from the previous snapshot.

    Args:
        every, skip_before, tol, chunk_size: None takes the run config's ``analysis`` section
            (``every``, ``skip_before``, ``eig_tol``, ``chunk_size``; a chunk size of None there
            means :data:`DEFAULT_CHUNK_SIZE`).
        progress: show a progress bar on stderr.

    Returns:
        The path of ``analysis.parquet``.
    """
    run = load_run(run_dir)
    cfg = run.config.analysis
    every = cfg.every if every is None else every
    skip_before = cfg.skip_before if skip_before is None else skip_before
    tol = cfg.eig_tol if tol is None else tol
    chunk_size = (cfg.chunk_size or DEFAULT_CHUNK_SIZE) if chunk_size is None else chunk_size
    eigensolver = dataclasses.replace(SHARPNESS_SOLVER, method=cfg.eig_method, tol=tol)
    spec = AnalysisSpec(eigensolver=eigensolver, chunk_size=chunk_size)
    with run.dir.lock():
        run.dir.remove_leftovers()
        run.adopt()
        table = _stored_analysis(run)
        done = set(table["step"].to_pylist())
        steps = run.dir.analysed_steps(skip_before=skip_before, every=every)
        todo = [step for step in steps if step not in done]
        first = min([*done, *steps[:1]], default=None)  # the first kept snapshot, also when compacted away
        c5_t0 = _first_c5(table, first) if first is not None and first in done else None
        for step in todo:  # refuse a corrupt snapshot before hours of work, not after
            run.load_snapshot(step)
        warm = None
        degenerate: dict[str, list[int]] = {}
        unconverged: dict[str, list[int]] = {}
        beyond: dict[int, float] = {}  # step: a layer ratio above the stability bound's premise
        with ProgressBar(f"analyse {Path(run_dir).name}", total=len(todo), enabled=progress) as bar:
            for step in todo:
                bar.update(description=f"analyse {Path(run_dir).name} step {step}")
                theta, t = run.load_snapshot(step)
                result = analyze_snapshot(run.loss, theta, spec, step=step, t=t, warm_start=warm, c5_t0=c5_t0)
                c5_t0 = result.c5_t0 if c5_t0 is None else c5_t0
                warm = result.eigenvectors()
                ratio = result.layer_ratio()
                if ratio is not None and ratio > LAYER_RATIO_BOUND:
                    beyond[step] = ratio
                for reason in result.degenerate():
                    degenerate.setdefault(reason, []).append(step)
                rows, uncertain = result.rows(), [f"λ¹({which})" for which in result.uncertain(tol)]
                if cfg.spectrum:  # docs/math.md §9, on request only
                    summary = spectrum_summary(run.loss, theta, tol=tol, seed=step)
                    rows, uncertain = rows + summary.rows(step, t), uncertain + summary.unconverged()
                for what in uncertain:
                    unconverged.setdefault(what, []).append(step)
                table = pa.concat_tables([table, rows_to_table(rows)])
                run.dir.write_table(ANALYSIS_FILE, table)
                bar.advance()
        if not run.dir.analysis_file.exists():
            run.dir.write_table(ANALYSIS_FILE, table)
        if degenerate:
            said = "; ".join(f"{reason} ({steps_text(s)})" for reason, s in degenerate.items())
            run.dir.add_note(f"{run.path}: degenerate snapshots, values recorded as NaN: {said}")
        if beyond:
            run.dir.add_note(
                f"{run.path}: stability_bound grants E‖J̃_i‖² ≤ {LAYER_RATIO_BOUND} E‖J̃_1‖² for every layer i > 1 "
                f"(docs/math.md §4), but a layer's ratio is up to {max(beyond.values()):.3g} at "
                f"{steps_text(sorted(beyond))}: there the bound's premise fails"
            )
        if unconverged:
            said = "; ".join(f"{what} at {steps_text(s)}" for what, s in unconverged.items())
            run.dir.add_note(f"{run.path}: eigenvalues not certified to tol {tol:g}, values are estimates: {said}")
    return run.dir.analysis_file


def _stored_analysis(run: Run) -> pa.Table:
    """The analysis rows already in ``analysis.parquet`` (none if it is missing); a file that does
    not verify is recomputed, loudly.
    """
    if not run.dir.analysis_file.exists():
        return ANALYSIS_SCHEMA.empty_table()
    try:
        return run.dir.read_table(ANALYSIS_FILE, run.manifest, "").cast(ANALYSIS_SCHEMA)
    except CorruptFileError as e:
        detail = e.detail
    except pa.ArrowException as e:
        detail = f"has other columns than analysis.parquet's ({e})"
    run.dir.add_note(f"{run.dir.analysis_file} {detail}: recomputing it")
    return ANALYSIS_SCHEMA.empty_table()
