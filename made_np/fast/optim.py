"""The optimisers of :mod:`made_np.optim`, in place and split over CPU threads.

Every update happens on preallocated buffers (the gradient buffer doubles as scratch
space), large parameters are cut into row blocks that the threads of
:func:`made_np.fast.threads.work_pool` update side by side, and Adam folds its bias
corrections into two scalars per step::

    lr_t = lr sqrt(1 - b2^t) / (1 - b1^t),   eps_t = eps sqrt(1 - b2^t)
    p -= lr_t m / (sqrt(v) + eps_t)

which is algebraically the textbook update (docs/math.md, Sec. 6 "Optimisers"; Kingma &
Ba's own efficient variant puts a constant eps there, which is not quite the same update). When
:func:`made_np.fast.kernels.fused_kernels` offers a fused kernel (CuPy; numexpr on
the CPU only when asked for) each update is one pass over memory. The results
equal :mod:`made_np.optim`'s up to rounding (tests/test_optim.py).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import optim
from . import kernels, threads

#: Parameters with at least this many entries are split over the CPU work pool.
SPLIT_MIN_SIZE = 1 << 16

#: The NumPy updates make about a dozen passes over their arrays; a part of more than
#: twice this many entries is updated in chunks of it, so that the passes after the first
#: find their chunk in the cache instead of memory (an Adam update of 3.4M float32
#: entries, one thread: 6.9 ms whole, 5.6 ms in chunks of 128K; docs/performance.md).
CHUNK = 1 << 17


def chunks(*arrays):
    """Matching flat chunks of at most :data:`CHUNK` entries of same-shaped NumPy arrays.

    Yields tuples of views: 1-D chunks of C-contiguous arrays, or the arrays themselves
    when they are small, not all C-contiguous (no flat view) or not NumPy's (a GPU gains
    nothing from cache-sized pieces and would launch a dozen kernels per chunk)."""
    first = arrays[0]
    if (first.size <= 2 * CHUNK or not isinstance(first, np.ndarray)
            or not all(a.flags.c_contiguous for a in arrays)):
        yield arrays
        return
    flat = [a.reshape(-1) for a in arrays]
    for a in range(0, first.size, CHUNK):
        yield tuple(f[a:a + CHUNK] for f in flat)


class _InPlace:
    """What the fast optimisers share: scratch buffers, fused kernels and the row split.

    ``fused`` (keyword): use a fused kernel when one is available (None: see
    :func:`made_np.fast.kernels.fused_kernels`).
    """

    def __init__(self, *args, fused=None, **kwargs):
        super().__init__(*args, **kwargs)  # the reference optimiser's parameters and checks
        xp = self.xp
        self.kernels = kernels.fused_kernels(xp, fused)
        self._tmp = [xp.empty_like(p) for p in self.params]
        self.set_pool(threads.work_pool(xp))

    def set_pool(self, pool) -> None:
        """Split the updates of large parameters over ``pool`` (None: one thread; the bits are
        the same either way). Fused kernels do not split."""
        self.pool = pool if self.kernels is None else None
        self._parts = self._split(self.pool.threads) if self.pool is not None else None

    def _split(self, n):
        """Per thread, the ``(index, rows)`` blocks of the parameters it updates (None: nothing to split)."""
        parts, split = [[] for _ in range(n)], False
        for i, p in enumerate(self.params):
            if p.ndim >= 1 and p.size >= SPLIT_MIN_SIZE and p.shape[0] >= n:
                bounds = [p.shape[0] * k // n for k in range(n + 1)]
                for k in range(n):
                    parts[k].append((i, slice(bounds[k], bounds[k + 1])))
                split = True
            else:  # small parameters go to the last thread, which has no dispatching to do
                parts[-1].append((i, Ellipsis))
        return parts if split else None

    def step(self, grads) -> None:
        """Apply one update to ``params``, in place (docs/math.md Sec. 6): row blocks split over
        the work pool, or (with fused kernels) one parameter at a time.

        Parameters
        ----------
        grads : list of arrays
            One gradient per parameter, each of its shape and dtype. Used as scratch space:
            treat their contents as undefined afterwards (FastAdam's NumPy update always
            overwrites them; with weight decay most paths add ``weight_decay * p`` into them).

        Raises
        ------
        ValueError
            ``grads`` and ``params`` differ in length (nothing is updated).
        """
        self._check_lengths(grads)
        self.t += 1
        self._prepare()
        if self._parts is None:
            for i, (p, g) in enumerate(zip(self.params, grads)):
                self._update(i, p, g)
            return
        grads = list(grads)
        self.pool.run([functools.partial(self._update_part, part, grads) for part in self._parts])

    def _prepare(self) -> None:
        """Per-step constants (none by default)."""

    def _update_part(self, part, grads) -> None:
        for i, rows in part:
            self._update(i, self.params[i][rows], grads[i][rows], rows)

    def _decay(self, p, g, tmp):
        """``g += weight_decay * p`` in place (``tmp``: scratch of ``p``'s shape)."""
        if self.weight_decay:
            g += self.xp.multiply(p, self.weight_decay, out=tmp)
        return g


class FastSGD(_InPlace, optim.SGD):
    """:class:`made_np.optim.SGD` (same parameters and errors, plus ``fused``), updated in place
    with preallocated scratch, split over CPU threads (it has no fused kernel; when fused kernels
    are on it runs unsplit); equal to the reference up to rounding (docs/math.md Sec. 6).
    ``grads`` serve as scratch (:meth:`step`)."""

    def _update(self, i, p, g, rows=Ellipsis):
        g = self._decay(p, g, self._tmp[i][rows])
        if self.momentum:
            v = self.state["velocity"][i][rows]
            v *= self.momentum
            v += g
            g = v
        p -= self.xp.multiply(g, self.lr, out=self._tmp[i][rows])


class FastAdam(_InPlace, optim.Adam):
    """:class:`made_np.optim.Adam` (same parameters and errors, plus ``fused``) in its efficient
    bias-corrected form, ``p -= lr_t m / (sqrt(v) + eps_t)``, updated in place: one fused kernel
    when available, else cache-sized chunks split over CPU threads. Algebraically the reference
    update, equal to it up to rounding (docs/math.md Sec. 6). ``grads`` serve as scratch (:meth:`step`)."""

    def _prepare(self) -> None:
        c2 = math.sqrt(1.0 - self.beta2 ** self.t)
        self._lr_t = self.lr * c2 / (1.0 - self.beta1 ** self.t)
        self._eps_t = self.eps * c2

    def _update(self, i, p, g, rows=Ellipsis):
        m, v = self.state["m"][i][rows], self.state["v"][i][rows]
        if self.kernels is not None:
            self.kernels.adam(p, g, m, v, self.beta1, self.beta2, self._lr_t, self._eps_t, self.weight_decay)
            return
        for p_, g_, m_, v_, tmp in chunks(p, g, m, v, self._tmp[i][rows]):
            self._adam(p_, self._decay(p_, g_, tmp), m_, v_)

    def _adam(self, p, g, m, v) -> None:
        """The update of one chunk; ``g`` is overwritten."""
        xp = self.xp
        # the gradient buffer is the scratch space (one array less to stream through
        # the cache than with a separate temporary: 13% faster on a 784x500 matrix)
        b1, b2 = self.beta1, self.beta2
        m *= b1
        g *= 1.0 - b1
        m += g  # m = b1 m + (1 - b1) g
        v *= b2
        g *= g
        g *= (1.0 - b2) / (1.0 - b1) ** 2
        v += g  # v = b2 v + (1 - b2) g^2
        xp.sqrt(v, out=g)
        g += self._eps_t
        xp.divide(m, g, out=g)
        g *= self._lr_t
        p -= g


class FastAdagrad(_InPlace, optim.Adagrad):
    """:class:`made_np.optim.Adagrad` (same parameters and errors, plus ``fused``; eps inside the
    root), updated in place: one fused kernel when available, else cache-sized chunks split over
    CPU threads. Equal to the reference up to rounding (docs/math.md Sec. 6). ``grads`` serve as
    scratch (:meth:`step`)."""

    def _update(self, i, p, g, rows=Ellipsis):
        s = self.state["sum_sq"][i][rows]
        if self.kernels is not None:
            self.kernels.adagrad(p, g, s, self.lr, self.eps, self.weight_decay)
            return
        for p_, g_, s_, tmp in chunks(p, g, s, self._tmp[i][rows]):
            self._adagrad(p_, self._decay(p_, g_, tmp), s_, tmp)

    def _adagrad(self, p, g, s, tmp) -> None:
        """The update of one chunk; ``tmp`` is scratch."""
        xp = self.xp
        s += xp.multiply(g, g, out=tmp)
        xp.add(s, self.eps, out=tmp)
        xp.sqrt(tmp, out=tmp)
        xp.divide(g, tmp, out=tmp)
        tmp *= self.lr
        p -= tmp


#: The fast form of optimisers of :data:`made_np.optim.OPTIMIZERS`, by the class they compute.
FAST_OPTIMIZERS = {optim.Adam: FastAdam, optim.SGD: FastSGD, optim.Adagrad: FastAdagrad}


def make_fast_optimizer(name: str, params, xp, lr: float | None = None, weight_decay: float = 0.0, **kwargs):
    """:func:`made_np.optim.make_optimizer`, with the fast class where one exists: an optimiser
    without a fast form (a new one, registered in :data:`made_np.optim.OPTIMIZERS` only) trains
    in its reference form.

    Raises
    ------
    ValueError
        Unknown name, ``lr <= 0`` or negative weight decay.
    """
    cls = optim.optimizer_class(name)
    if cls not in FAST_OPTIMIZERS:
        kwargs.pop("fused", None)
        return optim.make_optimizer(name, params, xp, lr, weight_decay, **kwargs)
    return FAST_OPTIMIZERS[cls](params, xp, lr=lr, weight_decay=weight_decay, **kwargs)
