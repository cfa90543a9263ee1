"""Masked dense layers and ReLU-family activations, forward and backward side by side.

Every array is a ``(batch, features)`` row batch on the array namespace ``xp``
(NumPy, CuPy or any other array API namespace, see :mod:`made_np.backend`). Gradients are derived by hand:
for ``y = x (W * M) + b`` and an upstream gradient ``delta = dL/dy``,

* ``dL/dW = (x^T delta) * M``  (masked-out weights get exactly zero gradient),
* ``dL/db = sum_batch delta``,
* ``dL/dx = delta (W * M)^T``.
"""
from __future__ import annotations

import math
import operator

from . import backend
from .checks import check_choice


# ---------------------------------------------------------------------- initial weights
def uniform_init(fan_in: int, fan_out: int, rng):
    """Initial weights uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (the project's default;
    docs/math.md Sec. 11): variance ``1 / (3 fan_in)``.

    Parameters
    ----------
    fan_in, fan_out : int
        Input and output widths, ``fan_in >= 1`` (0 raises ZeroDivisionError).
    rng : numpy.random.Generator
        Host generator (CPU and GPU runs start from the same weights); advanced by the draw.

    Returns
    -------
    numpy.ndarray, shape (fan_in, fan_out), float64
    """
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=(fan_in, fan_out))


def orthogonal_init(fan_in: int, fan_out: int, rng):
    """A random semi-orthogonal matrix (Saxe, McClelland & Ganguli 2014): orthonormal rows
    when ``fan_in <= fan_out``, else orthonormal columns.

    The MADE paper's initialisation for binarized MNIST (its code's ``Orthogonal``, which took
    the SVD of a uniform ``max x max`` matrix). Here: the Q factor of a Gaussian
    ``max x min`` matrix, its columns' signs fixed by ``diag(R) > 0`` so that Q is uniformly
    (Haar) distributed: the same kind of matrix at ``O(max min^2)`` cost instead of
    ``O(max^3)``. Every entry is about ``1/sqrt(max(fan_in, fan_out))`` in size.

    See docs/math.md Sec. 11 for why the sign fix makes Q Haar-distributed.

    Parameters
    ----------
    fan_in, fan_out : int
        Input and output widths.
    rng : numpy.random.Generator
        Host generator; advanced by the draw.

    Returns
    -------
    numpy.ndarray, shape (fan_in, fan_out), float64
        ``W W^T = I`` (fan_in <= fan_out) or ``W^T W = I``. When ``fan_in < fan_out`` it is
        the transpose of the Q factor, a Fortran-ordered (not C-contiguous) view.
    """
    host = backend.get_xp("cpu")
    a = rng.standard_normal((max(fan_in, fan_out), min(fan_in, fan_out)))
    q, r = host.linalg.qr(a)
    q *= host.where(host.diag(r) < 0, -1.0, 1.0)
    return q if fan_in >= fan_out else q.T


#: Initialisations by name (``MADEConfig.init``, ``made-np train --init``).
INITS = {"uniform": uniform_init, "orthogonal": orthogonal_init}


def initial_weights(name: str, fan_in: int, fan_out: int, rng):
    """The initial weights :data:`INITS` ``[name]`` draws (docs/math.md Sec. 11).

    Parameters
    ----------
    name : {"uniform", "orthogonal"}
        :func:`uniform_init` or :func:`orthogonal_init`.
    fan_in, fan_out : int
        Input and output widths.
    rng : numpy.random.Generator
        Host generator; advanced by the draw.

    Returns
    -------
    numpy.ndarray, shape (fan_in, fan_out), float64, on the host

    Raises
    ------
    ValueError
        Unknown ``name``.
    """
    return INITS[check_choice("init", name, INITS)](fan_in, fan_out, rng)


def _weights(init, fan_in: int, fan_out: int, xp, rng, dtype, device=None):
    """A layer's weights on ``xp`` (on ``device``) in ``dtype``: drawn by ``init``, or zeros when
    ``init`` is None (weights the caller loads; nothing drawn, no float64 copy)."""
    if init is None:
        return xp.zeros((fan_in, fan_out), dtype=dtype, device=device)
    # row-major whatever the draw's layout (orthogonal_init's wide case is a transpose): the
    # fast optimisers update C-contiguous arrays in cache-sized chunks
    host = backend.get_xp("cpu").ascontiguousarray(initial_weights(init, fan_in, fan_out, rng))
    return xp.asarray(host, dtype=dtype, device=device)


class _Dense:
    """What the dense layers share: their parameter and gradient lists, and the matrix product of
    their passes."""

    #: ``a @ b``, the product of every pass. While a mask bank trains on the fast engine with BLAS on
    #: one thread, its layers get one cut into column slices side by side on the work pool, bitwise
    #: the same (:func:`made_np.fast.threads.split_matmul`).
    product = staticmethod(operator.matmul)

    @property
    def params(self) -> list:
        """Parameters ``[W, b]`` (or ``[W]``)."""
        return [self.W, self.b] if self.b is not None else [self.W]

    @property
    def grads(self) -> list:
        """Gradients ``[dW, db]`` matching :attr:`params`."""
        return [self.dW, self.db] if self.b is not None else [self.dW]


