"""The README's Python snippets run as written: every ```python block, and what each shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")
README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> dict[str, str]:
    """Every ```python block of the README, by the title of the section it is in."""
    blocks, title = {}, ""
    for part in re.split(r"(?m)^(#{2,3} .*)$", README.read_text()):
        if re.match(r"#{2,3} ", part):
            title = part.lstrip("# ").strip()
            continue
        for k, code in enumerate(re.findall(r"```python\n(.*?)```", part, re.S)):
            blocks[title if k == 0 else f"{title} ({k + 1})"] = code
    return blocks


def run_block(title: str) -> dict:
    """Run one README block in a fresh namespace; its variables afterwards."""
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(python_blocks()[title], f"{README} [{title}]", "exec"), namespace)
    return namespace


def test_the_readme_has_the_python_snippets_tested_here():
    assert set(python_blocks()) == {
        "Using it from Python",
        "Your own network",
        "Your own training loop (any optimizer)",
    }


@pytest.mark.parametrize("title", sorted(python_blocks()))
def test_every_python_snippet_runs(title, capsys):
    run_block(title)
    assert capsys.readouterr().out  # each prints what it shows


def test_using_it_from_python_multiplies_in_the_layout_it_states():
    """The README's Python snippet runs as written (it defines every name it uses), and ``@`` is
    the dense-matrix product in the layout it states.
    """
    ns = run_block("Using it from Python")
    H, U, top = ns["H"], ns["U"], ns["top"]
    P = ns["model"].num_params
    assert U.shape == (P, 7) and ns["HU"].shape == (P, 7) and ns["VH"].shape == (7, P)
    assert torch.allclose(ns["HU"], U * top.eigenvalues, atol=1e-3 * top.eigenvalues.abs().max())
    assert torch.equal(ns["VH"], H(U.T)) and torch.allclose(ns["VH"], ns["HU"].T, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=rf"got \(7, {P}\); a block of rows V \(7, {P}\) is V @ H"):
        _ = H @ U.T


def test_your_own_network_example_runs(capsys):
    ns = run_block("Your own network")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "['norm', 'attn', 'head']"
    flow, snapshot = ns["flow"], ns["snapshot"]
    assert flow.step_count == 3 and flow.t > 0
    assert snapshot.stats.layer_sqnorm.shape == (3,) and 0 <= snapshot.overlap_ratio <= 1
    assert ns["top"].converged
