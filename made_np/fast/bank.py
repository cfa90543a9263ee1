"""The fast training form of a MADE with a bank of masks.

A bank changes mask at every step, and every mask numbers the inputs and hidden units
differently, so the block-sparse form of a single mask (:mod:`made_np.fast.blocked`)
would have to gather the live weights into blocks and scatter their gradients back at
every step; at a minibatch of 100 that costs about what the skipped products save
(docs/performance.md, "Paper scale and mask banks", tried and not kept). The bank keeps the MADE's dense weights and its
per-step masks, and saves where the data allow: the layers fed by binary data (the
first layer and the direct connections) multiply only the columns of the minibatch
that are nonzero somewhere (union products, as :class:`made_np.fast.blocked.BlockedDense`
does), so ``W*M``, the forward product and ``dW`` touch only those rows::

    y     = x[:, a] (W[a] * M[a]) + b
    dW[a] = (x[:, a]^T delta) * M[a],   dW[rest] = 0

The passes are :class:`~made_np.model.MADE`'s own code; tests/test_bank.py checks
NLLs and gradients against the reference to 1e-10 in float64.
"""
from __future__ import annotations

import numpy as np

from ..layers import ReLU
from ..model import MADE
from .blocked import SPARSE_MAX_LIVE
from .kernels import FastReLU, fast_head


class UnionMaskedDense:
    """A :class:`made_np.layers.MaskedDense` fed by data, with union products on sparse minibatches.

    It holds no arrays of its own: ``W``, ``b``, ``M``, ``dW`` and ``db`` are those of
    ``layer`` (the MADE's, so a mask set by :meth:`MADE.set_mask` is used at the next
    :meth:`forward`). When more than :data:`made_np.fast.blocked.SPARSE_MAX_LIVE` of the
    columns of a minibatch are live it runs the layer itself. The sums are the layer's
    up to the order of float additions (the skipped terms are exact zeros).

    Parameters
    ----------
    layer : made_np.layers.MaskedDense
        With ``need_input_grad=False`` (nothing upstream of the data).

    Raises
    ------
    ValueError
        ``layer`` needs its input gradient.
    """

    def __init__(self, layer):
        if layer.need_input_grad:
            raise ValueError("union products are for layers fed by the data (no input gradient)")
        self.layer, self.need_input_grad = layer, False
        self._live = None

    @property
    def params(self) -> list:
        return self.layer.params

    @property
    def grads(self) -> list:
        return self.layer.grads

    def _buffers(self, k: int) -> tuple:
        """Views of ``k`` rows of this layer's scratch arrays for the live rows of ``W``, ``M`` and ``dW``
        (allocated once: fresh arrays of this size every step cost page faults at 1x8000)."""
        L = self.layer
        if getattr(self, "_w", None) is None or self._m.dtype != L.M.dtype:
            self._w, self._m, self._g = np.empty_like(L.W), np.empty_like(L.M), np.empty_like(L.W)
        return self._w[:k], self._m[:k], self._g[:k]

    def forward(self, x):
        """``y = x (W * M) + b``; x : (batch, fan_in) -> (batch, fan_out)."""
        live = np.flatnonzero(x.any(axis=0))
        if live.size > SPARSE_MAX_LIVE * x.shape[1]:
            self._live = None
            return self.layer.forward(x)
        L = self.layer
        w, m, g = self._buffers(live.size)
        np.take(L.W, live, axis=0, out=w)
        np.take(L.M, live, axis=0, out=m)
        if not L.fixed:
            w *= m
        xl = np.take(x, live, axis=1)
        self._live = (live, xl, m, g)
        y = xl @ w
        if L.b is not None:
            y += L.b
        return y

    def backward(self, delta):
        """Store ``dW`` and ``db`` for ``delta`` (batch, fan_out); returns None."""
        if self._live is None:
            return self.layer.backward(delta)
        L = self.layer
        live, xl, m, g = self._live
        np.matmul(xl.T, delta, out=g)
        g *= m
        L.dW[...] = 0
        L.dW[live] = g
        if L.b is not None:
            np.sum(delta, axis=0, out=L.db)
        return None


class BankMADE:
    """The fast training form of a MADE with a bank of masks, on NumPy (see the module docstring).

    It wraps ``model`` (composition) and shares its parameter arrays, so there is nothing
    to copy in or out: the optimiser updates the MADE's own arrays, and
    :meth:`MADE.set_mask` switches the mask of both. The first layer and the direct
    connections are :class:`UnionMaskedDense` views of the MADE's when the inputs are
    binary and the arrays NumPy's (for one-hot or real-valued encodings, or on CuPy, they
    are the MADE's own layers; :class:`made_np.fast.engine.FastEngine` uses this form on
    NumPy only); its ReLUs are :class:`made_np.fast.kernels.FastReLU`.

    Parameters
    ----------
    model : made_np.model.MADE
    head : head, optional
        The head to train with (default: :func:`made_np.fast.kernels.fast_head` of the model's).
    """

    _forward_pass = MADE._forward_pass
    _backprop = MADE._backprop
    loss_and_grad = MADE.loss_and_grad
    _all_layers = MADE._all_layers
    params = MADE.params
    grads = MADE.grads

    def __init__(self, model: MADE, head=None):
        self.model, self.config, self.xp, self.dtype = model, model.config, model.xp, model.dtype
        self.head = fast_head(model.head) if head is None else head
        self.activations = [FastReLU(self.xp) if isinstance(a, ReLU) else a for a in model.activations]
        sparse = model.config.input_encoding == "binary" and self.xp is np
        union = UnionMaskedDense if sparse else (lambda layer: layer)
        self.layers = [union(model.layers[0])] + list(model.layers[1:])
        self.direct = union(model.direct) if model.direct is not None else None
        self.context_hidden, self.context_output = model.context_hidden, model.context_output

    def encode(self, x):
        """The MADE's encoding."""
        return self.model.encode(x)

    def encode_context(self, context, n=None):
        """The MADE's context encoding."""
        return self.model.encode_context(context, n)
