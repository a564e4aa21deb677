"""eoslab.Tracker (docs/math.md §9): the optimizers' thresholds and preconditioners against
PyTorch's own updates and dense float64 references, and a tracker's run directory through
``analyze``, ``show`` and ``report``.
"""

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import eoslab
from eoslab.criteria import CrossEntropy
from eoslab.provenance import code_identity
from eoslab.report.run import run_summary, tracker_edge, write_run_report
from eoslab.rundir import RunDirError
from eoslab.runs import analyze_run, load_run
from eoslab.store import read_json, to_frame
from eoslab.tracker import optimizer_stability

from ._cases import dense_G, dense_H, mlp_case


def problem(n=40, seed=0, width=6):
    """(model, its nn.Module at θ_0, X, y) of a depth-3 MLP on ``n`` samples, all from ``seed``."""
    model, theta, X, y, _ = mlp_case(CrossEntropy(), width=width, n=n, data_seed=seed, init_seed=seed).build()
    return model, model.as_module(theta), X, y


def train(net, opt, X, y, steps, tracker=None):
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(X), y).backward()
        opt.step()
        if tracker is not None:
            tracker.step(opt)


def flat(net):
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_preconditioner_is_the_update(amsgrad):
    """Eq. S3: PyTorch's Adam step equals θ ← θ − η P_t⁻¹ m_t with P_t = (1 − β₁^t) diag(√v̂_t + ε)
    read back from the state after it (P⁻¹ = scale²).
    """
    _, net, X, y = problem()
    opt = torch.optim.Adam(net.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-3, amsgrad=amsgrad)
    train(net, opt, X, y, 4)
    before = flat(net)
    train(net, opt, X, y, 1)
    st = optimizer_stability(opt, list(net.parameters()))
    m = torch.cat([opt.state[p]["exp_avg"].reshape(-1) for p in net.parameters()])
    torch.testing.assert_close(flat(net) - before, -0.01 * st.scale.square() * m, rtol=1e-10, atol=1e-14)
    assert st.threshold == pytest.approx((2 + 2 * 0.8) / (0.2 * 0.01)) and st.preconditioned


def test_adam_preconditioned_sharpness_vs_dense(tmp_path):
    """The tracker's λ¹(P^{-1/2} H P^{-1/2}) against eigvalsh of the dense one (torch.func.hessian),
    and AdamW's 38/η; λ¹(H), λ¹(G), λ¹(R) of its rows against eigvalsh of the dense H, of G
    assembled from per-sample jacrev Jacobians, and of R = H − G.
    """
    model, net, X, y = problem()
    opt = torch.optim.AdamW(net.parameters(), lr=0.02, weight_decay=0.1)
    tracker = eoslab.Tracker(net, "ce", X, y, out=tmp_path / "run", every=3, operators=("H", "G", "R"), eig_tol=1e-7)
    train(net, opt, X, y, 3, tracker)
    report, extra = tracker.rows[-1]
    theta = flat(net)
    H = dense_H(model, CrossEntropy(), theta, X, y)
    s = optimizer_stability(opt, list(net.parameters())).scale
    dense = torch.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1]
    assert extra["preconditioned_sharpness"] == pytest.approx(float(dense), rel=1e-6)
    assert extra["threshold"] == pytest.approx(38 / 0.02) and extra["lr"] == 0.02
    assert report.eigenvalues[0] == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-6)
    G = dense_G(model, CrossEntropy(), theta, X, y)
    assert extra["sharpness_G"] == pytest.approx(float(torch.linalg.eigvalsh(G)[-1]), rel=1e-6)
    assert extra["sharpness_R"] == pytest.approx(float(torch.linalg.eigvalsh(H - G)[-1]), rel=1e-6)
    assert (report.step, report.t) == (3, pytest.approx(0.06))
    tracker.close()


@pytest.mark.parametrize(
    "options",
    [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.5, dampening=0.3), dict(momentum=0.9, nesterov=True)],
    ids=["gd", "heavy-ball", "dampened", "nesterov"],
)
def test_sgd_thresholds_are_where_the_quadratic_diverges(options):
    """Eqs. 1, S1, S2 by simulation: torch.optim.SGD on ½λx² stays bounded 2 % below the
    threshold and blows up 2 % above it.
    """
    x = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    threshold = optimizer_stability(torch.optim.SGD([x], lr=0.1, **options), [x]).threshold

    def final(lam):
        p = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
        opt = torch.optim.SGD([p], lr=0.1, **options)
        for _ in range(2000):
            opt.zero_grad()
            (0.5 * lam * p.square()).sum().backward()
            opt.step()
        return abs(float(p))

    assert final(0.98 * threshold) < 1 and final(1.02 * threshold) > 1e6


def test_sgd_weight_decay_and_unknown_optimizers(tmp_path):
    _, net, X, y = problem()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=0.3)
    with eoslab.Tracker(net, "ce", X, y, out=tmp_path / "sgd", every=2) as tracker:
        train(net, opt, X, y, 2, tracker)
    report, extra = tracker.rows[-1]
    assert extra["preconditioned_sharpness"] == pytest.approx(report.eigenvalues[0] + 0.3, rel=1e-12)
    assert extra["threshold"] == pytest.approx(3.8 / 0.05)
    rms = optimizer_stability(torch.optim.RMSprop(net.parameters()), list(net.parameters()))
    assert math.isnan(rms.threshold) and not rms.known
    groups = torch.optim.SGD(
        [{"params": list(net.parameters())[:2], "lr": 0.1}, {"params": list(net.parameters())[2:]}], lr=0.2
    )
    with pytest.raises(ValueError, match="parameter groups differ"):
        optimizer_stability(groups, list(net.parameters()))


