"""The README's "Your own network" example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")
README = Path(__file__).resolve().parents[1] / "README.md"


def section_code(title: str) -> str:
    """The first ```python block of the README section ``## title``."""
    text = README.read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block in README section {title!r}"
    return match.group(1)


def test_your_own_network_example_runs(capsys):
    code = section_code("Your own network")
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "['norm', 'attn', 'head']"
    flow, snapshot = namespace["flow"], namespace["snapshot"]
    assert flow.step_count == 3 and flow.t > 0
    assert snapshot.stats.layer_sqnorm.shape == (3,) and 0 <= snapshot.overlap_ratio <= 1
    assert namespace["top"].converged
