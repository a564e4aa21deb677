"""Eq. 9 against a setting: the exponent ``b`` of groups of runs that differ in one numeric setting
only (the width, say), side by side (docs/math.md §5).

The report fits Eq. 9 once per group (:mod:`eoslab.report.groups`), so a sweep over widths gives
one fit per width. A *study* gathers the fits of the groups that share dataset, criterion and
every other setting and differ in one numeric setting: a table (``study.csv`` / ``study.md``: per
value, both ``y`` of :class:`~eoslab.report.table2.GroupFit` with ``b``, its interval, R², the
tests and the verdict) and a figure (``b`` with its interval against the setting, the paper's
``b`` marked). Whether the exponent approaches the paper's as the width approaches the paper's
512 is read from them; the sizes of every fit are stated, since ``b`` over other sizes is another
quantity (the report says so when the groups' sizes differ).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eoslab.report.figures import FigureJob, panel_grid
from eoslab.report.groups import Group, finite_number
from eoslab.report.powerlaw import PowerLawFit
from eoslab.report.protocol import criterion_name, dataset_name
from eoslab.report.table2 import GroupFit, ci_text, fit_columns, tests_cells

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The figure family of a study (``b_against_width__atrial_fibrillation_ce.png``).
FAMILY = "b_against"


@dataclass(frozen=True)
class Study:
    """The fits of groups that differ in the numeric setting ``axis`` only.

    Attributes:
        axis: the run column or sweep axis that varies (``width``, ``model.gain``).
        family: the groups' shared key (dataset, criterion and the other settings), as a Group.
        fits: ``(value, fit)`` ascending in value, at least two.
    """

    axis: str
    family: Group
    fits: tuple[tuple[float, GroupFit], ...]

    @property
    def title(self) -> str:
        """``AtrialFibrillation, Cross-Entropy: b against width`` (with the other settings)."""
        extra = self.family.extra_label()
        where = f"{dataset_name(self.family.dataset)}, {criterion_name(self.family.criterion)}"
        return where + (f" ({extra})" if extra else "") + f": b against {self.axis}"

    @property
    def paper_b(self) -> float | None:
        """The paper's ``b`` for the family's dataset and criterion (Table 2), if it has one."""
        paper = self.fits[0][1].paper
        return None if paper is None else paper[1]

    def rows(self) -> Iterator[tuple[float, GroupFit, str, PowerLawFit | None, str | None]]:
        """``(value, group fit, y label, fit, error)`` for every value, the peak before ``y`` at t*."""
        for value, g in self.fits:
            for label, fit, error in g.fits():
                yield value, g, label, fit, error

    def size_note(self) -> str:
        """Empty when every value's runs span the same sizes; else which sizes each has."""
        spans = {value: sizes_text(g) for value, g in self.fits}
        if len(set(spans.values())) == 1:
            return ""
        listed = "; ".join(f"{self.axis} {value:g}: n = {span}" for value, span in spans.items())
        return f"the fits span different sizes ({listed}): their b are not over one n range"


def sizes_text(g: GroupFit) -> str:
    """The sizes of a group's runs, ``60, 120, 240``."""
    return ", ".join(str(n) for n in sorted(g.peaks["n"].unique()))


def studies(fits: list[GroupFit]) -> list[Study]:
    """The studies among ``fits``: for every numeric key column of the groups, the families of
    groups that share every other key and whose peak is fitted at two values of it or more (a
    setting with one fitted value has nothing to compare), ordered by family and axis.
    """
    found = []
    axes = dict.fromkeys(k for g in fits for k, v in g.group.extra.items() if finite_number(v))
    for axis in axes:
        families: dict[Group, list[tuple[float, GroupFit]]] = {}
        for g in fits:
            value = g.group.extra.get(axis)
            if finite_number(value):
                family = Group(tuple((k, v) for k, v in g.group.keys if k != axis))
                families.setdefault(family, []).append((float(value), g))
        for family, members in families.items():
            members.sort(key=lambda item: item[0])
            if len({v for v, g in members if g.fit is not None}) > 1:
                found.append(Study(axis, family, tuple(members)))
    return sorted(found, key=lambda s: (s.family.sort_key(), s.axis))


