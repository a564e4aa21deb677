"""The install commands keep the pinned torch (an unconstrained `pip install .[bench]` could
replace it): every `pip install` of the Makefile runs under constraints.txt or installs without
dependencies, and constraints.txt pins the torch this environment runs.
"""

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_every_install_runs_under_the_torch_pin():
    installs = [line for line in (ROOT / "Makefile").read_text().splitlines() if "pip install" in line]
    assert any(".[bench]" in line for line in installs)  # the peers have a target
    for line in installs:
        if "--upgrade pip" in line:
            continue
        assert "-c constraints.txt" in line or "--no-deps" in line, line


def test_the_constraints_pin_the_torch_in_use():
    pins = dict(re.findall(r"^([\w-]+)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))
    assert pins["torch"] == torch.__version__.split("+")[0]
