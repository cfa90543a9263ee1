"""Output heads: the per-variable conditionals p(x_d | x_<d) and their losses.

A head turns the network's logits into a negative log-likelihood in nats (summed
over variables, one value per example), the gradient of that NLL with respect to
the logits, and samples. Everything the rest of made-np needs to know about a
head is declared on its class; the registry :data:`HEADS` maps names to classes,
and nothing outside this module branches on a head's name. A new head is one
class and one line in :data:`HEADS`.

* :class:`BernoulliHead`: one logit ``z_d`` per binary variable,
  ``-log p(x) = sum_d [softplus(z_d) - x_d z_d]`` (binary cross-entropy), gradient
  ``sigmoid(z) - x`` (paper eq. 3; docs/math.md, Sec. 4 "The losses").
* :class:`CategoricalHead`: ``C`` logits per variable, laid out variable-major,
  ``z[:, d*C + c]`` (viewed as ``(batch, D, C)``), ``-log p(x) = -sum_d log softmax(z_d)[x_d]``
  (cross-entropy), gradient ``softmax(z_d) - onehot(x_d)``.

This is the readable reference; :class:`made_np.fast.kernels.FusedBernoulliHead`
computes the Bernoulli NLL in fewer passes and is tested equal to it.
"""
from __future__ import annotations

from .checks import check_choice


def softplus(xp, z):
    """``log(1 + exp(z))`` without overflow: ``max(z, 0) + log1p(exp(-|z|))`` (docs/math.md Sec. 4).

    Parameters
    ----------
    xp : module
        Array module of ``z``.
    z : array, any shape, float32 or float64
        Logits.

    Returns
    -------
    array, shape and dtype of ``z``
        ``softplus(z) >= 0``, finite for every finite ``z``.
    """
    return xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))


def sigmoid(xp, z):
    """``1 / (1 + exp(-z))`` without overflow (docs/math.md Sec. 4, "Stable sigmoid").

    With ``e = exp(-|z|)``: ``1 / (1 + e)`` for ``z >= 0`` and ``e / (1 + e)`` for ``z < 0``.

    Parameters
    ----------
    xp : module
        Array module of ``z``.
    z : array, any shape, float32 or float64
        Logits.

    Returns
    -------
    array, shape and dtype of ``z``
        Values in [0, 1].
    """
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0, e) / (1.0 + e)


class Head:
    """What every head declares (see :data:`HEADS`).

    Attributes
    ----------
    name : str
        Its key in :data:`HEADS` (stored in checkpoints).
    binary : bool
        Whether its variables are 0/1 with one logit each, drawn as ``1[z > t]`` with the
        thresholds ``t = thresholds(u)`` (the fast sampler's draw).
    sample_dtype : str
        NumPy dtype name of its samples.
    """

    name = ""
    binary = False
    sample_dtype = "int64"

    def __init__(self, xp, classes: int = 2):
        message = self.check_classes(classes)
        if message:
            raise ValueError(message)
        self.xp, self.C = xp, int(classes)
        self.logits_per_variable = self.outputs_per_variable(classes)

    @staticmethod
    def check_classes(classes: int) -> str | None:
        """An error message when the head cannot model ``classes`` classes per variable, else None."""
        return None if classes >= 2 else f"a head needs at least 2 classes, got {classes}"

    @staticmethod
    def outputs_per_variable(classes: int) -> int:
        """Logits per variable."""
        raise NotImplementedError

    def targets(self, x, inputs):
        """What :meth:`nll` compares the logits with, from data ``x`` (batch, D) ints and their
        encoded network ``inputs``."""
        raise NotImplementedError

    def nll(self, z, x):
        """Negative log-likelihood in nats, shape (batch,): :meth:`nll_per_variable` summed."""
        return self.nll_per_variable(z, x).sum(axis=1)

    def class_logits(self, z):
        """The conditionals as softmax logits over the ``C`` classes, shape (batch, D, C), from
        the network's logits ``z`` (batch, D * outputs_per_variable)."""
        raise NotImplementedError

    def smoothed_log_marginals(self, counts):
        """``log p_d(c) = log (n_dc + 1/2) - log (N + C/2)``: each variable's class frequencies
        with half a count added to every class (the Krichevsky-Trofimov estimate), so that a
        class never seen keeps a finite logit (docs/math.md Sec. 11).

        Parameters
        ----------
        counts : array, shape (D, C), int or float
            ``n_dc``: how many training rows have variable ``d`` in class ``c``.

        Returns
        -------
        array, shape (D, C), float64
            Log-probabilities in nats; each row's exponentials sum to 1.
        """
        n = self.xp.asarray(counts, dtype=self.xp.float64) + 0.5
        return self.xp.log(n) - self.xp.log(n.sum(axis=1, keepdims=True))

    def marginal_logits(self, counts):
        """The logits, shape (D * outputs_per_variable,) float64, whose conditionals are the
        :meth:`smoothed_log_marginals` of ``counts`` (D, C): the output biases that start
        training at the marginal model (:func:`made_np.train.start_at_marginals`)."""
        raise NotImplementedError


