"""Optimisers, in their textbook form; Adagrad as the MADE paper's code has it (docs/math.md, "Optimisers").

Each optimiser updates a list of parameter arrays (on any array API namespace) from a
matching list of gradients. ``weight_decay`` adds the L2 term ``weight_decay * p``
to every gradient (coupled decay, as in the original papers).

This is the readable reference. :mod:`made_np.fast.optim` computes the same
updates in place, split over CPU threads, and Adam in its efficient
bias-corrected form; tests/test_optim.py checks that the two agree.
"""
from __future__ import annotations

from . import backend
from .checks import check_choice, check_optimizer, check_positive, check_unit_interval


class Optimizer:
    """Base class: the parameters, the step count ``t`` and per-parameter state buffers.

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    xp : module
        Their array module.
    lr : float, optional
        Learning rate (a schedule may change :attr:`lr` between steps); default :attr:`default_lr`.
    weight_decay : float
        L2 coefficient, ``>= 0``.

    Raises
    ------
    ValueError
        ``lr <= 0`` or ``weight_decay < 0``.
    """

    #: The learning rate a run takes when none is given (the recipe's, :class:`made_np.config.TrainConfig`).
    default_lr: float = 1e-2
    #: Names of the per-parameter state buffers (saved in checkpoints as ``<name><i>``).
    state_names: tuple = ()
    #: Those of :attr:`state_names` that can never be negative (sums of squares): a resumed
    #: checkpoint with a negative entry is damaged (checked by ``train.check_resume_state``).
    nonnegative_state: tuple = ()

    def __init__(self, params, xp, lr=None, weight_decay=0.0):
        lr = self.default_lr if lr is None else lr
        check_optimizer(lr, weight_decay)
        self.params, self.xp = list(params), xp
        self.lr, self.weight_decay, self.t = float(lr), float(weight_decay), 0
        self.state = {name: [xp.zeros_like(p) for p in self.params] for name in self.state_names}

    def step(self, grads) -> None:
        """Apply one update to :attr:`params`, in place (docs/math.md Sec. 6).

        Increments the step count ``t`` first (the first step is ``t = 1``), then updates
        each parameter from ``g = grad + weight_decay * p``.

        Parameters
        ----------
        grads : list of arrays
            One gradient per parameter, in the order of ``params``, each of its parameter's
            shape and dtype (e.g. :attr:`made_np.model.MADE.grads`). Left unchanged.

        Raises
        ------
        ValueError
            ``grads`` and ``params`` differ in length (nothing is updated).
        """
        self._check_lengths(grads)
        self.t += 1
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.weight_decay:
                g = g + self.weight_decay * p
            self._update(i, p, g)

    def _check_lengths(self, grads) -> None:
        if len(grads) != len(self.params):
            raise ValueError(f"{len(grads)} gradients for {len(self.params)} parameters")

    def state_dict(self) -> dict:
        """Host copies of the step count, learning rate and state buffers (for checkpoints)."""
        out = {"t": self.t, "lr": self.lr}
        for name, bufs in self.state.items():
            for i, b in enumerate(bufs):
                out[f"{name}{i}"] = backend.to_host(b).copy()
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output in place."""
        self.t, self.lr = int(state["t"]), float(state["lr"])
        for name, bufs in self.state.items():
            for i, b in enumerate(bufs):
                b[...] = backend.to_device(state[f"{name}{i}"], self.xp, b.dtype, backend.device(b))


class SGD(Optimizer):
    """Stochastic gradient descent with optional heavy-ball momentum (docs/math.md Sec. 6).

    ``v = momentum * v + g``; ``p -= lr * v`` (``v = g`` without momentum).

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    xp : module
        Their array module.
    lr : float, default 0.01
        Learning rate, ``> 0``.
    momentum : float, default 0
        Heavy-ball coefficient ``mu``, ``0 <= mu < 1`` (0 is plain SGD).
    weight_decay : float, default 0
        Coupled L2 coefficient, ``>= 0``: ``g = grad + weight_decay * p``.

    Raises
    ------
    ValueError
        ``lr <= 0``, ``weight_decay < 0``, or ``momentum`` outside [0, 1).
    """

    state_names = ("velocity",)

    def __init__(self, params, xp, lr=None, momentum=0.0, weight_decay=0.0):
        super().__init__(params, xp, lr, weight_decay)
        self.momentum = check_unit_interval("momentum", momentum)

    def _update(self, i, p, g):
        v = self.state["velocity"][i]
        v[...] = self.momentum * v + g
        p -= self.lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), with bias correction (docs/math.md Sec. 6).

    At step ``t``::

        m = b1 m + (1 - b1) g
        v = b2 v + (1 - b2) g^2
        p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    xp : module
        Their array module.
    lr : float, default :attr:`default_lr` (2e-3)
        Learning rate, ``> 0``.
    betas : (float, float), default (0.9, 0.999)
        ``(b1, b2)``, the decay rates of ``m`` and ``v``, each in [0, 1).
    eps : float, default 1e-8
        Added to ``sqrt(v_hat)``, ``> 0`` (which keeps masked weights at exactly 0,
        docs/math.md Sec. 3).
    weight_decay : float, default 0
        Coupled L2 coefficient, ``>= 0``: ``g = grad + weight_decay * p``.

    Raises
    ------
    ValueError
        ``lr <= 0``, ``weight_decay < 0``, a beta outside [0, 1), or ``eps <= 0``.
    """

    #: With the cosine schedule, 2e-3 beats the textbook 1e-3 on binarized MNIST (94.1 against
    #: 94.85 test nats at 1x500, docs/experiments.md).
    default_lr = 2e-3
    state_names = ("m", "v")
    nonnegative_state = ("v",)

    def __init__(self, params, xp, lr=None, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, xp, lr, weight_decay)
        self.beta1, self.beta2 = (check_unit_interval(n, b) for n, b in zip(("beta1", "beta2"), betas))
        self.eps = check_positive("eps", eps)

    def _update(self, i, p, g):
        m, v, b1, b2, t = self.state["m"][i], self.state["v"][i], self.beta1, self.beta2, self.t
        m[...] = b1 * m + (1 - b1) * g
        v[...] = b2 * v + (1 - b2) * g * g
        p -= self.lr * (m / (1 - b1 ** t)) / (self.xp.sqrt(v / (1 - b2 ** t)) + self.eps)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), the MADE paper's optimiser (Sec. 6.1), in the form of the
    paper's code: ``s += g^2``; ``p -= lr * g / sqrt(s + eps)``, eps = 1e-6.

    eps sits inside the root, so the denominator is at least ``sqrt(eps) = 1e-3``: a weight
    whose gradients have stayed far below 1e-3 (an input pixel that is rarely on) moves by
    about ``lr g / 1e-3``, not by ``lr sign(g)`` as with ``sqrt(s) + eps`` (Duchi et al.'s and
    PyTorch's placement), where eps only guards the division (docs/math.md, Sec. 6).

    Parameters
    ----------
    params : list of arrays
        Parameters, updated in place.
    xp : module
        Their array module.
    lr : float, default 0.01
        Learning rate, ``> 0``.
    eps : float, default 1e-6
        Added to ``s`` inside the root, ``> 0`` (it rules out ``0/0``).
    weight_decay : float, default 0
        Coupled L2 coefficient, ``>= 0``: ``g = grad + weight_decay * p``.

    Raises
    ------
    ValueError
        ``lr <= 0``, ``weight_decay < 0``, or ``eps <= 0``.
    """

    state_names = ("sum_sq",)
    nonnegative_state = ("sum_sq",)

    def __init__(self, params, xp, lr=None, eps=1e-6, weight_decay=0.0):
        super().__init__(params, xp, lr, weight_decay)
        self.eps = check_positive("eps", eps)

    def _update(self, i, p, g):
        s = self.state["sum_sq"][i]
        s += g * g
        p -= self.lr * g / self.xp.sqrt(s + self.eps)


OPTIMIZERS = {"adam": Adam, "sgd": SGD, "adagrad": Adagrad}


def optimizer_class(name: str):
    """The optimiser class registered as ``name``.

    Raises
    ------
    ValueError
        Unknown name.
    """
    return OPTIMIZERS[check_choice("optimizer", name, OPTIMIZERS)]


def make_optimizer(name: str, params, xp, lr: float | None = None, weight_decay: float = 0.0, **kwargs):
    """Build an optimiser by name (``adam``, ``sgd``, ``adagrad``); ``lr=None`` takes its default.

    Raises
    ------
    ValueError
        Unknown name, ``lr <= 0``, negative weight decay, or a ``momentum``, ``betas`` or
        ``eps`` in ``kwargs`` outside its range (:class:`SGD`, :class:`Adam`, :class:`Adagrad`).
    """
    cls = optimizer_class(name)
    if lr is not None:
        kwargs["lr"] = lr
    return cls(params, xp, weight_decay=weight_decay, **kwargs)
