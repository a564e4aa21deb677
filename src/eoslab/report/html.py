"""One static ``index.html`` that shows the report together: what it was made from (``N of M
runs``, and why the others were left out), the Eq. 9 fits beside the paper's Table 2, the fits
against a setting (when the groups differ in one numeric setting), the Section-5 checks, notes
on skipped figures, and every figure (PNG, linked to its PDF), grouped
like the fits. All links are relative to the report folder, so the folder can be moved or served
as is; the page loads nothing from elsewhere.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from eoslab.report.checks import Check, format_value
from eoslab.report.figures import FigureFile, group_heading
from eoslab.report.protocol import criterion_name, dataset_name, protocol_text
from eoslab.report.study import Study, sizes_text
from eoslab.report.table2 import GroupFit, ci_text, describe_y, group_title, tests_cells, verdict_lines

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
td.no { color: #b00; font-weight: bold; } td.yes { color: #070; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.paper { color: #666; } li.warn { color: #b00; font-weight: bold; }
"""


def _head(title: str) -> str:
    """The page's ``<head>`` content: charset, title, style, and an empty icon (no favicon request)."""
    return f'<meta charset="utf-8"><link rel="icon" href="data:,"><title>{_e(title)}</title><style>{STYLE}</style>'


def _e(text: object) -> str:
    return html.escape(str(text))


def _num(x: float | None, fmt: str) -> str:
    return "–" if x is None or x != x else format(x, fmt)


def _rel(path: Path, out_dir: Path) -> str:
    """``path`` relative to the report folder, with forward slashes."""
    return Path(os.path.relpath(path, out_dir)).as_posix()


def _table2(fits: list[GroupFit]) -> str:
    """Table 2 as ``table2.md`` has it: each group's protocol, then Dataset | Criterion | [Setting]
    | y | a | b | R², the paper's values beside ours and the tests of each fit, then the verdicts.
    """
    setting = any(g.group.extra for g in fits)
    protocols = "".join(
        f"<li><strong>{_e(group_title(g))}</strong>: {_e(protocol_text(g.protocol))}</li>" for g in fits
    )
    head = (
        "<tr><th class=l>Dataset</th><th class=l>Criterion</th>"
        + ("<th class=l>Setting</th>" if setting else "")
        + "<th class=l>y</th><th>a</th><th>b</th><th>R²</th>"
        "<th class=paper>paper a</th><th class=paper>paper b</th><th class=paper>paper R²</th>"
        "<th>b 95% CI</th><th>runs</th><th>sizes</th>"
        "<th>lack-of-fit F (df)</th><th>lack-of-fit p</th><th>quadratic p</th><th>local slopes</th></tr>"
    )
    rows = []
    for g in fits:
        name = f"<td class=l>{_e(dataset_name(g.dataset))}</td><td class=l>{_e(criterion_name(g.criterion))}</td>"
        if setting:
            name += f"<td class=l>{_e(g.group.extra_label())}</td>"
        for label, f, error in g.fits():
            a_p, b_p, r2_p = (g.paper if label == "peak" else None) or (None, None, None)
            paper = (
                f"<td class=paper>{_num(a_p, '.4f')}</td><td class=paper>{_num(b_p, '.2f')}</td>"
                f"<td class=paper>{_num(r2_p, '.2f')}</td>"
            )
            row = f"{name}<td class=l>{_e(label)}</td>"
            if f is None:
                rows.append(
                    f"<tr>{row}<td>–</td><td>–</td><td>–</td>{paper}<td class=l colspan=7>"
                    f"not fitted: {_e(error)}</td></tr>"
                )
                continue
            dropped = f" (+{f.n_dropped} dropped)" if f.n_dropped else ""
            tests = "".join(f"<td>{_e(c)}</td>" for c in tests_cells(f))
            rows.append(
                f"<tr>{row}<td>{_num(f.a, '.2g')}</td><td>{_num(f.b, '.2f')}</td><td>{_num(f.r2, '.2f')}</td>"
                f"{paper}<td>{_e(ci_text(f))}</td>"
                f"<td>{f.n_runs}{dropped}</td><td>{f.n_sizes}</td>{tests}</tr>"
            )
    verdicts = "".join(
        f"<li{' class=warn' if 'WARNING' in line else ''}><strong>{_e(group_title(g))}</strong>, {_e(line)}</li>"
        for g in fits
        for line in verdict_lines(g)
    )
    if not fits:
        return f"<table>{head}</table>"
    return (
        f"<p>Protocol:</p><ul id=protocol>{protocols}</ul><table>{head}{''.join(rows)}</table>"
        f"<p>Verdicts:</p><ul id=verdicts>{verdicts}</ul>"
    )


