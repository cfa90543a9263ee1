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
* :class:`GaussianHead` and :class:`MixtureHead` (``real = True``): real-valued data
  (classes 0), a Gaussian or a mixture of ``K`` Gaussians per variable of the standardised
  data, drawn by the inverse CDF (docs/math.md Sec. 13).

This is the readable reference; :class:`made_np.fast.kernels.FusedBernoulliHead`
computes the Bernoulli NLL in fewer passes and is tested equal to it.
"""
from __future__ import annotations

from . import backend
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


def log_softmax(xp, z, axis: int = -1):
    """Stable ``log softmax`` along ``axis``: ``s - log sum exp(s)`` with ``s = z - max(z)``
    (docs/math.md Sec. 4). z : any shape, float; returns its shape and dtype."""
    s = z - xp.max(z, axis=axis, keepdims=True)
    return s - xp.log(xp.sum(xp.exp(s), axis=axis, keepdims=True))


def logsumexp(xp, a, axis: int = -1):
    """``log sum exp`` along ``axis`` (removed), stable: ``m + log sum exp(a - m)`` with ``m = max(a)``,
    ``m = 0`` where it is not finite (so all ``-inf`` gives ``-inf``). a : any shape, float."""
    m = xp.max(a, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)
    return xp.squeeze(m + xp.log(xp.sum(xp.exp(a - m), axis=axis, keepdims=True)), axis=axis)


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
    real = False
    sample_dtype = "int64"
    #: Columns with a softmax over their levels inside real-valued data, and those levels
    #: (:class:`MixedHead`): none for the other heads.
    discrete_columns = ()
    levels = ()

    def __init__(self, xp, classes: int = 2, components: int = 1):
        message = self.check_classes(classes)
        if message:
            raise ValueError(message)
        self.xp, self.C, self.K = xp, int(classes), int(components)
        self.logits_per_variable = self.outputs_per_variable(classes, components)

    @classmethod
    def check_classes(cls, classes: int) -> str | None:
        """An error message when the head cannot model ``classes`` classes per variable, else None."""
        if classes == 0:
            return f"the {cls.name} head models classes, but the data are real-valued (classes 0): use the mog or gaussian head"
        return None if classes >= 2 else f"a head needs at least 2 classes, got {classes}"

    @staticmethod
    def outputs_per_variable(classes: int, components: int = 1) -> int:
        """Logits per variable (``components``: a mixture head's ``K``, ignored by the others)."""
        raise NotImplementedError

    def targets(self, x, inputs):
        """What :meth:`nll` compares the logits with, from data ``x`` (batch, D) ints and their
        encoded network ``inputs``."""
        raise NotImplementedError

    def nll(self, z, x):
        """Negative log-likelihood in nats, shape (batch,): :meth:`nll_per_variable` summed."""
        return self.xp.sum(self.nll_per_variable(z, x), axis=1)

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
        return self.xp.log(n) - self.xp.log(self.xp.sum(n, axis=1, keepdims=True))

    def marginal_logits(self, counts):
        """The logits, shape (D * outputs_per_variable,) float64, whose conditionals are the
        :meth:`smoothed_log_marginals` of ``counts`` (D, C): the output biases that start
        training at the marginal model (:func:`made_np.train.start_at_marginals`)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, xp, config, device=None):
        """The head of a :class:`made_np.config.MADEConfig` (its ``classes`` and ``components``);
        ``device``: where a head that keeps arrays keeps them (:class:`MixedHead`)."""
        return cls(xp, config.classes, config.components)

    def sample_at(self, z, u, cols):
        """:meth:`sample` of the variables ``cols`` (host ints, one per column of ``u``): the samplers'
        call, for a head whose variables differ (:class:`MixedHead`); the others ignore ``cols``."""
        return self.sample(z, u)

    def relabelled(self, perm):
        """The head of the data's columns permuted, ``x[:, perm]`` (the block-sparse engine's order):
        itself when its variables are all alike."""
        return self


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

    @classmethod
    def check_classes(cls, classes: int) -> str | None:
        if classes == 0:
            return super().check_classes(classes)
        if classes != 2:
            return f"the bernoulli head needs 2 classes, got {classes}: use the categorical head"
        return None

    @staticmethod
    def outputs_per_variable(classes: int, components: int = 1) -> int:
        return 1

    def targets(self, x, inputs):
        """The 0/1 values as floats of the inputs' dtype, shape (batch, D)."""
        return self.xp.astype(x, inputs.dtype)

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
        return self.xp.astype(u < sigmoid(self.xp, z), self.xp.uint8)

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
    def outputs_per_variable(classes: int, components: int = 1) -> int:
        return int(classes)

    def targets(self, x, inputs):
        """The class indices themselves, shape (batch, D), int."""
        return x

    def class_logits(self, z):
        """``z`` viewed as (batch, D, C)."""
        return self.xp.reshape(z, (z.shape[0], -1, self.C))

    def marginal_logits(self, counts):
        """:meth:`smoothed_log_marginals` laid out variable-major, shape (D * C,) (softmax
        is unchanged by a constant per variable, so log-probabilities are logits)."""
        return self.xp.reshape(self.smoothed_log_marginals(counts), (-1,))

    def _onehot(self, x):
        """``onehot(x)``, shape (batch, D, C), bool, of class indices ``x`` (batch, D)."""
        return x[..., None] == self.xp.arange(self.C, device=backend.device(x))

    def nll_per_variable(self, z, x):
        """``-log softmax(z_d)[x_d]`` in nats, shape (batch, D).

        Parameters
        ----------
        z : array, shape (batch, D*C), float
            Logits, variable-major (``z[:, d*C + c]``).
        x : array, shape (batch, D), int in 0..C-1
        """
        xp, (n, D) = self.xp, x.shape
        lp = log_softmax(xp, xp.reshape(z, (n, D, self.C)))
        return -xp.sum(lp * xp.astype(self._onehot(x), lp.dtype), axis=-1)

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
        xp, (n, D) = self.xp, x.shape
        lp = log_softmax(xp, xp.reshape(z, (n, D, self.C)))
        onehot = xp.astype(self._onehot(x), lp.dtype)
        nll = -xp.sum(lp * onehot, axis=(1, 2))
        grad = xp.exp(lp) - onehot
        return nll, xp.astype(xp.reshape(grad, (n, D * self.C)), z.dtype, copy=False)

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
        p = xp.exp(log_softmax(xp, xp.reshape(z, (n, k, self.C))))
        below = xp.cumulative_sum(p, axis=-1) <= u[..., None]
        return xp.astype(xp.minimum(xp.count_nonzero(below, axis=-1), self.C - 1), xp.int64)


