"""A scikit-learn density estimator around MADE: :class:`MADEDensity`.

It follows the conventions of :class:`sklearn.neighbors.KernelDensity` and
:class:`sklearn.mixture.GaussianMixture`: ``fit(X)`` learns a density of the rows
of ``X``, ``score_samples(X)`` returns ``log p(x)`` per row (nats), ``score(X)``
their mean (so :class:`sklearn.model_selection.GridSearchCV` selects by held-out
log-likelihood) and ``sample(n)`` draws new rows.

The data are discrete: every column holds integers ``0..C-1``. Binary data
(``C == 2``) get the Bernoulli head with 0/1 inputs; other data the categorical
head with one-hot inputs, as the ``made-np train`` command does. Real-valued data (a
float ``X`` holding fractions, or ``head="mog"``/``"gaussian"``) get a mixture of Gaussians
per variable (``n_classes_ == 0``), standardised inside the model. The model is
trained on the CPU with :func:`made_np.train.fit` (early stopping on a seeded
validation split), and nothing is printed.
"""
from __future__ import annotations

import types

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

try:
    from sklearn.utils.validation import validate_data  # scikit-learn >= 1.6, as are __sklearn_tags__
except ImportError as exc:  # setup.cfg still allows scikit-learn >= 1.1
    raise ImportError("made_np.estimator needs scikit-learn >= 1.6 (validate_data, __sklearn_tags__); "
                      "upgrade with: pip install -U scikit-learn") from exc

from . import backend
from .checks import check_bool, check_choice, check_data_or_missing, check_int, check_unmasked
from .conditional import DISCRETE_ESTIMATES, Imputation, impute as _impute
from .data import find_discrete_columns, is_real
from .config import MAX_CLASSES, MAX_EVAL_MASKS, UNLIMITED, MADEConfig, TrainConfig
from .heads import HEADS
from .limits import Part, check_api
from .model import MADE
from .optim import OPTIMIZERS
from .sampling import sample as _sample
from .train import _rows_nll, fit as _fit
_SEED_HIGH = 2**31 - 1


def _seeds(random_state, n: int) -> list:
    """``n`` integer seeds in ``[0, 2**31 - 1)`` drawn from ``random_state``.

    ``None``, an int or a :class:`numpy.random.RandomState` go through
    :func:`sklearn.utils.check_random_state` (which does not take a
    :class:`numpy.random.Generator` in scikit-learn 1.9); a Generator is drawn from directly.
    A RandomState or Generator passed in advances, as scikit-learn estimators do.
    """
    if isinstance(random_state, np.random.Generator):
        return [int(s) for s in random_state.integers(0, _SEED_HIGH, size=n)]
    return [int(s) for s in check_random_state(random_state).randint(0, _SEED_HIGH, size=n)]


def _dense(X):
    """``X`` checked by ``validate_data(accept_sparse=...)``, dense: a scipy.sparse matrix (a binary
    bag of words from ``CountVectorizer(binary=True)``) is densified, as scikit-learn's discrete models
    (``BernoulliNB``) take it, once the dense copy is known to fit the memory limit
    (:func:`made_np.limits.check_api`): a MADE's first layer reads every entry of every row."""
    if not hasattr(X, "toarray"):
        return X
    check_api([Part("X", f"a scipy.sparse X of shape {X.shape} densified", X.shape[0] * X.shape[1] * X.dtype.itemsize)])
    return X.toarray()