def test_refusals(tmp_path):
    model, net, X, y = problem()
    relu = torch.nn.Sequential(*[torch.nn.ReLU() if isinstance(m, torch.nn.ELU) else m for m in net])
    with pytest.raises(ValueError, match="does not compute what model kind 'mlp'"):
        eoslab.Tracker(relu, "ce", X, y, out=tmp_path / "relu")
    with pytest.raises(ValueError, match=r"\(weight, bias\) pairs"):
        eoslab.Tracker(torch.nn.Linear(5, 3, bias=False), "ce", X, y, out=tmp_path / "nobias")
    eoslab.Tracker(net, "ce", X, y, out=tmp_path / "run").close()
    with pytest.raises(RunDirError, match="holds a run directory"):
        eoslab.Tracker(net, "ce", X, y, out=tmp_path / "run")


def test_tracker_run_passes_analyze_show_report(tmp_path, one_thread):
    """A momentum run written by the tracker: analyze (the MLP's every factor, and the spectrum on
    request) reproduces the tracker's λ¹(H) from the snapshot and the stored data; show and report
    read it.
    """
    _, net, X, y = problem(n=30, width=5)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    out = tmp_path / "momentum"
    with eoslab.Tracker(net, "ce", X, y, out=out, every=5, snapshot_every=10, spectrum=True) as tracker:
        train(net, opt, X, y, 22, tracker)
    traj = load_run(out).trajectory()
    assert traj["step"].tolist() == [0, 5, 10, 15, 20, 22] and traj["dt"].iloc[-1] == 0.0
    analyze_run(out, progress=False, skip_before=0)
    run = load_run(out)
    table = to_frame(run.dir.read_table("analysis.parquet", run.manifest, ""))
    assert sorted(table["step"].unique()) == [0, 10, 20, 22]
    at = lambda metric, step: table[(table.metric == metric) & (table.step == step)]["value"]
    for step in (10, 20):
        mine = traj[traj.step == step]["eigenvalues"].iloc[0][0]
        assert float(at("sharpness_H", step).iloc[0]) == pytest.approx(mine, rel=1e-3)
    assert len(at("eq7_c5", 20)) == 2 and len(at("block_sharpness_H", 20)) == 3
    assert float(at("hessian_trace_stderr", 20).iloc[0]) > 0
    summary = dict(run_summary(out).lines())
    assert summary["state"].startswith("stopped") and "4 of 4 snapshots analysed" in summary["analysis"]
    assert summary["code"] == f"{code_identity()} from step 0"  # the eoslab that measured it
    result = write_run_report(out, tmp_path / "report")
    assert result.index.is_file() and len(result.figures) > 1


def test_an_adam_runs_report_compares_with_adams_threshold_not_two_over_eta(tmp_path, one_thread):
    """The config of a tracker's run names GD with the first η (the run-directory contract), but its
    summary and figure use the threshold the optimizer recorded: (2 + 2β₁)/((1 − β₁)η) for Adam,
    38/η here, against the preconditioned sharpness; 2/η is nowhere.
    """
    _, net, X, y = problem(n=30, width=5)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    out = tmp_path / "adam"
    with eoslab.Tracker(net, "ce", X, y, out=out, every=2, snapshot_every=10) as tracker:
        train(net, opt, X, y, 12, tracker)
    lines = dict(run_summary(out).lines())
    assert "2/η" not in lines
    assert lines["threshold"].startswith("3800 (") and "Adam" in lines["threshold"]
    traj = load_run(out).trajectory()
    measured = traj.dropna(subset=["preconditioned_sharpness"])
    ratio = (measured["preconditioned_sharpness"] / measured["threshold"]).max()
    assert lines["edge"] == f"stays below its threshold: at most {100 * ratio:.0f} % of it"
    assert lines["solver"].startswith("your own loop, tracked by eoslab.Tracker")
    result = write_run_report(out, tmp_path / "report")
    assert "2/η" not in result.index.read_text()


def test_a_tracker_whose_eigensolves_stop_early_says_so(tmp_path, one_thread, capsys):
    """Measurements whose λ¹ solve ran out of iterations (eig_max_iters = 4 here) are estimates:
    the closed run's status.json and stderr name them, with the steps.
    """
    _, net, X, y = problem(n=30, width=5)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    out = tmp_path / "adam"
    with eoslab.Tracker(net, "ce", X, y, out=out, every=2, snapshot_every=10, eig_max_iters=4) as tracker:
        train(net, opt, X, y, 12, tracker)
    traj = load_run(out).trajectory()
    early = traj[~traj["eig_converged"]]
    assert 0 < len(early) < len(traj)
    said = f"the eigensolve stopped before its tolerance at {len(early)} of {len(traj)} measured steps"
    (note,) = read_json(out / "status.json")["notes"]
    assert note.startswith(said) and said in capsys.readouterr().err


def test_tracker_edge_from_a_recorded_threshold_that_a_schedule_moves():
    """The edge line against a per-step threshold: first step at or above it, then the share of
    measured steps within 10 % of it (here 3 of 4: ratios 1.0, 0.95, 1.08, 0.5).
    """
    traj = pd.DataFrame(
        {
            "step": [0, 5, 10, 15, 20, 25],
            "threshold": [20.0, 20.0, 10.0, 10.0, 10.0, 10.0],
            "preconditioned_sharpness": [5.0, 12.0, 10.0, 9.5, 10.8, 5.0],
            "optimizer": ["SGD(lr=0.1)"] * 6,
        }
    )
    threshold, edge = tracker_edge(traj)
    assert threshold == "20 → 10 (SGD(lr=0.1); recorded at each measured step)"
    assert edge == (
        "first reaches its threshold at step 10; from there on 75 % of 4 measured steps are within 10 % of it "
        "(ratio 0.5–1.08)"
    )
