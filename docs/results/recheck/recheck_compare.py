"""Evidence re-check of the eigensolver fix: every analysed λ¹ of H, G, R in a committed collected
table against a tight solve (LOBPCG tol 1e-10) on the same snapshot, and the fixed solver's default
(tol 1e-4, one guard, warm-started from the previous snapshot as `eoslab analyze` does) beside it.

The snapshots come from the committed sweep's runs retrained, training only, at the commit before
the fix (their trajectories agree with the committed runs to 2e-11); runs are matched by run_id.

    python recheck_compare.py COLLECTED.parquet RUNS_DIR OUT.json
"""

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

from eoslab.analysis import SHARPNESS_SOLVER, top_eigenvalues
from eoslab.runs import load_run
from eoslab.store import read_parquet, to_frame


def main(collected: str, runs_dir: str, out_file: str) -> None:
    """Write the re-check of every run of ``collected`` found in ``runs_dir`` to ``out_file``."""
    torch.set_num_threads(1)
    committed = to_frame(read_parquet(collected))
    out = []
    for run_id, rows in committed.groupby("run_id"):
        run_dir = Path(runs_dir) / run_id
        if not run_dir.exists():
            continue
        run = load_run(run_dir)
        sharp = rows[rows.metric.isin(["sharpness_H", "sharpness_G", "sharpness_R"])]
        warm = None
        for step in sorted(sharp.step.unique()):
            theta, _ = run.load_snapshot(int(step))
            default = top_eigenvalues(run.loss, theta, warm_start=warm)
            warm = {w: r.warm_start() for w, r in default.items()}
            tight = top_eigenvalues(
                run.loss, theta, replace(SHARPNESS_SOLVER, tol=1e-10, max_iters=2000), warm_start=warm
            )
            for w in "HGR":
                old = float(sharp[(sharp.step == step) & (sharp.metric == f"sharpness_{w}")].value.iloc[0])
                ref, new = float(tight[w].eigenvalues[0]), float(default[w].eigenvalues[0])
                ref_nan = ref if ref >= 0 else math.nan  # D12: a negative λ¹ is stored as NaN
                out.append(
                    dict(
                        run_id=run_id,
                        step=int(step),
                        op=w,
                        committed=old,
                        tight=ref,
                        fixed=new,
                        fixed_bound=float(default[w].error_bounds[0]),
                        rel_committed=abs(old - ref_nan) / abs(ref) if ref else math.nan,
                        rel_fixed=abs(new - ref) / abs(ref) if ref else math.nan,
                    )
                )
        print(json.dumps({"run_id": run_id, "snapshots": int(sharp.step.nunique())}), flush=True)
    Path(out_file).write_text(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:4])