class BernoulliHead(Head):
    """Independent Bernoulli conditionals with logits ``z`` (paper eq. 3).

    Parameters
    ----------
    xp : module
        Array module.
    classes : int
        Must be 2.
    """

    name = "bernoulli"
    binary = True
    sample_dtype = "uint8"

    @staticmethod
    def check_classes(classes: int) -> str | None:
        if classes != 2:
            return f"the bernoulli head needs 2 classes, got {classes}: use the categorical head"
        return None

    @staticmethod
    def outputs_per_variable(classes: int) -> int:
        return 1

    def targets(self, x, inputs):
        """The 0/1 values as floats of the inputs' dtype, shape (batch, D)."""
        return x.astype(inputs.dtype)

    def class_logits(self, z):
        """``(0, z_d)`` per variable, shape (batch, D, 2): its softmax is ``(1 - sigmoid(z), sigmoid(z))``."""
        return self.xp.stack([self.xp.zeros_like(z), z], axis=-1)

    def marginal_logits(self, counts):
        """The log-odds ``log p_d(1) - log p_d(0)`` of :meth:`smoothed_log_marginals`, shape (D,)."""
        log_p = self.smoothed_log_marginals(counts)
        return log_p[:, 1] - log_p[:, 0]

    def nll_per_variable(self, z, x):
        """``softplus(z_d) - x_d z_d`` in nats, shape (batch, D), for logits ``z`` and targets ``x``
        (both (batch, D); ``x`` in {0, 1})."""
        return softplus(self.xp, z) - x * z

    def nll_and_grad(self, z, x):
        """Per-example NLL and its gradient ``dNLL/dz = sigmoid(z) - x`` (docs/math.md Sec. 4).

        Parameters
        ----------
        z : array, shape (batch, D), float32 or float64
            Logits.
        x : array, shape (batch, D), values in {0, 1}
            Targets, as :meth:`targets` gives them (floats of ``z``'s dtype).

        Returns
        -------
        nll : array, shape (batch,)
            ``sum_d [softplus(z_d) - x_d z_d]``, nats per example.
        grad : array, shape (batch, D)
            ``sigmoid(z) - x``, a fresh array (the caller may scale it in place). Not cast:
            both outputs have the dtype NumPy gives ``z`` with ``x``, ``z``'s dtype for the
            targets of :meth:`targets`.
        """
        return self.nll(z, x), sigmoid(self.xp, z) - x

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
        return (u < sigmoid(self.xp, z)).astype(self.xp.uint8)

    def thresholds(self, u):
        """The logits ``t = logit(u)`` above which :meth:`sample` draws a 1, for uniform noise
        ``u`` (any shape), float64: ``u < sigmoid(z)`` exactly when ``z > logit(u)``. ``u = 0`` is
        clipped to the smallest normal double (logit -708), which differs from the draw
        ``1[0 < sigmoid(z)]`` only if ``u`` is exactly 0 (probability 2^-53) and ``z`` lies in
        (-745, -708]."""
        u = self.xp.maximum(u, 2.2250738585072014e-308)
        return self.xp.log(u) - self.xp.log1p(-u)


