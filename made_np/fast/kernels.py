"""Fused elementwise kernels: the optimiser updates in one pass, and the fused Bernoulli and mixture heads.

The references are :mod:`made_np.optim` and :class:`made_np.heads.BernoulliHead`;
tests/test_speedpaths.py checks that each form here computes the same numbers.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from .. import backend
from ..heads import _HALF_LOG_2PI, BernoulliHead, MixtureHead, log_scale
from ..layers import ReLU
from . import threads

_FUSED_CACHE: dict = {}


def fused_kernels(xp, enabled: bool | None = None):
    """Return fused elementwise kernels for ``xp``, or None.

    Parameters
    ----------
    xp : module
        NumPy (uses :mod:`numexpr` when installed) or CuPy (uses ``cupy.ElementwiseKernel``).
    enabled : bool or None
        ``None`` reads ``$MADE_NP_FUSED``: on CuPy the kernels are used unless it is
        ``0``; on NumPy only when it is ``1``, because on the CPU numexpr measured
        slower than NumPy's own SIMD loops for these cache-sized arrays (an Adam
        update of a 784x500 float32 matrix: 1.9 ms with numexpr's threads, 2.8 ms
        with one, against 0.6 ms for :class:`made_np.fast.optim.FastAdam`'s own path;
        see ``docs/performance.md``). ``False`` always returns None, ``True`` asks for them.

    Returns
    -------
    object or None
        An object with ``adam(p, g, m, v, beta1, beta2, step, eps, weight_decay)``,
        ``adagrad(p, g, s, lr, eps, weight_decay)`` updating ``p``, ``m``, ``v``, ``s`` in place.

    Raises
    ------
    ValueError
        ``$MADE_NP_FUSED`` other than 0 or 1.
    """
    if enabled is None:
        value = os.environ.get("MADE_NP_FUSED", "0" if xp is np else "1").strip()
        if value not in ("0", "1"):
            raise ValueError(f"$MADE_NP_FUSED must be 0 or 1, got {value[:20]!r}: unset it, or 1 for the fused kernels")
        enabled = value == "1"
    if not enabled:
        return None
    key = backend.device_of(xp)
    if key not in _FUSED_CACHE:
        _FUSED_CACHE[key] = _NumexprKernels.create() if xp is np else _CupyKernels(xp)
    return _FUSED_CACHE[key]


class _NumexprKernels:
    """numexpr versions of the optimiser updates (multi-threaded, one pass each)."""

    @classmethod
    def create(cls):
        numexpr = threads.numexpr_module()
        return None if numexpr is None else cls(numexpr)

    def __init__(self, ne):
        self.ne = ne

    def adam(self, p, g, m, v, beta1, beta2, step, eps, weight_decay):
        ev, t = self.ne.evaluate, p.dtype.type  # numexpr reads these names from the frame
        b1, b2, c1, c2 = t(beta1), t(beta2), t(1.0 - beta1), t(1.0 - beta2)
        s, e, wd = t(step), t(eps), t(weight_decay)
        if weight_decay:
            ev("b1 * m + c1 * (g + wd * p)", out=m, casting="same_kind")
            ev("b2 * v + c2 * (g + wd * p) ** 2", out=v, casting="same_kind")
        else:
            ev("b1 * m + c1 * g", out=m, casting="same_kind")
            ev("b2 * v + c2 * g * g", out=v, casting="same_kind")
        ev("p - s * m / (sqrt(v) + e)", out=p, casting="same_kind")

    def adagrad(self, p, g, s, lr, eps, weight_decay):
        ev = self.ne.evaluate
        t = p.dtype.type
        lr, e, wd = t(lr), t(eps), t(weight_decay)
        if weight_decay:
            ev("g + wd * p", out=g, casting="same_kind")
        ev("s + g * g", out=s, casting="same_kind")
        ev("p - lr * g / sqrt(s + e)", out=p, casting="same_kind")


#: The CuPy kernels' sources: name -> ``(in_params, out_params, body)`` of a ``cupy.ElementwiseKernel``.
#: Type-generic: ``T`` is the dtype of the parameters (float32 or float64), and the scalars are passed as
#: ``T`` too; the output parameters (``p``, ``m``, ``v``, ``s``) are given, and updated in place. The
#: bodies are the updates of :class:`_NumexprKernels` (the same per-entry arithmetic). tests/test_cuda.py
#: reads their C on the CPU (every parameter used, nothing undeclared) and compiles each on a GPU.
CUDA_KERNELS = {
    "made_np_adam": (
        "T g, T b1, T b2, T s, T e, T wd",
        "T p, T m, T v",
        """
        T gg = g + wd * p;
        m = b1 * m + (1 - b1) * gg;
        v = b2 * v + (1 - b2) * gg * gg;
        p -= s * m / (sqrt(v) + e);
        """,
    ),
    "made_np_adagrad": (
        "T g, T lr, T e, T wd",
        "T p, T s",
        """
        T gg = g + wd * p;
        s += gg * gg;
        p -= lr * gg / sqrt(s + e);
        """,
    ),
}


class _CupyKernels:
    """CuPy ``ElementwiseKernel`` versions of the optimiser updates (:data:`CUDA_KERNELS`), each one
    kernel launch on the current stream: no host copy, no synchronisation."""

    def __init__(self, cp):
        self._adam, self._adagrad = (cp.ElementwiseKernel(*CUDA_KERNELS[name], name)
                                     for name in ("made_np_adam", "made_np_adagrad"))

    def adam(self, p, g, m, v, beta1, beta2, step, eps, weight_decay):
        t = p.dtype.type
        self._adam(g, t(beta1), t(beta2), t(step), t(eps), t(weight_decay), p, m, v)

    def adagrad(self, p, g, s, lr, eps, weight_decay):
        t = p.dtype.type
        self._adagrad(g, t(lr), t(eps), t(weight_decay), p, s)


#: Logit arrays with at least this many entries are split by rows over the CPU work pool.
SPLIT_MIN_SIZE = 1 << 18


def zero_row(owner, a):
    """A row of zeros of ``a``'s last axis and dtype, kept on ``owner`` (``owner._zeros``) for the next
    call: NumPy's ``maximum`` against an array is 2-3x faster than against the scalar 0."""
    zeros = getattr(owner, "_zeros", None)
    if zeros is None or zeros.shape[0] != a.shape[-1] or zeros.dtype != a.dtype:
        zeros = owner._zeros = owner.xp.zeros(a.shape[-1:], dtype=a.dtype)
    return zeros


