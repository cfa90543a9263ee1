"""MADE: a masked autoencoder that is an autoregressive density model (Germain et al. 2015).

The network maps an encoded input ``x`` of shape (batch, D * in_repeat) through
masked hidden layers to logits of shape (batch, D * out_repeat)::

    h^1 = act(x W^1*M^1 + b^1), ..., z = h^L (V * M^V) + c [+ x (A * M^A)]

(paper eqs. 7, 10-13), and the head turns logits into per-example NLL in nats.
The masks come from :mod:`made_np.masks`; a model holds a *bank* of ``num_masks``
masks (``0``: no limit, a fresh mask at every resample) and uses one at a time
(:meth:`MADE.set_mask`). Test-time averaging over masks is a mixture of
*probabilities*: ``log p(x) = logsumexp_k log p_k(x) - log K`` (:meth:`MADE.ensemble_nll`).

This module does not import NumPy: arrays live on the array module ``xp`` that
:mod:`made_np.backend` hands it, so the same code runs on CuPy.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields

from . import backend
from .heads import make_head
from .layers import ACTIVATIONS, BlockedDense, MaskedDense, make_activation
from .masks import (DEGREE_RULES, ORDERINGS, block_plan, draw_masks, expand_columns, invert_permutation,
                    sorting_permutations)

ENCODINGS = ("binary", "onehot", "raw", "scaled")
HEADS = ("bernoulli", "categorical")
MASK_CACHE_BYTES = 256 * 2**20
#: In a :class:`BlockedMADE`, a weight matrix of at least ``BLOCK_MIN_SIZE`` entries is kept
#: in packed blocks when they cover at most this fraction of it (:class:`made_np.masks.BlockPlan`).
BLOCK_MAX_COVERAGE = 0.85
BLOCK_MIN_SIZE = 1 << 15


class StrictConfig:
    """What the configuration dataclasses share: first-failure validation and a strict ``from_dict``.

    Subclasses are dataclasses that set ``_kind`` (used in error messages) and build
    their list of ``(ok, message)`` checks in ``validate``.
    """

    _kind = "configuration"

    @staticmethod
    def _raise_first(checks) -> None:
        """Raise ValueError with the message of the first failed ``(ok, message)`` check."""
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of ``to_dict``; unknown keys are an error (ValueError)."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls._kind} configuration keys: {sorted(unknown)}")
        return cls(**d)


@dataclass
class MADEConfig(StrictConfig):
    """Everything that defines a MADE; stored as JSON inside checkpoints.

    Attributes
    ----------
    D : int
        Number of variables.
    hidden : tuple of int
        Hidden layer widths, e.g. ``(500,)`` or ``(500, 500)``; may be empty.
    classes : int
        Classes per variable: 2 for binary data.
    head : {"bernoulli", "categorical"}
        Sigmoid conditionals with BCE, or softmax conditionals with cross-entropy.
    input_encoding : {"binary", "onehot", "raw", "scaled"}
        How a variable enters the network: its 0/1 value, a one-hot block of
        ``classes`` columns, its integer value, or its value scaled to [0, 1].
    ordering : {"natural", "random"}
        Ordering of mask 0. ``given_ordering`` (a permutation of 1..D) overrides it.
    degrees : {"random", "equal"}
        Hidden degree rule (:func:`made_np.masks.hidden_degrees`).
    num_masks : int
        Size of the mask bank; 1 is a single fixed mask; 0 means no limit.
    order_agnostic, connectivity_agnostic : bool
        Whether masks beyond mask 0 resample the ordering and the hidden degrees
        (paper Secs. 4.1-4.2). Irrelevant when ``num_masks == 1``.
    direct : bool
        Direct input-to-output connections (paper eq. 11).
    activation : {"relu", "leaky_relu"}
    seed : int
        Seed of the initial weights and of the mask bank.
    dtype : {"float32", "float64"}
    """

    D: int
    hidden: tuple = (500,)
    classes: int = 2
    head: str = "bernoulli"
    input_encoding: str = "binary"
    ordering: str = "natural"
    given_ordering: tuple | None = None
    degrees: str = "random"
    num_masks: int = 1
    order_agnostic: bool = True
    connectivity_agnostic: bool = True
    direct: bool = False
    activation: str = "relu"
    seed: int = 0
    dtype: str = "float32"

    _kind = "model"

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.given_ordering is not None:
            self.given_ordering = tuple(int(o) for o in self.given_ordering)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        checks = [
            (self.D >= 1, f"D must be >= 1, got {self.D}"),
            (all(h >= 1 for h in self.hidden), f"hidden widths must be >= 1, got {self.hidden}"),
            (self.classes >= 2, f"classes must be >= 2, got {self.classes}"),
            (self.head in HEADS, f"unknown head {self.head!r}: choose one of {', '.join(HEADS)}"),
            (self.input_encoding in ENCODINGS,
             f"unknown input encoding {self.input_encoding!r}: choose one of {', '.join(ENCODINGS)}"),
            (self.input_encoding != "binary" or self.classes == 2,
             f"input encoding 'binary' needs 2 classes, got {self.classes}: use onehot, raw or scaled"),
            (self.head != "bernoulli" or self.classes == 2,
             f"the bernoulli head needs 2 classes, got {self.classes}: use the categorical head"),
            (self.ordering in ORDERINGS, f"unknown ordering {self.ordering!r}: choose one of {', '.join(ORDERINGS)}"),
            (self.degrees in DEGREE_RULES, f"unknown degree rule {self.degrees!r}: choose one of {', '.join(DEGREE_RULES)}"),
            (self.num_masks >= 0, f"num_masks must be >= 0 (0 = no limit), got {self.num_masks}"),
            (self.activation in ACTIVATIONS, f"unknown activation {self.activation!r}"),
        ]
        self._raise_first(checks)
        backend.resolve_dtype(self.dtype)

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["given_ordering"] = None if self.given_ordering is None else list(self.given_ordering)
        return d


class MADE:
    """A MADE on the array module ``xp``.

    Parameters
    ----------
    config : MADEConfig
    xp : module, optional
        NumPy (default) or CuPy.

    Attributes
    ----------
    layers : list of MaskedDense
        ``[W^1, ..., W^L, V]``: the hidden layers then the output layer.
    direct : MaskedDense or None
        The direct connections ``A`` (no bias), when ``config.direct``.
    head : BernoulliHead or CategoricalHead
    mask_index : int
        Index of the mask in use.
    maskset : made_np.masks.MaskSet
        The mask in use (host arrays): ordering, degrees, masks.
    """

    def __init__(self, config: MADEConfig, xp=None):
        self.config = config
        self.xp = backend.get_xp("cpu") if xp is None else xp
        self.dtype = backend.resolve_dtype(config.dtype)
        c = config
        self.in_repeat = c.classes if c.input_encoding == "onehot" else 1
        self.out_repeat = c.classes if c.head == "categorical" else 1
        widths = [c.D * self.in_repeat, *c.hidden, c.D * self.out_repeat]
        rng = backend.host_rng(c.seed)
        self.layers = [
            MaskedDense(widths[i], widths[i + 1], self.xp, rng, self.dtype, need_input_grad=i > 0)
            for i in range(len(widths) - 1)
        ]
        self.activations = [make_activation(c.activation, self.xp) for _ in c.hidden]
        self.direct = None
        if c.direct:
            self.direct = MaskedDense(widths[0], widths[-1], self.xp, rng, self.dtype,
                                      bias=False, need_input_grad=False)
        self.head = make_head(c.head, self.xp, c.classes)
        self._eye = self.xp.eye(c.classes, dtype=self.dtype) if c.input_encoding == "onehot" else None
        self._mask_cache = {}
        self._cache_masks = c.num_masks >= 1 and c.num_masks * self._mask_bytes() <= MASK_CACHE_BYTES
        self.mask_index = None
        self.set_mask(0)

    # ------------------------------------------------------------------ parameters
    @property
    def _all_layers(self) -> list:
        return self.layers + ([self.direct] if self.direct is not None else [])

    @property
    def params(self) -> list:
        """All parameter arrays: ``W^1, b^1, ..., V, c`` then ``A`` if direct."""
        return [p for layer in self._all_layers for p in layer.params]

    @property
    def grads(self) -> list:
        """Gradients of the last :meth:`loss_and_grad`, matching :attr:`params`."""
        return [g for layer in self._all_layers for g in layer.grads]

    @property
    def param_names(self) -> list:
        """Names of :attr:`params`: ``W0, b0, W1, b1, ..., A``."""
        names = []
        for i, layer in enumerate(self.layers):
            names += [f"W{i}", f"b{i}"]
        return names + (["A"] if self.direct is not None else [])

    @property
    def num_params(self) -> int:
        """Number of scalar parameters (masked entries included)."""
        return int(sum(p.size for p in self.params))

    def state_dict(self) -> dict:
        """Host copies of the parameters, keyed by :attr:`param_names`."""
        return {n: backend.to_host(p).copy() for n, p in zip(self.param_names, self.params)}

    def load_state_dict(self, state: dict) -> None:
        """Copy parameters in place from host arrays.

        Raises
        ------
        ValueError
            A missing name or a shape that does not match.
        """
        for name, p in zip(self.param_names, self.params):
            if name not in state:
                raise ValueError(f"parameter {name!r} missing from the state")
            if tuple(state[name].shape) != tuple(p.shape):
                raise ValueError(f"parameter {name!r} has shape {tuple(state[name].shape)}, expected {tuple(p.shape)}")
            p[...] = self.xp.asarray(state[name], dtype=self.dtype)
        for layer in self._all_layers:
            if layer.fixed:  # keep the invariant of a fixed mask: W is zero where M is
                layer.W *= layer.M

    # ------------------------------------------------------------------ masks
    def _mask_bytes(self) -> int:
        return sum(layer.W.nbytes for layer in self._all_layers)

    def maskset_at(self, index: int):
        """The host :class:`~made_np.masks.MaskSet` of mask ``index`` of the bank."""
        c = self.config
        return draw_masks(
            c.D, c.hidden, seed=c.seed, index=index, ordering=c.ordering,
            given_ordering=c.given_ordering, degrees=c.degrees,
            order_agnostic=c.order_agnostic, connectivity_agnostic=c.connectivity_agnostic,
        )

    def set_mask(self, index: int) -> None:
        """Use mask ``index`` of the bank (rebuilt from ``(seed, index)`` or taken from a cache).

        Raises
        ------
        ValueError
            ``index`` outside the bank (``0 <= index < num_masks`` unless the bank has no limit).
        """
        K = self.config.num_masks
        if index < 0 or (K >= 1 and index >= K):
            raise ValueError(f"mask index {index} is outside the bank of {K} mask(s)")
        if index == self.mask_index:
            return
        if index in self._mask_cache:
            maskset, device_masks = self._mask_cache[index]
        else:
            maskset = self.maskset_at(index)
            device_masks = [self.xp.asarray(m, dtype=self.dtype)
                            for m in self._host_masks(maskset, self.direct is not None)]
            if self._cache_masks:
                self._mask_cache[index] = (maskset, device_masks)
        fixed = K == 1
        for layer, m in zip(self._all_layers, device_masks):
            layer.set_mask(m, fixed=fixed)
        self.maskset, self.mask_index = maskset, index

    def use_maskset(self, maskset) -> None:
        """Run under ``maskset``, a host MaskSet that need not come from the bank, until the next :meth:`set_mask`.

        Used by :mod:`made_np.conditional` for observed-first orderings. :attr:`mask_index`
        becomes None, so a later ``set_mask(i)`` always rebuilds mask ``i``.

        Raises
        ------
        ValueError
            ``num_masks == 1`` (the weights of a fixed mask are masked in place, so another
            mask would not give the trained conditionals), or a MaskSet whose D or hidden
            widths differ from the model's.
        """
        c = self.config
        if c.num_masks == 1:
            raise ValueError("use_maskset needs a bank of masks: "
                             "a num_masks == 1 model has its weights masked in place")
        widths = tuple(len(m) for m in maskset.degrees)
        if maskset.D != c.D or widths != c.hidden:
            raise ValueError(f"the MaskSet has D={maskset.D}, hidden={widths}; "
                             f"the model has D={c.D}, hidden={c.hidden}")
        for layer, m in zip(self._all_layers, self._host_masks(maskset, self.direct is not None)):
            layer.set_mask(self.xp.asarray(m, dtype=self.dtype), fixed=False)
        self.maskset, self.mask_index = maskset, None

    def _host_masks(self, maskset, direct: bool) -> list:
        """The masks of :attr:`_all_layers` at the level of columns (host bool arrays)."""
        host = maskset.layer_masks(self.in_repeat, self.out_repeat)
        if direct:
            host.append(maskset.direct_block(self.in_repeat, self.out_repeat))
        return host

    def param_permutations(self, input_perm, hidden_perms) -> list:
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
            None for a bias), at the level of columns (one-hot inputs and
            categorical logits move in blocks of ``classes``).
        """
        sides = [expand_columns(input_perm, self.in_repeat), *hidden_perms,
                 expand_columns(input_perm, self.out_repeat)]
        perms = []
        for i, layer in enumerate(self.layers):
            perms.append((sides[i], sides[i + 1]))
            if layer.b is not None:
                perms.append((None, sides[i + 1]))
        if self.direct is not None:
            perms.append((sides[0], sides[-1]))
        return perms

    def eval_mask_indices(self, eval_masks: int | None = None) -> list:
        """Mask indices an ensemble evaluation averages over.

        The whole bank when it is finite (or its first ``eval_masks``); with no limit,
        ``eval_masks`` masks (default 1000, paper Sec. 6.2).
        """
        K = self.config.num_masks
        if K >= 1:
            return list(range(min(K, eval_masks) if eval_masks else K))
        return list(range(eval_masks or 1000))

    # ------------------------------------------------------------------ data
    def encode(self, x):
        """Encode data for the network and the head.

        Parameters
        ----------
        x : array, shape (batch, D), uint8 or int, values in 0..classes-1

        Returns
        -------
        inputs : array, shape (batch, D * in_repeat), ``dtype``
        targets : array, shape (batch, D): ``dtype`` for the Bernoulli head, int for categorical
        """
        c, xp, n = self.config, self.xp, x.shape[0]
        if c.input_encoding == "onehot":
            inputs = self._eye[x].reshape(n, c.D * c.classes)
        else:
            inputs = x.astype(self.dtype)
            if c.input_encoding == "scaled":
                inputs /= c.classes - 1
        if c.head == "categorical":
            return inputs, x
        return inputs, (inputs if c.input_encoding == "binary" else x.astype(self.dtype))

    # ------------------------------------------------------------------ passes
    def _forward_pass(self, inputs):
        """Logits, shape (batch, D * out_repeat), for encoded inputs (batch, D * in_repeat)."""
        h = inputs
        for layer, act in zip(self.layers[:-1], self.activations):
            h = act.forward(layer.forward(h))
        z = self.layers[-1].forward(h)
        if self.direct is not None:
            z += self.direct.forward(inputs)
        return z

    def _backprop(self, dz) -> None:
        """Fill every layer's gradients from ``dz = dL/dz``, shape (batch, D * out_repeat)."""
        if self.direct is not None:
            self.direct.backward(dz)
        delta = self.layers[-1].backward(dz)
        for layer, act in zip(reversed(self.layers[:-1]), reversed(self.activations)):
            delta = layer.backward(act.backward(delta))

    def loss_and_grad(self, x):
        """Mean NLL of a minibatch and its gradient in :attr:`grads`.

        Parameters
        ----------
        x : array, shape (batch, D), uint8 or int

        Returns
        -------
        0-d array
            Mean NLL in nats over the batch, left on the device (no host sync).
        """
        inputs, targets = self.encode(x)
        z = self._forward_pass(inputs)
        nll, dz = self.head.nll_and_grad(z, targets)
        dz *= 1.0 / x.shape[0]
        self._backprop(dz)
        return nll.mean()

    def logits(self, x):
        """Logits for data ``x`` (batch, D): shape (batch, D) (Bernoulli) or (batch, D, C) (categorical)."""
        z = self._forward_pass(self.encode(x)[0])
        return z.reshape(x.shape[0], self.config.D, self.out_repeat) if self.out_repeat > 1 else z

    def nll(self, x, batch_size: int = 1000):
        """Per-example NLL in nats under the current mask.

        Parameters
        ----------
        x : array, shape (N, D), uint8 or int
        batch_size : int
            Rows per forward pass (bounds memory).

        Returns
        -------
        array, shape (N,), ``dtype``, nats.
        """
        out = self.xp.empty(x.shape[0], dtype=self.dtype)
        for s in range(0, x.shape[0], batch_size):
            inputs, targets = self.encode(x[s:s + batch_size])
            out[s:s + batch_size] = self.head.nll(self._forward_pass(inputs), targets)
        return out

    def log_prob(self, x, batch_size: int = 1000):
        """``log p(x)`` in nats under the current mask, shape (N,)."""
        return -self.nll(x, batch_size)

    def ensemble_nll(self, x, mask_indices, batch_size: int = 1000):
        """Per-example NLL of the mixture over masks (paper Sec. 4.2, test-time averaging).

        ``-log p(x) = -(logsumexp_k log p_k(x) - log K)``: the average of the
        masks' *probabilities*, accumulated one mask at a time with ``logaddexp``
        (K forward passes, memory of one (N,) accumulator).

        Parameters
        ----------
        x : array, shape (N, D), uint8 or int
        mask_indices : sequence of int
            Masks of the bank to average over (K = len(mask_indices) >= 1).
        batch_size : int

        Returns
        -------
        array, shape (N,), nats. The current mask is restored afterwards.
        """
        mask_indices = list(mask_indices)
        if not mask_indices:
            raise ValueError("ensemble_nll needs at least one mask index")
        current, acc = self.mask_index, None
        for k in mask_indices:
            self.set_mask(k)
            lp = -self.nll(x, batch_size)
            acc = lp if acc is None else self.xp.logaddexp(acc, lp)
        self.set_mask(current)
        return math.log(len(mask_indices)) - acc


