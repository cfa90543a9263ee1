"""The block-sparse training form of a single-mask MADE (docs/math.md, Sec. 8 "Sorted relabelling").

Relabel the inputs in the order of the ordering and the hidden units in the order
of their degrees (:func:`sorting_permutations`, :func:`relabel`): every mask then is
a staircase, about half of it in whole blocks of zeros (:func:`block_plan`).
:class:`BlockedDense` stores and multiplies only the live blocks, and
:class:`BlockedMADE` wraps a MADE in that form. The passes are the MADE's own code;
tests/test_blocked.py checks NLLs and gradients against the reference to 1e-10 in
float64.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
from dataclasses import dataclass

import numpy as np

from .. import backend
from ..layers import Dense, MaskedDense, ReLU, _Dense
from ..masks import MaskError, MaskSet
from ..model import MADE
from . import threads
from .kernels import FastReLU, fast_head

#: A weight matrix of at least ``BLOCK_MIN_SIZE`` entries is kept in packed blocks when
#: they cover at most ``BLOCK_MAX_COVERAGE`` of it.
BLOCK_MAX_COVERAGE = 0.85
BLOCK_MIN_SIZE = 1 << 15

#: A layer fed by the data (the first layer, the direct connections) multiplies only the
#: columns of its minibatch that are nonzero somewhere ("union" products) when at most this
#: fraction of the columns are. Binarized MNIST: 61% of the columns of a minibatch of 100 are
#: live, and one-thread BLAS then takes 0.67-0.83x the dense time for the forward product and
#: dW at 784x500, 784x784 and 784x8000 (benchmarks/sparse_first_layer.py, docs/performance.md).
SPARSE_MAX_LIVE = 0.8

#: Blocks whose products are summed (they share output rows or columns) are summed in this
#: many fixed groups, each into a buffer of its own, whatever the threads that run them: the
#: bits of a sum then do not depend on the pool (a pool of 1 adds one buffer more, ~10 us).
SUM_GROUPS = 2


def relabel(maskset: MaskSet, input_perm, hidden_perms) -> MaskSet:
    """The same connectivity with inputs and hidden units renumbered.

    Unit ``k`` of the result is unit ``perm[k]`` of ``maskset``, so every mask is
    indexed with the permutations of its two sides, e.g.
    ``hidden[0][input_perm][:, hidden_perms[0]]``. A MADE whose parameters are
    permuted the same way (:class:`BlockedMADE`) computes the same
    conditionals on data whose columns are permuted by ``input_perm``.

    Parameters
    ----------
    maskset : made_np.masks.MaskSet
    input_perm : ndarray of int, shape (D,)
        A permutation of 0..D-1.
    hidden_perms : sequence of ndarray of int
        One permutation of 0..H_l-1 per hidden layer.

    Returns
    -------
    MaskSet

    Raises
    ------
    MaskError
        A permutation of the wrong length or not a permutation.
    """
    sizes = [maskset.D] + [len(m) for m in maskset.degrees]
    perms = [np.asarray(input_perm, dtype=np.int64)] + [np.asarray(p, dtype=np.int64) for p in hidden_perms]
    if len(perms) != len(sizes):
        raise MaskError(f"expected {len(sizes) - 1} hidden permutations, got {len(perms) - 1}")
    for n, p in zip(sizes, perms):
        if p.shape != (n,) or not np.array_equal(np.sort(p), np.arange(n)):
            raise MaskError(f"not a permutation of 0..{n - 1}: {list(p)[:10]}")
    pi = perms[0]
    return MaskSet(index=maskset.index, ordering=maskset.ordering[pi],
                   degrees=tuple(m[p] for m, p in zip(maskset.degrees, perms[1:])),
                   hidden=tuple(m[perms[i]][:, perms[i + 1]] for i, m in enumerate(maskset.hidden)),
                   output=maskset.output[perms[-1]][:, pi], direct=maskset.direct[pi][:, pi])




def expand_columns(perm, repeat: int) -> np.ndarray:
    """A permutation of variables as a permutation of their ``repeat`` columns each.

    Variable ``d`` owns columns ``d*repeat .. d*repeat + repeat-1`` (one-hot inputs,
    categorical logits). Returns an int64 array of shape (len(perm) * repeat,).
    """
    perm = np.asarray(perm, dtype=np.int64)
    return (perm[:, None] * repeat + np.arange(repeat)).reshape(-1)


def invert_permutation(perm) -> np.ndarray:
    """The inverse of a permutation of 0..n-1: ``inv[perm[k]] = k``, int64, shape (n,)."""
    return np.argsort(np.asarray(perm, dtype=np.int64))


def sorting_permutations(maskset: MaskSet) -> tuple:
    """The relabelling that sorts inputs by ordering and hidden units by degree.

    After :func:`relabel` with these permutations the ordering is natural
    (1..D) and every layer's degrees are non-decreasing, so every mask is a
    staircase: the live rows of each column form a prefix whose length grows
    with the column (paper eqs. 11-13 with sorted ``m^l``). About half of each
    matrix is then in whole blocks of zeros that :func:`block_plan` finds.

    Returns
    -------
    input_perm : ndarray of int64, shape (D,)
    hidden_perms : tuple of ndarray of int64, shapes (H_l,)
        Stable argsorts (ties keep their order).
    """
    return (np.argsort(maskset.ordering, kind="stable"), tuple(np.argsort(m, kind="stable") for m in maskset.degrees))


@dataclass(frozen=True)
class BlockPlan:
    """Where the live (unmasked) entries of a mask lie, in blocks, for block-sparse products.

    The columns of the mask are cut into groups of about ``width`` columns, and each
    group gets the smallest range of rows holding all its live entries; the rows
    are cut the same way. Outside those blocks the mask is zero, so for ``W = W * M``

    * ``y = x W``: ``y[:, c0:c1] = x[:, r0:r1] W[r0:r1, c0:c1]`` for each column block,
    * ``dW = x^T delta``: only the column blocks are nonzero,
    * ``dx = delta W^T``: ``dx[:, r0:r1] = delta[:, c0:c1] W[r0:r1, c0:c1]^T`` for each row block,

    exactly. A block with no live entry has ``r0 == r1`` (or ``c0 == c1``).

    Attributes
    ----------
    shape : tuple of int
        ``(fan_in, fan_out)`` of the mask.
    columns : tuple of (r0, r1, c0, c1)
        Column blocks; the ``[c0, c1)`` partition the columns.
    rows : tuple of (r0, r1, c0, c1)
        Row blocks; the ``[r0, r1)`` partition the rows.
    coverage : float
        Fraction of the matrix inside the column blocks (1.0: nothing to skip).
    """

    shape: tuple
    columns: tuple
    rows: tuple
    coverage: float


def _live_range(live: np.ndarray) -> tuple:
    """``[first, last + 1)`` of the True entries of a 1-D bool array, ``(0, 0)`` if none."""
    idx = np.flatnonzero(live)
    return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)


def block_plan(mask: np.ndarray, width: int = 128) -> BlockPlan:
    """Cut a mask into column and row blocks that hold all its live entries.

    Parameters
    ----------
    mask : ndarray, shape (fan_in, fan_out)
        0/1 or bool.
    width : int
        Target number of columns (rows) per column (row) block, ``>= 1``; the
        groups are of equal size, ``ceil(fan_out / width)`` of them.

    Returns
    -------
    BlockPlan
        For a staircase mask (:func:`sorting_permutations`) with random degrees the
        coverage is about 0.5 + 0.5 / groups; for an unsorted mask it is near 1.

    Raises
    ------
    MaskError
        ``mask`` not 2-D or ``width < 1``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or width < 1:
        raise MaskError(f"block_plan needs a 2-D mask and width >= 1, got shape {mask.shape}, width {width}")
    live = mask != 0
    n_in, n_out = live.shape

    def cuts(n):
        groups = max(1, -(-n // width))
        return [n * g // groups for g in range(groups + 1)]

    c = cuts(n_out)
    columns = tuple(_live_range(live[:, c0:c1].any(axis=1)) + (c0, c1) for c0, c1 in zip(c, c[1:]))
    r = cuts(n_in)
    rows = tuple((r0, r1) + _live_range(live[r0:r1].any(axis=0)) for r0, r1 in zip(r, r[1:]))
    area = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in columns)
    return BlockPlan(shape=(n_in, n_out), columns=columns, rows=rows, coverage=area / max(n_in * n_out, 1))


class BlockedDense(_Dense):
    """A fixed-mask dense layer that stores and multiplies only the blocks of its mask with live entries.

    Built from a :class:`BlockPlan` of the mask. The weight matrix
    ``W`` (fan_in, fan_out) is kept as the concatenation of its blocks, one flat
    *packed* array (``W``, ``dW`` and ``M`` alike), so an optimiser streams through
    only the live blocks, in one contiguous pass. For the sorted staircase masks of
    :func:`sorting_permutations` that is about 60% of the matrix.

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
    :class:`made_np.fast.threads.WorkPool` (:meth:`set_pool`).

    Parameters
    ----------
    plan : BlockPlan
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
    pool : made_np.fast.threads.WorkPool or None
        Threads the products are split over (:meth:`set_pool`).
    """

    def __init__(self, plan, M, xp, dtype="float32", bias=True, need_input_grad=True, by="columns",
                 sparse_input=False):
        if by not in ("columns", "rows"):
            raise ValueError(f"by must be 'columns' or 'rows', got {by!r}")
        self.xp, self.shape, self.need_input_grad, self.by = xp, tuple(plan.shape), need_input_grad, by
        blocks = plan.rows if self.by == "rows" else plan.columns
        self.index = [(slice(r0, r1), slice(c0, c1)) for r0, r1, c0, c1 in blocks if r1 > r0 and c1 > c0]
        sizes = [(r.stop - r.start) * (c.stop - c.start) for r, c in self.index]
        self.offsets = list(itertools.accumulate(sizes, initial=0))
        self.W = xp.zeros(self.offsets[-1], dtype=dtype)
        self.dW = xp.zeros_like(self.W)
        self.M = self.pack(M)
        self.b = xp.zeros(self.shape[1], dtype=dtype) if bias else None
        self.db = xp.zeros_like(self.b) if bias else None
        self._W, self._dW, self._M = self._views(self.W), self._views(self.dW), self._views(self.M)
        # per block, the rows where its mask has a zero (a staircase's band): dW *= M there only
        bands = [slice(*_live_range(backend.to_host(m).min(axis=1) == 0)) for m in self._M]
        self._bands = [(band, m[band]) for band, m in zip(bands, self._M)]
        self.set_pool(None)
        self._groups = [g for g in self._share_out(SUM_GROUPS) if g] or [[]]
        # union products for inputs with many all-zero columns (data layers, column blocks, NumPy)
        self.sparse_input = bool(sparse_input) and self.by == "columns" and xp is np
        self._live = None
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
        summed: each of the fixed :attr:`_groups` sums its blocks into a buffer of its
        own (the first buffer is the output), the groups shared out over the threads,
        and the buffers are added in turn. The groups do not depend on the pool, so
        neither do the bits of the sum (tests/test_blocked.py).
        """
        xp = self.xp
        if (self.by == "columns") != transpose:
            out = xp.empty((a.shape[0], width), dtype=a.dtype)
            for gap in self._gaps:  # outputs that no live weight reaches
                out[:, gap] = 0
            self._run([(self._write_blocks, a, out, transpose, part) for part in self._parts])
            return out
        groups, n = self._groups, 1 if self.pool is None else self.pool.threads
        bufs = [xp.empty((a.shape[0], width), dtype=a.dtype) for _ in groups]
        self._run([(self._sum_groups, a, bufs[k::n], transpose, groups[k::n]) for k in range(min(n, len(groups)))])
        out = bufs[0]
        for buf in bufs[1:]:
            out += buf
        return out

    def _pairs(self, part, transpose: bool) -> list:
        """``((src, dst), w)`` of the blocks ``part``: ``a[:, src] w`` goes to ``out[:, dst]``."""
        pairs = [(self.index[i], self._W[i]) for i in part]
        return [((cols, rows), w.T) for (rows, cols), w in pairs] if transpose else pairs

    def _live_columns(self, x) -> None:
        """Find the columns of the input ``x`` that are nonzero somewhere, when they are few.

        Sets :attr:`_live` to ``(xl, live, starts)``: ``xl = x[:, live]`` (row-major), the
        sorted live column indices, and for each block the range of ``live`` inside its
        rows; or None (dense products) when more than :data:`SPARSE_MAX_LIVE` of the
        columns are live. Skipping all-zero columns leaves each sum the same up to the
        order of float additions.
        """
        self._live = None
        if not self.sparse_input:
            return
        live = np.flatnonzero(x.any(axis=0))
        if live.size > SPARSE_MAX_LIVE * x.shape[1]:
            return
        bounds = np.searchsorted(live, [(r.start, r.stop) for r, _ in self.index])
        self._live = (np.take(x, live, axis=1), live, [(int(lo), int(hi)) for lo, hi in bounds])

    def _write_live(self, out, part) -> None:
        """``out[:, cols] = x[:, live rows] w[live rows]`` for the blocks ``part`` (union products)."""
        xl, live, bounds = self._live
        for i in part:
            (rows, cols), (lo, hi) = self.index[i], bounds[i]
            if hi == lo:
                out[:, cols] = 0
                continue
            w = np.take(self._W[i], live[lo:hi] - rows.start, axis=0)
            np.matmul(xl[:, lo:hi], w, out=out[:, cols])

    def _write_blocks(self, a, out, transpose, part) -> None:
        """``out[:, dst] = a[:, src] w`` for the blocks ``part`` (each writes its own slice)."""
        if not transpose and self._live is not None:
            self._write_live(out, part)
            return
        for (src, dst), w in self._pairs(part, transpose):
            self.xp.matmul(a[:, src], w, out=out[:, dst])

    def _sum_groups(self, a, bufs, transpose, groups) -> None:
        for buf, part in zip(bufs, groups):
            self._sum_blocks(a, buf, transpose, part)

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
        """``dW_blk = (x[:, rows]^T delta[:, cols]) * M_blk`` for the blocks ``part`` (:meth:`_mask_grad`).

        With union products only the live rows are computed; the others are zero.
        """
        if self._live is not None:
            xl, live, bounds = self._live
            for i in part:
                (rows, cols), (lo, hi), dw = self.index[i], bounds[i], self._dW[i]
                dw[...] = 0
                if hi > lo:
                    r = live[lo:hi] - rows.start
                    dw[r] = xl[:, lo:hi].T @ delta[:, cols]
                self._mask_grad(i)
            return
        for i in part:
            rows, cols = self.index[i]
            self.xp.matmul(x[:, rows].T, delta[:, cols], out=self._dW[i])
            self._mask_grad(i)

    def _mask_grad(self, i) -> None:
        """``dW_blk *= M_blk`` for block ``i``, on the rows where the mask has zeros (exact:
        elsewhere the factor is 1). In a staircase that band is a few rows of each block
        (1x8000: 2.7 ms of a 38 ms step for the whole-block multiply)."""
        band, m = self._bands[i]
        if band.stop > band.start:
            self._dW[i][band] *= m

    def _run(self, tasks) -> None:
        """Run ``(fn, *args)`` tasks: side by side on :attr:`pool`, or one after the other."""
        if self.pool is None:
            for fn, *args in tasks:
                fn(*args)
        else:
            self.pool.run([functools.partial(fn, *args) for fn, *args in tasks])

    def set_pool(self, pool) -> None:
        """Split the block products over the threads of ``pool`` (a :class:`made_np.fast.threads.WorkPool`),
        or run them in turn (None). Each thread should then run BLAS on one thread
        (:func:`made_np.fast.threads.blas_threads`): blocks are too small for BLAS's own
        threads to pay (docs/performance.md)."""
        self.pool = pool
        self._parts = self._share_out(1 if pool is None else pool.threads)

    def _share_out(self, n: int) -> list:
        """The blocks in ``n`` lists, largest first to the least loaded (balanced work)."""
        parts, load = [[] for _ in range(n)], [0] * n
        for i in sorted(range(len(self.index)), key=lambda i: -self._W[i].size):
            k = min(range(n), key=lambda k: load[k])
            parts[k].append(i)
            load[k] += self._W[i].size
        return [sorted(p) for p in parts]

    def forward(self, x, M=None, keep: bool = True):
        """``y = x (W * M) + b``; x : (batch, fan_in) -> (batch, fan_out). The mask is the
        layer's own (``M`` is not read), and ``x`` is always kept: a training form."""
        self.x = x
        self._live_columns(x)
        y = self._product(x, transpose=False, width=self.shape[1])
        if self.b is not None:
            y += self.b
        return y

    def backward(self, delta, M=None):
        """Store ``dW`` (packed), ``db``; return ``dL/dx`` (batch, fan_in) or None.

        delta : array, shape (batch, fan_out); the layer's own mask is used (``M`` is not read).
        """
        self._run([(self._weight_grads, self.x, delta, part) for part in self._parts])
        if self.b is not None:
            self.xp.sum(delta, axis=0, out=self.db)
        if self.need_input_grad:
            return self._product(delta, transpose=True, width=self.shape[0])
        return None



def param_permutations(model: MADE, input_perm, hidden_perms) -> list:
    """How each parameter's rows and columns move under a relabelling of the units.

    Parameters
    ----------
    input_perm : ndarray of int, shape (D,)
        New variable ``d`` is old variable ``input_perm[d]``.
    hidden_perms : sequence of ndarray of int, shapes (H_l,)
        New unit ``k`` of hidden layer ``l`` is old unit ``hidden_perms[l][k]``.

    Returns
    -------
    list of (rows, cols)
        One pair of host int arrays per entry of :attr:`params` (``rows`` is
        None for a bias and for the context blocks, whose rows are the context's
        own columns and do not move), at the level of columns (one-hot inputs and
        categorical logits move in blocks of ``classes``).
    """
    sides = [expand_columns(input_perm, model.in_repeat), *hidden_perms, expand_columns(input_perm, model.out_repeat)]
    perms = []
    for i, layer in enumerate(model.layers):
        perms.append((sides[i], sides[i + 1]))
        if layer.b is not None:
            perms.append((None, sides[i + 1]))
    if model.direct is not None:
        perms.append((sides[0], sides[-1]))
    if model.context_hidden is not None:
        perms.append((None, sides[1]))
    if model.context_output is not None:
        perms.append((None, sides[-1]))
    return perms



class BlockedMADE:
    """The fast training form of a single-mask MADE: sorted units, packed blocks of live weights.

    It wraps ``model`` (composition): inputs are relabelled in the order of the ordering
    and hidden units in the order of their degrees (:func:`sorting_permutations`), so
    every mask is a staircase with about half of its entries in whole blocks of zeros,
    and each large weight matrix is stored as the packed blocks of its live entries
    (:class:`BlockedDense`): the products and the optimiser touch about 60% of a
    784x500 matrix. The context blocks of a conditional MADE (unmasked) stay dense; only
    their columns move with the units they feed. The forward and backward passes are :class:`~made_np.model.MADE`'s
    own functions, run on these layers.

    It is the same model: on data with permuted columns, ``x[:, input_perm]``
    (:meth:`permute_data`), it gives the NLLs and gradients of ``model`` on ``x``
    up to the order of float additions. Parameters move between the two forms
    with :meth:`read_from`, :meth:`write_to`, :meth:`to_compute` and
    :meth:`to_natural`; :meth:`state_dict` and :meth:`load_state_dict` use the
    natural form, so checkpoints do not depend on it.

    Parameters
    ----------
    model : made_np.model.MADE
        A MADE with a single fixed mask (``num_masks == 1``); its parameters are copied.
    head : head, optional
        The head to train with (default: the fastest form of ``model.head``,
        :func:`made_np.fast.kernels.fast_head`).

    Attributes
    ----------
    model : made_np.model.MADE
    input_perm : ndarray of int64, shape (D,)
        Column ``d`` of the data this model sees is column ``input_perm[d]`` of the original.
    hidden_perms : tuple of ndarray of int64
        Hidden unit ``k`` of layer ``l`` here is unit ``hidden_perms[l][k]`` of ``model``.
    params, grads : lists of arrays
        In the compute form: relabelled, and packed (1-D) for blocked layers.

    Raises
    ------
    ValueError
        ``model`` has a bank of masks.
    """

    # the passes of the reference model, run on this object's layers
    _forward_pass = MADE._forward_pass
    _backprop = MADE._backprop
    loss_and_grad = MADE.loss_and_grad
    nll = MADE.nll
    _nll = MADE._nll
    _all_layers = MADE._all_layers
    _parallel = False  # inside parallel(): the block products may use a pool
    _standardise = MADE._standardise
    standardised = MADE.standardised
    encode = MADE.encode  # on the relabelled columns of the standardisation (read_from)
    params = MADE.params
    grads = MADE.grads

    def __init__(self, model: MADE, head=None):
        c = model.config
        if c.num_masks != 1:
            raise ValueError(f"BlockedMADE needs a single fixed mask, the model has a bank of {c.num_masks}")
        self.model, self.config, self.xp, self.dtype = model, c, backend.native(model.xp), model.dtype
        self.device = model.device
        self._eye = model._eye
        self.activations = [FastReLU(self.xp) if isinstance(a, ReLU) else a for a in model.activations]
        maskset = model.mask(0)[0]
        self.input_perm, self.hidden_perms = sorting_permutations(maskset)
        self.head = (fast_head(model.head) if head is None else head).relabelled(self.input_perm)  # columns moved
        self.maskset = relabel(maskset, self.input_perm, self.hidden_perms)
        xp = self.xp
        layers, self._masks = [], []  # their weights are not drawn (init=None): read_from writes them
        for src, host in zip(model._all_layers, model._host_masks(self.maskset, model.direct is not None)):
            mask = xp.asarray(host, dtype=self.dtype)
            plan = block_plan(host) if host.size >= BLOCK_MIN_SIZE else None
            bias = src.b is not None
            if plan is not None and plan.coverage <= BLOCK_MAX_COVERAGE:
                data_layer = src is model.direct or src is model.layers[0]  # fed by the (sparse) data
                layer = BlockedDense(plan, mask, xp, self.dtype, bias=bias, need_input_grad=src.need_input_grad,
                                     sparse_input=data_layer)
            else:
                layer = MaskedDense(*src.W.shape, xp, None, self.dtype, bias=bias,
                                    need_input_grad=src.need_input_grad, init=None, fixed=True)
            layers.append(layer)
            self._masks.append(layer.M if isinstance(layer, BlockedDense) else mask)  # in the layer's form
        self.layers = layers[:len(model.layers)]
        self.direct = layers[-1] if model.direct is not None else None
        self.context_hidden, self.context_output = (
            None if src is None else Dense(*src.W.shape, xp, None, self.dtype, init=None)
            for src in (model.context_hidden, model.context_output))
        perms = param_permutations(model, self.input_perm, self.hidden_perms)
        self._forward_perms = [(None if r is None else xp.asarray(r), xp.asarray(c_)) for r, c_ in perms]
        self._inverse_perms = [(None if r is None else xp.asarray(invert_permutation(r)),
                                xp.asarray(invert_permutation(c_))) for r, c_ in perms]
        self._packers = [layer if (isinstance(layer, BlockedDense) and j == 0) else None
                         for layer in self._all_layers for j in range(len(layer.params))]
        self._input_perm_device = xp.asarray(self.input_perm)
        self._output_columns = xp.asarray(expand_columns(self.input_perm, model.out_repeat))
        self.read_from(model)

    @property
    def param_names(self) -> list:
        """The names of :attr:`params` (those of the MADE)."""
        return self.model.param_names

    def _encode_context(self, context, n=None):
        """The MADE's context encoding (the context is not relabelled)."""
        return self.model._encode_context(context, n)

    @contextlib.contextmanager
    def parallel(self, threads_: int | None = None):
        """Within the block, the block products run side by side on the CPU work pool.

        BLAS is held to one thread meanwhile (:func:`made_np.fast.threads.blas_threads`),
        with a pool or without: two single-threaded products at once do more than one
        product on two threads when the blocks are this small (1x500 MNIST step: 2.0 -> 1.7
        ms of products, docs/performance.md), and a float32 product's bits depend on BLAS's
        threads, so the step's bits then depend on nothing. On CuPy nothing changes. Wrap
        whole epochs, not single steps; :meth:`set_pool` changes the pool inside.

        Parameters
        ----------
        threads_ : int, optional
            Size of the pool (default :func:`made_np.fast.threads.cpu_threads`).
        """
        if self.xp is not np:
            yield
            return
        with threads.blas_threads(1, self.xp):
            self._parallel = True
            self.set_pool(threads.work_pool(self.xp, threads_))
            try:
                yield
            finally:
                self._parallel = False
                self.set_pool(None)

    def set_pool(self, pool) -> None:
        """Inside :meth:`parallel`, split the block products over ``pool`` (a
        :class:`made_np.fast.threads.WorkPool`, or None: in turn); outside, nothing."""
        for layer in self._all_layers:
            if isinstance(layer, BlockedDense):
                layer.set_pool(pool if self._parallel else None)

    def mask(self, which=0) -> tuple:
        """Mask 0, the only one: ``(maskset, arrays)`` as :meth:`MADE.mask` (relabelled; the
        arrays in each layer's form, packed for blocked layers).

        Raises
        ------
        ValueError
            ``which != 0``.
        """
        if not (isinstance(which, int) and which == 0):
            raise ValueError(f"a BlockedMADE has a single mask, got mask {which!r}")
        return self.maskset, self._masks

    _mask = mask

    def permute_data(self, x):
        """``x[:, input_perm]``: data (N, D) as this model sees it (a row-major copy).

        (``take``: indexing ``x[:, perm]`` returns a column-major array, whose
        minibatch gathers and products are several times slower.)
        """
        return self.xp.take(x, self._input_perm_device, axis=1)

    @staticmethod
    def _permute(xp, a, rows, cols):
        moved = xp.take(a, cols, axis=-1)
        return moved if rows is None else xp.take(moved, rows, axis=0)

    def to_compute(self, arrays) -> list:
        """Parameter-shaped device arrays of ``model`` (natural form) in the compute form of :attr:`params`."""
        moved = [self._permute(self.xp, a, rows, cols) for a, (rows, cols) in zip(arrays, self._forward_perms)]
        return [a if packer is None else packer.pack(a) for a, packer in zip(moved, self._packers)]

    def to_natural(self, arrays) -> list:
        """Inverse of :meth:`to_compute`: arrays shaped like :attr:`params` as ``model``'s (new arrays)."""
        full = [a if packer is None else packer.unpack(a) for a, packer in zip(arrays, self._packers)]
        return [self._permute(self.xp, a, rows, cols) for a, (rows, cols) in zip(full, self._inverse_perms)]

    def read_from(self, model: MADE | None = None) -> None:
        """Copy the parameters of ``model`` (default: the wrapped MADE) in, and its standardisation
        and pinned outputs with the columns relabelled (the encoding acts on each column alone)."""
        model = model or self.model
        for dst, src in zip(self.params, self.to_compute(model.params)):
            dst[...] = src
        self.shift, self.scale = (a[self._input_perm_device] for a in (model.shift, model.scale))
        self._log_det = model._log_det
        self._pins = None if model._pins is None else tuple(a[self._output_columns] for a in model._pins)

    def write_to(self, model: MADE | None = None) -> None:
        """Copy the parameters out into ``model`` (default: the wrapped MADE), natural form, in place."""
        for dst, src in zip((model or self.model).params, self.to_natural(self.params)):
            dst[...] = src

    def state_dict(self) -> dict:
        """Host copies of the parameters in the natural form, keyed by :attr:`param_names`."""
        return {n: backend.to_host(p) for n, p in zip(self.param_names, self.to_natural(self.params))}

    def load_state_dict(self, state: dict) -> None:
        """Load natural-form host arrays (as written by :meth:`MADE.state_dict`).

        Raises
        ------
        ValueError
            A missing parameter name.
        """
        missing = [n for n in self.param_names if n not in state]
        if missing:
            raise ValueError(f"parameter {missing[0]!r} missing from the state")
        arrays = [self.xp.asarray(state[n], dtype=self.dtype) for n in self.param_names]
        for dst, src in zip(self.params, self.to_compute(arrays)):
            dst[...] = src
        for layer, M in zip(self._all_layers, self._masks):  # the fixed-mask invariant: W is zero where M is
            layer.W *= M