def _studies(studies: Sequence[Study]) -> str:
    """The section of the studies (``study.md``), empty without any: for each, b, its interval,
    R², the tests per value of the setting, then the verdicts and, when the fits span different
    sizes, a note.
    """
    if not studies:
        return ""
    parts = [
        '<h2>Eq. 9 against a setting</h2><p>Files: <a href="study.csv">study.csv</a>, '
        '<a href="study.md">study.md</a></p>'
    ]
    for s in studies:
        head = (
            f"<tr><th>{_e(s.axis)}</th><th class=l>y</th><th class=l>sizes n</th><th>runs</th><th>a</th><th>b</th>"
            "<th>b 95% CI</th><th>R²</th><th>lack-of-fit p</th><th>quadratic p</th><th>local slopes</th></tr>"
        )
        rows, verdicts = [], []
        for value, g, label, f, error in s.rows():
            cells = f"<td>{value:g}</td><td class=l>{_e(label)}</td><td class=l>{_e(sizes_text(g))}</td>"
            if f is None:
                rows.append(f"<tr>{cells}<td class=l colspan=8>not fitted: {_e(error)}</td></tr>")
                continue
            tests = tests_cells(f)
            rows.append(
                f"<tr>{cells}<td>{f.n_runs}</td><td>{_num(f.a, '.2g')}</td><td>{_num(f.b, '.2f')}</td>"
                f"<td>{_e(ci_text(f))}</td><td>{_num(f.r2, '.2f')}</td><td>{_e(tests[1])}</td><td>{_e(tests[2])}</td>"
                f"<td>{_e(tests[3])}</td></tr>"
            )
            verdicts.append(f"<li>{_e(s.axis)} {value:g}, y {_e(label)}: {_e(f.tests.verdict())}</li>")
        note = s.size_note()
        if note:
            verdicts.append(f"<li class=warn>{_e(note)}</li>")
        paper = f" The paper's b: {s.paper_b:.2f}." if s.paper_b is not None else ""
        parts.append(
            f"<h3>{_e(s.title)}</h3><p>Eq. 9 fitted per {_e(s.axis)}.{paper}</p>"
            f"<table>{head}{''.join(rows)}</table><ul>{''.join(verdicts)}</ul>"
        )
    return "\n".join(parts)


def _checks(checks: list[Check]) -> str:
    head = "<tr><th class=l>check</th><th>ours</th><th>paper</th><th>holds</th><th class=l>where</th></tr>"
    rows = [
        f"<tr><td class=l>{_e(c.description)}</td><td>{_e(format_value(c.ours, c.percent))}</td>"
        f"<td>{_e(format_value(c.paper, c.percent))}</td>"
        f"<td class={'yes' if c.holds else 'no'}>{'yes' if c.holds else 'no'}</td><td class=l>{_e(c.at)}</td></tr>"
        for c in checks
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _figures(figures: list[FigureFile], out_dir: Path) -> str:
    """Figures by group (in the order drawn), each PNG linked to its PDF."""
    parts = []
    for group in dict.fromkeys(f.group for f in figures):
        parts.append(f"<h3>{_e(group_heading(group))}</h3>")
        for f in (f for f in figures if f.group == group):
            parts.append(
                f'<figure id="{_e(f.png.stem)}"><a href="{_e(_rel(f.pdf, out_dir))}">'
                f'<img src="{_e(_rel(f.png, out_dir))}" alt="{_e(f.caption)}" loading="lazy"></a>'
                f'<figcaption>{_e(f.caption)} — <a href="{_e(_rel(f.pdf, out_dir))}">PDF</a></figcaption></figure>'
            )
    return "\n".join(parts)


def index_html(
    *,
    fits: list[GroupFit],
    checks: list[Check],
    figures: list[FigureFile],
    notes: list[str],
    out_dir: str | Path,
    studies: Sequence[Study] = (),
    source: str = "",
    headline: str = "",
) -> str:
    """The report page. Image and PDF links are relative to ``out_dir``, where the page goes;
    ``headline`` (``8 of 9 runs (left out: ...)``) opens it; ``studies`` (the fits against a
    setting) follow Table 2.
    """
    out_dir = Path(out_dir)
    fitted = "" if not fits else _e(describe_y(fits[0]).replace("`", ""))
    note_list = _note_items(notes)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head>{_head("eoslab report")}</head>
<body>
<h1>eoslab report</h1>
<p id="headline"><strong>{_e(headline)}</strong></p>
<p>Source: <code>{_e(source)}</code> · written {stamp} ·
files: <a href="table2.csv">table2.csv</a>, <a href="table2.md">table2.md</a>, <a href="peaks.csv">peaks.csv</a>,
<a href="checks.csv">checks.csv</a>, <a href="checks.md">checks.md</a></p>
<h2>Power law of peak alignment (Eq. 9, Table 2)</h2>
<p>y = a·n<sup>b</sup>. {fitted}</p>
{_table2(fits)}
{_studies(studies)}
<h2>Section 5 checks</h2>
<p>Maxima over exponential Euler runs after the transient; a check holds when ours ≤ the paper's.</p>
{_checks(checks)}
{f"<h2>Notes</h2><ul>{note_list}</ul>" if notes else ""}
<h2>Figures</h2>
<p>One group per combination of the settings that vary between runs, other than n and the seeds; one curve
per run, coloured by dataset size n (log scale). Click a figure for its PDF.</p>
{_figures(figures, out_dir)}
</body></html>
"""


def _note_items(notes: Sequence[str]) -> str:
    """The notes as list items; a WARNING (a mixed-code run, peaks at the last snapshot) in red."""
    return "".join(f"<li{' class=warn' if 'WARNING' in n else ''}>{_e(n)}</li>" for n in notes)


def run_index_html(
    *, lines: list[tuple[str, str]], figures: list[FigureFile], notes: list[str], out_dir: str | Path
) -> str:
    """The page of a single run's report (``eoslab report RUN``): its summary, then its figures."""
    out_dir = Path(out_dir)
    summary = "".join(f"<tr><th class=l>{_e(k)}</th><td class=l>{_e(v)}</td></tr>" for k, v in lines)
    note_list = _note_items(notes)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = dict(lines).get("run", "run")
    return f"""<!DOCTYPE html>
<html lang="en"><head>{_head(f"eoslab run {title}")}</head>
<body>
<h1>eoslab run report</h1>
<p id="headline"><strong>{_e(title)}</strong> · written {stamp} · <a href="summary.md">summary.md</a></p>
<table>{summary}</table>
{f"<h2>Notes</h2><ul>{note_list}</ul>" if notes else ""}
<h2>Figures</h2>
{_figures(figures, out_dir)}
</body></html>
"""
