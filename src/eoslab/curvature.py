"""The full-batch loss over a dataset and its curvature operators (docs/math.md §2, §3, §6).

``FullBatchLoss`` evaluates L̃(θ) = E ℓ(f(x, θ), y) over a dataset held as tensors, in chunks of
samples (results do not depend on the chunk size beyond round-off), and multiplies a *block* of k
vectors by

* the Hessian  H = ∇²_θ L̃                     (Eq. 2),
* the Gauss–Newton part  G = E[Jᵀ H_ℓ J]       (Eq. 2),
* the residual  R = H − G                      (Eq. 2),

all k vectors in one pass over the data (vmap / batched autograd), never k separate passes.

Every pass over the data goes through one loop, :meth:`DataLoop.accumulate`: it sums each chunk's
contribution (already weighted by |chunk| / N) and hands the sum to one reduction hook,
:class:`Reduction`, which under ``torch.distributed`` (an initialised process group with more than
one rank) all-reduces it across the ranks. Each rank then holds a shard of the data and N is the
global number of samples (the sum of the shards' sizes), so every rank gets the same full-batch
loss, gradient and products, as one process holding all the data would (to round-off).

Blocks are stored with **vectors as rows**: a block V has shape (k, P). Eigensolvers see the
operators as :class:`LinearOperator`, which counts the operator products it performs and converts
to ``scipy.sparse.linalg.LinearOperator`` (:meth:`LinearOperator.to_scipy`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar, cast

import numpy as np
import torch
import torch.distributed as dist
from scipy.sparse.linalg import LinearOperator as ScipyOperator
from torch.func import jvp, vjp, vmap

from .criteria import Criterion
from .models import Model

HVP_METHODS = ("auto", "fwd_rev", "rev_rev", "loop")
OPERATORS = ("H", "G", "R")
T = TypeVar("T")


@dataclass
class LinearOperator:
    """A symmetric operator A on R^P (H, G or R at θ).

    The vector layout, for every operator and block method of eoslab:

    * ``@`` multiplies as a dense (P, P) tensor would: ``A @ x`` for a vector x (P,), ``A @ X``
      for a matrix of columns X (P, k) (e.g. ``EigResult.eigenvectors``), ``V @ A`` for a block
      of rows V (k, P); anything else is refused, naming the shape it got.
    * Block methods store vectors as rows: ``A(V)`` (what the eigensolvers call),
      ``FullBatchLoss.hvp(theta, V)`` and the like take V (k, P) and return A V as rows
      (k, P), i.e. ``V @ A`` (the same numbers as ``(A @ V.T).T``, A being symmetric).

    :meth:`to_scipy` wraps it for ``scipy.sparse.linalg`` (e.g. ``eigsh(op.to_scipy(), k=3)``).

    Attributes:
        matmat: the block product.
        dim: P.
        name: ``"H"``, ``"G"`` or ``"R"`` (or anything, for tests).
        products: number of single-vector products performed so far (a block of k counts k).
        lower: builds the same operator with its products computed in float32, or None (see
            :meth:`lowered`).
    """

    matmat: Callable[[torch.Tensor], torch.Tensor]
    dim: int
    dtype: torch.dtype = torch.float64
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    name: str = ""
    products: int = 0
    lower: Callable[[], LinearOperator] | None = field(default=None, repr=False)
    _lowered: LinearOperator | None = field(default=None, init=False, repr=False)

    def __call__(self, V: torch.Tensor) -> torch.Tensor:
        """A V for a block of rows V (k, P), counted in :attr:`products`."""
        if V.ndim != 2 or V.shape[1] != self.dim:
            raise ValueError(f"operator {self.name}: expected a block of shape (k, {self.dim}), got {tuple(V.shape)}")
        self.products += V.shape[0]
        return self.matmat(V)

    @property
    def shape(self) -> tuple[int, int]:
        """(P, P)."""
        return (self.dim, self.dim)

    def lowered(self) -> LinearOperator:
        """This operator with its products computed in float32 (blocks in and out stay in
        ``dtype``, its own :attr:`products` count): the cheap products of a mixed-precision
        solve, which certifies its result with products of this operator (docs/math.md §6).
        Built on first use, then kept.

        Raises:
            ValueError: the operator has no float32 form (a derived or hand-made operator).
        """
        if self._lowered is None:
            if self.lower is None:
                raise ValueError(f"operator {self.name or 'A'} has no float32 form for mixed-precision products")
            self._lowered = self.lower()
        return self._lowered

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        """A x for a vector (P,) or a matrix of columns (P, k)."""
        if x.ndim == 1:
            return self(x.unsqueeze(0))[0]
        if x.ndim != 2 or x.shape[0] != self.dim:
            rows = x.ndim == 2 and x.shape[1] == self.dim
            hint = f"; a block of rows V {tuple(x.shape)} is V @ {self.name or 'A'}" if rows else ""
            raise ValueError(
                f"operator {self.name}: A @ x needs x of shape ({self.dim},) or columns ({self.dim}, k), "
                f"got {tuple(x.shape)}{hint}"
            )
        return self(x.T).T

    def __rmatmul__(self, V: torch.Tensor) -> torch.Tensor:
        """V A for a block of rows (k, P) (or a vector (P,)); equals (A Vᵀ)ᵀ, A being symmetric."""
        return self(V.unsqueeze(0))[0] if V.ndim == 1 else self(V)

    def to_scipy(self):
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` (``matvec``, ``matmat`` and,
        A being symmetric, the same for the adjoint) on NumPy arrays; products run on ``device``
        in ``dtype`` and count in :attr:`products`.

        ``scipy.sparse.linalg.eigsh`` on it runs ARPACK on SciPy's BLAS threads between torch's
        products, and the two pools fight for the cores: on a loaded 2-core machine one solve took
        107 s with both at their defaults, 1.2 s with one thread each. Give it one thread of each
        (``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` before Python starts, or
        ``threadpoolctl.threadpool_limits(1)`` with ``torch.set_num_threads(1)``).
        """
        np_dtype = torch.empty(0, dtype=self.dtype).numpy().dtype

        def matmat(X):
            X = np.asarray(X)
            if np.iscomplexobj(X):
                raise TypeError(f"operator {self.name}: a real operator, got complex input")
            cols = torch.as_tensor(np.ascontiguousarray(X.reshape(self.dim, -1).T), dtype=self.dtype)
            return self(cols.to(self.device)).T.cpu().numpy()

        def matvec(x):
            return matmat(np.asarray(x).reshape(self.dim, 1)).reshape(-1)

        return ScipyOperator(
            shape=self.shape, dtype=np_dtype, matvec=matvec, matmat=matmat, rmatvec=matvec, rmatmat=matmat
        )

    def _derived(self, matmat: Callable[[torch.Tensor], torch.Tensor], dim: int, name: str) -> LinearOperator:
        return LinearOperator(matmat=matmat, dim=dim, dtype=self.dtype, device=self.device, name=name)

    def __neg__(self) -> LinearOperator:
        """−A (its top eigenpairs are A's bottom ones, negated: docs/math.md §9)."""
        return self._derived(lambda V: -self(V), self.dim, f"-{self.name}")

    def shifted(self, c: float) -> LinearOperator:
        """A + c I (e.g. H + λ_wd I, the Hessian of L̃ + λ_wd ‖θ‖²/2: L2 weight decay, docs/math.md §9)."""
        return self._derived(lambda V: self(V) + c * V, self.dim, f"{self.name}+{c:g}I")

    def scaled(self, s: torch.Tensor) -> LinearOperator:
        """S A S with S = diag(s), s (P,) — with s = P^{-1/2} the preconditioned operator
        P^{-1/2} A P^{-1/2}, similar to P⁻¹A (same eigenvalues; docs/math.md §9, Eq. S3).
        """
        if s.shape != (self.dim,):
            raise ValueError(f"operator {self.name}: scaling needs a vector ({self.dim},), got {tuple(s.shape)}")
        s = s.to(dtype=self.dtype, device=self.device)
        return self._derived(lambda V: self(V * s) * s, self.dim, f"S{self.name}S")

    def restrict(self, part: slice) -> LinearOperator:
        """The block A[part, part] (e.g. the Hessian of one parameter group, docs/math.md §9): a
        row block (k, |part|) is embedded in R^P with zeros, multiplied, and cut back to ``part``.
        """
        start, stop, step = part.indices(self.dim)
        if step != 1 or stop <= start:
            raise ValueError(f"operator {self.name}: restrict needs a non-empty contiguous slice, got {part}")

        def matmat(V: torch.Tensor) -> torch.Tensor:
            full = V.new_zeros(V.shape[0], self.dim)
            full[:, start:stop] = V
            return self(full)[:, start:stop]

        return self._derived(matmat, stop - start, f"{self.name}[{start}:{stop}]")

    @classmethod
    def from_dense(cls, A: torch.Tensor, name: str = "dense") -> LinearOperator:
        """Wrap a dense symmetric matrix (tests and references); its float32 form multiplies by A
        rounded to float32.
        """

        def lower() -> LinearOperator:
            A32 = A.to(torch.float32)
            return cls(lambda V: (V.to(A32.dtype) @ A32).to(A.dtype), A.shape[0], A.dtype, A.device, f"{name}/f32")

        return cls(matmat=lambda V: V @ A, dim=A.shape[0], dtype=A.dtype, device=A.device, name=name, lower=lower)