def study_frame(found: list[Study]) -> pd.DataFrame:
    """The studies as one flat table (``study.csv``): one row per study, value and ``y``."""
    rows = []
    for s in found:
        for value, g, label, f, error in s.rows():
            column = g.peaks["peak" if label == "peak" else "y_at_t_star"]
            rows.append(
                {
                    "dataset": s.family.dataset,
                    "criterion": s.family.criterion,
                    **s.family.extra,
                    "axis": s.axis,
                    "value": value,
                    "y": label,
                    "sizes": sizes_text(g),
                    **fit_columns(f, column, g.peaks["n"]),
                    "error": error or "",
                    "paper_b": s.paper_b if s.paper_b is not None else np.nan,
                }
            )
    return pd.DataFrame(rows)


def study_markdown(found: list[Study]) -> str:
    """The studies in Markdown: per study a table (value | y | sizes | runs | a | b | b 95% CI | R²
    | lack-of-fit p | quadratic p | local slopes), the paper's ``b``, then the verdicts.
    """
    lines = []
    for s in found:
        paper = f" The paper's b: {s.paper_b:.2f}." if s.paper_b is not None else ""
        lines += [f"## {s.title}", "", f"Eq. 9 fitted per {s.axis} (both y, as in table2.md).{paper}", ""]
        lines += [
            f"| {s.axis} | y | sizes n | runs | a | b | b 95% CI | R² | lack-of-fit p | quadratic p | local slopes |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        verdicts = []
        for value, g, label, f, error in s.rows():
            head = f"| {value:g} | {label} | {sizes_text(g)} |"
            if f is None:
                lines.append(f"{head} – | – | – | not fitted: {error} | | | | |".replace("\n", " "))
                continue
            tests = " | ".join(tests_cells(f)[1:])  # lack-of-fit p, quadratic p, local slopes, as in table2.md
            lines.append(f"{head} {f.n_runs} | {f.a:.2g} | {f.b:.2f} | {ci_text(f)} | {f.r2:.2f} | {tests} |")
            verdicts.append(f"- {s.axis} {value:g}, y {label}: {f.tests.verdict()}")
        note = s.size_note()
        lines += ["", *verdicts, *([f"- Note: {note}"] if note else []), ""]
    return "\n".join(lines)


def _bar(length: float) -> float:
    """An error bar's length: ``length`` where it is finite and positive, else 0."""
    return length if np.isfinite(length) and length > 0 else 0.0


def _draw(s: Study) -> Figure:
    """``b`` with its 95% interval against the setting, for the peak and for ``y`` at t*, the paper's
    ``b`` as a dashed line; a log-2 axis when the setting spans a factor 4 or more.
    """
    values = np.array([v for v, _ in s.fits])
    fig, (ax,), _ = panel_grid(1, width=4.5, height=3.4, colorbar=False)
    spread = values.max() / values.min() if values.min() > 0 else 0.0
    shift = 1.04 if spread >= 4 else 0.01 * (values.max() - values.min())
    for k, (label, colour, marker) in enumerate((("peak", "C3", "o"), ("at t*", "C0", "s"))):
        xs, bs, low, high = [], [], [], []
        for value, g in s.fits:
            fit = g.fit if label == "peak" else g.fixed_time
            if fit is None:
                continue
            xs.append(value * shift**k if spread >= 4 else value + k * shift)
            bs.append(fit.b)
            # a bar from b to each end of the interval; none where the interval is NaN or, as a
            # percentile bootstrap of few resamples can give, lies on one side of b
            low.append(_bar(fit.b - fit.b_ci[0]))
            high.append(_bar(fit.b_ci[1] - fit.b))
        if xs:
            name = "y = peak" if label == "peak" else "y at t* (common flow time)"
            ax.errorbar(xs, bs, yerr=[low, high], fmt=marker, color=colour, capsize=3, label=name)
    if s.paper_b is not None:
        ax.axhline(s.paper_b, color="0.4", ls="--", label=f"paper (6 × 512): b = {s.paper_b:.2f}")
    ax.axhline(0.0, color="0.8", lw=0.8)
    if spread >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(values, labels=[f"{v:g}" for v in values])
    ax.minorticks_off()
    ax.set_xlabel(s.axis)
    ax.set_ylabel("b of Eq. 9 (95% interval)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(s.title, fontsize=9)
    return fig


def plan_studies(found: list[Study]) -> list[FigureJob]:
    """One figure per study (``b_against_<axis>__<family>``)."""
    caption = "The exponent b of Eq. 9 with its 95% bootstrap interval against {axis}, for both y; the paper's b dashed"
    return [
        FigureJob(f"{FAMILY}_{s.axis}", s.family, caption.format(axis=s.axis), functools.partial(_draw, s))
        for s in found
    ]


__all__ = ["Study", "plan_studies", "sizes_text", "studies", "study_frame", "study_markdown"]
