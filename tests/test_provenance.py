"""Which code produced a result (eoslab.provenance): the version and, in a git checkout, the commit."""

import shutil
import subprocess
from pathlib import Path

import pytest

import eoslab
from eoslab.provenance import code_identity, record_code, recorded_codes


def test_code_identity_names_the_version_and_the_checkouts_commit():
    identity = code_identity()
    assert identity.startswith(f"eoslab {eoslab.__version__}")
    package = Path(eoslab.__file__).parent
    git = shutil.which("git")
    head = git and subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True)
    if not head or head.returncode != 0:
        pytest.skip("eoslab is not in a git checkout here (an installed wheel): the version alone")
    assert identity.split(", ")[1] == f"git {head.stdout.decode().strip()}"


def test_recorded_codes_are_the_distinct_lines_of_code_txt_in_order(tmp_path):
    assert recorded_codes(tmp_path) == []  # a sweep run before the file was kept
    record_code(tmp_path)
    record_code(tmp_path)
    with open(tmp_path / "code.txt", "a") as f:
        f.write("2026-01-01T00:00:00+00:00\teoslab 0.0.9, git abc1234, modified\n\n")
    assert recorded_codes(tmp_path) == [code_identity(), "eoslab 0.0.9, git abc1234, modified"]
