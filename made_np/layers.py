"""Masked dense layers and ReLU-family activations, forward and backward side by side.

Every array is a ``(batch, features)`` row batch on the array module ``xp``
(NumPy or CuPy, see :mod:`made_np.backend`). Gradients are derived by hand:
for ``y = x (W * M) + b`` and an upstream gradient ``delta = dL/dy``,

* ``dL/dW = (x^T delta) * M``  (masked-out weights get exactly zero gradient),
* ``dL/db = sum_batch delta``,
* ``dL/dx = delta (W * M)^T``.
"""
from __future__ import annotations

import functools
import math


class _Dense:
    """What the dense layers share: their parameter and gradient lists."""

    @property
    def params(self) -> list:
        """Parameters ``[W, b]`` (or ``[W]``)."""
        return [self.W, self.b] if self.b is not None else [self.W]

    @property
    def grads(self) -> list:
        """Gradients ``[dW, db]`` matching :attr:`params`."""
        return [self.dW, self.db] if self.b is not None else [self.dW]


class MaskedDense(_Dense):
    """A dense layer whose weight matrix is multiplied by a fixed binary mask.

    Parameters
    ----------
    fan_in, fan_out : int
        Input and output widths.
    xp : module
        Array module (NumPy or CuPy).
    rng : numpy.random.Generator
        Host generator for the initial weights, so that CPU and GPU runs start identical.
    dtype : numpy dtype
        Floating dtype of the parameters (float32 by default).
    bias : bool
        Whether the layer has a bias ``b`` (the direct connections of paper eq. 11 do not).
    need_input_grad : bool
        Whether :meth:`backward` returns ``dL/dx`` (not needed for the first layer).

    Attributes
    ----------
    W : array, shape (fan_in, fan_out)
        Weights, initialised uniformly in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``.
    b : array, shape (fan_out,) or None
        Biases, initialised to zero.
    M : array, shape (fan_in, fan_out)
        The mask, 0/1 in ``dtype`` (see :mod:`made_np.masks`).
    dW, db : arrays
        Gradients of the last :meth:`backward`, same shapes as ``W`` and ``b``.
    """

    def __init__(self, fan_in, fan_out, xp, rng, dtype="float32", bias=True, need_input_grad=True):
        bound = 1.0 / math.sqrt(fan_in)
        self.xp = xp
        self.W = xp.asarray(rng.uniform(-bound, bound, size=(fan_in, fan_out)).astype(dtype))
        self.b = xp.zeros(fan_out, dtype=dtype) if bias else None
        self.M = xp.ones((fan_in, fan_out), dtype=dtype)
        self.dW = xp.zeros_like(self.W)
        self.db = xp.zeros_like(self.b) if bias else None
        self.need_input_grad = need_input_grad
        self.fixed = False
        self._WM = xp.empty_like(self.W)

    def set_mask(self, M, fixed: bool = False) -> None:
        """Use mask ``M`` (array of 0/1 in the layer's dtype, shape (fan_in, fan_out)).

        With ``fixed=True`` the layer will only ever use this mask: ``W`` is masked
        once, here, and stays masked (its masked entries get zero gradient and so
        zero updates from every optimiser in :mod:`made_np.optim`), which saves
        the ``W * M`` pass of every forward step.
        """
        self.M = M
        self.fixed = fixed
        if fixed:
            self.W *= M

    def masked_weight(self):
        """``W * M``, shape (fan_in, fan_out) (``W`` itself for a fixed mask)."""
        if self.fixed:
            return self.W
        return self.xp.multiply(self.W, self.M, out=self._WM)

    def forward(self, x):
        """``y = x (W * M) + b``.

        Parameters
        ----------
        x : array, shape (batch, fan_in)

        Returns
        -------
        array, shape (batch, fan_out)
        """
        self.x = x
        self.WM = self.masked_weight()
        y = x @ self.WM
        if self.b is not None:
            y += self.b
        return y

    def backward(self, delta):
        """Store ``dW``, ``db`` and return ``dL/dx`` for ``delta = dL/dy``.

        Parameters
        ----------
        delta : array, shape (batch, fan_out)

        Returns
        -------
        array, shape (batch, fan_in), or None when ``need_input_grad`` is False.
        """
        xp = self.xp
        xp.matmul(self.x.T, delta, out=self.dW)
        self.dW *= self.M
        if self.b is not None:
            xp.sum(delta, axis=0, out=self.db)
        if self.need_input_grad:
            return delta @ self.WM.T
        return None


