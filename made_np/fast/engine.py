"""The fast training engine: what ``fit(..., engine="fast")`` steps.

* a single-mask model on the CPU trains in its block-sparse form
  (:class:`made_np.fast.blocked.BlockedMADE`, products side by side on the work pool);
* any other model (a mask bank, CuPy) trains as itself, with the fused head
  (:func:`made_np.fast.kernels.fast_head`): a bank changes mask at every step, and every
  speed form measured for it did no better (docs/performance.md, "Paper scale and mask
  banks");
* the optimisers are the in-place, thread-split ones of :mod:`made_np.fast.optim`.

It computes what :class:`made_np.train.ReferenceEngine` computes, up to rounding
(tests/test_train.py: the two engines reach the same digits test NLL).
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import backend
from ..train import ReferenceEngine
from . import threads
from .blocked import BlockedMADE
from .kernels import fast_head
from .optim import make_fast_optimizer


def blocked_products(xp) -> bool:
    """Whether a single-mask model trains in its block-sparse form on ``xp``.

    True on NumPy, where skipping the zero blocks of the sorted staircase masks takes
    a 1x500 MNIST step's products from 2.5 to 1.7 ms (docs/performance.md). False on
    CuPy until it is measured there: many small GEMMs can be slower on a GPU than one
    large one.
    """
    return backend.native(xp) is np


class FastEngine(ReferenceEngine):
    """See the module docstring.

    Parameters
    ----------
    model : made_np.model.MADE
    """

    def __init__(self, model):
        super().__init__(model)
        blocked = model.config.num_masks == 1 and blocked_products(model.xp)
        self.net = BlockedMADE(model) if blocked else None
        self.head = fast_head(model.head)
        self.split = None  # the work pool a bank's products are cut over (set_threads)

    params = property(lambda self: (self.model if self.net is None else self.net).params)
    grads = property(lambda self: (self.model if self.net is None else self.net).grads)

    def make_optimizer(self, cfg):
        self.opt = make_fast_optimizer(cfg.optimizer, self.params, backend.native(self.model.xp), lr=cfg.lr,
                                       weight_decay=cfg.weight_decay)
        return self.opt

    def set_threads(self, n: int) -> None:
        """Split the work of the next steps over a pool of ``n`` threads (1: none): block
        products, the optimiser update (when its optimiser has a pool) and the fused head. The
        bits of every result stay the same (tests/test_speedpaths.py)."""
        pool = threads.work_pool(self.model.xp, n)
        for part in (getattr(self, "opt", None), self.net):
            if hasattr(part, "set_pool"):
                part.set_pool(pool)
        if hasattr(self.head, "pool"):
            self.head.pool = pool
        # a bank's products: cut over the pool where BLAS stays on one thread (auto), bitwise the same
        self.split = pool if pool is not None and threads.blas_limit() == 1 else None

    def prepare(self, x):
        return self.net.permute_data(x) if self.net is not None else x

    def loss_and_grad(self, xb, mask=0, context=None):
        if self.net is not None:
            return self.net.loss_and_grad(xb, context=context)
        return self.model.loss_and_grad(xb, mask, head=self.head, context=context)

    def epoch(self):
        return self.net.parallel() if self.net is not None else self._split_products()

    @contextlib.contextmanager
    def _split_products(self):
        """Within an epoch's steps, a bank's layers multiply with :func:`threads.split_matmul` on
        the pool :meth:`set_threads` chose for it (plain ``a @ b`` while there is none); outside,
        as every MADE does, so validation and a fitted model never share the pool."""
        if backend.native(self.model.xp) is not np:
            yield
            return
        layers = self.model._all_layers
        for layer in layers:
            layer.product = self._product
        try:
            yield
        finally:
            for layer in layers:
                vars(layer).pop("product", None)

    def _product(self, a, b):
        return threads.split_matmul(self.split, a, b) if self.split is not None else a @ b

    def sync(self) -> None:
        if self.net is not None:
            self.net.write_to(self.model)

    def to_natural(self, arrays) -> list:
        return self.net.to_natural(arrays) if self.net is not None else list(arrays)

    def to_compute(self, arrays) -> list:
        return self.net.to_compute(arrays) if self.net is not None else list(arrays)