class MaskedDense(_Dense):
    """A dense layer whose weight matrix is multiplied by a binary mask, ``y = x (W * M) + b``.

    The mask is an argument of every pass, not state of the layer: the model hands each
    pass the mask it computes with (:meth:`made_np.model.MADE.mask`).

    Parameters
    ----------
    fan_in, fan_out : int
        Input and output widths.
    xp : module
        Array namespace (:func:`made_np.backend.namespace`).
    rng : numpy.random.Generator or None
        Host generator for the initial weights, so that CPU and GPU runs start identical
        (unused when ``init`` is None).
    dtype : numpy dtype
        Floating dtype of the parameters (float32 by default).
    bias : bool
        Whether the layer has a bias ``b`` (the direct connections of paper eq. 11 do not).
    need_input_grad : bool
        Whether :meth:`backward` returns ``dL/dx`` (not needed for the first layer).
    init : {"uniform", "orthogonal"} or None
        How the weights are drawn (:data:`INITS`); None: zeros, for weights loaded afterwards.
    fixed : bool, default False
        The layer only ever uses one mask, and its owner keeps ``W`` zero where that mask is
        (a single-mask MADE): the passes then use ``W`` itself and save the ``W * M`` pass of
        every step. Masked entries get zero gradient (:meth:`backward`), so no optimiser of
        :mod:`made_np.optim` moves them.
    device : optional
        Where the arrays live (``None``: ``xp``'s default device).

    Attributes
    ----------
    W : array, shape (fan_in, fan_out)
        Weights, drawn by :data:`INITS` ``[init]``.
    b : array, shape (fan_out,) or None
        Biases, initialised to zero.
    dW, db : arrays
        Gradients of the last :meth:`backward`, same shapes as ``W`` and ``b`` (new arrays at
        every :meth:`backward`).
    """

    def __init__(self, fan_in, fan_out, xp, rng, dtype="float32", bias=True, need_input_grad=True,
                 init="uniform", fixed=False, device=None):
        self.xp = xp
        self.W = _weights(init, fan_in, fan_out, xp, rng, dtype, device)
        self.b = xp.zeros(fan_out, dtype=dtype, device=device) if bias else None
        self.dW = xp.zeros_like(self.W)
        self.db = xp.zeros_like(self.b) if bias else None
        self.need_input_grad = need_input_grad
        self.fixed = fixed

    def masked_weight(self, M):
        """``W * M``, shape (fan_in, fan_out) (``W`` itself for a fixed mask); a new array."""
        if self.fixed:
            return self.W
        return self.W * M

    def forward(self, x, M, keep: bool = False):
        """``y = x (W * M) + b``.

        Parameters
        ----------
        x : array, shape (batch, fan_in)
        M : array, shape (fan_in, fan_out), or (batch, fan_in, fan_out)
            The mask, 0/1 in the layer's dtype (or bool, on NumPy and CuPy); or one mask per row (rows with missing
            entries, :func:`made_np.masks.observed_first_rows`).
        keep : bool, default False
            Keep ``x`` and ``W * M`` for :meth:`backward` (training). Without it nothing is
            written to the layer, so evaluations may run from several threads at once.

        Returns
        -------
        array, shape (batch, fan_out)
        """
        if M.ndim == 3:
            return self._forward_rows(x, M, keep)
        WM = self.masked_weight(M)
        if keep:
            self.x, self.WM = x, WM
        y = self.product(x, WM)
        if self.b is not None:
            y += self.b
        return y

    def backward(self, delta, M):
        """Store ``dW = (x^T delta) * M``, ``db`` and return ``dL/dx`` for ``delta = dL/dy``.

        Parameters
        ----------
        delta : array, shape (batch, fan_out)
        M : array, shape (fan_in, fan_out) or (batch, fan_in, fan_out)
            The mask of the last ``forward(..., keep=True)``.

        Returns
        -------
        array, shape (batch, fan_in), or None when ``need_input_grad`` is False.
        """
        if M.ndim == 3:
            return self._backward_rows(delta, M)
        self.dW = self.product(self.x.T, delta)
        self.dW *= M
        if self.b is not None:
            self.db = self.xp.sum(delta, axis=0)
        if self.need_input_grad:
            return self.product(delta, self.WM.T)
        return None


    def _forward_rows(self, x, M, keep: bool):
        """``y_n = x_n (W * M_n) + b`` with a mask per row, ``M`` (batch, fan_in, fan_out) (the
        observed-first masks of rows with missing entries, docs/math.md Sec. 12): one einsum
        (:func:`made_np.backend.einsum`), no (batch, fan_in, fan_out) product of floats on NumPy."""
        if keep:
            self.x = x
        y = backend.einsum(self.xp, "nj,jk,njk->nk", x, self.W, self.xp.astype(M, self.W.dtype, copy=False))
        if self.b is not None:
            y += self.b
        return y

    def _backward_rows(self, delta, M):
        """``dW = sum_n x_n^T delta_n * M_n``, ``db``, and ``dL/dx_n = delta_n (W * M_n)^T``."""
        xp = self.xp
        M = xp.astype(M, self.W.dtype, copy=False)
        self.dW = backend.einsum(xp, "nj,nk,njk->jk", self.x, delta, M)
        if self.b is not None:
            self.db = xp.sum(delta, axis=0)
        return backend.einsum(xp, "nk,jk,njk->nj", delta, self.W, M) if self.need_input_grad else None