class MADEDensity(BaseEstimator):
    """Density estimation of discrete or real-valued vectors with MADE (Germain et al. 2015).

    Parameters
    ----------
    hidden : tuple of int, default=(500,)
        Widths of the hidden layers, e.g. ``(500,)`` or ``(500, 500)``.
    num_masks : int, inf or None, default=None
        Size of the bank of masks cycled through in training (paper Algorithm 1):
        1 is a single fixed mask, ``float("inf")`` (or ``"inf"``) means no limit (a fresh mask per
        update; 0, its older spelling, means the same);
        ``None``: the library's recipe (:func:`made_np.config.default_num_masks`: a bank
        of 16 for fewer than 10,000 training rows, else 1). Unlike ``made-np train`` and
        :func:`made_np.fit_selected`, the estimator does not choose between a bank of 16 and a
        fresh mask per minibatch by validation: it trains the one configuration it is given (a
        scikit-learn search such as ``GridSearchCV`` over ``num_masks`` does the choosing).
        With more than one mask, :meth:`score_samples` and :meth:`sample` use the
        mixture over ``eval_masks`` masks (paper Sec. 4.2).
    order_agnostic : bool, default=True
        Masks beyond mask 0 draw a new ordering of the variables (paper Sec. 4.1).
        ``None``, here and for ``connectivity_agnostic`` and ``ordering``: the recipe's.
    connectivity_agnostic : bool, default=True
        Masks beyond mask 0 draw new hidden degrees (paper Sec. 4.2).
    direct : bool or None, default=None
        Direct input-to-output connections (paper eq. 11); ``None``: the recipe's (on).
    ordering : {"natural", "random"}, default="natural"
        Ordering of the variables in mask 0.
    epochs : int or None, default=None
        Most passes over the training set; ``None``: the recipe's budget of about
        25,000 updates (:func:`made_np.config.budget_epochs`), as ``made-np train``.
        The learning rate follows a cosine schedule down to 0 over them, and early
        stopping usually ends training sooner.
    batch_size : int, default=100
        Examples per minibatch.
    lr : float or None, default=None
        Base learning rate; ``None``: the recipe's (2e-3 for adam, 1e-2 for adagrad and sgd).
    optimizer : {"adam", "adagrad", "sgd"}, default="adam"
    patience : int or None, default=None
        Early stopping: stop after this many epochs without a better validation
        log-likelihood; 0 never stops early. In every case the weights of the best
        validation epoch are kept. ``None``: the recipe's (:func:`made_np.config.default_patience`:
        30, and for real values at least 500 updates), as ``made-np train``.
    validation_fraction : float, default=0.1
        Fraction of the rows of ``X`` held out (seeded by ``random_state``) for
        early stopping, in ``[0, 1)``; at least one row when positive. With 0,
        all rows train and the training rows also serve as validation rows.
    eval_masks : int or None, default=None
        Masks in the mixture of :meth:`score_samples` and :meth:`sample` (and in
        the validation ensemble) when the bank has more than one mask;
        ``None``: the whole bank, at most 1000 masks.
    head : {"bernoulli", "categorical", "mog", "gaussian", "mixed"} or None, default=None
        The conditionals; ``None``: bernoulli for 0/1 data, categorical for other whole
        numbers, mog (a mixture of Gaussians) for real values (a float ``X`` with fractions), mixed
        when some of their columns are discrete (``discrete_columns``).
        mog and gaussian model ``X`` as real values (float64, standardised inside the model);
        their NLLs are in the data's units.
    components : int or None, default=None
        Gaussians per variable of the mog head; ``None``: the library's default.
    discrete_columns : "auto", "none", sequence of int or (), default="auto"
        Real-valued ``X``: the columns (counted from 0) that get a softmax over their distinct values
        (the mixed head, docs/math.md Sec. 13); "auto": those of at most 10 distinct values
        (:func:`made_np.data.find_discrete_columns`), unless ``head`` names another head; ``()`` or
        "none" (as ``--discrete-columns none``): every column continuous.
    atoms : bool, default=True
        Real-valued ``X`` with a mixture head: a component pinned on each value that many rows of a
        column hold exactly (a point mass, such as the zeros of a zero-inflated column;
        docs/math.md Sec. 13.2); False (as ``--no-atoms``): none.
    random_state : int, numpy.random.RandomState, numpy.random.Generator or None, default=None
        Seeds the weights, the masks, the validation split and the shuffling
        (three integers drawn with :func:`sklearn.utils.check_random_state`, or
        from the Generator itself).
        Pass an int for reproducible fits.

    Attributes
    ----------
    model_ : made_np.model.MADE
        The trained model (float32, on the CPU), mask 0 selected.
    n_features_in_ : int
        Number of variables ``D`` seen in :meth:`fit`.
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        Column names, when ``X`` in :meth:`fit` is a DataFrame with string column names.
    n_classes_ : int
        Classes per variable ``C``: ``max(X) + 1`` over the training data, at least 2.
        2 means binary data (Bernoulli head), more the categorical head; 0 real values.
    history_ : dict
        What :func:`made_np.train.fit` returned: ``rows`` (one dict per epoch with
        ``train_nll`` and ``valid_nll`` in nats), ``best_epoch``,
        ``best_valid_nll``, ``stop_reason``, ...

    Examples
    --------
    >>> import numpy as np
    >>> from made_np.estimator import MADEDensity
    >>> X = (np.random.default_rng(0).random((200, 8)) < 0.3).astype(int)
    >>> est = MADEDensity(hidden=(16,), epochs=3, random_state=0).fit(X)
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> est.sample(5, random_state=0).shape
    (5, 8)
    """

    def __init__(self, hidden=(500,), num_masks=None, order_agnostic=True, connectivity_agnostic=True,
                 direct=None, ordering="natural", epochs=None, batch_size=100, lr=None,
                 optimizer="adam", patience=None, validation_fraction=0.1, eval_masks=None,
                 random_state=None, head=None, components=None, discrete_columns="auto", atoms=True):
        self.hidden = hidden
        self.num_masks = num_masks
        self.order_agnostic = order_agnostic
        self.connectivity_agnostic = connectivity_agnostic
        self.direct = direct
        self.ordering = ordering
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.eval_masks = eval_masks
        self.random_state = random_state
        self.head = head
        self.components = components
        self.discrete_columns = discrete_columns
        self.atoms = atoms

    def __sklearn_tags__(self):
        """Declare the input: whole numbers (categorical), sparse matrices taken (densified); negative
        numbers only for a real head (mog, gaussian, mixed) or the default head (data.is_real takes
        them for measurements), a named discrete head wanting classes 0..C-1.

        scikit-learn's estimator checks then feed ``round(X - X.min())`` as int32
        instead of Gaussian floats to a model of classes, data it can take.
        """
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = not self._real_head()
        tags.input_tags.positive_only = isinstance(self.head, str) and self.head in HEADS and not self._real_head()
        tags.input_tags.sparse = True  # densified (_dense)
        return tags

    def _real_head(self) -> bool:
        """Whether ``head`` names a real-valued head (mog, gaussian, mixed)."""
        return isinstance(self.head, str) and self.head in HEADS and HEADS[self.head].real

    def __getstate__(self):
        """Pickle the fitted model as its configuration and host parameters.

        A :class:`~made_np.model.MADE` holds its array module (NumPy), which does not
        pickle; it is rebuilt by :meth:`__setstate__`.
        """
        state = super().__getstate__()
        model = state.get("model_")
        if isinstance(model, MADE):
            state = dict(state)
            state["model_"] = {"config": model.config.to_dict(), "params": model.state_dict(),
                               "standardisation": [backend.to_host(model.shift), backend.to_host(model.scale)]}
        return state

    def __setstate__(self, state):
        model = state.get("model_")
        if isinstance(model, dict):
            state = dict(state)
            rebuilt = MADE(MADEConfig.from_dict(model["config"]), backend.get_xp("cpu"), draw_weights=False)
            rebuilt.load_state_dict(model["params"])
            if "standardisation" in model:
                rebuilt.set_standardisation(*model["standardisation"])
            state["model_"] = rebuilt
        super().__setstate__(state)

    # ------------------------------------------------------------------ data
    def _real(self, X) -> bool:
        """Whether ``X`` of :meth:`fit` is real-valued: a real head is named, else
        :func:`made_np.data.is_real`."""
        return HEADS[self.head].real if isinstance(self.head, str) and self.head in HEADS else is_real([X])

    def _check_X(self, X, reset: bool) -> np.ndarray:
        """Validate ``X`` and return it as a C-contiguous integer array (uint8, int32 or int64), or
        float64 for real-valued data (fractions in a float ``X`` in :meth:`fit`, a real head)."""
        check_unmasked(X, "X")
        X = _dense(validate_data(self, X, reset=reset, dtype="numeric", ensure_all_finite=False,
                                 accept_sparse=("csr", "csc", "coo"), ensure_min_samples=2 if reset else 1))
        bad = np.argwhere(~np.isfinite(X)) if X.dtype.kind in "fc" else ()
        if len(bad):  # scikit-learn's words advise gradient boosting; these name the entry and the fix
            r, c = bad[0]
            raise ValueError(f"X has {X[r, c]} at row {r}, column {c}: MADEDensity needs finite values; fill the "
                             "missing entries (NaN) with MADEImputer, or drop those rows")
        if self._real(X) if reset else self.n_classes_ == 0:
            return np.ascontiguousarray(X, dtype=np.float64)
        if X.dtype.kind == "c" or X.dtype.kind == "f" and not np.all(X == np.floor(X)):
            raise ValueError("MADEDensity needs integer-valued data (classes 0..C-1 in every column); "
                             "X has non-integer values")
        if X.size and X.min() < 0:
            raise ValueError(f"Negative values in data passed to MADEDensity: it needs classes 0..C-1, "
                             f"X has the value {X.min()}")
        top = int(X.max()) if X.size else 0
        dtype = np.uint8 if top < 256 else (np.int32 if top < 2**31 else np.int64)
        return np.ascontiguousarray(X, dtype=dtype)

    def _check_fitted_X(self, X) -> np.ndarray:
        """``X`` of a fitted estimator, checked by :meth:`_check_X`, with no class above those seen in fit."""
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        if self.n_classes_ and np.nanmax(X, initial=0) >= self.n_classes_:
            raise ValueError(f"X has the value {int(np.nanmax(X))}, outside the classes 0..{self.n_classes_ - 1} "
                             f"seen in fit")
        return X

    def _split(self, X, seed: int):
        """Seeded train / validation rows of ``X``."""
        f = self.validation_fraction
        if not (isinstance(f, (int, float, np.integer, np.floating)) and 0 <= f < 1):
            raise ValueError(f"validation_fraction must be in [0, 1), got {f!r}")
        n = X.shape[0]
        n_valid = min(max(1, int(round(f * n))), n - 1) if f > 0 else 0
        if n_valid == 0:
            return X, X
        perm = np.random.default_rng(seed).permutation(n)
        return X[perm[n_valid:]], X[perm[:n_valid]]

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Train a MADE on the rows of ``X``.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
            A sparse matrix is densified (refused, a ``LimitError``, when the dense copy would pass the
            memory limit). Integer-valued data (any integer, bool or float dtype holding whole
            numbers): class ``0..C-1`` in every column, with ``C = max(X) + 1``
            (at least 2, at most 256); or real values (floats holding a fraction, or
            any numbers with ``head`` mog or gaussian), finite, no column constant.
            ``n_samples >= 2``.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : MADEDensity
            The fitted estimator.

        Raises
        ------
        ValueError
            ``X`` is not 2-D, has fewer than 2 rows, has NaN/inf, non-integer or
            negative values or values above 255, or a parameter is invalid (e.g. ``hidden`` widths < 1,
            an unknown ``optimizer``, ``validation_fraction`` outside [0, 1)).
        """
        X = self._check_X(X, reset=True)
        model_seed, train_seed, split_seed = _seeds(self.random_state, 3)
        real = self._real(X)
        top = 0 if real else int(np.nanmax(X))  # NaN: a missing entry (MADEImputer)
        classes = 0 if real else max(2, top + 1)
        if classes > MAX_CLASSES:
            raise ValueError(f"X has the value {top}: {type(self).__name__} models at most {MAX_CLASSES} classes "
                             f"(values 0..{MAX_CLASSES - 1}) per column; recode or bin the data")
        hidden = self.hidden
        if isinstance(hidden, (str, bytes)) or not (isinstance(hidden, (int, np.integer)) or hasattr(hidden, "__iter__")):
            raise ValueError(f"hidden must be an integer or a sequence of integers (layer widths), got {hidden!r}")
        hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
        if self.eval_masks is not None:  # named here: it also sets the validation ensemble
            check_int("eval_masks", self.eval_masks, 1, MAX_EVAL_MASKS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        train, valid = self._split(X, split_seed)
        data = types.SimpleNamespace(train=train, valid=valid, name=None, D=X.shape[1], classes=classes,
                                     discrete_columns=find_discrete_columns(X) if real else ())
        # the library's recipe, as made-np train applies it; None leaves a choice to the recipe. The
        # parameters go to the configurations as they are, whose checks refuse 2.9 epochs or "no"
        # for a flag (int() and bool() would have made them 2 and True)
        auto = isinstance(self.discrete_columns, str) and self.discrete_columns == "auto"
        mcfg = MADEConfig.for_data(data, hidden=hidden, ordering=self.ordering, num_masks=self.num_masks,
                                   order_agnostic=self.order_agnostic, connectivity_agnostic=self.connectivity_agnostic,
                                   direct=self.direct, seed=model_seed, head=self.head, components=self.components,
                                   discrete_columns=None if auto else self.discrete_columns,
                                   **({} if check_bool("atoms", self.atoms) else {"atoms": (), "atom_columns": ()}))
        cfg = TrainConfig.for_data(data, epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer,
                                   lr=self.lr, patience=self.patience, valid_masks=self.eval_masks,
                                   eval_masks=self.eval_masks, seed=train_seed)
        model = MADE(mcfg, backend.get_xp("cpu"))
        self.history_, self.n_classes_, self.model_ = _fit(model, data, cfg), classes, model  # once fit succeeded
        return self

    # ------------------------------------------------------------------ scoring
    def _mask_indices(self) -> list:
        """Masks of the mixture (``[0]`` for a single fixed mask)."""
        return [0] if self.model_.config.num_masks == 1 else self.model_.eval_mask_indices(self.eval_masks)

    def score_samples(self, X):
        """Log-density of each row under the model.

        With a bank of masks this is the mixture over :attr:`eval_masks` masks,
        ``log p(x) = logsumexp_k log p_k(x) - log K`` (paper Sec. 4.2); with a
        single mask, ``log p(x)`` under it. A row with missing entries (NaN, which
        :class:`MADEImputer` accepts) scores the marginal of its observed entries,
        ``log p(x_o)``, under each mask made observed-first (docs/math.md Sec. 12), as
        :func:`made_np.evaluate` scores it.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features_in_)
            Integer-valued data with values in ``0..n_classes_-1``; real values when
            ``n_classes_ == 0``; NaN where missing for :class:`MADEImputer`.

        Returns
        -------
        log_density : ndarray of shape (n_samples,), float64
            ``log p(x)`` in nats (computed in float32); a log-density in the data's own units for
            real values (docs/math.md Sec. 13).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Called before :meth:`fit`.
        ValueError
            Wrong number of columns, NaN/inf, non-integer or negative values, or a
            value ``>= n_classes_`` (a class not seen in training).

        Notes
        -----
        ``n_classes_`` comes from the training data: in cross-validation of
        categorical data, a held-out fold holding a value above every value of its
        training folds raises here (GridSearchCV then records ``error_score``).
        """
        X, model = self._check_fitted_X(X), self.model_
        if X.dtype.kind == "f" and np.isnan(X).any():  # rows with missing entries (MADEImputer): log p(x_o)
            x, seen = check_data_or_missing(model, backend.to_device(X, model.xp), "X")  # evaluate's checks
            return -backend.to_host(_rows_nll(model, x, self._mask_indices(), 1000, None, seen)).astype(np.float64)
        return -backend.to_host(model.ensemble_nll(backend.to_device(X, model.xp), self._mask_indices())).astype(np.float64)

    def score(self, X, y=None):
        """Mean log-likelihood of the rows of ``X`` (nats per row).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features_in_)
            As :meth:`score_samples`.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        log_likelihood : float
            ``mean(score_samples(X))``: higher is better, as model selection expects.

        Raises
        ------
        sklearn.exceptions.NotFittedError, ValueError
            As :meth:`score_samples`.
        """
        return float(np.mean(self.score_samples(X)))

    # ------------------------------------------------------------------ sampling
    def sample(self, n_samples=1, random_state=None):
        """Draw rows from the model (ancestral sampling).

        With a bank of masks, every row is drawn from a mask picked uniformly
        among the :attr:`eval_masks` masks of the mixture that
        :meth:`score_samples` evaluates.

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows, >= 1.
        random_state : int, numpy.random.RandomState, numpy.random.Generator or None, default=None
            Seeds the draw (an integer seed is drawn from it, as in :meth:`fit`).
            ``None``: NumPy's global RandomState, a different draw every call.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_), int64
            Values in ``0..n_classes_-1``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Called before :meth:`fit`.
        ValueError
            ``n_samples`` is not a positive integer.
        """
        check_is_fitted(self)
        n_samples = check_int("n_samples", n_samples, 1)
        (seed,) = _seeds(random_state, 1)
        out = _sample(self.model_, n_samples, seed=seed, masks=self._mask_indices())
        return backend.to_host(out).astype(np.float64 if self.n_classes_ == 0 else np.int64)


class MADEImputer(OneToOneFeatureMixin, TransformerMixin, MADEDensity):
    """Fill missing entries (NaN) of discrete or real-valued vectors with MADE: a scikit-learn transformer.

    ``fit(X)`` trains an order-agnostic MADE on the rows of ``X``, which may hold NaN: each
    row's loss is ``-log p(x_o)`` of its observed entries under an observed-first mask
    (docs/math.md Sec. 12, "Rows with missing entries"). ``transform(X)`` fills the NaN of
    every row with the posterior mode (classes) or mean (real values, a mixed head's discrete
    columns included; see ``discrete``) of its exact conditional given the row's observed entries
    (:func:`made_np.conditional.impute`: the most frequent value or the mean of ``draws``
    completions drawn from the mixture of ``masks`` observed-first masks), and leaves the observed entries
    as they are. Usable in a :class:`sklearn.pipeline.Pipeline` before any estimator.

    Parameters
    ----------
    hidden, order_agnostic, connectivity_agnostic, direct, ordering, epochs, batch_size, lr, optimizer, patience, validation_fraction, eval_masks, random_state, head, components, discrete_columns, atoms
        As :class:`MADEDensity` (``random_state`` also seeds the completions of :meth:`transform`).
    num_masks : int or inf, default=inf
        As :class:`MADEDensity`; ``inf`` (a fresh ordering at every update) by default: imputing any
        pattern of missing entries needs a model trained over many orderings, so 1 is refused.
    masks : int, default=16
        K, the observed-first masks of the mixture each row is completed from.
    draws : int, default=100
        Completions per row behind each estimate (``>= 2``).
    discrete : {"auto", "mode", "mean"}, default="auto"
        The estimate of a discrete entry (classes, and a mixed head's discrete columns such as a
        binary column of real-valued data): the posterior mode, a valid class or level, or the
        posterior mean, the fill of least expected squared error; ``auto``: the mean on
        real-valued data (every entry then gets its posterior mean), the mode on classes
        (:func:`made_np.conditional.posterior_summary`; docs/experiments.md, "Real-valued data").

    Attributes
    ----------
    model_, n_features_in_, feature_names_in_, n_classes_, history_
        As :class:`MADEDensity`; ``n_classes_`` from the observed entries.

    Examples
    --------
    >>> import numpy as np
    >>> from made_np.estimator import MADEImputer
    >>> X = (np.random.default_rng(0).random((200, 6)) < 0.3).astype(float)
    >>> X[::3, 2] = np.nan
    >>> imp = MADEImputer(hidden=(16,), epochs=3, random_state=0).fit(X)
    >>> bool(np.isnan(imp.transform(X)).any())
    False
    """

    def __init__(self, hidden=(500,), num_masks=UNLIMITED, order_agnostic=True, connectivity_agnostic=True,
                 direct=None, ordering="natural", epochs=None, batch_size=100, lr=None,
                 optimizer="adam", patience=None, validation_fraction=0.1, eval_masks=None,
                 random_state=None, head=None, components=None, discrete_columns="auto", atoms=True, masks=16,
                 draws=100, discrete="auto"):
        super().__init__(hidden=hidden, num_masks=num_masks, order_agnostic=order_agnostic,
                         connectivity_agnostic=connectivity_agnostic, direct=direct, ordering=ordering,
                         epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, patience=patience,
                         validation_fraction=validation_fraction, eval_masks=eval_masks,
                         random_state=random_state, head=head, components=components,
                         discrete_columns=discrete_columns, atoms=atoms)
        self.masks = masks
        self.draws = draws
        self.discrete = discrete

    def __sklearn_tags__(self):
        """NaN allowed (the entries to fill); real values as well as classes, negative ones included."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = tags.input_tags.positive_only = False
        return tags

    def _check_X(self, X, reset: bool) -> np.ndarray:
        """``X`` as float64 with NaN where missing, its observed entries whole numbers ``>= 0``; in
        :meth:`fit` (``reset``) no row all missing."""
        if reset:  # a parameter of transform, checked at fit as the others are
            check_choice("discrete", self.discrete, DISCRETE_ESTIMATES)
        check_unmasked(X, "X")
        X = _dense(validate_data(self, X, reset=reset, dtype="numeric", ensure_all_finite="allow-nan",
                                 accept_sparse=("csr", "csc", "coo"), ensure_min_samples=2 if reset else 1))
        if X.dtype.kind == "c":
            raise ValueError("MADEImputer needs real data (classes 0..C-1 and NaN where missing); X is complex")
        X = np.asarray(X, dtype=np.float64)
        seen = X[~np.isnan(X)]
        if np.isinf(seen).any():
            raise ValueError("MADEImputer needs finite values (NaN where missing); X has infinite values")
        if self._real(X) if reset else self.n_classes_ == 0:
            pass  # real values: any finite numbers
        elif seen.size and seen.min() < 0:
            raise ValueError(f"Negative values in data passed to MADEImputer: it needs classes 0..C-1, "
                             f"X has the value {seen.min()}")
        elif not np.all(seen == np.floor(seen)):
            raise ValueError("MADEImputer fitted on classes needs integer-valued data (classes 0..C-1 in every "
                             "column, NaN where missing); X has non-integer values")
        empty = np.flatnonzero(np.isnan(X).all(axis=1))
        if reset and empty.size:
            raise ValueError(f"X row {empty[0]} has every entry missing (NaN): it holds nothing to learn from; "
                             f"drop such rows ({empty.size} of them) before fit")
        if reset and (self.num_masks == 1 or self.order_agnostic is False) and seen.size < X.size:
            raise ValueError(f"X has missing entries (NaN): MADEImputer(num_masks={self.num_masks!r}, order_agnostic="
                             f"{self.order_agnostic!r}) cannot train on them (their marginal needs observed-first "
                             "masks); use num_masks > 1 or inf with order_agnostic=True")
        return X

    def impute(self, X, draws: int = 0):
        """The NaN of ``X`` filled, their predictive standard deviation, and completions.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features_in_)
            Classes ``0..n_classes_-1`` (real values when ``n_classes_ == 0``) where observed, NaN
            where missing.
        draws : int, default=0
            Completions returned per row (the first of the ``self.draws`` behind the estimates).

        Returns
        -------
        made_np.conditional.Imputation
            ``(filled, std, draws)`` as host arrays: float64 (n_samples, n_features_in_), float64
            (0 where observed), and the model's sample dtype (int, or float64 for real values)
            (n_samples, draws, n_features_in_) or None.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Called before :meth:`fit`.
        ValueError
            Wrong number of columns, inf, non-integer or negative values (a model of classes), a
            class not seen in fit, a value outside a discrete column's levels, ``masks``/``draws`` out of range,
            or an unknown ``discrete``.
        """
        X = self._check_fitted_X(X)
        (seed,) = _seeds(self.random_state, 1)
        out = _impute(self.model_, X, masks=self.masks, draws=draws, seed=seed, samples=self.draws,
                      discrete=self.discrete)
        return Imputation(*(None if a is None else backend.to_host(a) for a in out))

    def transform(self, X):
        """``X`` with every NaN replaced by its imputed value (the posterior mode or mean: ``discrete``).

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_), float64
        """
        return self.impute(X).filled


__all__ = ["MADEDensity", "MADEImputer"]
