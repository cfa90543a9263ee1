"""MADE: a masked autoencoder that is an autoregressive density model (Germain et al. 2015).

The network maps an encoded input ``x`` of shape (batch, D * in_repeat) through
masked hidden layers to logits of shape (batch, D * out_repeat)::

    h^1 = act(x W^1*M^1 + b^1), ..., z = h^L (V * M^V) + c [+ x (A * M^A)]

(paper eqs. 7, 10-13), and the head turns logits into per-example NLL in nats.
A conditional MADE (``config.context > 0``) models ``p(x | y)``: the encoded context
``y`` (batch, context) enters as inputs of degree 0, ``h^1 = act(x W^1*M^1 + y U^1 + b^1)``
and ``z = ... + y U^V``, with unmasked blocks (docs/math.md, "Context inputs").
The masks come from :mod:`made_np.masks`; a model holds a *bank* of ``num_masks``
masks (``0``: no limit, a fresh mask at every resample), and every pass takes the mask it
computes with as an argument (:meth:`MADE.mask`): evaluating or sampling never changes the
model, so one fitted model may be used from several threads at once. Test-time averaging over masks is a mixture of
*probabilities*: ``log p(x) = logsumexp_k log p_k(x) - log K`` (:meth:`MADE.ensemble_nll`).

This module does not import NumPy: arrays live on the array namespace ``xp`` that
:mod:`made_np.backend` hands it (``backend.namespace``), and the passes use only what the
array API standard defines, so the same code runs on NumPy, CuPy and any other standard
namespace (the tests run it on ``array_api_strict`` arrays on a second device).
"""
from __future__ import annotations

import math

from . import backend, limits
from .checks import (check_context, check_data, check_int, check_mask, check_mask_index, check_mask_indices,
                     check_model_config,
                     check_state)
from .config import MAX_EVAL_MASKS, MADEConfig  # noqa: F401  (MADEConfig: part of this module's API)
from .heads import PINNED_RAW_SCALE, head_class
from .layers import Dense, MaskedDense, make_activation
from .masks import MaskSet, draw_masks, observed_first_rows

#: Masks in a test ensemble by default: the whole bank up to this many (paper Sec. 6.2
#: averaged up to 1000 masks of an unlimited bank).
DEFAULT_EVAL_MASKS = 1000


