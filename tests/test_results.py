"""The committed reproduction evidence (docs/results/) agrees with the code that produced it.

Each results folder holds the collected table of a reproduction preset's sweep (``collected.parquet``)
and the report written from it. Re-fitting Eq. 9 and re-running the Section-5 checks on the
committed table must give the committed ``table2.md`` and ``checks.md`` to the last printed digit,
so neither the evidence nor the README numbers drawn from it can drift from the code.
"""

from pathlib import Path

import pytest

from eoslab.report import collected_frame
from eoslab.report.checks import checks_markdown, section5_checks
from eoslab.report.powerlaw import fit_power_laws, fits_markdown
from eoslab.store import read_parquet

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
PRESETS = ["repro_atrial_fibrillation", "repro_dice"]


@pytest.fixture(params=PRESETS)
def results(request):
    folder = RESULTS / request.param
    assert (folder / "collected.parquet").is_file(), f"{folder}: the committed collected table is missing"
    return folder, collected_frame(read_parquet(folder / "collected.parquet"))


def test_table2_refits_from_the_committed_table(results):
    folder, frame = results
    fits = fit_power_laws(frame, on_error="record")
    assert fits, f"{folder}: no group to fit"
    assert fits_markdown(fits) == (folder / "table2.md").read_text()


def test_checks_rerun_from_the_committed_table(results):
    folder, frame = results
    assert checks_markdown(section5_checks(frame)) == (folder / "checks.md").read_text()


def test_the_folders_stay_small():
    total = sum(p.stat().st_size for p in RESULTS.rglob("*") if p.is_file())
    assert total < 8 * 2**20, f"docs/results holds {total / 2**20:.1f} MiB; keep it to a few MB"