#: The bound ``L`` of the soft clamp of the log-scales, ``log sigma = L tanh(s / L)``: scales of the
#: standardised data within ``exp(+-7)`` = [9e-4, 1097] standard deviations (docs/math.md Sec. 13).
LOG_SCALE_BOUND = 7.0
#: The raw log-scale of an atom's pinned component (:meth:`made_np.model.MADE.set_standardisation`):
#: ``log sigma = L tanh(-4) = -6.995``, the narrowest scale the head gives (docs/math.md Sec. 13, "Atoms").
PINNED_RAW_SCALE = -4.0 * LOG_SCALE_BOUND
#: How far the uniforms of the inverse-CDF draws stay from 0 and 1: ``Phi^-1`` of them is +-8.2.
U_MARGIN = 2.0 ** -53
_HALF_LOG_2PI = 0.9189385332046727


def log_scale(xp, s):
    """``log sigma = L tanh(s / L)`` (:data:`LOG_SCALE_BOUND`) and its derivative ``1 - tanh^2``,
    for raw log-scales ``s`` (any shape): within ``+-L`` whatever the network outputs, so that
    ``1/sigma <= e^L`` and ``((x - mu)/sigma)^2`` stay finite in float32 (docs/math.md Sec. 13)."""
    t = xp.tanh(s * (1.0 / LOG_SCALE_BOUND))
    return LOG_SCALE_BOUND * t, 1.0 - t * t