class MADE:
    """A MADE on the array module ``xp``.

    Parameters
    ----------
    config : MADEConfig
    xp : module, optional
        NumPy (default), CuPy, or any array API namespace (``array_api_strict``); the model
        computes with its standard namespace, :attr:`xp` (:func:`made_np.backend.namespace`).
    draw_weights : bool, default True
        Draw the initial weights (``config.init``, ``config.seed``); False leaves them at zero
        for a caller that loads its own (a checkpoint: no orthogonal draw thrown away).
    device : optional
        The device of a namespace with several (``array_api_strict.Device("device1")``);
        None: ``xp``'s default (NumPy's CPU, CuPy's current GPU).

    Attributes
    ----------
    layers : list of MaskedDense
        ``[W^1, ..., W^L, V]``: the hidden layers then the output layer.
    direct : MaskedDense or None
        The direct connections ``A`` (no bias), when ``config.direct``.
    context_hidden : Dense or None
        ``U^1`` (context, H_1): the context into the first hidden layer, when
        ``config.context > 0`` and there is a hidden layer.
    context_output : Dense or None
        ``U^V`` (context, D * out_repeat): the context into the logits, when ``config.context > 0``.
    head : BernoulliHead, CategoricalHead, MixtureHead or GaussianHead
    shift, scale : arrays, shape (D,), float64
        The standardisation of real-valued data, ``(x - shift) / scale`` (:meth:`encode`); the
        identity (0, 1) for discrete heads, and until :func:`made_np.train.fit` sets it from the
        training split (:meth:`set_standardisation`). Every NLL the model reports is in the
        data's own units: the standardised one plus ``sum_d log scale_d`` (docs/math.md Sec. 13).
    """

    def __init__(self, config: MADEConfig, xp=None, draw_weights: bool = True, device=None):
        check_model_config(config)
        self.config = config
        if draw_weights:  # loading (draw_weights=False) checks with load_checkpoint(memory_limit=...)
            limits.check_api(limits.model_parts(config, label=f"MADEConfig(D={config.D}, hidden={config.hidden})",
                                                 drawing=True))
        self.xp = xp = backend.namespace(backend.get_xp("cpu") if xp is None else xp)
        self.device = device
        self.dtype = backend.dtype_in(xp, backend.resolve_dtype(config.dtype))
        c = config
        self.in_repeat = c.classes if c.input_encoding == "onehot" else 1
        self.head = head_class(c.head).from_config(xp, c, device=device)
        self.out_repeat = self.head.logits_per_variable
        widths = [c.D * self.in_repeat, *c.hidden, c.D * self.out_repeat]
        rng = backend.host_rng(c.seed)
        init = c.init if draw_weights else None
        fixed = c.num_masks == 1  # one mask for ever: W is kept zero where it is (MaskedDense)
        self.layers = [
            MaskedDense(widths[i], widths[i + 1], xp, rng, self.dtype, need_input_grad=i > 0, init=init,
                        fixed=fixed, device=device)
            for i in range(len(widths) - 1)
        ]
        self.activations = [make_activation(c.activation, self.xp) for _ in c.hidden]
        self.direct = None
        if c.direct:
            self.direct = MaskedDense(widths[0], widths[-1], xp, rng, self.dtype,
                                      bias=False, need_input_grad=False, init=init, fixed=fixed, device=device)
        self.context_hidden = self.context_output = None
        if c.context:  # drawn after every other layer: an unconditional model's weights do not change
            if c.hidden:
                self.context_hidden = Dense(c.context, c.hidden[0], xp, rng, self.dtype, init=init, device=device)
            self.context_output = Dense(c.context, widths[-1], xp, rng, self.dtype, init=init, device=device)
        self.set_standardisation(xp.zeros(c.D, dtype=xp.float64, device=device),
                                 xp.ones(c.D, dtype=xp.float64, device=device))
        self._eye = xp.eye(c.classes, dtype=self.dtype, device=device) if c.input_encoding == "onehot" else None
        self._mask_cache = {}
        # a single mask is always kept (every training step multiplies dW by it)
        self._cache_masks = c.num_masks == 1 or (c.num_masks >= 1 and c.num_masks * self._mask_bytes()
                                                 <= limits.MASK_CACHE_BYTES)
        self._mask_fixed_weights()

    def _forward_pass(self, inputs, masks, context=None, keep: bool = False):
        """Logits of encoded inputs under ``masks`` (docs/math.md Sec. 2; Sec. 9 with a context).

        ``S^l = H^(l-1) (W^l * M^l) + b^l [+ y U^1 for l = 1]``, ``H^l = act(S^l)``,
        ``z = H^L (V * M^V) + c [+ x (A * M^A)] [+ y U^V]``. Each pre-activation ``S^l`` is
        a fresh array that the context term (l = 1) is added to in place.

        Parameters
        ----------
        inputs : array, shape (batch, D * in_repeat), ``dtype``
            Encoded data (:meth:`encode`).
        masks : list of arrays
            The arrays of :meth:`mask`: one per layer of ``layers``, then ``direct``.
        context : array, shape (batch, config.context), ``dtype``, optional
            The encoded context (:meth:`encode_context`); given exactly when the model has one.
        keep : bool, default False
            Training: every layer keeps its input, and every activation its output or sign
            pattern, for :meth:`_backprop` (``inputs`` and ``context`` must not change before
            it). Without it the pass writes nothing to the model (safe from several threads).

        Returns
        -------
        array, shape (batch, D * out_repeat), ``dtype``
            The logits, variable-major (``z[:, d * out_repeat + c]``).
        """
        h = inputs
        for i, (layer, act) in enumerate(zip(self.layers[:-1], self.activations)):
            a = layer.forward(h, masks[i], keep)
            if i == 0 and self.context_hidden is not None:
                a += self.context_hidden.forward(context, keep)
            h = act.forward(a, keep)
        z = self.layers[-1].forward(h, masks[len(self.layers) - 1], keep)
        if self.direct is not None:
            z += self.direct.forward(inputs, masks[-1], keep)
        if self.context_output is not None:
            z += self.context_output.forward(context, keep)
        if self._pins is not None:  # the atoms' components: constant outputs (docs/math.md Sec. 13, "Atoms")
            z = self.xp.where(self._pins[0], self._pins[1], z)
        return z

    def _backprop(self, dz, masks) -> None:
        """Fill every layer's gradients from ``dz = dL/dz`` (docs/math.md Sec. 3; Sec. 9 for the
        context blocks ``U^1``, ``U^V``).

        Uses the arrays kept by the last ``_forward_pass(..., keep=True)``, which must be of the
        same batch and ``masks``. :attr:`grads` are overwritten, not accumulated; ``dz`` itself
        is left unchanged (the deltas of the hidden layers are fresh arrays).

        Parameters
        ----------
        dz : array, shape (batch, D * out_repeat), ``dtype``
            Gradient of the loss being differentiated with respect to the logits, already
            scaled: for the minibatch mean NLL, ``dNLL_n/dz_n / batch`` (as :meth:`loss_and_grad`
            passes it).
        masks : list of arrays
            Those of the forward pass.
        """
        if self.direct is not None:
            self.direct.backward(dz, masks[-1])
        if self.context_output is not None:
            self.context_output.backward(dz)
        L = len(self.layers)
        delta = self.layers[-1].backward(dz, masks[L - 1])
        for i in reversed(range(L - 1)):
            delta = self.activations[i].backward(delta)
            if i == 0 and self.context_hidden is not None:
                self.context_hidden.backward(delta)
            delta = self.layers[i].backward(delta, masks[i])

    def loss_and_grad(self, x, mask=0, head=None, context=None, observed=None):
        """Mean NLL of a minibatch and its gradient in :attr:`grads` (docs/math.md Sec. 3, 4).

        The loss is ``L = (1/B) sum_n NLL_n`` over the ``B = batch`` rows: the head's
        per-example gradient ``dNLL_n/dz_n`` is scaled by ``1/B`` in place before
        :meth:`_backprop`, so :attr:`grads` (overwritten, not accumulated) are those of the
        minibatch *mean*, under ``mask``.

        Parameters
        ----------
        x : array, shape (batch, D), uint8 or int, values in 0..classes-1
            Not validated (training data are checked once, by :func:`made_np.train.fit`): a
            value outside the classes gives a wrong loss silently, or an IndexError with
            one-hot inputs.
        mask : int or made_np.masks.MaskSet, default 0
            The mask (:meth:`mask`; not checked).
        head : head, optional
            The head that computes the NLL and ``dNLL/dz`` (default :attr:`head`; the fast
            engine passes a faster form of it, :func:`made_np.fast.kernels.fast_head`).
        context : array, optional
            The encoded context of each row (:meth:`encode_context`); given exactly when the
            model has one.
        observed : array of bool, shape (batch, D), optional
            Rows with missing entries (False; ``x`` holds any value of the model there): the
            loss of row ``n`` is then ``-log p_k(x_o)`` under its observed-first mask made from
            ``mask`` (:func:`made_np.masks.observed_first_rows`; docs/math.md Sec. 12, "Rows with
            missing entries"). A model with a bank of masks only (not checked).

        Returns
        -------
        scalar of ``dtype``
            Mean NLL in nats per example over the batch (a NumPy scalar; a 0-d array on
            CuPy, left on the device: no host sync).

        Raises
        ------
        ZeroDivisionError
            An empty batch (``batch == 0``).
        """
        maskset, masks = self._mask(mask)
        if observed is not None:
            masks = self._row_masks(maskset, observed)
        inputs, targets = self.encode(x)
        z = self._forward_pass(inputs, masks, self._encode_context(context, x.shape[0]), keep=True)
        nll, dz = (head or self.head).nll_and_grad(z, targets)
        if self._pins is not None:  # a pinned output is a constant: no gradient flows into the network
            dz = self.xp.where(self._pins[0], 0.0, dz)
        if observed is not None:  # the missing entries' conditionals are no part of -log p_k(x_o)
            nll = self._observed_sum(z, targets, observed)
            dz *= self.xp.repeat(self._on_device(observed, dz.dtype), self.out_repeat, axis=1)
        dz *= 1.0 / x.shape[0]
        self._backprop(dz, masks)
        mean = self.xp.mean(nll)
        return mean + self._log_det if self.head.real and observed is None else mean

    def _row_masks(self, maskset, observed) -> list:
        """The device masks of :func:`made_np.masks.observed_first_rows` for host ``observed`` (batch, D)."""
        host = observed_first_rows(maskset, observed, self.in_repeat, self.out_repeat, self.direct is not None)
        return [self._on_device(m, self._mask_dtype) for m in host]

    def _on_device(self, a, dtype=None):
        """A host array (masks, observed entries) copied to the model's device (:func:`made_np.backend.to_device`)."""
        return backend.to_device(a, self.xp, dtype, self.device)

    def _observed_nll(self, x, observed, mask, y=None):
        """``-log p_k(x_o)`` (batch,) in nats of rows ``x`` with missing entries (any value there) under the
        observed-first masks that :func:`made_np.masks.observed_first_rows` makes from ``mask``
        (docs/math.md Sec. 12): the observed variables' conditionals, one forward pass."""
        inputs, targets = self.encode(x)
        return self._observed_sum(self._forward_pass(inputs, self._row_masks(self._mask(mask)[0], observed), y),
                                  targets, observed)

    def _observed_sum(self, z, targets, observed):
        """The observed variables' NLLs summed, (batch,) nats in the data's units: a real head's
        standardised NLL of each observed ``d`` plus its ``log scale_d`` (docs/math.md Sec. 12, 13)."""
        per_variable = self.head.nll_per_variable(z, targets)
        if self.head.real:
            per_variable = per_variable + self.xp.log(self.scale)
        return self.xp.sum(per_variable * self._on_device(observed, per_variable.dtype), axis=1)

    def nll(self, x, batch_size: int = 1000, context=None, mask=0):
        """Per-example NLL ``-log p(x)`` in nats (summed over the D variables) under one mask.

        Parameters
        ----------
        x : array-like, shape (N, D), integer (bool, or floats holding integers, accepted)
            Values in 0..classes-1; real values (float64) for a real head; checked
            (:func:`made_np.checks.check_data`).
        batch_size : int, default 1000
            Rows per forward pass (bounds memory), ``>= 1``.
        context : array, optional
            The rows' context (:meth:`encode_context`): ``-log p(x | y)``.
        mask : int or made_np.masks.MaskSet, default 0
            The mask (:meth:`mask`); :meth:`ensemble_nll` scores a mixture of masks.

        Returns
        -------
        array, shape (N,), ``dtype``
            Nats per example; for a real head in the data's units (the standardised NLL plus
            ``sum_d log scale_d``, docs/math.md Sec. 13).

        Raises
        ------
        ValueError
            ``x`` of the wrong shape, dtype or values (:func:`made_np.checks.check_data`), a context that
            does not fit the model (:func:`made_np.checks.check_context`), ``batch_size < 1``, or a mask
            outside the bank (:meth:`mask`).
        """
        batch_size = check_int("batch_size", batch_size, 1)
        x = check_data(self, x)
        return self._nll(x, self.mask(mask)[1], batch_size, check_context(self, context, x.shape[0]))

    def _nll(self, x, masks, batch_size, y):
        """:meth:`nll` of checked data ``x`` and encoded context ``y`` under the arrays ``masks``."""
        out = self.xp.empty(x.shape[0], dtype=self.dtype, device=self.device)
        for s in backend.row_blocks(x.shape[0], batch_size):
            inputs, targets = self.encode(x[s, ...])
            ys = None if y is None else y[s, ...]
            out[s] = self.head.nll(self._forward_pass(inputs, masks, ys), targets)
        if self.head.real:
            out += self._log_det
        return out

    def log_prob(self, x, batch_size: int = 1000, context=None, mask=None):
        """``log p(x)`` (``log p(x | y)`` with a context) in nats: the model's density.

        Parameters
        ----------
        x, batch_size, context
            As for :meth:`nll`.
        mask : int or made_np.masks.MaskSet, optional
            One mask's ``log p_k(x)`` (``-nll(x, mask=mask)``). Default: the density the model
            reports (``evaluate``): its test ensemble for a bank (``-ensemble_nll`` over
            :meth:`eval_mask_indices`), mask 0 for a single-mask model.

        Returns
        -------
        array, shape (N,), ``dtype``
            Nats per example.

        Raises
        ------
        ValueError
            As :meth:`nll` and :meth:`ensemble_nll`.
        """
        if mask is None and self.config.num_masks != 1:
            return -self.ensemble_nll(x, self.eval_mask_indices(), batch_size, context)
        return -self.nll(x, batch_size, context, 0 if mask is None else mask)

    def ensemble_nll(self, x, mask_indices, batch_size: int = 1000, context=None):
        """Per-example NLL of the mixture over masks (paper Sec. 4.2, test-time averaging;
        docs/math.md Sec. 5).

        ``-log p(x) = -(logsumexp_k log p_k(x) - log K)``: the average of the
        masks' *probabilities*, accumulated one mask at a time with ``logaddexp``
        (K forward passes, memory of one (N,) accumulator).

        Parameters
        ----------
        x : array-like, shape (N, D), integer (bool, or floats holding integers, accepted)
            Values in 0..classes-1; checked (:func:`made_np.checks.check_data`).
        mask_indices : sequence of int
            Masks of the bank to average over (K = len(mask_indices) >= 1); a repeated
            index counts as often as it appears.
        batch_size : int, default 1000
            Rows per forward pass, as for :meth:`nll`.
        context : array, optional
            The rows' context (:meth:`encode_context`).

        Returns
        -------
        array, shape (N,), ``dtype``
            Nats per example.

        Raises
        ------
        ValueError
            An empty ``mask_indices``, an index outside the bank (:meth:`mask`), ``x`` of
            the wrong shape, dtype or values (:func:`made_np.checks.check_data`), or a context that does not
            fit the model (:func:`made_np.checks.check_context`).
        """
        mask_indices = check_mask_indices(mask_indices, self.config.num_masks)
        batch_size = check_int("batch_size", batch_size, 1)
        x = check_data(self, x)
        return self._ensemble_nll(x, mask_indices, batch_size, check_context(self, context, x.shape[0]))

    def _ensemble_nll(self, x, mask_indices, batch_size, y):
        """:meth:`ensemble_nll` of checked data ``x``, mask indices and encoded context ``y``.

        Indices whose masks are equal (same ordering and degrees: e.g. the two orderings of D = 2
        under an unlimited bank) are one forward pass, weighted by their count (``log n`` added):
        the same mixture, without the repeated passes."""
        counts = {}
        for k in mask_indices:
            m = self._mask_cache[k][0] if k in self._mask_cache else self._maskset_at(k)  # no device arrays yet
            key = (m.ordering.tobytes(), *(d.tobytes() for d in m.degrees))
            first, n = counts.get(key, (k, 0))
            counts[key] = first, n + 1
        acc = None
        for k, n in counts.values():
            lp = -self._nll(x, self._mask(k)[1], batch_size, y) + (math.log(n) if n > 1 else 0.0)
            acc = lp if acc is None else self.xp.logaddexp(acc, lp)
        return math.log(len(mask_indices)) - acc

    def logits(self, x, context=None, mask=0):
        """Logits of the conditionals under ``mask`` (docs/math.md Sec. 2).

        Parameters
        ----------
        x : array-like, shape (batch, D), integer (bool, or floats holding integers, accepted)
            Values in 0..classes-1; checked (:func:`made_np.checks.check_data`).
        context : array, optional
            The rows' context (:meth:`encode_context`); needed exactly when the model has one.
        mask : int or made_np.masks.MaskSet, default 0
            The mask (:meth:`mask`).

        Returns
        -------
        array of ``dtype``, shape (batch, D) (Bernoulli head) or (batch, D, C) (categorical)
            Logit ``d`` depends only on the variables before ``d`` in the ordering (and the context).

        Raises
        ------
        ValueError
            ``x`` of the wrong shape, dtype or values (:func:`made_np.checks.check_data`), or a context that
            does not fit the model (:func:`made_np.checks.check_context`).
        """
        x = check_data(self, x)
        z = self._forward_pass(self.encode(x)[0], self.mask(mask)[1], check_context(self, context, x.shape[0]))
        return self.xp.reshape(z, (x.shape[0], self.config.D, self.out_repeat)) if self.out_repeat > 1 else z

    # ------------------------------------------------------------------ masks
    def mask(self, which=0) -> tuple:
        """The mask a pass computes with: ``(maskset, arrays)``.

        Parameters
        ----------
        which : int or made_np.masks.MaskSet, default 0
            An index of the bank (rebuilt from ``(seed, index)``, or taken from a cache), or a
            MaskSet that need not come from the bank (the observed-first masks of
            :mod:`made_np.conditional`; a bank's models only).

        Returns
        -------
        maskset : made_np.masks.MaskSet
            Host arrays: ordering, degrees, masks.
        arrays : list of arrays on ``xp``
            The masks of ``layers`` then ``direct``, shape of each ``W``: bool for a bank
            (``W * M`` and ``dW *= M`` take them as they are: a quarter of the memory and of
            the traffic when the masks change at every step), the weights' dtype for a fixed mask.

        Raises
        ------
        ValueError
            An index outside the bank (``0 <= index < num_masks`` unless the bank has no
            limit); a MaskSet for a single-mask model (its weights are masked in place, so
            another mask would not give the trained conditionals) or of other widths.
        """
        return self._mask(check_mask(self, which))

    def _mask(self, which) -> tuple:
        """:meth:`mask` without the check (the passes' own calls, with a mask already checked); a
        ``(maskset, arrays)`` pair already resolved is returned as it is."""
        if isinstance(which, tuple):  # already resolved: (maskset, arrays)
            return which
        if isinstance(which, MaskSet):
            return which, self._device_masks(which)
        which = int(which)
        hit = self._mask_cache.get(which)
        if hit is None:
            maskset = self._maskset_at(which)
            hit = (maskset, self._device_masks(maskset))
            if self._cache_masks:
                self._mask_cache[which] = hit
        return hit

    def maskset_at(self, index: int):
        """The host :class:`~made_np.masks.MaskSet` of mask ``index`` of the bank.

        Raises
        ------
        ValueError
            ``index`` outside the bank (:func:`made_np.checks.check_mask_index`).
        """
        return self._maskset_at(check_mask_index(index, self.config.num_masks))

    def _maskset_at(self, index: int):
        c = self.config
        return draw_masks(
            c.D, c.hidden, seed=c.seed, index=index, ordering=c.ordering,
            given_ordering=c.given_ordering, degrees=c.degrees,
            order_agnostic=c.order_agnostic, connectivity_agnostic=c.connectivity_agnostic,
            orderings=c.orderings,
        )

    def _device_masks(self, maskset) -> list:
        """The masks of ``maskset`` as :meth:`mask` returns them."""
        return [self._on_device(m, self._mask_dtype) for m in self._host_masks(maskset, self.direct is not None)]

    @property
    def _mask_dtype(self):
        """bool for a bank on NumPy and CuPy, whose products take bool masks as they are; the weights'
        dtype for a fixed mask, and on a namespace that follows the standard's promotion rules (no
        bool times float)."""
        return bool if self.config.num_masks != 1 and backend.native(self.xp) is not None else self.dtype

    def _host_masks(self, maskset, direct: bool) -> list:
        """The masks of :attr:`_all_layers` at the level of columns (host bool arrays)."""
        host = maskset.layer_masks(self.in_repeat, self.out_repeat)
        if direct:
            host.append(maskset.direct_block(self.in_repeat, self.out_repeat))
        return host

    def _mask_bytes(self) -> int:
        """Bytes of one set of masks: bool (1 byte an entry) for a bank, the dtype's for a fixed mask."""
        per_entry = 1 if self.config.num_masks != 1 else self.xp.finfo(self.dtype).bits // 8
        masked = self.layers + ([self.direct] if self.direct is not None else [])  # the context blocks have none
        return sum(layer.W.size for layer in masked) * per_entry

    def eval_mask_indices(self, eval_masks: int | None = None) -> list:
        """Mask indices an ensemble evaluation averages over.

        Parameters
        ----------
        eval_masks : int, optional
            How many: the first ``eval_masks`` masks of the bank (all of a smaller bank).
            Default: the whole bank, at most :data:`DEFAULT_EVAL_MASKS` (1000, paper Sec. 6.2),
            which is also the default with no limit on the bank (``num_masks = 0``): a bank
            of a million masks is evaluated on its first 1000, not on a million.

        Returns
        -------
        list of int
        """
        K = self.config.num_masks
        n = DEFAULT_EVAL_MASKS if eval_masks is None else check_int("eval_masks", eval_masks, 1, MAX_EVAL_MASKS)
        return list(range(min(K, n) if K >= 1 else n))

    # ------------------------------------------------------------------ data
    def set_standardisation(self, shift, scale) -> None:
        """Set :attr:`shift` and :attr:`scale` (each (D,), positive finite scales; copied as
        float64 on ``xp``; not checked: :func:`made_np.checks.check_dataset` refuses columns of
        zero variance) and the log-determinant ``sum_d log scale_d`` (nats) every NLL adds. A mixed
        head's discrete columns keep shift 0 and scale 1 whatever is given (their values are levels).

        Also the atoms' pins (``config.atoms``, docs/math.md Sec. 13, "Atoms"): component ``j`` of
        atom column ``d`` gets the constant mean ``(a_j - shift_d) / scale_d`` and raw log-scale
        :data:`made_np.heads.PINNED_RAW_SCALE` in place of the network's outputs (:meth:`_forward_pass`)."""
        xp, c = self.xp, self.config
        keep = ~backend.to_device(self._discrete, xp, device=self.device)
        self.shift = xp.where(keep, self._on_device(shift, "float64"), 0.0)  # new arrays: copies
        self.scale = xp.where(keep, self._on_device(scale, "float64"), 1.0)
        self._log_det = float(xp.sum(xp.log(self.scale)))
        self._pins, self._atom_draws = None, {}
        if c.atom_columns:
            np, R, K = backend.get_xp("cpu"), self.out_repeat, c.components
            pinned, values = np.zeros(c.D * R, dtype=bool), np.zeros(c.D * R)
            shift, scale = backend.to_host(self.shift), backend.to_host(self.scale)
            for d, atoms in zip(c.atom_columns, c.atoms):  # once per model: a loop over the atom columns
                j = np.arange(len(atoms))
                pinned[d * R + K + j] = pinned[d * R + 2 * K + j] = True
                values[d * R + K + j] = (np.asarray(atoms) - shift[d]) / scale[d]
                values[d * R + 2 * K + j] = PINNED_RAW_SCALE
            self._pins = self._on_device(pinned), self._on_device(values, c.dtype)
            drawn = backend.to_host(self._pins[1]).astype(np.float64)  # a pinned mean as the head draws it
            self._atom_draws = {d: (drawn[d * R + K:d * R + K + len(atoms)], np.asarray(atoms))
                                for d, atoms in zip(c.atom_columns, c.atoms)}

    @property
    def _discrete(self):
        """Host bool (D,): the columns of a mixed head's levels."""
        host = backend.get_xp("cpu")
        return host.isin(host.arange(self.config.D), list(self.head.discrete_columns))

    @property
    def standardised(self) -> bool:
        """Whether :attr:`shift`, :attr:`scale` differ from the identity (a standardisation was set)."""
        return bool(self.xp.any(self.shift != 0) or self.xp.any(self.scale != 1))

    def _standardise(self, x):
        """``(x - shift) / scale`` in float64 (batch, D) for a real head; ``x`` itself for a discrete one."""
        return (x - self.shift) / self.scale if self.head.real else x

    def _unstandardise(self, v, cols=slice(None)):
        """Draws ``v`` (n, D) (or (n,) of column ``cols``), standardised, in the data's units,
        ``v * scale + shift``, for a real head (an atom's pinned mean, as drawn, gives the atom itself,
        exactly); ``v`` itself for a discrete one."""
        if not self.head.real:
            return v
        x = v * self.scale[cols, ...] + self.shift[cols, ...]
        every = isinstance(cols, slice)
        for d, (drawn, atoms) in self._atom_draws.items():
            if every or cols == d:
                col = x[:, d] if every else x
                for mean, atom in zip(drawn.tolist(), atoms.tolist()):
                    col = self.xp.where((v[:, d] if every else v) == mean, atom, col)
                x = self.xp.concat([x[:, :d], col[:, None], x[:, d + 1:]], axis=1) if every else col
        return x

    def encode(self, x):
        """Encode data for the network and the head.

        Parameters
        ----------
        x : array, shape (batch, D), uint8 or int, values in 0..classes-1; real values (float64)
            for a real head, standardised here (:attr:`shift`, :attr:`scale`)

        Returns
        -------
        inputs : array, shape (batch, D * in_repeat), ``dtype``
        targets : array, shape (batch, D): the head's targets (:meth:`made_np.heads.Head.targets`)
        """
        xp, c, n = self.xp, self.config, x.shape[0]
        x = self._standardise(x)
        if c.input_encoding == "onehot":
            inputs = xp.reshape(xp.take(self._eye, xp.reshape(xp.astype(x, xp.int64), (-1,)), axis=0), (n, c.D * c.classes))
        else:
            inputs = xp.astype(x, self.dtype)
            if c.input_encoding == "scaled":
                inputs /= c.classes - 1
        return inputs, self.head.targets(x, inputs)

    def encode_context(self, context, n: int | None = None):
        """The context as the network takes it, after checking it fits the model
        (:func:`made_np.checks.check_context`): shape (n, config.context), ``dtype``, on ``xp``.

        Parameters
        ----------
        context : array-like or None
            ``onehot`` models: class labels, an int or shape (m,), in 0..context-1 (one-hot
            encoded here), or rows (m, context) used as they are. ``raw`` models: rows
            (m, context) or one row (context,). One row (``m == 1``) is repeated to ``n`` rows.
            None for a model without context.
        n : int, optional
            Rows wanted (the batch size); default m.

        Returns
        -------
        array of shape (n, context), or None for a model without context.

        Raises
        ------
        ValueError
            As :func:`made_np.checks.check_context`.
        """
        return check_context(self, context, n)

    def _encode_context(self, context, n: int | None = None):
        """:meth:`encode_context` of a checked context (docs/math.md Sec. 9): labels (m,) or rows
        (m, context); None stays None."""
        if context is None:
            return None
        xp, c = self.xp, self.config
        y = xp.asarray(context)
        if c.context_encoding == "onehot" and y.ndim <= 1:
            y = xp.take(xp.eye(c.context, dtype=self.dtype, device=self.device), xp.reshape(y, (-1,)), axis=0)
        elif y.ndim == 1:
            y = xp.reshape(y, (1, -1))
        y = xp.astype(y, self.dtype, copy=False)
        if n is not None and y.shape[0] != n:
            y = xp.repeat(y, n, axis=0)
        return y

    # ------------------------------------------------------------------ parameters
    @property
    def _all_layers(self) -> list:
        """``layers``, then ``direct``, then the context blocks (the masked ones first, in the
        order of the arrays of :meth:`mask`)."""
        return (self.layers + ([self.direct] if self.direct is not None else [])
                + [d for d in (self.context_hidden, self.context_output) if d is not None])

    @property
    def params(self) -> list:
        """All parameter arrays: ``W^1, b^1, ..., V, c``, then ``A`` if direct, then ``U^1, U^V`` with a context."""
        return [p for layer in self._all_layers for p in layer.params]

    @property
    def grads(self) -> list:
        """Gradients of the last :meth:`loss_and_grad`, matching :attr:`params`."""
        return [g for layer in self._all_layers for g in layer.grads]

    @property
    def param_names(self) -> list:
        """Names of :attr:`params`: ``W0, b0, W1, b1, ..., A``, then ``U1`` (context into the
        first hidden layer) and ``UV`` (context into the logits)."""
        names = []
        for i, layer in enumerate(self.layers):
            names += [f"W{i}", f"b{i}"]
        names += ["A"] if self.direct is not None else []
        names += ["U1"] if self.context_hidden is not None else []
        return names + (["UV"] if self.context_output is not None else [])

    @property
    def num_params(self) -> int:
        """Number of scalar parameters (masked entries included)."""
        return int(sum(p.size for p in self.params))

    def state_dict(self) -> dict:
        """Host copies of the parameters, keyed by :attr:`param_names`."""
        return {n: backend.to_host(p).copy() for n, p in zip(self.param_names, self.params)}

    def load_state_dict(self, state: dict) -> None:
        """Copy parameters in place from host arrays.

        Parameters
        ----------
        state : dict
            ``{name: array}`` keyed by :attr:`param_names`, each of the parameter's shape.

        Raises
        ------
        ValueError
            A missing name, a shape that does not match, or a value that is not finite in the
            model's dtype (naming the parameter).
        """
        check_state(self, state)
        self._load_state(state)

    def _load_state(self, state: dict) -> None:
        """:meth:`load_state_dict` without its checks: for a reader that checked every entry as it
        read it (:func:`~made_np.checkpoint.load_checkpoint`)."""
        for name, p in zip(self.param_names, self.params):
            p[...] = self._on_device(state[name], self.dtype)
        self._mask_fixed_weights()

    def _mask_fixed_weights(self) -> None:
        """A single fixed mask (``num_masks == 1``): make ``W`` zero where the mask is (the
        invariant the fixed layers rely on, :class:`~made_np.layers.MaskedDense`)."""
        if self.config.num_masks == 1:
            for layer, M in zip(self._all_layers, self._mask(0)[1]):
                layer.W *= M
