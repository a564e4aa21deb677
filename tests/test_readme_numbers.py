"""README numbers that a small run reproduces, recomputed from that run: the
demo's gradient-descent band ("What the demo produces") from the demo preset's GD run, trained
here as `eoslab demo` trains it. The quick preset's band is checked by the README tour
(tests/test_readme_tour.py), which runs `eoslab train quick` and `eoslab show` as written.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from eoslab.report.figures import EdgeBand
from eoslab.report.run import trajectory_eigenvalues
from eoslab.runs import train
from eoslab.store import read_parquet, to_frame
from eoslab.sweeps import load_sweep

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_demos_gradient_descent_band_is_what_the_readme_says(tmp_path, one_thread):
    (point,) = [p for p in load_sweep("demo").points if p.config.solver.method == "gd"]
    data = dataclasses.replace(point.config.data, data_root=str(tmp_path / "data"))
    train(dataclasses.replace(point.config, data=data), tmp_path / "gd", progress=False)  # ~8 CPU-s
    traj = to_frame(read_parquet(tmp_path / "gd" / "trajectory.parquet"))
    top = trajectory_eigenvalues(traj)
    steps, values = top["step"].to_numpy(), top["eig_1"].to_numpy()
    band = EdgeBand.of(pd.DataFrame({"step": steps, "value": values}), point.config.solver.eta)
    middle = values[(steps >= 95) & (steps <= 440)]
    numbers = {
        "2/η": f"2/η = {band.edge:.2g}",
        "start": f"starts at {values[0]:.2g}, above 2/η",
        "share": f"within 10 % of 2/η at {100 * band.within:.0f} % of its {band.after} measured",
        "oscillation": f"From step 95 to 440 λ¹ alternates between {middle.min():.3g} and {middle.max():.3g}",
        "end": f"to {values[-1]:.3g} when the loss\nreaches the target at step {traj['step'].max()}",
    }
    assert band.crossing == 0  # it starts above 2/η, so the band counts every measured step
    section = README[README.index("### What the demo produces") :]
    for what, text in numbers.items():
        assert " ".join(text.split()) in " ".join(section.split()), f"{what}: README lacks {text!r}"
    assert np.all(np.abs(middle - band.edge) <= 0.1 * band.edge)  # "around 2/η"
