"""GD, heavy-ball momentum and Adam at their edges of stability, measured by eoslab.Tracker in a
plain PyTorch loop, then decomposed layer by layer by ``eoslab analyze`` (docs/math.md §9).

A 3-layer ELU MLP (the paper's network, :meth:`eoslab.models.MLP.as_module`) trained full-batch
with cross-entropy on 256 Dice images (16 × 16, the demo's problem); each optimizer's sharpness
(λ¹(H) for GD and momentum, λ¹(P⁻¹H) for Adam) is measured on the full batch every 10 steps and compared with its
threshold: 2/η, (2 + 2β)/η and (2 + 2β₁)/((1 − β₁)η) = 38/η. The analysis of the snapshots gives
the layer-1 factors of Eq. 7; the last panel is the SLQ spectral density of H at the end of each
run (:func:`eoslab.spectrum.lanczos_quadrature`).

Run it from the repository root (about a minute on 2 cores)::

    .venv/bin/python examples/optimizers_at_the_edge.py [--out runs/examples] [--figure FILE.png]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import eoslab
from eoslab.analysis import analyze_run
from eoslab.data import load_dataset
from eoslab.data.subsets import draw_subset
from eoslab.models import MLP
from eoslab.runs import load_run
from eoslab.spectrum import lanczos_quadrature
from eoslab.store import to_frame

STEPS = 400
EVERY = 10
OPTIMIZERS = {
    "GD (η = 0.8)": lambda p: torch.optim.SGD(p, lr=0.8),
    "momentum (η = 0.8, β = 0.9)": lambda p: torch.optim.SGD(p, lr=0.8, momentum=0.9),
    "Adam (η = 0.03, β₁ = 0.9)": lambda p: torch.optim.Adam(p, lr=0.03),
}


def train(name: str, make_optimizer, X, y, out: Path) -> Path:
    """One full-batch run of ``STEPS`` steps with the tracker; returns its run directory."""
    model = MLP(X[0].numel(), 6, depth=3, width=32)
    net = model.as_module(model.init_params(0))
    optimizer = make_optimizer(net.parameters())
    run_dir = out / name.split()[0].lower()
    shutil.rmtree(run_dir, ignore_errors=True)
    with eoslab.Tracker(net, "ce", X, y, out=run_dir, every=EVERY, snapshot_every=100) as tracker:
        for _ in range(STEPS):
            optimizer.zero_grad()
            F.cross_entropy(net(X), y).backward()
            optimizer.step()
            tracker.step(optimizer)
    return run_dir


def main() -> None:
    """Train the three runs, analyse them, print their numbers and draw the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/examples", help="folder of the three run directories")
    parser.add_argument("--figure", default="docs/img/optimizers_at_the_edge.png")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a tiny problem: one thread is fastest
    out = Path(args.out)
    data = draw_subset(load_dataset("dice", size=16, n_per_class=2000), 256, seed=0)
    X, y = data.X, data.y
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for k, (name, make) in enumerate(OPTIMIZERS.items()):
        start = time.perf_counter()
        run_dir = train(name, make, X, y, out)
        trained = time.perf_counter() - start
        analyze_run(run_dir, progress=False)
        analysed = time.perf_counter() - start - trained
        run = load_run(run_dir)
        traj = run.trajectory()
        analysis = to_frame(run.dir.read_table("analysis.parquet", run.manifest, ""))
        threshold = traj["threshold"].iloc[1:]
        adaptive = name.startswith("Adam")
        sharp = traj["preconditioned_sharpness"] if adaptive else traj["eigenvalues"].map(lambda e: e[0])
        color = f"C{k}"
        axes[0].plot(traj["step"], sharp / traj["threshold"], color=color, label=name)
        axes[1].semilogy(traj["step"], traj["loss"], color=color, label=name)
        c5 = analysis[(analysis.metric == "eq7_c5") & (analysis.layer == 1)].sort_values("step")
        axes[2].plot(c5["step"], c5["value"], "o-", color=color, ms=3, label=name)
        theta, _ = run.load_snapshot(run.dir.snapshot_steps("step")[-1])
        density = lanczos_quadrature(run.loss.operator(theta, "H"), probes=8, steps=60)
        lam = float(density.nodes.max())
        grid = torch.linspace(-0.2 * lam, 1.1 * lam, 600, dtype=torch.float64)
        axes[3].semilogy(grid, density.density(grid, sigma=0.01 * lam) + 1e-6, color=color, label=name)
        measured = traj[traj.step > 0]
        print(
            f"{name}: threshold {float(threshold.iloc[-1]):.4g}, last sharpness {float(sharp.iloc[-1]):.4g} "
            f"({float(sharp.iloc[-1] / threshold.iloc[-1]):.3f} of it), loss {float(traj['loss'].iloc[-1]):.3g}, "
            f"trained {trained:.1f} s, analysed {analysed:.1f} s, "
            f"{measured['hvps'].mean():.0f} H·v products per measurement, "
            f"negative mass {density.negative_mass:.3f}"
        )
    axes[0].axhline(1.0, color="0.3", ls=":", lw=1)
    axes[0].set(xlabel="step", ylabel="sharpness / threshold", title="λ¹(H)·η/2, λ¹(H)·η/(2+2β), λ¹(P⁻¹H)·η/38")
    axes[1].set(xlabel="step", ylabel="full-batch loss", title="loss")
    axes[2].set(xlabel="step", ylabel="C5 of layer 1 (Eq. 7)", title="layer-1 alignment")
    axes[3].set(xlabel="λ", ylabel="density (SLQ, smoothed)", title="spectrum of H at the end")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=110)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