class Dense(_Dense):
    """An unmasked dense layer without bias, ``y = x W``: the context blocks of a conditional MADE.

    The context enters as inputs of degree 0 (docs/math.md, "Context inputs"): every mask
    entry from a degree-0 input is 1, so the block needs no mask. Backward, for
    ``delta = dL/dy``: ``dL/dW = x^T delta``; no ``dL/dx`` (the context is data).

    Parameters
    ----------
    fan_in, fan_out : int
        Context width and the width it feeds.
    xp : module
    rng : numpy.random.Generator
        Host generator of the initial weights.
    dtype : numpy dtype
    init : {"uniform", "orthogonal"} or None
        How the weights are drawn (:data:`INITS`); None: zeros, for weights loaded afterwards.

    Attributes
    ----------
    W, dW : arrays, shape (fan_in, fan_out)
    b : None
    """

    def __init__(self, fan_in, fan_out, xp, rng, dtype="float32", init="uniform", device=None):
        self.xp = xp
        self.W = _weights(init, fan_in, fan_out, xp, rng, dtype, device)
        self.b = self.db = None
        self.dW = xp.zeros_like(self.W)

    def forward(self, x, keep: bool = False):
        """``y = x W``; x : (batch, fan_in) -> (batch, fan_out); ``keep`` keeps ``x`` for :meth:`backward`."""
        if keep:
            self.x = x
        return self.product(x, self.W)

    def backward(self, delta):
        """Store ``dW = x^T delta`` for ``delta`` (batch, fan_out) and the last kept ``x``; returns None."""
        self.dW = self.product(self.x.T, delta)
        return None


class ReLU:
    """``h = max(a, 0)``; backward ``dL/da = dL/dh * 1[h > 0]`` (docs/math.md Sec. 2, 3).

    :meth:`forward` and :meth:`backward` return new arrays of their input's dtype (the standard
    has no ``out=``); :meth:`forward` keeps ``h`` for :meth:`backward`.

    Parameters
    ----------
    xp : module
        Array module.
    """

    def __init__(self, xp):
        self.xp = xp

    def forward(self, a, keep: bool = False):
        """a : array (batch, H), float. Returns h, a new array (kept for :meth:`backward` with ``keep``)."""
        h = self.xp.maximum(a, 0.0)
        if keep:
            self.h = h
        return h

    def backward(self, dh):
        """dh : array (batch, H), float. Returns dL/da, a new array (0 at the kink ``a = 0``)."""
        return dh * self.xp.astype(self.h > 0, dh.dtype)  # a product, 3x faster than where on NumPy


class LeakyReLU:
    """``h = a if a > 0 else slope * a``; backward multiplies by 1 or ``slope`` (docs/math.md Sec. 2, 3).

    Not in place: :meth:`forward` and :meth:`backward` return new arrays of their input's
    dtype and leave the input alone; :meth:`forward` keeps the boolean ``a > 0`` (the kink
    ``a = 0`` takes the slope) for :meth:`backward`.

    Parameters
    ----------
    xp : module
        Array module.
    slope : float, default 0.01
        ``alpha``, the slope for ``a <= 0`` (not checked).
    """

    def __init__(self, xp, slope: float = 0.01):
        self.xp, self.slope = xp, slope

    def forward(self, a, keep: bool = False):
        """a : array (batch, H), float, left unchanged. Returns h, a new array of its shape and
        dtype (``a > 0`` kept for :meth:`backward` with ``keep``)."""
        positive = a > 0
        if keep:
            self.positive = positive
        return self.xp.where(positive, a, a * self.slope)

    def backward(self, dh):
        """dh : array (batch, H), float, left unchanged. Returns dL/da, a new array of its shape
        and dtype."""
        return self.xp.where(self.positive, dh, dh * self.slope)


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU}


def make_activation(name: str, xp):
    """Build an activation by name (``relu`` or ``leaky_relu``).

    Raises
    ------
    ValueError
        Unknown name.
    """
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)](xp)
