"""Output heads: the per-variable conditionals p(x_d | x_<d) and their losses.

A head turns the network's logits into a negative log-likelihood in nats (summed
over variables, one value per example), the gradient of that NLL with respect to
the logits, and samples.

* :class:`BernoulliHead`: one logit ``z_d`` per binary variable,
  ``log p(x) = sum_d [x_d z_d - softplus(z_d)]`` (binary cross-entropy), gradient
  ``sigmoid(z) - x``.
* :class:`CategoricalHead`: ``C`` logits per variable, laid out variable-major,
  ``z[:, d*C + c]`` (viewed as ``(batch, D, C)``), ``log p(x) = sum_d log softmax(z_d)[x_d]``
  (cross-entropy), gradient ``softmax(z_d) - onehot(x_d)``.
"""
from __future__ import annotations

from . import backend

#: Logit arrays with at least this many entries are split by rows over the CPU work pool.
SPLIT_MIN_SIZE = 1 << 18


class BernoulliHead:
    """Independent Bernoulli conditionals with logits ``z`` (paper eq. 3).

    Parameters
    ----------
    xp : module
        Array module.
    """

    logits_per_variable = 1

    def __init__(self, xp):
        self.xp = xp
        self.pool = backend.work_pool(xp)

    # Speed notes (CPU, binarized MNIST, (100, 784) logits). ``log1p`` and ``where``
    # have no SIMD loop in NumPy and cost 5-20x an addition, and ``maximum``
    # against the scalar 0 is 2x slower than against an array. So:
    # * ``sum_d log1p(e_d) = log prod_d (1 + e_d)``: the factors ``1 + e`` in
    #   (1, 2] are multiplied pairwise along the row (the right half folded onto
    #   the left, six rounds: products of at most 64 factors, < 2^64, cannot
    #   overflow), then the log of the ~D/64 partial products is taken in float64;
    # * the sigmoid's branch is a ``maximum`` with the 0/1 indicator, not ``where``.
    # Both are exact rewrites up to rounding (the product rounds like a sum of
    # float32 logs; ``1 + e`` drops ``e`` below the dtype's epsilon, an error
    # below 6e-8 nats per variable in float32).

    def _exp_neg_abs(self, z):
        """``e = exp(-|z|)``, in (0, 1] (underflows harmlessly to 0 for huge |z|)."""
        xp = self.xp
        e = xp.abs(z)
        xp.negative(e, out=e)
        return xp.exp(e, out=e)

    def _zero_row(self, z):
        zeros = getattr(self, "_zeros", None)
        if zeros is None or zeros.shape[0] != z.shape[-1] or zeros.dtype != z.dtype:
            zeros = self._zeros = self.xp.zeros(z.shape[-1:], dtype=z.dtype)
        return zeros

    def _linear_part(self, z, x, scratch):
        """``sum_d [max(z_d, 0) - x_d z_d]`` per row (terms >= 0 for x in [0, 1]: no cancellation).

        ``scratch`` (same shape as ``z``) is overwritten.
        """
        xp = self.xp
        t = xp.maximum(z, self._zero_row(z))
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

    def _nll_from(self, z, x, e, scratch):
        """The NLL per row, in ``z.dtype``, from ``e = exp(-|z|)`` (both ``e`` and ``scratch`` overwritten)."""
        nll = self._linear_part(z, x, scratch)
        e += 1.0
        return (nll + self._sum_log(e)).astype(z.dtype, copy=False)

    def nll(self, z, x):
        """Negative log-likelihood in nats.

        Parameters
        ----------
        z : array, shape (batch, D), float
            Logits.
        x : array, shape (batch, D), float or int in {0, 1}
            Targets.

        Returns
        -------
        array, shape (batch,)
            ``-log p(x) = sum_d [softplus(z_d) - x_d z_d]`` in nats.
        """
        return self._by_rows(z, lambda a, b: self._nll_rows(z[a:b], x[a:b]))

    def _nll_rows(self, z, x):
        e = self._exp_neg_abs(z)
        return self._nll_from(z, x, e, self.xp.empty_like(e))

    def _by_rows(self, z, rows_fn):
        """``rows_fn(a, b)`` (the NLL of rows a..b) over all rows of ``z``: in blocks of
        rows on the threads of the CPU work pool for large arrays, else in one call."""
        pool = self.pool
        n = z.shape[0]
        if pool is None or z.size < SPLIT_MIN_SIZE or n < pool.threads:
            return rows_fn(0, n)
        k = pool.threads
        bounds = [n * i // k for i in range(k + 1)]
        parts = [None] * k

        def block(i):
            def run():
                parts[i] = rows_fn(bounds[i], bounds[i + 1])
            return run

        pool.run([block(i) for i in range(k)])
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

    def _sigmoid(self, z, e=None):
        """``sigmoid(z)`` without overflow, from ``e = exp(-|z|)``."""
        if e is None:
            e = self.xp.exp(-self.xp.abs(z))
        r = 1.0 / (1.0 + e)
        return self.xp.where(z >= 0, r, e * r)

    def sample(self, z, u):
        """Draw ``x_d = 1[u_d < sigmoid(z_d)]``.

        Parameters
        ----------
        z : array, shape (n, k)
            Logits of ``k`` variables (one column per variable).
        u : array, shape (n, k)
            Uniform noise in [0, 1).

        Returns
        -------
        array of uint8, shape (n, k), values in {0, 1}.
        """
        return (u < self._sigmoid(z)).astype(self.xp.uint8)


class CategoricalHead:
    """Softmax conditionals over ``C`` classes per variable.

    Parameters
    ----------
    xp : module
        Array module.
    classes : int
        Number of classes ``C >= 2`` of every variable.
    """

    def __init__(self, xp, classes: int):
        if classes < 2:
            raise ValueError(f"a categorical head needs at least 2 classes, got {classes}")
        self.xp = xp
        self.C = int(classes)
        self.logits_per_variable = self.C

    def log_softmax(self, z):
        """Stable ``log softmax`` over the last axis of ``z`` (any leading shape)."""
        xp = self.xp
        s = z - z.max(axis=-1, keepdims=True)
        return s - xp.log(xp.exp(s).sum(axis=-1, keepdims=True))

    def _flat_index(self, x):
        """Positions of ``x_d`` among the flattened logits, shape (batch*D,)."""
        xp = self.xp
        n, D = x.shape
        return xp.arange(n * D) * self.C + x.reshape(-1).astype(xp.int64)

    def nll(self, z, x):
        """Negative log-likelihood in nats.

        Parameters
        ----------
        z : array, shape (batch, D*C), float
            Logits, variable-major (``z[:, d*C + c]``).
        x : array, shape (batch, D), int in 0..C-1
            Targets.

        Returns
        -------
        array, shape (batch,)
            ``-sum_d log softmax(z_d)[x_d]`` in nats.
        """
        n, D = x.shape
        lp = self.log_softmax(z.reshape(n, D, self.C))
        return -lp.reshape(-1)[self._flat_index(x)].reshape(n, D).sum(axis=1)

    def nll_and_grad(self, z, x):
        """NLL (batch,) in nats and its gradient ``softmax(z_d) - onehot(x_d)``, shape (batch, D*C)."""
        xp = self.xp
        n, D = x.shape
        lp = self.log_softmax(z.reshape(n, D, self.C)).reshape(-1)
        idx = self._flat_index(x)
        nll = -lp[idx].reshape(n, D).sum(axis=1)
        grad = xp.exp(lp)
        grad[idx] -= 1.0
        return nll, grad.reshape(n, D * self.C)

    def sample(self, z, u):
        """Inverse-CDF draws from softmax conditionals.

        Parameters
        ----------
        z : array, shape (n, k*C)
            Logits of ``k`` variables, variable-major.
        u : array, shape (n, k)
            Uniform noise in [0, 1).

        Returns
        -------
        array of int64, shape (n, k), values in 0..C-1: the first class whose
        cumulative probability exceeds ``u``.
        """
        xp = self.xp
        n, k = u.shape
        p = xp.exp(self.log_softmax(z.reshape(n, k, self.C)))
        below = xp.cumsum(p, axis=-1) <= u[..., None]
        return xp.minimum(below.sum(axis=-1), self.C - 1).astype(xp.int64)


def make_head(name: str, xp, classes: int = 2):
    """Build a head by name: ``bernoulli`` or ``categorical`` (with ``classes``).

    Raises
    ------
    ValueError
        Unknown name or fewer than 2 classes.
    """
    if name == "bernoulli":
        return BernoulliHead(xp)
    if name == "categorical":
        return CategoricalHead(xp, classes)
    raise ValueError(f"unknown head {name!r}: choose bernoulli or categorical")
