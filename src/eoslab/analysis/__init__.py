"""The decomposition of the sharpness at one snapshot (docs/math.md §3–§6, Eqs. 2–8): numerics only.

For one parameter vector θ and one dataset (a :class:`~eoslab.curvature.FullBatchLoss`)
:func:`analyze_snapshot` computes, for **any model** of the protocol (:mod:`eoslab.models`),

* λ¹ of H, G and R = H − G (Eq. 2), the algebraically largest (D14), by the eigensolver of its
  :class:`AnalysisSpec` (R as one operator, :meth:`FullBatchLoss.residual_vp`); a negative λ¹
  is recorded as NaN (D12), the raw value is kept;
* E‖J̃‖² (Eq. 4), the overlap ratio ρ = λ¹(G) / E‖J̃‖² (Eq. 3), E‖H_ℓ‖ and, for every parameter
  group i (the model's "layers", :meth:`~eoslab.models.Model.groups`), E‖J̃_i‖² (Eq. 4);

and, for the paper's MLP only, E‖P̃_i‖², E[s_i], E[r_i], E‖K_i‖², the alignment ratios κ (Eq. 6),
the activation alignment, the five factors of Eq. 7 (boxed form, D1) and the counterfactual
stability bound (§4, D15); for any other model these are refused with :class:`MLPOnlyError`.

The modules, by concept:

* :mod:`.lanczos` — λ¹ of many small symmetric operators at once (batched Lanczos), generic;
* :mod:`.statistics` — the per-sample quantities of §4 and their expectations (Eqs. 3–7);
* :mod:`.snapshot` — the λ¹ solves and the decomposition of one snapshot (:class:`AnalysisSpec`);
* :mod:`.result` — what it returns (:class:`SnapshotAnalysis`, :class:`GroupStats`,
  :class:`LayerwiseStats`): ρ, the stability bound, the rows of ``analysis.parquet``.

Nothing here reads or writes files: :func:`eoslab.runs.analyze_run` applies
:func:`analyze_snapshot` to the snapshots of a run directory and writes ``analysis.parquet``.
"""

from ..errors import MLPOnlyError
from .lanczos import batched_lanczos
from .result import GroupStats, LayerwiseStats, SnapshotAnalysis
from .snapshot import SHARPNESS_SOLVER, AnalysisSpec, analyze_snapshot, top_eigenvalues
from .statistics import (
    DEFAULT_CHUNK_SIZE,
    PerSample,
    group_grams,
    group_statistics,
    layerjac_sqnorms,
    layerwise_statistics,
    per_sample_statistics,
    preactivation_jacobians,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SHARPNESS_SOLVER",
    "AnalysisSpec",
    "GroupStats",
    "LayerwiseStats",
    "MLPOnlyError",
    "PerSample",
    "SnapshotAnalysis",
    "analyze_snapshot",
    "batched_lanczos",
    "group_grams",
    "group_statistics",
    "layerjac_sqnorms",
    "layerwise_statistics",
    "per_sample_statistics",
    "preactivation_jacobians",
    "top_eigenvalues",
]
