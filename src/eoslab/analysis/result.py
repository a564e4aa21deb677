"""The decomposition of one snapshot, as computed (docs/math.md §3–§6): the result types.

:class:`GroupStats` (every model) and :class:`LayerwiseStats` (the paper's MLP) hold the
expectations of :mod:`eoslab.analysis.statistics`; :class:`SnapshotAnalysis` holds them with the
λ¹ solves of H, G and R (Eq. 2) and derives what the run's ``analysis.parquet`` records: ρ
(Eq. 3), the stability bound (§4, D15), the long-format rows (docs/metrics.md) and why a value is
NaN (D12, degenerate snapshots).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..constants import LAYER_RATIO_BOUND
from ..curvature import OPERATORS
from ..eigen import EigResult
from ..errors import MLPOnlyError


@dataclass
class GroupStats:
    """Expectations over the dataset that every model has (Eqs. 3–4); tensors indexed by group − 1.

    Attributes:
        jtilde_sqnorm: E‖J̃‖² (Eq. 4).
        criterion_hessian_norm: E‖H_ℓ‖.
        layer_sqnorm: (G,), E‖J̃_i‖² for the parameter groups i = 1..G (the MLP's layers; Eq. 4).
    """

    jtilde_sqnorm: float
    criterion_hessian_norm: float
    layer_sqnorm: torch.Tensor

    @property
    def depth(self) -> int:
        """The number of parameter groups (L for the MLP)."""
        return int(self.layer_sqnorm.shape[0])


@dataclass
class LayerwiseStats(GroupStats):
    """The MLP's expectations of §4 (Eqs. 4–7); tensors indexed by layer − 1.

    Attributes:
        jtilde_sqnorm, criterion_hessian_norm, layer_sqnorm: as :class:`GroupStats` (L layers).
        preact_sqnorm: (L,), E‖P̃_i‖².
        act_scale: (L,), E[s_i].
        act_ratio: (L−1,), E[r_i], r_i = s_i / s_{i+1} (Eq. 7, C2).
        layerjac_sqnorm: (L−1,), E‖K_i‖² (Eq. 7, C4).
        align_ratio: (L−1,), κ(J̌_{i+1}, K_i) (Eq. 6 form; Eq. 7, C5).
        align_ratio_preact: (L−1,), κ(P̃_{i+1}, K_i) (Eq. 6).
        act_align: (L−1,), κ(r_i^{1/2}, J̌_{i+1} K_i) (Eq. 7, C1).
        eq7: (L−1, 5), columns C1..C5 of Eq. 7 for layer i (products over k = i..L−1); their
            product is E‖J̃_i‖².
    """

    preact_sqnorm: torch.Tensor
    act_scale: torch.Tensor
    act_ratio: torch.Tensor
    layerjac_sqnorm: torch.Tensor
    align_ratio: torch.Tensor
    align_ratio_preact: torch.Tensor
    act_align: torch.Tensor
    eq7: torch.Tensor

    def layer1_factors(self) -> torch.Tensor:
        """C1..C5 of Eq. 7 for layer 1 ((1, 1, E‖J̃_1‖², 1, 1) for a one-layer network)."""
        if self.depth == 1:
            return torch.tensor([1.0, 1.0, float(self.layer_sqnorm[0]), 1.0, 1.0], dtype=self.eq7.dtype)
        return self.eq7[0]


# ----------------------------------------------------------------------------- one snapshot
def _nan_if_negative(value: float) -> float:
    return float("nan") if value < 0 else value


@dataclass
class SnapshotAnalysis:
    """The decomposition of one snapshot (docs/math.md §3–§6).

    Attributes:
        step, t: the snapshot's step and (gradient-flow) time.
        eig: the λ¹ solves of H, G, R by name (eigenvalues, eigenvectors for warm starts,
            iterations, products, ``converged``).
        stats: the per-sample expectations (:class:`LayerwiseStats` for the MLP,
            :class:`GroupStats` for any other model).
        c5_t0: C5 of layer 1 used in the stability bound (D15); None for a model other than the MLP.
    """

    step: int
    t: float
    eig: dict[str, EigResult]
    stats: GroupStats
    c5_t0: float | None

    def raw_sharpness(self, which: str) -> float:
        """λ¹ of ``which`` ∈ {H, G, R} as solved, sign included (D14)."""
        return float(self.eig[which].eigenvalues[0])

    def sharpness(self, which: str) -> float:
        """λ¹ of ``which``, NaN when negative (D12)."""
        return _nan_if_negative(self.raw_sharpness(which))

    def residual(self, which: str) -> float:
        """‖A v − λ¹ v‖ of the λ¹ solve of ``which`` (A = H, G or R)."""
        return float(self.eig[which].residual_norms[0])

    def error_bound(self, which: str) -> float:
        """The bound on |λ¹ − its estimate| the solver certified for ``which`` (the residual when
        the solver certifies none, :attr:`~eoslab.eigen.EigResult.error_bounds`).
        """
        bounds = self.eig[which].error_bounds
        return self.residual(which) if bounds is None else float(bounds[0])

    def uncertain(self, tol: float) -> list[str]:
        """The operators whose λ¹ is not certified to ``tol``: the solve did not converge, or its
        error bound exceeds tol · max(|λ¹|, 1e-8 · max over H, G, R of |λ¹|) (the solvers' test).
        """
        floor = 1e-8 * max(abs(self.raw_sharpness(w)) for w in self.eig)
        return [
            w
            for w, solve in self.eig.items()
            if not solve.converged or not self.error_bound(w) <= tol * max(abs(self.raw_sharpness(w)), floor)
        ]

    @property
    def overlap_ratio(self) -> float:
        """ρ = λ¹(G) / E‖J̃‖² (Eq. 3; in [0, 1] by Lemma 7.2); NaN when E‖J̃‖² is 0 or not finite
        (a degenerate snapshot, :meth:`degenerate`).
        """
        jt = self.stats.jtilde_sqnorm
        return self.sharpness("G") / jt if math.isfinite(jt) and jt > 0 else math.nan

    def degenerate(self) -> list[str]:
        """Why values of :meth:`rows` are NaN beyond D12 (one line per metric; empty for a regular
        snapshot): E‖J̃‖² = 0 (the criterion Hessian vanishes on every sample) leaves ρ undefined,
        and a ratio with a zero or non-finite denominator is recorded as NaN, never as ±inf.
        """
        reasons = [
            f"sharpness_{w}: the λ¹ solve gave {self.raw_sharpness(w)}"
            for w in OPERATORS
            if not math.isfinite(self.raw_sharpness(w))
        ]
        jt = self.stats.jtilde_sqnorm
        if not (math.isfinite(jt) and jt > 0):
            reasons.append(f"overlap_ratio: E‖J̃‖² = {jt:g}, so ρ = λ¹(G) / E‖J̃‖² is undefined")
        sharpness = {f"sharpness_{w}" for w in OPERATORS} | {"overlap_ratio"}  # NaN when negative (D12)
        bad = sorted({r["metric"] for r in self._raw_rows() if not math.isfinite(r["value"])} - sharpness)
        reasons += [f"{m}: not finite (a zero, non-finite or overflowing denominator)" for m in bad]
        return reasons

    @property
    def stability_bound(self) -> float:
        """(1 + 1.37 (L − 1)) · C1 C2 C3 C4 (t) · C5(t0), layer-1 components of Eq. 7 (§4, D15).

        Raises:
            MLPOnlyError: the snapshot is of a model other than the MLP.
        """
        if not isinstance(self.stats, LayerwiseStats):
            raise MLPOnlyError(
                "the stability bound needs the MLP's Eq. 7 factors (docs/math.md §4); this snapshot is of another model"
            )
        assert self.c5_t0 is not None  # set for the MLP (see the attribute)
        c = self.stats.layer1_factors()
        prefactor = 1 + LAYER_RATIO_BOUND * (self.stats.depth - 1)
        return prefactor * float(c[:4].prod()) * self.c5_t0

    def layer_ratio(self) -> float | None:
        """Max over layers i > 1 of E‖J̃_i‖² / E‖J̃_1‖² (Eq. 4): :attr:`stability_bound` grants it is at
        most :data:`~eoslab.constants.LAYER_RATIO_BOUND` (§4). None for a model other than the MLP
        or a one-layer one; NaN when E‖J̃_1‖² is 0.
        """
        if not isinstance(self.stats, LayerwiseStats) or self.stats.depth < 2:
            return None
        first = float(self.stats.layer_sqnorm[0])
        return float(self.stats.layer_sqnorm[1:].max()) / first if first > 0 else math.nan

    def eigenvectors(self) -> dict[str, torch.Tensor]:
        """{H, G, R: (P, 1 + guard)} to warm-start the next snapshot's solves (eigenvector and
        guard vectors, :meth:`EigResult.warm_start`).
        """
        return {k: r.warm_start() for k, r in self.eig.items()}

    def rows(self) -> list[dict]:
        """Long-format rows ``step, t, metric, layer, value`` (docs/metrics.md; ``layer`` is None
        for whole-network metrics, else 1..L, the parameter group for a model other than the MLP,
        which has no rows for the MLP-only metrics).
        """
        return [{**r, "value": r["value"] if math.isfinite(r["value"]) else math.nan} for r in self._raw_rows()]

    def _raw_rows(self) -> list[dict]:
        st = self.stats
        whole = {
            "sharpness_H": self.sharpness("H"),
            "sharpness_G": self.sharpness("G"),
            "sharpness_R": self.sharpness("R"),
            "jtilde_sqnorm": st.jtilde_sqnorm,
            "overlap_ratio": self.overlap_ratio,
            "criterion_hessian_norm": st.criterion_hessian_norm,
        }
        for w in self.eig:
            whole[f"sharpness_{w}_residual"] = self.residual(w)
            whole[f"sharpness_{w}_error"] = self.error_bound(w)
        per_layer = {"layer_sqnorm": st.layer_sqnorm}
        if isinstance(st, LayerwiseStats):
            whole["stability_bound"] = self.stability_bound
            per_layer.update(
                {
                    "preact_sqnorm": st.preact_sqnorm,
                    "act_scale": st.act_scale,
                    "act_ratio": st.act_ratio,
                    "layerjac_sqnorm": st.layerjac_sqnorm,
                    "align_ratio": st.align_ratio,
                    "align_ratio_preact": st.align_ratio_preact,
                    "act_align": st.act_align,
                }
            )
            per_layer.update({f"eq7_c{c + 1}": st.eq7[:, c] for c in range(5)})
        rows = [dict(step=self.step, t=self.t, metric=m, layer=None, value=float(v)) for m, v in whole.items()]
        for metric, values in per_layer.items():
            rows += [
                dict(step=self.step, t=self.t, metric=metric, layer=i + 1, value=float(v))
                for i, v in enumerate(values.tolist())
            ]
        return rows