class RealHead(Head):
    """What the real-valued heads share: data are classes 0 (real values), the targets are the
    standardised values (:meth:`made_np.model.MADE.encode`), samples are float64 drawn by the
    inverse CDF. No :meth:`class_logits` (no classes: :mod:`made_np.density` tables are for
    discrete heads only)."""

    real = True
    sample_dtype = "float64"

    @classmethod
    def check_classes(cls, classes: int) -> str | None:
        if classes != 0:
            return (f"the {cls.name} head models real-valued data (classes 0), got {classes} classes: "
                    "use the bernoulli or categorical head")
        return None

    def targets(self, x, inputs):
        """The standardised values ``x`` (batch, D) as floats of the inputs' dtype."""
        return self.xp.astype(x, inputs.dtype, copy=False)

    def class_logits(self, z):
        raise ValueError(f"the {self.name} head models real values: it has no class probabilities "
                         "(density tables are for discrete heads)")

    def marginal_counts(self, x, observed=None):
        """What :meth:`marginal_logits` takes from the training data ``x`` (N, D) float64 (and its
        host ``observed`` mask, (N, D) bool, or None): only D here, as zeros (D, 0) float64."""
        return self.xp.zeros((x.shape[1], 0), dtype=self.xp.float64, device=backend.device(x))

    def _parts(self, z):
        """``z`` (batch, k * R) as (batch, k, R): the variable-major blocks."""
        return self.xp.reshape(z, (z.shape[0], -1, self.logits_per_variable))

    def _uniform(self, u):
        """``u`` in float64 clipped into ``[U_MARGIN, 1 - U_MARGIN]``: no infinite draw."""
        return self.xp.clip(self.xp.astype(u, self.xp.float64), U_MARGIN, 1.0 - U_MARGIN)


class GaussianHead(RealHead):
    """Gaussian conditionals ``N(x_d; mu_d, sigma_d^2)`` of standardised data: two outputs per
    variable, variable-major, ``z[:, 2d] = mu_d`` and ``z[:, 2d + 1] = s_d``, the raw log-scale
    (``log sigma_d = L tanh(s_d / L)``, :func:`log_scale`; docs/math.md Sec. 13).

    Parameters
    ----------
    xp : module
    classes : int
        Must be 0 (real-valued data).
    """

    name = "gaussian"

    @staticmethod
    def outputs_per_variable(classes: int, components: int = 1) -> int:
        return 2

    def marginal_logits(self, counts):
        """Zeros (D * 2,): ``mu = 0``, ``log sigma = 0``, the standard normal, which is each
        variable's marginal moments once standardised (``counts`` (D, ...) gives only D)."""
        return self.xp.zeros(2 * counts.shape[0], dtype=self.xp.float64, device=backend.device(counts))

    def _terms(self, z, x):
        zz = self._parts(z)
        a, da = log_scale(self.xp, zz[..., 1])
        r = (x - zz[..., 0]) * self.xp.exp(-a)  # the standardised residual (x - mu) / sigma
        return r, a, da

    def nll_per_variable(self, z, x):
        """``log sigma_d + (x_d - mu_d)^2 / (2 sigma_d^2) + log(2 pi) / 2`` in nats, shape (batch, D).

        Parameters
        ----------
        z : array, shape (batch, 2 D), float
        x : array, shape (batch, D), float: standardised values (:meth:`targets`)
        """
        r, a, _ = self._terms(z, x)
        return a + 0.5 * r * r + _HALF_LOG_2PI

    def nll_and_grad(self, z, x):
        """Per-example NLL and its gradient (docs/math.md Sec. 13): ``dNLL/dmu = -(x - mu)/sigma^2``,
        ``dNLL/ds = (1 - ((x - mu)/sigma)^2) L'(s)`` with ``L'(s) = 1 - tanh^2(s / L)``.

        Parameters
        ----------
        z : array, shape (batch, 2 D), float32 or float64
        x : array, shape (batch, D), ``z``'s dtype: standardised values

        Returns
        -------
        nll : array, shape (batch,), nats per example (standardised units: the model adds the
            log-determinant)
        grad : array, shape (batch, 2 D), ``z``'s dtype, variable-major like ``z``; a fresh array.
        """
        xp = self.xp
        r, a, da = self._terms(z, x)
        nll = xp.sum(a + 0.5 * r * r + _HALF_LOG_2PI, axis=1)
        grad = xp.stack([-r * xp.exp(-a), (1.0 - r * r) * da], axis=-1)
        return nll, xp.astype(xp.reshape(grad, z.shape), z.dtype, copy=False)

    def sample(self, z, u):
        """``x = mu + sigma Phi^-1(u)`` (inverse CDF, :func:`made_np.backend.ndtri`).

        Parameters
        ----------
        z : array, shape (n, 2 k)
            Outputs of ``k`` variables, variable-major.
        u : array, shape (n, k)
            Uniform noise in [0, 1) (clipped into ``[2^-53, 1 - 2^-53]``).

        Returns
        -------
        array of float64, shape (n, k): standardised values.
        """
        zz = self._parts(self.xp.astype(z, self.xp.float64))
        return zz[..., 0] + self.xp.exp(log_scale(self.xp, zz[..., 1])[0]) * backend.ndtri(self.xp, self._uniform(u))