class BlockedDense(_Dense):
    """A fixed-mask dense layer that stores and multiplies only the blocks of its mask with live entries.

    Built from a :class:`made_np.masks.BlockPlan` of the mask. The weight matrix
    ``W`` (fan_in, fan_out) is kept as the concatenation of its blocks, one flat
    *packed* array (``W``, ``dW`` and ``M`` alike), so an optimiser streams through
    only the live blocks, in one contiguous pass. For the sorted staircase masks of
    :func:`made_np.masks.sorting_permutations` that is about 60% of the matrix.

    With ``by="columns"`` the blocks ``(r0, r1, c0, c1)`` partition the columns::

        y[:, c0:c1]   = x[:, r0:r1] W_blk + b[c0:c1]      (written, not added)
        dW_blk        = (x[:, r0:r1]^T delta[:, c0:c1]) * M_blk
        dx[:, r0:r1] += delta[:, c0:c1] W_blk^T           (blocks overlap in rows)

    and with ``by="rows"`` they partition the rows, so ``dx`` is written and ``y``
    summed. Columns are the default: summing costs more than writing, and it
    then falls on the backward pass of the layers after the first only (measured
    in docs/performance.md). The sums are those of :class:`MaskedDense` up to the
    order of float additions.

    The products of a step can run side by side on the threads of a
    :class:`made_np.backend.WorkPool` (:meth:`set_pool`).

    Parameters
    ----------
    plan : made_np.masks.BlockPlan
        Blocks of the mask; entries outside them must be 0 in ``M``.
    M : array, shape (fan_in, fan_out)
        The mask (0/1 in ``dtype``).
    xp : module
    dtype : dtype
    bias : bool
    need_input_grad : bool
    by : {"columns", "rows"}
        Which side of the matrix the blocks partition.

    Attributes
    ----------
    W, dW, M : arrays, shape (n_packed,)
        Packed blocks, in the order of :attr:`index`.
    index : list of (slice, slice)
        The rows and columns of each block with live entries in the full matrix.
    b, db : arrays, shape (fan_out,) or None
    pool : made_np.backend.WorkPool or None
        Threads the products are split over (:meth:`set_pool`).
    """

    def __init__(self, plan, M, xp, dtype="float32", bias=True, need_input_grad=True, by="columns"):
        if by not in ("columns", "rows"):
            raise ValueError(f"by must be 'columns' or 'rows', got {by!r}")
        self.xp, self.shape, self.need_input_grad, self.by = xp, tuple(plan.shape), need_input_grad, by
        blocks = plan.rows if self.by == "rows" else plan.columns
        self.index = [(slice(r0, r1), slice(c0, c1)) for r0, r1, c0, c1 in blocks if r1 > r0 and c1 > c0]
        sizes = [(r.stop - r.start) * (c.stop - c.start) for r, c in self.index]
        self.offsets = [0]
        for n in sizes:
            self.offsets.append(self.offsets[-1] + n)
        self.W = xp.zeros(self.offsets[-1], dtype=dtype)
        self.dW = xp.zeros_like(self.W)
        self.M = self.pack(M)
        self.b = xp.zeros(self.shape[1], dtype=dtype) if bias else None
        self.db = xp.zeros_like(self.b) if bias else None
        self._W, self._dW, self._M = self._views(self.W), self._views(self.dW), self._views(self.M)
        self.set_pool(None)
        # the stretches of the partitioned side that no block covers (blocks without live entries)
        side, n = (1, self.shape[1]) if self.by == "columns" else (0, self.shape[0])
        edges = [0] + [e for block in self.index for e in (block[side].start, block[side].stop)] + [n]
        self._gaps = [slice(a, z) for a, z in zip(edges[::2], edges[1::2]) if z > a]

    def _views(self, flat) -> list:
        return [flat[a:z].reshape(r.stop - r.start, c.stop - c.start)
                for (r, c), a, z in zip(self.index, self.offsets, self.offsets[1:])]

    def pack(self, full):
        """The blocks of a (fan_in, fan_out) array, packed: shape (n_packed,)."""
        xp = self.xp
        if not self.index:
            return xp.zeros(0, dtype=full.dtype)
        return xp.concatenate([full[r, c].reshape(-1) for r, c in self.index])

    def unpack(self, packed):
        """The (fan_in, fan_out) array with these packed blocks and zeros elsewhere."""
        full = self.xp.zeros(self.shape, dtype=packed.dtype)
        for (r, c), a, z in zip(self.index, self.offsets, self.offsets[1:]):
            full[r, c] = packed[a:z].reshape(r.stop - r.start, c.stop - c.start)
        return full

    def _product(self, a, transpose: bool, width: int):
        """``a W`` (``transpose=False``) or ``a W^T``, block by block; shape (batch, width).

        Blocks that partition the output's side write their own slices, split over
        the threads of :attr:`pool`. Blocks that share output rows (columns) are
        summed: each thread sums its blocks into a buffer of its own (the first
        buffer is the output), and the buffers are added.
        """
        xp = self.xp
        if (self.by == "columns") != transpose:
            out = xp.empty((a.shape[0], width), dtype=a.dtype)
            for gap in self._gaps:  # outputs that no live weight reaches
                out[:, gap] = 0
            self._run([(self._write_blocks, a, out, transpose, part) for part in self._parts])
            return out
        parts = [p for p in self._parts if p] or [[]]
        bufs = [xp.empty((a.shape[0], width), dtype=a.dtype) for _ in parts]
        self._run([(self._sum_blocks, a, buf, transpose, part) for buf, part in zip(bufs, parts)])
        out = bufs[0]
        for buf in bufs[1:]:
            out += buf
        return out

    def _pairs(self, part, transpose: bool) -> list:
        """``((src, dst), w)`` of the blocks ``part``: ``a[:, src] w`` goes to ``out[:, dst]``."""
        pairs = []
        for i in part:
            (rows, cols), w = self.index[i], self._W[i]
            pairs.append(((cols, rows), w.T) if transpose else ((rows, cols), w))
        return pairs

    def _write_blocks(self, a, out, transpose, part) -> None:
        """``out[:, dst] = a[:, src] w`` for the blocks ``part`` (each writes its own slice)."""
        for (src, dst), w in self._pairs(part, transpose):
            self.xp.matmul(a[:, src], w, out=out[:, dst])

    def _sum_blocks(self, a, out, transpose, part) -> None:
        """``out`` = the sum of ``a[:, src] w`` placed at ``out[:, dst]`` over the blocks ``part``.

        The block with the widest output slice writes it (and the rest of ``out`` is
        zeroed); the others add to it.
        """
        pairs = sorted(self._pairs(part, transpose), key=lambda p: p[0][1].start - p[0][1].stop)
        if not pairs:
            out[...] = 0
            return
        (src, dst), w = pairs[0]
        self.xp.matmul(a[:, src], w, out=out[:, dst])
        out[:, :dst.start] = 0
        out[:, dst.stop:] = 0
        for (src, dst), w in pairs[1:]:
            out[:, dst] += a[:, src] @ w

    def _weight_grads(self, x, delta, part) -> None:
        """``dW_blk = (x[:, rows]^T delta[:, cols]) * M_blk`` for the blocks ``part``."""
        for i in part:
            rows, cols = self.index[i]
            dw = self._dW[i]
            self.xp.matmul(x[:, rows].T, delta[:, cols], out=dw)
            dw *= self._M[i]

    def _run(self, tasks) -> None:
        """Run ``(fn, *args)`` tasks: side by side on :attr:`pool`, or one after the other."""
        if self.pool is None:
            for fn, *args in tasks:
                fn(*args)
        else:
            self.pool.run([functools.partial(fn, *args) for fn, *args in tasks])

    def set_pool(self, pool) -> None:
        """Split the block products over the threads of ``pool`` (a :class:`made_np.backend.WorkPool`),
        or run them in turn (None). Each thread should then run BLAS on one thread
        (:func:`made_np.backend.blas_threads`): blocks are too small for BLAS's own
        threads to pay (docs/performance.md)."""
        self.pool = pool
        n = 1 if pool is None else pool.threads
        # blocks to threads, largest first to the least loaded (balanced work, disjoint outputs)
        parts, load = [[] for _ in range(n)], [0] * n
        for i in sorted(range(len(self.index)), key=lambda i: -self._W[i].size):
            k = min(range(n), key=lambda k: load[k])
            parts[k].append(i)
            load[k] += self._W[i].size
        self._parts = [sorted(p) for p in parts]

    def forward(self, x):
        """``y = x (W * M) + b``; x : (batch, fan_in) -> (batch, fan_out)."""
        self.x = x
        y = self._product(x, transpose=False, width=self.shape[1])
        if self.b is not None:
            y += self.b
        return y

    def backward(self, delta):
        """Store ``dW`` (packed), ``db``; return ``dL/dx`` (batch, fan_in) or None.

        delta : array, shape (batch, fan_out)
        """
        self._run([(self._weight_grads, self.x, delta, part) for part in self._parts])
        if self.b is not None:
            self.xp.sum(delta, axis=0, out=self.db)
        if self.need_input_grad:
            return self._product(delta, transpose=True, width=self.shape[0])
        return None