class BlockedMADE(MADE):
    """The fast training form of a single-mask MADE: sorted units, packed blocks of live weights.

    Inputs are relabelled in the order of the ordering and hidden units in the
    order of their degrees (:func:`made_np.masks.sorting_permutations`). Every mask
    then is a staircase with about half of its entries in whole blocks of zeros,
    and each large weight matrix is stored as the packed blocks of its live entries
    (:class:`made_np.layers.BlockedDense`): the products and the optimiser touch
    about 60% of a 784x500 matrix. The passes are :class:`MADE`'s own.

    It is the same model: on data with permuted columns, ``x[:, input_perm]``
    (:meth:`permute_data`), it gives the NLLs and gradients of ``model`` on ``x``
    up to the order of float additions. Parameters move between the two forms
    with :meth:`read_from`, :meth:`write_to`, :meth:`to_compute` and
    :meth:`to_natural`; :meth:`state_dict` and :meth:`load_state_dict` use the
    natural form, so checkpoints do not depend on it.

    Parameters
    ----------
    model : MADE
        A MADE with a single fixed mask (``num_masks == 1``); its parameters are copied.

    Attributes
    ----------
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

    def __init__(self, model: MADE):
        c = model.config
        if c.num_masks != 1:
            raise ValueError(f"BlockedMADE needs a single fixed mask, the model has a bank of {c.num_masks}")
        self.config, self.xp, self.dtype = c, model.xp, model.dtype
        self.in_repeat, self.out_repeat = model.in_repeat, model.out_repeat
        self.head, self._eye = model.head, model._eye
        self.activations = [make_activation(c.activation, self.xp) for _ in c.hidden]
        self.input_perm, self.hidden_perms = sorting_permutations(model.maskset)
        self.maskset = model.maskset.relabel(self.input_perm, self.hidden_perms)
        self.mask_index, self._mask_cache, self._cache_masks = 0, {}, False
        layers, rng = [], backend.host_rng(0)  # fresh layers' weights are overwritten by read_from
        for src, host in zip(model._all_layers, self._host_masks(self.maskset, model.direct is not None)):
            mask = self.xp.asarray(host, dtype=self.dtype)
            plan = block_plan(host) if host.size >= BLOCK_MIN_SIZE else None
            bias = src.b is not None
            if plan is not None and plan.coverage <= BLOCK_MAX_COVERAGE:
                layer = BlockedDense(plan, mask, self.xp, self.dtype, bias=bias, need_input_grad=src.need_input_grad)
            else:
                layer = MaskedDense(*src.W.shape, self.xp, rng, self.dtype, bias=bias,
                                    need_input_grad=src.need_input_grad)
                layer.set_mask(mask, fixed=True)
            layers.append(layer)
        self.layers = layers[:len(model.layers)]
        self.direct = layers[-1] if model.direct is not None else None
        perms = model.param_permutations(self.input_perm, self.hidden_perms)
        xp = self.xp
        self._forward_perms = [(None if r is None else xp.asarray(r), xp.asarray(c_)) for r, c_ in perms]
        self._inverse_perms = [(None if r is None else xp.asarray(invert_permutation(r)),
                                xp.asarray(invert_permutation(c_))) for r, c_ in perms]
        self._packers = [layer if (isinstance(layer, BlockedDense) and j == 0) else None
                         for layer in self._all_layers for j in range(len(layer.params))]
        self._input_perm_device = xp.asarray(self.input_perm)
        self.read_from(model)

    @contextlib.contextmanager
    def parallel(self, threads: int | None = None):
        """Within the block, the block products run side by side on the CPU work pool.

        BLAS is held to one thread meanwhile (:func:`made_np.backend.blas_threads`):
        two single-threaded products at once do more than one product on two
        threads when the blocks are this small (1x500 MNIST step: 2.0 -> 1.7 ms of
        products, docs/performance.md). Without a pool (CuPy, ``MADE_NP_THREADS=1``)
        nothing changes. Wrap whole epochs, not single steps.

        Parameters
        ----------
        threads : int, optional
            Size of the pool (default :func:`made_np.backend.cpu_threads`).
        """
        pool = backend.work_pool(self.xp, threads)
        blocked = [layer for layer in self._all_layers if isinstance(layer, BlockedDense)]
        if pool is None or not blocked:
            yield
            return
        with backend.blas_threads(1, self.xp):
            for layer in blocked:
                layer.set_pool(pool)
            try:
                yield
            finally:
                for layer in blocked:
                    layer.set_pool(None)

    def set_mask(self, index: int) -> None:
        """Only mask 0 exists here.

        Raises
        ------
        ValueError
            ``index != 0``.
        """
        if index != 0:
            raise ValueError(f"a BlockedMADE has a single mask, got mask index {index}")

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
        out = []
        for a, (rows, cols), packer in zip(arrays, self._forward_perms, self._packers):
            moved = self._permute(self.xp, a, rows, cols)
            out.append(packer.pack(moved) if packer is not None else moved)
        return out

    def to_natural(self, arrays) -> list:
        """Inverse of :meth:`to_compute`: arrays shaped like :attr:`params` as ``model``'s (new arrays)."""
        out = []
        for a, (rows, cols), packer in zip(arrays, self._inverse_perms, self._packers):
            full = packer.unpack(a) if packer is not None else a
            out.append(self._permute(self.xp, full, rows, cols))
        return out

    def read_from(self, model: MADE) -> None:
        """Copy ``model``'s parameters in (it must be the model this one was built from)."""
        for dst, src in zip(self.params, self.to_compute(model.params)):
            dst[...] = src

    def write_to(self, model: MADE) -> None:
        """Copy the parameters out into ``model`` (natural form), in place."""
        for dst, src in zip(model.params, self.to_natural(self.params)):
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
        for layer in self._all_layers:  # the fixed-mask invariant: W is zero where M is
            layer.W *= layer.M