class FusedBernoulliHead(BernoulliHead):
    """The Bernoulli head of :class:`made_np.heads.BernoulliHead`, computed with fewer passes.

    Same NLL ``sum_d softplus(z_d) - x_d z_d`` and gradient ``sigmoid(z) - x``; only the
    arithmetic differs (CPU, binarized MNIST, (100, 784) logits). ``log1p`` and ``where``
    have no SIMD loop in NumPy and cost 5-20x an addition, and ``maximum`` against the
    scalar 0 is 2x slower than against an array. So:

    * ``sum_d log1p(e_d) = log prod_d (1 + e_d)``: the factors ``1 + e`` in (1, 2] are
      multiplied pairwise along the row (the right half folded onto the left, six
      rounds: products of at most 64 factors, at most 2^64, cannot overflow), then the log
      of the ~D/64 partial products is taken in float64;
    * the sigmoid's branch is a ``maximum`` with the 0/1 indicator, not ``where``;
    * large arrays are split by rows over the CPU work pool.

    Both rewrites are exact up to rounding (the product rounds like a sum of float32
    logs; ``1 + e`` drops ``e`` below the dtype's epsilon, an error below 6e-8 nats
    per variable in float32).
    """

    def __init__(self, xp, classes: int = 2):
        super().__init__(xp, classes)
        self.pool = threads.work_pool(xp)

    @classmethod
    def from_head(cls, head):
        """The fused form of a :class:`~made_np.heads.BernoulliHead`."""
        return cls(head.xp)

    def _exp_neg_abs(self, z):
        """``e = exp(-|z|)``, in (0, 1] (underflows harmlessly to 0 for huge |z|)."""
        xp = self.xp
        e = xp.abs(z)
        xp.negative(e, out=e)
        return xp.exp(e, out=e)

    def _linear_part(self, z, x, scratch):
        """``sum_d [max(z_d, 0) - x_d z_d]`` per row (terms >= 0 for x in [0, 1]: no cancellation).

        ``scratch`` (same shape as ``z``) is overwritten.
        """
        xp = self.xp
        t = xp.maximum(z, zero_row(self, z))
        t -= xp.multiply(x, z, out=scratch)
        return t.sum(axis=1)

    def _sum_log(self, f):
        """``sum_d log(f_d)`` per row for factors ``f`` in [1, 2], shape (batch, D); ``f`` is overwritten.

        Returns float64, shape (batch,).
        """
        xp = self.xp
        width, factors = f.shape[1], 1
        while width > 1 and factors < 64:
            half = width // 2
            f[:, :half] *= f[:, width - half:width]  # an odd middle column is left as it is
            width -= half
            factors *= 2
        return xp.log(f[:, :width].astype(xp.float64)).sum(axis=1)

    def nll(self, z, x):
        """Negative log-likelihood in nats, shape (batch,), of logits ``z`` and targets ``x`` (batch, D)."""
        return self._by_rows(z, lambda a, b: self._nll_rows(z[a:b], x[a:b]))

    def _nll_rows(self, z, x):
        e = self._exp_neg_abs(z)
        nll = self._linear_part(z, x, self.xp.empty_like(e))
        e += 1.0
        return (nll + self._sum_log(e)).astype(z.dtype, copy=False)

    def _by_rows(self, z, rows_fn):
        """``rows_fn(a, b)`` (the NLL of rows a..b) over all rows of ``z``: in blocks of
        rows on the threads of the CPU work pool for large arrays, else in one call."""
        pool, n = self.pool, z.shape[0]
        if pool is None or z.size < SPLIT_MIN_SIZE or n < pool.threads:
            return rows_fn(0, n)
        k = pool.threads
        bounds = [n * i // k for i in range(k + 1)]
        parts = [None] * k

        def block(i):
            parts[i] = rows_fn(bounds[i], bounds[i + 1])

        pool.run([functools.partial(block, i) for i in range(k)])
        return self.xp.concatenate(parts)

    def nll_and_grad(self, z, x):
        """NLL (batch,) in nats and its gradient ``dNLL/dz = sigmoid(z) - x``, shape (batch, D).

        ``sigmoid(z) = n / (1 + e)`` with ``e = exp(-|z|)`` and numerator ``n = 1`` for
        ``z >= 0``, ``n = e`` otherwise, taken as ``max(e, 1[z >= 0])`` (``e <= 1``).
        """
        g = self.xp.empty_like(z)
        nll = self._by_rows(z, lambda a, b: self._nll_and_grad_into(z[a:b], x[a:b], g[a:b]))
        return nll, g

    def _nll_and_grad_into(self, z, x, g):
        """NLL of the rows of ``z``; writes ``sigmoid(z) - x`` into ``g`` (same shape)."""
        xp = self.xp
        e = self._exp_neg_abs(z)
        linear = self._linear_part(z, x, g)  # g is scratch until the gradient is written
        xp.greater_equal(z, 0, out=g)
        xp.maximum(g, e, out=g)
        e += 1.0
        g /= e
        g -= x
        return (linear + self._sum_log(e)).astype(z.dtype, copy=False)


class FusedMixtureHead(MixtureHead):
    """:class:`made_np.heads.MixtureHead`'s NLL and gradient with few temporaries.

    The reference allocates about twenty (K, batch, D) arrays a step; past glibc's mmap
    threshold (128 KiB: a batch of 100 at D = 64, K = 5) each one is a fresh mapping and its
    page faults, 3.0 ms of a 100 x 64 x 5 float32 step against 1.1 ms here. Here the
    gradient is written in place into one (3, K, batch, D) array and the terms reuse each
    other's memory. Same numbers up to rounding (tests/test_real_heads.py).
    """

    @classmethod
    def from_head(cls, head):
        """The fused form of a :class:`~made_np.heads.MixtureHead`."""
        return cls(head.xp, head.C, head.K)

    def nll_and_grad(self, z, x):
        xp = self.xp
        g = self._blocks(z)  # (3, K, batch, D): logits, means, raw log-scales, overwritten by the gradient
        w, mu, s = g
        a, da = log_scale(xp, s)
        e = xp.exp(-a)
        r = xp.subtract(x, mu, out=mu)  # mu is read only here
        r *= e  # (x - mu) / sigma
        w -= w.max(axis=0)
        w -= xp.log(xp.exp(w).sum(axis=0))  # log pi
        l = a  # log pi - log sigma - r^2 / 2 - log(2 pi) / 2, in a's memory
        xp.subtract(w, a, out=l)
        l -= _HALF_LOG_2PI
        half = xp.multiply(r, r)
        l -= 0.5 * half
        top = l.max(axis=0)
        l -= top
        xp.exp(l, out=l)
        total = l.sum(axis=0)
        lse = xp.log(total) + top
        l /= total  # the responsibilities rho
        xp.exp(w, out=w)
        w -= l  # pi - rho
        xp.multiply(l, r, out=mu)
        mu *= e
        xp.negative(mu, out=mu)  # -rho r / sigma
        xp.subtract(1.0, half, out=s)
        s *= l
        s *= da  # rho (1 - r^2) L'
        return -lse.sum(axis=1), g.transpose(2, 3, 0, 1).reshape(z.shape).astype(z.dtype)


def fast_head(head):
    """The fastest form of ``head`` (its fused form when one exists, else ``head`` itself)."""
    fused = {BernoulliHead: FusedBernoulliHead, MixtureHead: FusedMixtureHead}.get(type(head))
    return fused.from_head(head) if fused is not None else head


class FastReLU(ReLU):
    """:class:`made_np.layers.ReLU` with a broadcast row of zeros: NumPy's ``maximum``
    against an array is 2-3x faster than against the scalar 0 (whose loop is not vectorised)."""

    def forward(self, a, keep: bool = False):
        """a : array (batch, H), overwritten. Returns h, same shape (kept for :meth:`backward` with ``keep``)."""
        h = self.xp.maximum(a, zero_row(self, a), out=a)
        if keep:
            self.h = h
        return h

    def backward(self, dh):
        """dh : array (batch, H), overwritten. Returns dL/da."""
        dh *= self.h > 0
        return dh