class ReLU:
    """``h = max(a, 0)``; backward ``dL/da = dL/dh * 1[h > 0]``. Works in place on ``a``."""

    def __init__(self, xp):
        self.xp = xp
        self._zeros = None

    def forward(self, a):
        """a : array (batch, H), overwritten. Returns h, same shape."""
        # a broadcast row of zeros: NumPy's maximum against an array is 2-3x faster
        # than against the scalar 0 (whose loop is not vectorised)
        zeros = self._zeros
        if zeros is None or zeros.shape[-1] != a.shape[-1] or zeros.dtype != a.dtype:
            zeros = self._zeros = self.xp.zeros(a.shape[-1:], dtype=a.dtype)
        self.h = self.xp.maximum(a, zeros, out=a)
        return self.h

    def backward(self, dh):
        """dh : array (batch, H), overwritten. Returns dL/da."""
        dh *= self.h > 0
        return dh


class LeakyReLU:
    """``h = a if a > 0 else slope * a`` (slope 0.01); backward multiplies by 1 or ``slope``."""

    def __init__(self, xp, slope: float = 0.01):
        self.xp, self.slope = xp, slope

    def forward(self, a):
        """a : array (batch, H). Returns h, same shape."""
        self.positive = a > 0
        self.h = self.xp.where(self.positive, a, a * self.slope)
        return self.h

    def backward(self, dh):
        """dh : array (batch, H). Returns dL/da."""
        return self.xp.where(self.positive, dh, dh * self.slope)


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU}


def make_activation(name: str, xp):
    """Build an activation by name (``relu`` or ``leaky_relu``).

    Raises
    ------
    ValueError
        Unknown name.
    """
    try:
        return ACTIVATIONS[name](xp)
    except KeyError:
        raise ValueError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}") from None
