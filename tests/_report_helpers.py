"""Hand-made collected tables (the schema of eoslab.report), shared by the report tests (not a
test module).
"""

import numpy as np
import pandas as pd

DEPTH = 6
STEPS = np.arange(0, 301, 20)  # step 0 is in the transient, ignored by the analyses (D13)


def _run_rows(run: dict, peak: float, rng: np.random.Generator) -> list[dict]:
    """Plausible analysis rows of one run: sharpness rising with s = step/last step, C5 of
    layer 1 rising to ``peak`` at the last step, with a spike at step 0 that must be ignored.
    """
    rows = []
    for step in STEPS:
        s = step / STEPS[-1]
        h = 20 + 60 * s + rng.normal(0, 0.5)
        if run["solver"] == "gd":
            h = min(2 / run["eta"] * (0.3 + 1.5 * s), 2 / run["eta"] + 3 * np.sin(step))
        r = 0.05 * h
        rho = 0.3 + 0.2 * s
        j1 = 0.6 * (h - r) / rho
        whole = {
            "sharpness_H": h,
            "sharpness_G": h - r,
            "sharpness_R": r,
            "jtilde_sqnorm": (h - r) / rho,
            "overlap_ratio": rho,
            "criterion_hessian_norm": 0.5,
            "stability_bound": 7.85 * j1,
        }
        per_layer = {"layer_sqnorm": {i: j1 * (1.2 - 0.1 * i if i > 1 else 1.0) for i in range(1, DEPTH + 1)}}
        per_layer["preact_sqnorm"] = {i: j1 / (1 + i) for i in range(1, DEPTH + 1)}
        per_layer["act_scale"] = {i: 1 + 10 * i for i in range(1, DEPTH + 1)}
        inner = range(1, DEPTH)
        per_layer["act_ratio"] = {i: 1 - 0.02 * i for i in inner}
        per_layer["layerjac_sqnorm"] = {i: 2 + s + 0.1 * i for i in inner}
        per_layer["align_ratio"] = {i: 0.3 + 0.3 * s for i in inner}
        per_layer["align_ratio_preact"] = {i: 0.25 + 0.3 * s for i in inner}
        per_layer["act_align"] = {i: 1.0 for i in inner}
        c5 = peak * (10.0 if step == 0 else 0.3 + 0.7 * s)
        for k, v in enumerate([0.9, 0.95, 0.5, 40 * (1 + s), c5], start=1):
            per_layer[f"eq7_c{k}"] = {i: v if i == 1 else v * 1.1 for i in inner}
        for metric, value in whole.items():
            rows.append({**run, "step": step, "t": step * 0.01, "metric": metric, "layer": None, "value": value})
        for metric, layers in per_layer.items():
            for layer, value in layers.items():
                rows.append({**run, "step": step, "t": step * 0.01, "metric": metric, "layer": layer, "value": value})
    return rows + _trajectory_rows(run)


def _trajectory_rows(run: dict) -> list[dict]:
    """The trajectory rows of a run (eoslab.sweeps.point.trajectory_rows): the loss at every step,
    λ¹(H) at every step of the flow and every 3rd of GD. GD's λ¹ rises as 2/η·(0.5 + s) until it
    reaches 2/η at s = 1/2 (step 150, a spike), then alternates 2/η·(1 ± 0.05), with a spike to
    1.5·2/η every 30th step: 6 of the 51 measured steps from step 150 on lie outside the ±10 % band.
    """
    rows = []
    for step in range(STEPS[-1] + 1):
        s = step / STEPS[-1]
        t = step * 0.01
        rows.append(
            {**run, "step": step, "t": t, "metric": "trajectory_loss", "layer": None, "value": 2 * np.exp(-3 * s)}
        )
        if run["solver"] == "gd":
            if step % 3:
                continue
            edge = 2 / run["eta"]
            h = edge * (0.5 + s) if s < 0.5 else edge * (1.5 if step % 30 == 0 else 1 + 0.05 * (-1) ** (step // 3))
        else:
            h = 20 + 60 * s
        rows.append({**run, "step": step, "t": t, "metric": "trajectory_sharpness_H", "layer": None, "value": h})
    return rows


def make_collected(
    groups=(("cifar10", "ce", (390, 781, 1562, 3125), 4e-4, 0.49), ("synthetic", "mse", (100, 200, 400), 2e-3, 0.3)),
    seeds=((0, 0), (0, 1), (1, 0)),
    noise=0.0,
    gd=True,
    seed=0,
) -> pd.DataFrame:
    """A collected table (the schema of eoslab.report) for several n and seeds, with C5 of layer 1
    peaking at a·n^b·exp(noise), plus one GD run (η 0.01) on the first group's smallest problem.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for g, (dataset, criterion, sizes, a, b) in enumerate(groups):
        group_seeds = seeds if g == 0 else seeds[:1]
        for n in sizes:
            for init_seed, subset_seed in group_seeds:
                run = dict(
                    run_id=f"{dataset}-{criterion}-n{n}-i{init_seed}-s{subset_seed}",
                    dataset=dataset,
                    n=n,
                    criterion=criterion,
                    init_seed=init_seed,
                    subset_seed=subset_seed,
                    width=32,
                    depth=DEPTH,
                    solver="exp_euler",
                    eta=0.01,
                )
                rows += _run_rows(run, a * n**b * np.exp(rng.normal(0, noise)), rng)
    if gd:
        dataset, criterion, sizes, a, b = groups[0]
        run = dict(
            run_id="gd-run",
            dataset=dataset,
            n=sizes[0],
            criterion=criterion,
            init_seed=0,
            subset_seed=0,
            width=32,
            depth=DEPTH,
            solver="gd",
            eta=0.01,
        )
        rows += _run_rows(run, a * sizes[0] ** b, rng)
    frame = pd.DataFrame(rows)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame
