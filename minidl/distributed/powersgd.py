"""PowerSGD (Vogels, Karimireddy and Jaggi, 2019): each gradient matrix crosses the wire as two thin factors.

For a parameter whose gradient is an n x m matrix M (a conv weight is reshaped to
out x in*kh*kw), one step of power iteration against the Q of the previous step gives a rank-r
approximation of the ranks' average, from two small allreduces instead of one of n*m:

    P = M Q            allreduce P (average: the ranks' P average because M -> M Q is linear)
    P = orth(P)        a QR factorisation: P's columns become an orthonormal basis
    Q = M^T P          allreduce Q (average)
    M_avg ~ P Q^T      = P P^T (average of M): the average projected onto span(P)

so a rank sends r(n + m) numbers instead of n*m. The Q kept for the next step (*warm start*)
makes the repeated single iterations converge on the gradient's dominant subspace over steps.

*Error feedback*: what the approximation left out of this rank's M (``M - P Q^T``) is added to
its next gradient, so nothing is lost, only delayed; averaged over ranks, the updates applied
over T steps plus the ranks' mean residual equal the sum of the true averaged gradients exactly
(up to floating-point rounding). Without it PowerSGD does not converge to the same accuracy.
A residual or Q holding NaN or Inf is dropped (see :func:`~minidl.distributed.hooks.keep_if_finite`).

As in PyTorch's ``powerSGD_hook``: 1-D tensors (biases, norm weights) and matrices for which
the factors would not save at least ``min_compression_rate`` times the bytes go uncompressed;
here they ride in the P allreduce, so a bucket costs two allreduces (P, then Q) whatever it
holds; ``start_iter`` plain-allreduce steps come first (the early gradients change fast and
PowerSGD's error feedback starts from them). The first Q is random, drawn from ``seed`` and the
parameter's place, so every rank draws the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minidl.distributed.hooks import GradBucket, allreduce_hook, keep_if_finite


@dataclass(frozen=True)
class _Matrix:
    """One compressed parameter of a bucket: its position, its matrix shape and its rank."""

    index: int  # in bucket.parameters
    rows: int
    cols: int
    rank: int


@dataclass
class _Layout:
    """How one bucket is split: which parameters are compressed, and where their factors go."""

    matrices: list[_Matrix]
    uncompressed: list[int]  # positions in bucket.parameters
    uncompressed_size: int
    p_size: int  # sum of rows * rank
    q_size: int  # sum of cols * rank


@dataclass
class PowerSGDState:
    """PowerSGD's settings and its state across steps (the residuals and Qs of every bucket)."""

    rank: int = 1  # the approximation rank r
    start_iter: int = 0  # synchronised steps reduced with a plain allreduce before compression starts
    min_compression_rate: float = 2.0  # compress a matrix only if n*m > rate * r(n + m); 0: every matrix
    error_feedback: bool = True
    warm_start: bool = True
    seed: int = 0
    residuals: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (bucket, position) -> n x m
    qs: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (bucket, position) -> m x r
    layouts: dict[int, _Layout] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if int(self.rank) != self.rank or self.rank < 1:
            raise ValueError(f"PowerSGD: rank must be an integer >= 1, got {self.rank!r}")
        if int(self.start_iter) != self.start_iter or self.start_iter < 0:
            raise ValueError(f"PowerSGD: start_iter must be an integer >= 0, got {self.start_iter!r}")
        if not np.isfinite(self.min_compression_rate) or self.min_compression_rate < 0:
            raise ValueError(f"PowerSGD: min_compression_rate must be a number >= 0, got {self.min_compression_rate!r}")
        self.rank, self.start_iter = int(self.rank), int(self.start_iter)

    def layout(self, bucket: GradBucket) -> _Layout:
        """The bucket's split into compressed matrices and uncompressed tensors (computed once)."""
        known = self.layouts.get(bucket.index)
        if known is not None:
            return known
        matrices, uncompressed, plain = [], [], 0
        for i, view in enumerate(bucket.views):
            if view.ndim >= 2 and view.size:
                n, m = view.shape[0], view.size // view.shape[0]
                r = min(self.rank, n, m)
                if self.min_compression_rate * r * (n + m) < n * m:
                    matrices.append(_Matrix(i, n, m, r))
                    continue
            uncompressed.append(i)
            plain += view.size
        made = _Layout(
            matrices,
            uncompressed,
            plain,
            sum(x.rows * x.rank for x in matrices),
            sum(x.cols * x.rank for x in matrices),
        )
        self.layouts[bucket.index] = made
        return made

    def initial_q(self, bucket: int, m: _Matrix, dtype: np.dtype, step: int = 0) -> np.ndarray:
        """A random cols x rank matrix, the same on every rank (seeded by ``seed``, the parameter's place
        and, without warm start, the step)."""
        rng = np.random.default_rng([self.seed, bucket, m.index, step])
        return rng.standard_normal((m.cols, m.rank)).astype(dtype)


def powersgd_hook(state: PowerSGDState, bucket: GradBucket) -> None:
    """Reduce the bucket to its rank-``state.rank`` PowerSGD approximation, in place; see the module."""
    if bucket.step < state.start_iter:
        allreduce_hook(state, bucket)
        return
    lay = state.layout(bucket)
    if not lay.matrices:
        allreduce_hook(state, bucket)
        return
    dtype = bucket.buffer.dtype
    mats = {m.index: bucket.views[m.index].reshape(m.rows, m.cols) for m in lay.matrices}
    keys = {m.index: (bucket.index, m.index) for m in lay.matrices}
    if state.error_feedback:
        for m in lay.matrices:
            residual = state.residuals.get(keys[m.index])
            if residual is not None:
                mats[m.index] += residual  # the bucket holds M = gradient + last residual from here on

    # First allreduce: the uncompressed tensors, then every P = M Q.
    first = np.empty(lay.uncompressed_size + lay.p_size, dtype)
    offset = 0
    for i in lay.uncompressed:
        v = bucket.views[i].reshape(-1)
        first[offset : offset + v.size] = v
        offset += v.size
    ps = {}
    for m in lay.matrices:
        q = state.qs.get(keys[m.index]) if state.warm_start else None
        if q is None:
            q = state.initial_q(bucket.index, m, dtype, 0 if state.warm_start else bucket.step)
        ps[m.index] = first[offset : offset + m.rows * m.rank].reshape(m.rows, m.rank)
        np.matmul(mats[m.index], q, out=ps[m.index])
        offset += m.rows * m.rank
    bucket.all_reduce(first, "avg")
    offset = 0
    for i in lay.uncompressed:
        v = bucket.views[i].reshape(-1)
        v[...] = first[offset : offset + v.size]
        offset += v.size

    # Second allreduce: every Q = M^T orth(P).
    second = np.empty(lay.q_size, dtype)
    offset = 0
    qs = {}
    for m in lay.matrices:
        ps[m.index] = np.linalg.qr(ps[m.index])[0]  # every rank factorises the same bits: the same basis
        qs[m.index] = second[offset : offset + m.cols * m.rank].reshape(m.cols, m.rank)
        np.matmul(mats[m.index].T, ps[m.index], out=qs[m.index])
        offset += m.cols * m.rank
    bucket.all_reduce(second, "avg")

    for m in lay.matrices:
        approx = ps[m.index] @ qs[m.index].T
        if state.error_feedback:
            keep_if_finite(state.residuals, keys[m.index], mats[m.index] - approx)
        mats[m.index][...] = approx
        if state.warm_start:
            keep_if_finite(state.qs, keys[m.index], qs[m.index].copy())
    bucket.wire_bytes = first.nbytes + second.nbytes