class MixtureHead(RealHead):
    """Mixtures of ``K`` Gaussians per variable (MADE MoG: Papamakarios et al. 2017, Sec. 3;
    RNADE, Uria et al. 2013): ``3 K`` outputs per variable, variable-major, ``z[:, 3Kd + j]``:
    the mixture logits (``j < K``), the means (``K <= j < 2K``), the raw log-scales
    (``2K <= j``; :func:`log_scale`). docs/math.md Sec. 13.

    Parameters
    ----------
    xp : module
    classes : int
        Must be 0 (real-valued data).
    components : int
        ``K >= 1``.
    """

    name = "mog"

    @staticmethod
    def outputs_per_variable(classes: int, components: int = 1) -> int:
        return 3 * int(components)

    def marginal_logits(self, counts):
        """The start, shape (D * 3K,): equal weights, log-scales 0, and means at the standard
        normal's quantiles ``Phi^-1((k + 1/2) / K)``, so that the components differ from the first
        step (``counts`` (D, ...) gives only D)."""
        xp, K, device = self.xp, self.K, backend.device(counts)
        means = backend.ndtri(xp, (xp.arange(K, dtype=xp.float64, device=device) + 0.5) / K)
        zeros = xp.zeros(K, dtype=xp.float64, device=device)
        return xp.tile(xp.concat([zeros, means, zeros]), (counts.shape[0],))

    def _blocks(self, z):
        """``z`` (batch, 3 K k) as a new contiguous (3, K, batch, k) array: logits, means, raw
        log-scales, component-major (a reduction over the K components is then K - 1 whole-array
        operations, not a reduction along a short strided axis: 30x faster at K = 5)."""
        xp, n = self.xp, z.shape[0]
        blocks = xp.permute_dims(xp.reshape(z, (n, -1, 3, self.K)), (2, 3, 0, 1))
        return xp.reshape(blocks, blocks.shape, copy=True)  # a copy, always: C order

    def _split_blocks(self, z):
        """:meth:`_blocks` as its three (K, batch, k) parts: logits, means, raw log-scales."""
        blocks = self._blocks(z)
        return blocks[0, ...], blocks[1, ...], blocks[2, ...]

    def _terms(self, z, x):
        """Log-weights, standardised residuals ``r_k``, log-scales and their derivatives, and the
        joint ``l_k = log pi_k + log N_k`` (each (K, batch, D))."""
        xp = self.xp
        w, mu, s = self._split_blocks(z)
        logpi = log_softmax(xp, w, axis=0)
        a, da = log_scale(xp, s)
        r = (x - mu) * xp.exp(-a)
        return logpi, r, a, da, logpi - a - 0.5 * r * r - _HALF_LOG_2PI

    def nll_per_variable(self, z, x):
        """``-log sum_k pi_k N(x_d; mu_k, sigma_k^2)`` in nats, shape (batch, D), by log-sum-exp.

        Parameters
        ----------
        z : array, shape (batch, 3 K D), float
        x : array, shape (batch, D), float: standardised values (:meth:`targets`)
        """
        return -logsumexp(self.xp, self._terms(z, x)[-1], axis=0)

    def nll_and_grad(self, z, x):
        """Per-example NLL and its gradient through the responsibilities
        ``rho_k = pi_k N_k / sum_j pi_j N_j`` (docs/math.md Sec. 13): ``d/dlogit_k = pi_k - rho_k``,
        ``d/dmu_k = -rho_k (x - mu_k)/sigma_k^2``, ``d/ds_k = rho_k (1 - ((x - mu_k)/sigma_k)^2) L'(s_k)``.

        Parameters
        ----------
        z : array, shape (batch, 3 K D), float32 or float64
        x : array, shape (batch, D), ``z``'s dtype: standardised values

        Returns
        -------
        nll : array, shape (batch,), nats per example (standardised units)
        grad : array, shape (batch, 3 K D), ``z``'s dtype, variable-major like ``z``; a fresh array.
        """
        xp = self.xp
        logpi, r, a, da, l = self._terms(z, x)
        lse = logsumexp(self.xp, l, axis=0)
        rho = xp.exp(l - lse)
        grad = xp.stack([xp.exp(logpi) - rho, -rho * r * xp.exp(-a), rho * (1.0 - r * r) * da])  # (3, K, batch, D)
        return -xp.sum(lse, axis=1), xp.astype(xp.reshape(xp.permute_dims(grad, (2, 3, 0, 1)), z.shape), z.dtype)

    def sample(self, z, u):
        """Inverse-CDF draws: the component ``k`` with ``F_(k-1) <= u < F_k`` (cumulative weights),
        then ``x = mu_k + sigma_k Phi^-1(u')`` with the residual uniform ``u' = (u - F_(k-1)) / pi_k``.

        Parameters
        ----------
        z : array, shape (n, 3 K k)
            Outputs of ``k`` variables, variable-major.
        u : array, shape (n, k)
            Uniform noise in [0, 1).

        Returns
        -------
        array of float64, shape (n, k): standardised values.
        """
        xp, K = self.xp, self.K
        w, mu, s = self._split_blocks(xp.astype(z, xp.float64))
        p = xp.exp(log_softmax(xp, w, axis=0))
        F = xp.cumulative_sum(p, axis=0)
        u = xp.astype(u, xp.float64)
        k = xp.minimum(xp.count_nonzero(F <= u, axis=0), K - 1)[None, ...]  # (1, n, k): the component drawn

        def at_k(a):
            return xp.take_along_axis(a, k, axis=0)[0, ...]
        pk, sk = at_k(p), at_k(s)
        spread = xp.exp(log_scale(xp, sk)[0]) * backend.ndtri(xp, self._uniform((u - (at_k(F) - pk)) / pk))
        return at_k(mu) + xp.where(sk == PINNED_RAW_SCALE, 0.0, spread)  # an atom's component draws its mean


