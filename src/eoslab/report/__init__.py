"""The report of a sweep: the collected table it reads, and the report as a whole.

The input is the *collected* table (``eoslab collect``): one tidy long table, one row per
``(run, step, metric, layer)``, with the run's configuration repeated on every row
(:mod:`eoslab.report.collected`).

The report fits and draws one *group* per combination of the axes that vary between the runs,
other than ``n`` and the seeds (:mod:`eoslab.report.groups`): a sweep over ``model.gain`` gets
one Eq. 9 fit per gain, never one pooled fit. The parts of the report live in submodules, one
concept each:

* :mod:`eoslab.report.collected` -- the collected table as a frame, and its slices;
* :mod:`eoslab.report.groups` -- which runs belong together;
* :mod:`eoslab.report.powerlaw` -- Eq. 9 fitted to ``(n, y)``, with the tests of one power law;
* :mod:`eoslab.report.protocol` -- the protocol of a group of runs, stated beside its fits;
* :mod:`eoslab.report.table2` -- Table 2: ``y`` per run and one Eq. 9 fit per group;
* :mod:`eoslab.report.study` -- its exponent against a setting that varies (the width, say);
* :mod:`eoslab.report.checks` -- the numbers of the paper's Section 5 on our runs;
* :mod:`eoslab.report.figures` -- the paper's figure families (Figs. 1-4 and the supplement);
* :mod:`eoslab.report.html` -- one static ``index.html`` that shows them together;
* :mod:`eoslab.report.run` -- the report of a single run directory;
* :mod:`eoslab.report.sweep` -- :func:`write_report`, which draws all of them into one folder.
"""

from eoslab.constants import SKIP_BEFORE

from .collected import (
    ANALYSIS_COLUMNS,
    ANALYSIS_SOLVER,
    REQUIRED_COLUMNS,
    RUN_COLUMNS,
    axis_columns,
    check_options,
    collected_frame,
    flow_departures,
    metric_rows,
    runs_of,
    split_trajectory,
)
from .sweep import ReportResult, write_report

__all__ = [
    "ANALYSIS_COLUMNS",
    "ANALYSIS_SOLVER",
    "REQUIRED_COLUMNS",
    "RUN_COLUMNS",
    "SKIP_BEFORE",
    "ReportResult",
    "axis_columns",
    "check_options",
    "collected_frame",
    "flow_departures",
    "metric_rows",
    "runs_of",
    "split_trajectory",
    "write_report",
]