# ----------------------------------------------------------------------------- the data loop
class Reduction:
    """The reduction hook of :meth:`DataLoop.accumulate`: sums across the ranks of a process group.

    Args:
        group: a ``torch.distributed`` process group, or None for one process (no communication).
    """

    def __init__(self, group=None) -> None:
        self.group = group

    @classmethod
    def auto(cls) -> Reduction:
        """All-reduce over the default process group when ``torch.distributed`` is initialised with
        more than one rank, else the one-process reduction.
        """
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.group.WORLD)
        return cls(None)

    @property
    def world_size(self) -> int:
        """The number of ranks the hook sums over."""
        if self.group is None:
            return 1

        return dist.get_world_size(self.group)

    def __call__(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """The sums over all ranks of each tensor (the tensors themselves for one process); one
        all-reduce of one flat buffer for all of them.
        """
        if self.group is None:
            return tensors

        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        return [part.view_as(t) for part, t in zip(torch.split(flat, [t.numel() for t in tensors]), tensors)]


class Chunk(NamedTuple):
    """A chunk of samples and its weight |chunk| / N (N: the global number of samples)."""

    X: torch.Tensor
    y: torch.Tensor
    weight: float


def _leaves(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return list(tree.values())
    return list(tree)


def _writable(t: torch.Tensor) -> bool:
    """False for a broadcast view (a zero stride), which an in-place add cannot write."""
    return all(stride != 0 or size == 1 for stride, size in zip(t.stride(), t.shape))


def _rebuild(tree, leaves: list[torch.Tensor]):
    if isinstance(tree, torch.Tensor):
        return leaves[0]
    if isinstance(tree, dict):
        return dict(zip(tree, leaves))
    return type(tree)(leaves)


class DataLoop:
    """The one loop over the data (this rank's shard) in chunks, with the reduction hook.

    Args:
        X: inputs (n, *input shape) held by this rank; y: labels (n,).
        chunk_size: samples per chunk (None: all at once).
        reduction: the hook (default :meth:`Reduction.auto`); N, the global number of samples,
            is the reduced sum of the ranks' n.
    """

    def __init__(
        self, X: torch.Tensor, y: torch.Tensor, chunk_size: int | None = None, *, reduction: Reduction | None = None
    ) -> None:
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        self.X, self.y = X, y
        self.chunk_size = chunk_size or max(int(X.shape[0]), 1)
        self.reduction = Reduction.auto() if reduction is None else reduction
        local = torch.tensor([float(X.shape[0])], dtype=torch.float64, device=X.device)
        self.num_samples = int(self.reduction([local])[0])
        if X.shape[0] == 0:
            raise ValueError(f"this rank holds no samples (N = {self.num_samples} over {self.reduction.world_size})")

    def chunks(self) -> Iterator[Chunk]:
        """Chunks of this rank's samples, each weighted |chunk| / N so the weighted sums add up to means."""
        n, size = int(self.X.shape[0]), self.chunk_size
        for s in range(0, n, size):
            Xc, yc = self.X[s : s + size], self.y[s : s + size]
            yield Chunk(Xc, yc, Xc.shape[0] / self.num_samples)

    def accumulate(self, fn: Callable[[Chunk], T]) -> T:
        """Σ over chunks and ranks of ``fn(chunk)``: a tensor, a tuple or a dict of tensors
        (summed leaf by leaf, in place, then reduced by the hook). Every rank must call it.
        """
        tree, sums = None, None
        for chunk in self.chunks():
            part = fn(chunk)
            if sums is None:
                tree, sums = part, _leaves(part)
            else:
                sums = [(t if _writable(t) else t.clone()).add_(p) for t, p in zip(sums, _leaves(part))]
        assert sums is not None  # a DataLoop holds at least one sample, so one chunk
        return _rebuild(tree, self.reduction(sums))


@dataclass
class LossValue:
    """L̃(θ), its gradient and the training accuracy, from one pass over the data."""

    loss: float
    grad: torch.Tensor
    accuracy: float


class FullBatchLoss:
    """L̃(θ) = E_{(x,y)∈T} ℓ(f(x, θ), y) and block products with H, G, R.

    Args:
        model: any model of the protocol (:class:`~eoslab.models.Model`: the MLP, the CNN, an
            ``nn.Module`` adapter) mapping a flat θ and inputs to outputs (N, n_L).
        criterion: ℓ, with its closed-form H_ℓ.
        X: inputs (N, *input shape), as the model takes them (images stay (C, H, W)); y: labels
            (N,). Under ``torch.distributed``: this rank's shard (see :class:`DataLoop`).
        chunk_size: samples per chunk (``None``: all at once). Memory of a block product grows
            with chunk_size × k × width.
        hvp_method: how a block of H·V is formed within a chunk — ``"fwd_rev"`` (vmapped
            forward-over-reverse, ``jvp`` of ``grad``), ``"rev_rev"`` (double backward with
            ``is_grads_batched``), ``"loop"`` (one retained double-backward graph, looped over the
            vectors) or ``"auto"`` (``fwd_rev`` for chunks of ≤ 1024 samples, else ``loop``, as
            measured by ``benchmarks/curvature.py`` and docs/performance.md).
        reduction: the reduction hook of the data loop (default :meth:`Reduction.auto`: all-reduce
            when a process group with more than one rank is initialised).
    """

    def __init__(
        self,
        model: Model,
        criterion: Criterion,
        X: torch.Tensor,
        y: torch.Tensor,
        *,
        chunk_size: int | None = None,
        hvp_method: str = "auto",
        reduction: Reduction | None = None,
    ) -> None:
        model.check_inputs(X)
        if hvp_method not in HVP_METHODS:
            raise ValueError(f"hvp_method must be one of {HVP_METHODS}, got {hvp_method!r}")
        self.model, self.criterion = model, criterion
        X, y = X.to(dtype=model.dtype, device=model.device), y.to(model.device)
        self.data = DataLoop(X, y, chunk_size, reduction=reduction)
        self.hvp_method = hvp_method
        self._float32: FullBatchLoss | None = None

    def float32(self) -> FullBatchLoss:
        """This loss on its data cast to float32, for products at a float32 θ (the cheap products
        of mixed-precision eigensolves, :meth:`LinearOperator.lowered`). Made once, then kept.

        Raises:
            ValueError: the model does not compute in float32 when θ and the inputs are float32
                (a module with float64 buffers, say).
        """
        if self.data.X.dtype == torch.float32:
            return self
        if self._float32 is None:
            twin = copy.copy(self)
            data = self.data
            twin.data = DataLoop(data.X.to(torch.float32), data.y, data.chunk_size, reduction=data.reduction)
            theta = torch.zeros(self.num_params, dtype=torch.float32, device=data.X.device)
            with torch.no_grad():
                out = self.model(theta, twin.data.X[:1])
            if out.dtype != torch.float32:
                raise ValueError(
                    f"{type(self.model).__name__} computes in {out.dtype} from float32 parameters and inputs, "
                    "so its products cannot be lowered to float32"
                )
            self._float32 = twin
        return self._float32

    @property
    def X(self) -> torch.Tensor:
        """The inputs this process holds (all of them, or this rank's shard)."""
        return self.data.X

    @property
    def y(self) -> torch.Tensor:
        """The labels this process holds."""
        return self.data.y

    @property
    def chunk_size(self) -> int:
        """Samples per chunk."""
        return self.data.chunk_size

    @property
    def num_samples(self) -> int:
        """N, the number of samples over all ranks."""
        return self.data.num_samples

    @property
    def num_params(self) -> int:
        """P."""
        return self.model.num_params

    def _chunk_loss(self, theta: torch.Tensor, c: Chunk) -> torch.Tensor:
        """|c|/N · mean ℓ over the chunk: the chunk's share of L̃."""
        return self.criterion.losses(self.model(theta, c.X), c.y).mean() * c.weight

    # ----------------------------------------------------------------- loss and gradient
    def loss(self, theta: torch.Tensor) -> float:
        """L̃(θ)."""
        with torch.no_grad():
            return float(self.data.accumulate(lambda c: self._chunk_loss(theta, c)))

    def value_and_grad(self, theta: torch.Tensor) -> LossValue:
        """L̃(θ), ∇L̃(θ) and accuracy in one pass over the data."""
        th = theta.detach().requires_grad_(True)

        def part(c: Chunk) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            f = self.model(th, c.X)
            lc = self.criterion.losses(f, c.y).mean() * c.weight
            (g,) = torch.autograd.grad(lc, th)
            correct = (f.detach().argmax(-1) == c.y).sum().to(g.dtype)
            return g, lc.detach(), correct

        grad, loss, correct = self.data.accumulate(part)
        return LossValue(loss=float(loss), grad=grad, accuracy=float(correct) / self.num_samples)

    # ----------------------------------------------------------------- block products
    def hvp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """H V for a block V of shape (k, P): Hv = E[∇_θ(∇_θ ℓ · v)] (docs/math.md §6)."""
        return self.data.accumulate(
            lambda c: self._hessian_block(theta, V, lambda th: self._chunk_loss(th, c), c.X.shape[0])
        )

    def _hessian_block(self, theta, V, scalar, n_chunk: int) -> torch.Tensor:
        """(∇²_θ scalar) V for one chunk's scalar function θ ↦ R, by ``self.hvp_method``."""
        method = self.hvp_method
        if method == "auto":
            method = "fwd_rev" if n_chunk <= 1024 else "loop"
        if method == "fwd_rev":
            grad_fn = torch.func.grad(scalar)
            return vmap(lambda v: jvp(grad_fn, (theta,), (v,))[1])(V)
        th = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(scalar(th), th, create_graph=True)
        if g.grad_fn is None:  # the scalar is linear in θ: its Hessian is zero
            return torch.zeros_like(V)
        if method == "rev_rev":
            return torch.autograd.grad(g, th, grad_outputs=V, is_grads_batched=True)[0]
        rows = [torch.autograd.grad(g, th, grad_outputs=v, retain_graph=j < V.shape[0] - 1)[0] for j, v in enumerate(V)]
        return torch.stack(rows)

    def ggnvp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """G V for a block V (k, P): Gv = E[Jᵀ H_ℓ (J v)] — a vmapped JVP, H_ℓ in closed form,
        then a vmapped VJP sharing one forward pass (docs/math.md §6).
        """
        return self.data.accumulate(lambda c: self._ggnvp_chunk(theta, V, c))

    def _ggnvp_chunk(self, theta: torch.Tensor, V: torch.Tensor, c: Chunk) -> torch.Tensor:
        f_fn = lambda th: self.model(th, c.X)
        # without has_aux, vjp returns (f, vjp_fn); torch annotates both of its forms as one union
        f, vjp_fn = cast("tuple[torch.Tensor, Callable[..., tuple[torch.Tensor]]]", vjp(f_fn, theta))
        JV = vmap(lambda v: jvp(f_fn, (theta,), (v,))[1])(V)  # (k, n_c, n_L)
        HJV = self.criterion.hessian_vp(f.detach(), c.y, JV) * (c.weight / c.X.shape[0])
        return vmap(lambda u: vjp_fn(u)[0])(HJV)  # (k, P)

    def residual_vp(self, theta: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """R V for a block V (k, P), R = E[Σ_q (∂ℓ/∂f_q) ∇²_θ f_q] = H − G (Eq. 2).

        R is the Hessian of θ ↦ E[sg(∇_f ℓ) · f(x, θ)] with sg a stop-gradient (docs/math.md §6, the
        [R] alternative): one Hessian block of a cheaper scalar, instead of an H·V and a G·V.
        """
        return self.data.accumulate(lambda c: self._residual_chunk(theta, V, c))

    def _residual_chunk(self, theta: torch.Tensor, V: torch.Tensor, c: Chunk) -> torch.Tensor:
        f0 = self.model(theta.detach(), c.X).requires_grad_(True)
        (e,) = torch.autograd.grad(self.criterion.losses(f0, c.y).mean() * c.weight, f0)  # ∂L̃_c/∂f, fixed
        return self._hessian_block(theta, V, lambda th: (e * self.model(th, c.X)).sum(), c.X.shape[0])

    def operator(self, theta: torch.Tensor, which: str = "H") -> LinearOperator:
        """H, G or R at θ as a :class:`LinearOperator` (θ is captured, detached)."""
        if which not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}, got {which!r}")
        theta = theta.detach()
        fn = {"H": self.hvp, "G": self.ggnvp, "R": self.residual_vp}[which]

        def lower() -> LinearOperator:
            low = self.float32().operator(theta.to(torch.float32), which)
            return LinearOperator(
                matmat=lambda V: low(V.to(torch.float32)).to(theta.dtype),
                dim=self.num_params,
                dtype=theta.dtype,
                device=theta.device,
                name=f"{which}/f32",
            )

        return LinearOperator(
            matmat=lambda V: fn(theta, V),
            dim=self.num_params,
            dtype=theta.dtype,
            device=theta.device,
            name=which,
            lower=None if theta.dtype == torch.float32 else lower,
        )