class MixedHead(RealHead):
    """Conditionals of two kinds in one model (docs/math.md Sec. 13, "Mixed conditionals"): a
    softmax over the sorted levels of each discrete column (:attr:`discrete_columns`, e.g.
    diabetes' ``sex``, levels (1.0, 2.0)) and a mixture of ``K`` Gaussians
    (:class:`MixtureHead`'s functions) for every other column of the standardised data.

    Every variable has ``R = max(3 K, largest number of levels)`` outputs, variable-major, so that
    the masks' ``out_repeat`` is uniform: a real column reads the first ``3 K`` of its block as
    :class:`MixtureHead` does, a discrete column with ``L`` levels the first ``L`` as softmax logits
    (:func:`log_softmax`). The other outputs of a block are unused: they enter no
    NLL and get a zero gradient. The targets of a discrete column are its level indices; its values
    enter the network raw (the model keeps its shift 0 and scale 1, so it adds nothing to the
    log-determinant: its NLL is a probability, in nats).

    Parameters
    ----------
    xp : module
    classes : int
        Must be 0 (real-valued data).
    components : int
        ``K >= 1`` of the real columns.
    D : int
        Number of variables.
    discrete_columns : tuple of int
        Increasing indices in 0..D-1 (validated by :class:`made_np.config.MADEConfig`).
    levels : tuple of tuple of float
        Each discrete column's levels, strictly increasing, finite.

    Raises
    ------
    ValueError
        No discrete column (``levels`` empty).

    Attributes
    ----------
    level_values : array, shape (k, L), float64
        The levels of the ``k`` discrete columns, ``+inf`` past a column's own (L: the most levels).
    """

    name = "mixed"

    def __init__(self, xp, classes: int = 0, components: int = 1, D: int = 1, discrete_columns=(), levels=(),
                 device=None):
        super().__init__(xp, classes, components)
        np = backend.get_xp("cpu")  # the host's array module: the tables of the columns' kinds
        self.D, self.discrete_columns, self.levels = int(D), tuple(discrete_columns), tuple(map(tuple, levels))
        self.device = device
        if not self.levels:
            raise ValueError("the mixed head needs discrete columns and their levels (MADEConfig.discrete_columns, "
                             "levels); with none use the mog head")
        L = max(len(v) for v in self.levels)
        self.logits_per_variable = max(3 * self.K, L)
        self._is_discrete = np.zeros(self.D, dtype=bool)
        self._is_discrete[list(self.discrete_columns)] = True
        self._row = np.cumsum(self._is_discrete) - 1  # a discrete column's row in the level tables
        real = np.flatnonzero(~self._is_discrete)
        values = np.full((len(self.levels), L), np.inf)
        for j, v in enumerate(self.levels):  # once, at construction: a loop over the discrete columns
            values[j, :len(v)] = v

        def dev(a, dtype=None):
            return xp.asarray(np.asarray(a, dtype=dtype), device=device)
        self._J, self._I = dev(self.discrete_columns, np.int64), dev(real, np.int64)
        # column d of concat([real columns, discrete columns], axis=1) is at _order[d]
        self._order = dev(np.argsort(np.concatenate([real, self.discrete_columns])), np.int64)
        self.level_values, self._valid = dev(values), dev(np.isfinite(values))
        self._top = dev([len(v) - 1 for v in self.levels], np.int64)
        self._mog = MixtureHead(xp, 0, components)

    @classmethod
    def from_config(cls, xp, config, device=None):
        return cls(xp, config.classes, config.components, config.D, config.discrete_columns, config.levels, device)

    @staticmethod
    def outputs_per_variable(classes: int, components: int = 1) -> int:
        """At least ``3 K`` (the levels may ask for more: :attr:`logits_per_variable`)."""
        return 3 * int(components)

    def relabelled(self, perm):
        """The head of ``x[:, perm]``: new column ``d`` is column ``perm[d]``."""
        np = backend.get_xp("cpu")
        inv = np.argsort(np.asarray(perm))
        pairs = sorted((int(inv[d]), v) for d, v in zip(self.discrete_columns, self.levels))
        return MixedHead(self.xp, 0, self.K, self.D, [d for d, _ in pairs], [v for _, v in pairs], self.device)

    def _columns(self, real, discrete, axis: int = 1):
        """The real columns' ``real`` and the discrete columns' ``discrete`` (each with its columns
        on ``axis``) as one array in the order of the columns (axis 0 or 1)."""
        return self.xp.take(self.xp.concat([real, discrete], axis=axis), self._order, axis=axis)

    def _padded(self, a):
        """``a`` (..., m) zero-padded to the R outputs of a variable, (..., R)."""
        xp, R = self.xp, self.logits_per_variable
        if a.shape[-1] == R:
            return a
        return xp.concat([a, xp.zeros((*a.shape[:-1], R - a.shape[-1]), dtype=a.dtype, device=backend.device(a))],
                         axis=-1)

    def level_index(self, x):
        """The level index of every discrete column of ``x`` (batch, D) float64, shape (batch, k)
        int64: how many of the column's levels lie below its value (a value among them, as
        :func:`made_np.checks.check_data` assures, is its own index)."""
        below = self.xp.count_nonzero(self.xp.take(x, self._J, axis=1)[..., None] > self.level_values, axis=-1)
        return self.xp.minimum(below, self._top)

    def targets(self, x, inputs):
        """The standardised values (batch, D) of the inputs' dtype, the discrete columns' replaced by
        their level indices (:meth:`level_index`)."""
        xp = self.xp
        t = xp.astype(x, inputs.dtype)
        return self._columns(xp.take(t, self._I, axis=1), xp.astype(self.level_index(x), inputs.dtype))

    def _split(self, z):
        """``z`` (batch, D R) as the real columns' mixture outputs (batch, |I| 3K) and the discrete
        columns' log-probabilities of their levels (batch, k, L), ``-inf`` beyond a column's levels."""
        xp = self.xp
        zz = xp.reshape(z, (z.shape[0], -1, self.logits_per_variable))
        zr = xp.reshape(xp.take(zz, self._I, axis=1)[:, :, :3 * self.K], (z.shape[0], -1))
        L = self.level_values.shape[1]
        lp = log_softmax(xp, xp.where(self._valid, xp.take(zz, self._J, axis=1)[:, :, :L], -xp.inf))
        return zr, lp

    def _picked(self, lp, x):
        """``log p(x_d)`` (batch, k) of the discrete columns' level indices in ``x`` (:meth:`targets`)."""
        t = self.xp.astype(self.xp.take(x, self._J, axis=1), self.xp.int64)
        return self.xp.take_along_axis(lp, t[..., None], axis=-1)[..., 0], t

    def nll_per_variable(self, z, x):
        """The mixture NLL of each real column and ``-log softmax(z_d)[x_d]`` of each discrete one, in
        nats, shape (batch, D) (standardised units for the real columns).

        Parameters
        ----------
        z : array, shape (batch, D R), float
        x : array, shape (batch, D), float: :meth:`targets`
        """
        zr, lp = self._split(z)
        real = self._mog.nll_per_variable(zr, self.xp.take(x, self._I, axis=1))
        return self._columns(real, self.xp.astype(-self._picked(lp, x)[0], real.dtype))

    def nll_and_grad(self, z, x):
        """Per-example NLL and its gradient: :meth:`MixtureHead.nll_and_grad` on the real columns,
        ``softmax(z_d) - onehot(x_d)`` on a discrete column's levels, 0 on the unused outputs.

        Parameters
        ----------
        z : array, shape (batch, D R), float32 or float64
        x : array, shape (batch, D), ``z``'s dtype: :meth:`targets`

        Returns
        -------
        nll : array, shape (batch,), nats per example (standardised units)
        grad : array, shape (batch, D R), ``z``'s dtype, variable-major like ``z``; a fresh array.
        """
        xp, n = self.xp, z.shape[0]
        zr, lp = self._split(z)
        nll, gr = self._mog.nll_and_grad(zr, xp.take(x, self._I, axis=1))
        picked, t = self._picked(lp, x)
        L = lp.shape[-1]
        onehot = t[..., None] == xp.arange(L, device=backend.device(t))
        discrete = xp.astype(xp.exp(lp) - xp.astype(onehot, lp.dtype), z.dtype)
        grad = self._columns(self._padded(xp.reshape(gr, (n, -1, 3 * self.K))), self._padded(discrete))
        return nll - xp.sum(picked, axis=1), xp.reshape(grad, (n, self.D * self.logits_per_variable))

    def sample_at(self, z, u, cols):
        """Draws of the variables ``cols`` (host ints (k,)): :meth:`MixtureHead.sample` for a real
        column (standardised), the inverse CDF of the softmax over its levels for a discrete one (the
        level's value).

        Parameters
        ----------
        z : array, shape (n, k R)
        u : array, shape (n, k): uniform noise in [0, 1)
        cols : sequence of int, length k

        Returns
        -------
        array of float64, shape (n, k).
        """
        np = backend.get_xp("cpu")
        xp, (n, k) = self.xp, u.shape
        cols = np.asarray(cols, dtype=np.int64)
        zz = xp.reshape(xp.astype(z, xp.float64), (n, k, self.logits_per_variable))
        disc = self._is_discrete[cols]
        real_at, disc_at = np.flatnonzero(~disc), np.flatnonzero(disc)

        def dev(a):
            return backend.to_device(a, xp, device=backend.device(z))
        real, d = dev(real_at), dev(disc_at)
        parts = []
        if real_at.size:
            parts.append(self._mog.sample(xp.reshape(xp.take(zz, real, axis=1)[:, :, :3 * self.K], (n, -1)),
                                          xp.take(u, real, axis=1)))
        if disc_at.size:
            rows = dev(self._row[cols[disc]])
            L = self.level_values.shape[1]
            valid = xp.take(self._valid, rows, axis=0)
            lp = log_softmax(xp, xp.where(valid, xp.take(zz, d, axis=1)[:, :, :L], -xp.inf))
            below = xp.cumulative_sum(xp.exp(lp), axis=-1) <= xp.take(u, d, axis=1)[..., None]
            index = xp.minimum(xp.count_nonzero(below, axis=-1), xp.take(self._top, rows))
            values = xp.broadcast_to(xp.take(self.level_values, rows, axis=0)[None, ...], (n, *lp.shape[1:]))
            parts.append(xp.take_along_axis(values, index[..., None], axis=-1)[..., 0])
        x = xp.concat(parts, axis=1)  # the real variables, then the discrete ones: back in the order of cols
        return x if not (real_at.size and disc_at.size) else xp.take(x, dev(np.argsort(np.concatenate([real_at, disc_at]))), axis=1)

    def sample(self, z, u):
        """:meth:`sample_at` of the first ``k`` variables (``z`` (n, k R), ``u`` (n, k))."""
        return self.sample_at(z, u, range(u.shape[1]))

    def marginal_counts(self, x, observed=None):
        """How many rows of ``x`` (N, D) float64 have each discrete column at each level, shape
        (D, L) float64 (rows of the real columns 0); missing entries (``observed`` False, host
        (N, D)) are not counted."""
        xp, L = self.xp, self.level_values.shape[1]
        at = xp.take(x, self._J, axis=1)[..., None]
        hit = (self.level_index(x)[..., None] == xp.arange(L, device=backend.device(x))) & (self.level_values == at)
        if observed is not None:
            hit &= xp.take(backend.to_device(observed, xp, device=backend.device(x)), self._J, axis=1)[..., None]
        counts = xp.sum(xp.astype(hit, xp.float64), axis=0)
        return self._columns(xp.zeros((self._I.shape[0], L), dtype=xp.float64, device=backend.device(x)), counts,
                             axis=0)

    def marginal_logits(self, counts):
        """The start, shape (D R,): :meth:`MixtureHead.marginal_logits` for the real columns, and each
        discrete column's smoothed log-frequencies ``log (n_l + 1/2) - log (N + L/2)`` of its ``L``
        levels (as :meth:`Head.smoothed_log_marginals`), 0 on the unused outputs."""
        xp = self.xp
        real = self._mog.marginal_logits(xp.take(counts, self._I, axis=0))
        n = xp.where(self._valid, xp.take(counts, self._J, axis=0) + 0.5, 1.0)
        log_p = xp.log(n) - xp.log(xp.sum(xp.where(self._valid, n, 0.0), axis=1, keepdims=True))
        out = self._columns(self._padded(xp.reshape(real, (-1, 3 * self.K))),
                            self._padded(xp.where(self._valid, log_p, 0.0)), axis=0)
        return xp.reshape(out, (-1,))


#: The heads, by name. A new head is one class above and one line here. (The first that accepts
#: a data set's classes is its default, :func:`default_head`: mog before gaussian for real values.)
HEADS = {cls.name: cls for cls in (BernoulliHead, CategoricalHead, MixtureHead, GaussianHead, MixedHead)}


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
        raise ValueError(f"no head models {classes!r} classes per variable: data need at least 2 classes "
                         "(or 0: real values)")
    return name


def make_head(name: str, xp, classes: int = 2, components: int = 1):
    """Build a head by name (see :data:`HEADS`) for ``classes`` classes per variable (0: real
    values) and, for a mixture, ``components`` Gaussians per variable.

    Raises
    ------
    ValueError
        Unknown name, or a number of classes the head cannot model.
    """
    return head_class(name)(xp, classes, components)
