"""The one progress bar (eoslab.progress): on stderr only, nothing at all when disabled, every layout."""

import pytest

from eoslab.progress import ProgressBar

LAYOUTS = {
    "train": dict(total=1.0, label="train", unit=None, clock="elapsed"),
    "sweep": dict(total=4, label="sweep", clock="elapsed", completed=1),
    "analysis": dict(total=4),
    "download": dict(total=None, unit="bytes", clock=None, transient=True),
    "embedding": dict(total=4, transient=True),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_bar_writes_to_stderr_only(layout, capsys):
    with ProgressBar("work", **LAYOUTS[layout]) as bar:
        bar.advance(1, description="step 1")
        bar.update(completed=2, description="step 2")
        bar.print("[red]failed[/red] one point")
    out, err = capsys.readouterr()
    assert out == ""
    assert "failed one point" in err


def test_a_disabled_bar_shows_nothing(capsys):
    with ProgressBar("work", total=3, enabled=False) as bar:
        bar.advance()
        bar.update(completed=2, description="step 2")
        bar.print("not shown")
    assert capsys.readouterr() == ("", "")
