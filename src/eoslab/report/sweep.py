"""The report of a sweep as a whole (:func:`write_report`): the Eq. 9 fits, the fits against a
setting (:mod:`eoslab.report.study`), the Section-5 checks, the figures and the ``index.html`` that
shows them, from one collected table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eoslab.constants import SKIP_BEFORE
from eoslab.store import write_text

from . import checks as checks_mod
from . import figures as figures_mod
from . import html as html_mod
from . import study, table2
from .checks import Check
from .collected import collected_frame, flow_departures, split_trajectory
from .figures import FigureFile, FigureJob
from .table2 import GroupFit


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote: the folder, its ``index.html``, the fits, the checks, the
    figure files and the notes on what was skipped.
    """

    out_dir: Path
    index: Path
    fits: list[GroupFit]
    studies: list[study.Study]
    checks: list[Check]
    figures: list[FigureFile]
    notes: list[str]


def write_report(
    table: Any,
    out_dir: str | Path,
    *,
    metric: str = "eq7_c5",
    layer: int | None = 1,
    skip_before: int = SKIP_BEFORE,
    per_size_means: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    source: str = "",
    headline: str = "",
    notes: Sequence[str] = (),
    track: Callable[[Sequence[FigureJob]], Iterable[FigureJob]] = lambda jobs: jobs,
) -> ReportResult:
    """Write the whole report of a collected table into ``out_dir``.

    Writes ``table2.csv`` / ``table2.md`` (Eq. 9 fits per group, :mod:`eoslab.report.groups`,
    beside the paper's Table 2), ``peaks.csv`` (the per-run ``y`` of Eq. 9), ``study.csv`` /
    ``study.md`` when groups differ in one numeric setting only (:mod:`eoslab.report.study`; a
    stale pair is removed when there is none), ``checks.csv`` /
    ``checks.md`` (Section 5), ``figures/*.png`` and ``figures/*.pdf`` (the edge-of-stability
    figures from the trajectory rows, the curves from the analysis rows), and ``index.html``
    (opened by ``headline``, e.g. ``8 of 9 runs (left out: ...)``). A group that cannot be fitted
    gets its reason in the table, and a table without the fitted metric gets a note, instead of
    stopping the report. ``notes`` (which runs were left out, say) open the page's notes; ``track``
    wraps the list of figures to draw (a progress bar, say).
    """
    out_dir = Path(out_dir)
    frame = collected_frame(table)
    analysis, trajectory = split_trajectory(frame)
    notes = list(notes)
    departed = flow_departures(trajectory)
    if departed:
        notes.append(departed)
    try:
        fits = table2.fit_power_laws(
            analysis,
            metric=metric,
            layer=layer,
            skip_before=skip_before,
            per_size_means=per_size_means,
            n_boot=n_boot,
            seed=seed,
            on_error="record",
        )
    except ValueError as e:  # the metric is absent altogether; the rest of the report still stands
        fits = []
        notes.append(f"No power-law fit: {e}")
    write_text(table2.fits_frame(fits).to_csv(index=False), out_dir / "table2.csv")
    write_text(table2.fits_markdown(fits), out_dir / "table2.md")
    write_text(table2.peaks_frame(fits).to_csv(index=False), out_dir / "peaks.csv")
    studies = study.studies(fits)
    for name in ("study.csv", "study.md"):
        (out_dir / name).unlink(missing_ok=True)
    if studies:
        write_text(study.study_frame(studies).to_csv(index=False), out_dir / "study.csv")
        write_text(study.study_markdown(studies), out_dir / "study.md")

    checks = checks_mod.section5_checks(analysis, skip_before=skip_before)
    write_text(checks_mod.checks_frame(checks).to_csv(index=False), out_dir / "checks.csv")
    write_text(checks_mod.checks_markdown(checks), out_dir / "checks.md")

    jobs, figure_notes = figures_mod.plan_figures(frame, fits=fits, skip_before=skip_before)
    jobs += study.plan_studies(studies)
    notes += figure_notes
    figures, removed = figures_mod.render_all(track(jobs), out_dir / "figures")
    notes += removed

    index = out_dir / "index.html"
    write_text(
        html_mod.index_html(
            fits=fits,
            studies=studies,
            checks=checks,
            figures=figures,
            notes=notes,
            out_dir=out_dir,
            source=source,
            headline=headline,
        ),
        index,
    )
    return ReportResult(
        out_dir=out_dir, index=index, fits=fits, studies=studies, checks=checks, figures=figures, notes=notes
    )