class CategoricalHead(Head):
    """Softmax conditionals over ``C`` classes per variable.

    Parameters
    ----------
    xp : module
        Array module.
    classes : int
        Number of classes ``C >= 2`` of every variable.
    """

    name = "categorical"

    @staticmethod
    def outputs_per_variable(classes: int) -> int:
        return int(classes)

    def targets(self, x, inputs):
        """The class indices themselves, shape (batch, D), int."""
        return x

    def class_logits(self, z):
        """``z`` viewed as (batch, D, C)."""
        return z.reshape(z.shape[0], -1, self.C)

    def marginal_logits(self, counts):
        """:meth:`smoothed_log_marginals` laid out variable-major, shape (D * C,) (softmax
        is unchanged by a constant per variable, so log-probabilities are logits)."""
        return self.smoothed_log_marginals(counts).reshape(-1)

    def log_softmax(self, z):
        """Stable ``log softmax`` over the last axis of ``z`` (any leading shape):
        ``s - log sum exp(s)`` with ``s = z - max(z)``."""
        xp = self.xp
        s = z - z.max(axis=-1, keepdims=True)
        return s - xp.log(xp.exp(s).sum(axis=-1, keepdims=True))

    def _onehot(self, x):
        """``onehot(x)``, shape (batch, D, C), of class indices ``x`` (batch, D)."""
        return x[..., None] == self.xp.arange(self.C)

    def nll_per_variable(self, z, x):
        """``-log softmax(z_d)[x_d]`` in nats, shape (batch, D).

        Parameters
        ----------
        z : array, shape (batch, D*C), float
            Logits, variable-major (``z[:, d*C + c]``).
        x : array, shape (batch, D), int in 0..C-1
        """
        n, D = x.shape
        lp = self.log_softmax(z.reshape(n, D, self.C))
        return -(lp * self._onehot(x)).sum(axis=-1)

    def nll_and_grad(self, z, x):
        """Per-example NLL and its gradient ``softmax(z_d) - onehot(x_d)`` (docs/math.md Sec. 4).

        Parameters
        ----------
        z : array, shape (batch, D*C), float32 or float64
            Logits, variable-major (``z[:, d*C + c]``).
        x : array, shape (batch, D), int in 0..C-1
            Class indices (:meth:`targets`). Not checked: a value outside 0..C-1 matches no
            class and silently adds 0 to the NLL.

        Returns
        -------
        nll : array, shape (batch,), ``z``'s dtype
            ``-sum_d log softmax(z_d)[x_d]``, nats per example.
        grad : array, shape (batch, D*C), cast to ``z``'s dtype
            ``softmax(z_d) - onehot(x_d)``, variable-major like ``z``; a fresh array (the
            caller may scale it in place).

        Raises
        ------
        ValueError
            ``z`` without ``D * C`` columns for the ``D`` columns of ``x`` (from ``reshape``).
        """
        n, D = x.shape
        lp = self.log_softmax(z.reshape(n, D, self.C))
        onehot = self._onehot(x)
        nll = -(lp * onehot).sum(axis=(1, 2))
        grad = self.xp.exp(lp) - onehot
        return nll, grad.reshape(n, D * self.C).astype(z.dtype, copy=False)

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


#: The heads, by name. A new head is one class above and one line here.
HEADS = {cls.name: cls for cls in (BernoulliHead, CategoricalHead)}


def head_class(name: str):
    """The head class registered as ``name``.

    Raises
    ------
    ValueError
        Unknown name.
    """
    return HEADS[check_choice("head", name, HEADS)]


def default_head(classes: int) -> str:
    """The head a data set of ``classes`` classes per variable gets by default:
    the first registered head that accepts it (bernoulli for binary data, else categorical)."""
    name = next((name for name, cls in HEADS.items() if cls.check_classes(classes) is None), None)
    if name is None:
        raise ValueError(f"no head models {classes!r} classes per variable: data need at least 2 classes")
    return name


def make_head(name: str, xp, classes: int = 2):
    """Build a head by name (see :data:`HEADS`) for ``classes`` classes per variable.

    Raises
    ------
    ValueError
        Unknown name, or a number of classes the head cannot model.
    """
    return head_class(name)(xp, classes)
