"""Orderings, degrees and masks of MADE (Germain et al. 2015, Sec. 4 and Algorithm 1).

Pure host-side functions of a seed. Notation follows the paper:

* ``m^0(d)``, the *ordering*: the position (1..D) of input ``d`` in the
  autoregressive factorisation p(x) = prod_d p(x_d | x_{m^0(j) < m^0(d)}).
* ``m^l(k)``, the *degree* of hidden unit ``k`` of layer ``l``: the largest
  ordering position that unit may see. Drawn from
  [min_k' m^(l-1)(k'), D-1] (paper Sec. 4.2).
* hidden masks ``M^W_l[j, k] = 1[m^l(k) >= m^(l-1)(j)]`` (paper eq. 12),
  output mask ``M^V[k, d] = 1[m^0(d) > m^L(k)]`` (eq. 13), and the direct
  input-to-output mask ``M^A[j, d] = 1[m^0(d) > m^0(j)]`` (eq. 11).

All masks are stored as ``(fan_in, fan_out)`` so that a layer computes
``x @ (W * M)``, matching the ``(batch, features)`` row layout of the engine.

A *bank* of masks is indexed by an integer; mask ``index`` is rebuilt exactly
from ``(seed, index)``, so a bank of any size costs no memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ORDERINGS = ("natural", "random")
#: Distributions of the orderings of an order-agnostic bank (masks index >= 1): ``uniform``
#: permutations (the paper), or ``segments`` (half of them segment-first, :func:`segment_ordering`).
BANK_ORDERINGS = ("uniform", "segments")
DEGREE_RULES = ("random", "equal")


class MaskError(ValueError):
    """An invalid ordering, degree rule or layer configuration."""


def input_ordering(D: int, mode: str = "natural", rng=None, given=None) -> np.ndarray:
    """Draw the input ordering m^0.

    Parameters
    ----------
    D : int
        Number of variables, ``D >= 1``.
    mode : {"natural", "random"}
        ``natural``: m^0(d) = d + 1; ``random``: a uniform random permutation of 1..D.
    rng : numpy.random.Generator, optional
        Source of randomness for ``random``.
    given : sequence of int, optional
        An explicit ordering: a permutation of 1..D (overrides ``mode``).

    Returns
    -------
    ndarray of int64, shape (D,)
        ``m^0(d)`` for each input ``d``: a permutation of 1..D.

    Raises
    ------
    MaskError
        ``D < 1``, unknown ``mode``, or ``given`` not a permutation of 1..D.
    """
    if D < 1:
        raise MaskError(f"D must be >= 1, got {D}")
    if given is not None:
        order = np.asarray(given, dtype=np.int64).reshape(-1)
        if order.shape != (D,) or not np.array_equal(np.sort(order), np.arange(1, D + 1)):
            raise MaskError(f"the given ordering must be a permutation of 1..{D}, got {list(order)[:10]}")
        return order
    if mode == "natural":
        return np.arange(1, D + 1, dtype=np.int64)
    if mode == "random":
        rng = np.random.default_rng() if rng is None else rng
        return rng.permutation(D).astype(np.int64) + 1
    raise MaskError(f"unknown ordering {mode!r}: choose one of {', '.join(ORDERINGS)}")


def segment_ordering(D: int, rng) -> np.ndarray:
    """An ordering that puts a contiguous segment of the variable indices first.

    A cut ``c`` is drawn uniformly from 1..D-1 and, by a fair coin, the variables
    ``0..c-1`` or the variables ``c..D-1`` take the positions 1..|segment| (in uniform
    random order among themselves); the other side follows, also in random order. For
    raster images the segments are the top or bottom rows (up to a partial row): the
    observed-first orderings of top/bottom occlusions (:mod:`made_np.conditional`), whose
    long-range conditionals (one half given the other) uniform orderings almost never train.

    Parameters
    ----------
    D : int
        Number of variables (``D == 1`` gives the ordering [1]).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of int64, shape (D,)
        ``m^0(d)``, a permutation of 1..D.
    """
    if D < 2:
        return np.ones(D, dtype=np.int64)
    c = int(rng.integers(1, D))
    first, second = np.arange(c), np.arange(c, D)
    if rng.random() < 0.5:
        first, second = second, first
    seq = np.concatenate([rng.permutation(first), rng.permutation(second)])
    m0 = np.empty(D, dtype=np.int64)
    m0[seq] = np.arange(1, D + 1)
    return m0


def hidden_degrees(prev: np.ndarray, width: int, D: int, rule: str = "random", rng=None) -> np.ndarray:
    """Draw the degrees m^l(k) of one hidden layer.

    Parameters
    ----------
    prev : ndarray of int, shape (fan_in,)
        Degrees of the layer below (the ordering m^0 for the first hidden layer).
    width : int
        Number of hidden units, ``>= 1``.
    D : int
        Number of variables.
    rule : {"random", "equal"}
        ``random`` (the paper, Sec. 4.2): uniform integers in [lo, D-1] with
        ``lo = min(min(prev), D-1)``. ``equal`` (TensorFlow Probability's default):
        ``m(k) = max(lo, ceil(k (D-1) / (width+1)))`` for k = 1..width, evenly
        spread over [lo, D-1].
    rng : numpy.random.Generator, optional
        Source of randomness for ``random``.

    Returns
    -------
    ndarray of int64, shape (width,)
        Degrees in [lo, D-1]. For ``D == 1`` all degrees are 0: the units see no input.

    Raises
    ------
    MaskError
        ``width < 1`` or unknown ``rule``.
    """
    if width < 1:
        raise MaskError(f"hidden layers need at least 1 unit, got {width}")
    lo = min(int(np.min(prev)), D - 1)
    if rule == "random":
        rng = np.random.default_rng() if rng is None else rng
        return rng.integers(lo, D, size=width, endpoint=False).astype(np.int64)
    if rule == "equal":
        k = np.arange(1, width + 1)
        return np.maximum(lo, np.ceil(k * (D - 1) / (width + 1))).astype(np.int64)
    raise MaskError(f"unknown degree rule {rule!r}: choose one of {', '.join(DEGREE_RULES)}")


def hidden_mask(prev_degrees: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """M^W[j, k] = 1[m^l(k) >= m^(l-1)(j)] (paper eq. 12; docs/math.md Sec. 1).

    Parameters
    ----------
    prev_degrees : array-like of int, shape (fan_in,)
        Degrees ``m^(l-1)`` of the layer below (the ordering m^0 for the first hidden layer).
    degrees : array-like of int, shape (fan_out,)
        Degrees ``m^l`` of the layer's units.

    Returns
    -------
    ndarray of bool, shape (fan_in, fan_out)
        Nothing is checked (the inputs are only broadcast against each other).
    """
    return np.asarray(degrees)[None, :] >= np.asarray(prev_degrees)[:, None]


def output_mask(last_degrees: np.ndarray, ordering: np.ndarray) -> np.ndarray:
    """M^V[k, d] = 1[m^0(d) > m^L(k)] (paper eq. 13; docs/math.md Sec. 1).

    With no hidden layer ``last_degrees`` is the ordering itself, which gives the
    strict ordering relation (a fully visible sigmoid belief network).

    Parameters
    ----------
    last_degrees : array-like of int, shape (H_L,)
        Degrees ``m^L`` of the last hidden layer (the ordering, shape (D,), without one).
    ordering : array-like of int, shape (D,)
        The ordering ``m^0``, values 1..D.

    Returns
    -------
    ndarray of bool, shape (H_L, D)
        Nothing is checked (the inputs are only broadcast against each other).
    """
    return np.asarray(ordering)[None, :] > np.asarray(last_degrees)[:, None]


def direct_mask(ordering: np.ndarray) -> np.ndarray:
    """M^A[j, d] = 1[m^0(d) > m^0(j)] (paper eq. 11, direct connections; docs/math.md Sec. 1).

    Parameters
    ----------
    ordering : array-like of int, shape (D,)
        The ordering ``m^0``, values 1..D (not checked).

    Returns
    -------
    ndarray of bool, shape (D, D)
        Strictly upper triangular once rows and columns are sorted by position.
    """
    return output_mask(ordering, ordering)


@dataclass(frozen=True)
class MaskSet:
    """One mask of a bank: the ordering, the degrees and every layer's mask.

    Attributes
    ----------
    index : int
        Position of this mask in the bank.
    ordering : ndarray of int64, shape (D,)
        m^0, a permutation of 1..D.
    degrees : tuple of ndarray of int64
        ``degrees[l]`` is m^(l+1), shape (H_{l+1},), for each hidden layer.
    hidden : tuple of ndarray of bool
        ``hidden[l]`` is M^W_(l+1), shape (fan_in, fan_out) (the first is (D, H_1)).
    output : ndarray of bool, shape (H_L, D)
        M^V ((D, D) when there is no hidden layer).
    direct : ndarray of bool, shape (D, D)
        M^A, the direct input-to-output mask (used only when the model has direct connections).
    """

    index: int
    ordering: np.ndarray
    degrees: tuple
    hidden: tuple
    output: np.ndarray
    direct: np.ndarray

    @property
    def D(self) -> int:
        return int(self.ordering.shape[0])

    def layer_masks(self, in_repeat: int = 1, out_repeat: int = 1) -> list:
        """Masks of every weight matrix at the level of columns, as bool arrays (docs/math.md Sec. 2,
        "Repeated mask rows").

        Categorical variables are one-hot encoded over ``in_repeat`` input columns
        and predicted by ``out_repeat`` logits; every column of variable ``d`` carries
        the degree m^0(d), so the first hidden mask repeats its rows and the output
        mask (and direct mask, :meth:`direct_block`) repeat their columns (block masks).

        Parameters
        ----------
        in_repeat : int, default 1
            Input columns per variable: ``C`` for one-hot inputs, else 1
            (:attr:`made_np.model.MADE.in_repeat`).
        out_repeat : int, default 1
            Logits per variable: 1 for the Bernoulli head, ``C`` for the categorical one
            (:attr:`made_np.model.MADE.out_repeat`).

        Returns
        -------
        list of ndarray of bool
            ``[M^W_1 (D*in_repeat, H_1), M^W_2 (H_1, H_2), ..., M^V (H_L, D*out_repeat)]``; with
            no hidden layer the single mask ``M^V`` (D*in_repeat, D*out_repeat). The first and
            last are new arrays; the ones between are this MaskSet's own (not copies).
        """
        masks = list(self.hidden) + [self.output]
        masks[0] = np.repeat(masks[0], in_repeat, axis=0)
        masks[-1] = np.repeat(masks[-1], out_repeat, axis=1)
        return masks

    def direct_block(self, in_repeat: int = 1, out_repeat: int = 1) -> np.ndarray:
        """M^A at the level of columns, shape (D*in_repeat, D*out_repeat), bool."""
        return np.repeat(np.repeat(self.direct, in_repeat, axis=0), out_repeat, axis=1)


def observed_first_rows(maskset: MaskSet, observed, in_repeat: int = 1, out_repeat: int = 1,
                        direct: bool = False) -> list:
    """One observed-first mask per row, made from ``maskset`` (docs/math.md Sec. 12, "Rows with
    missing entries").

    Row ``n``'s ordering ``pi_n`` is the stable sort of ``maskset``'s positions by missingness: the
    observed variables first, in the order ``m^0`` gives them, then the missing ones, likewise.
    The hidden degrees stay ``maskset``'s (their range ``[1, D-1]`` does not depend on the
    ordering), so only the masks that touch the inputs or outputs differ from row to row:
    ``M^W_1[n, j, k] = 1[m^1(k) >= pi_n(j)]``, ``M^V[n, k, d] = 1[pi_n(d) > m^L(k)]`` and
    ``M^A[n, j, d] = 1[pi_n(d) > pi_n(j)]``; the hidden-to-hidden masks are shared.

    Parameters
    ----------
    maskset : MaskSet
        The minibatch's mask (ordering ``m^0`` and degrees).
    observed : array of bool, shape (B, D)
        True where the entry is observed.
    in_repeat, out_repeat : int, default 1
        Columns per variable of the inputs and of the logits, as :meth:`MaskSet.layer_masks`.
    direct : bool, default False
        Append the direct masks.

    Returns
    -------
    list of ndarray of bool
        As :meth:`MaskSet.layer_masks` (then the direct mask), except that the first and last
        (and the direct) have a leading row axis: ``(B, D*in_repeat, H_1)``, ``(B, H_L,
        D*out_repeat)``, ``(B, D*in_repeat, D*out_repeat)``. With every entry observed each row's
        masks are ``maskset``'s.
    """
    obs = np.asarray(observed, dtype=bool)
    D = maskset.D
    pi = np.argsort(np.argsort(np.where(obs, 0, D) + maskset.ordering, axis=1), axis=1) + 1  # (B, D)
    strict = pi[:, None, :] > pi[:, :, None]  # [n, j, d] = 1[pi_n(d) > pi_n(j)]
    if maskset.degrees:
        masks = [maskset.degrees[0][None, None, :] >= pi[:, :, None], *maskset.hidden[1:],
                 pi[:, None, :] > maskset.degrees[-1][None, :, None]]
    else:
        masks = [strict]
    masks[0] = np.repeat(masks[0], in_repeat, axis=1)
    masks[-1] = np.repeat(masks[-1], out_repeat, axis=2)
    if direct:
        masks.append(np.repeat(np.repeat(strict, in_repeat, axis=1), out_repeat, axis=2))
    return masks


def draw_masks(
    D: int,
    hidden=(),
    *,
    seed: int = 0,
    index: int = 0,
    ordering: str = "natural",
    given_ordering=None,
    degrees: str = "random",
    order_agnostic: bool = False,
    connectivity_agnostic: bool = False,
    orderings: str = "uniform",
) -> MaskSet:
    """Build mask ``index`` of a bank, exactly, from ``(seed, index)`` (paper Algorithm 1).

    Parameters
    ----------
    D : int
        Number of variables, ``>= 1``.
    hidden : sequence of int
        Widths of the hidden layers (may be empty).
    seed : int
        Seed of the bank.
    index : int
        Mask index, ``>= 0``. Mask 0 always uses ``ordering``/``given_ordering``.
    ordering : {"natural", "random"}
        Ordering of mask 0 (and of every mask unless ``order_agnostic``).
    given_ordering : sequence of int, optional
        An explicit permutation of 1..D for mask 0.
    degrees : {"random", "equal"}
        Hidden degree rule, see :func:`hidden_degrees`.
    order_agnostic : bool
        Masks ``index >= 1`` draw a fresh random ordering from ``(seed, index)``
        (order-agnostic training, paper Sec. 4.1).
    connectivity_agnostic : bool
        Masks ``index >= 1`` draw fresh hidden degrees from ``(seed, index)``
        (connectivity-agnostic training, paper Sec. 4.2); otherwise every mask
        shares the degrees of mask 0.
    orderings : {"uniform", "segments"}
        The distribution of the fresh orderings of an order-agnostic bank: ``uniform``
        random permutations (the paper), or ``segments``: by a fair coin of
        ``(seed, index)`` a uniform permutation or a :func:`segment_ordering`.

    Returns
    -------
    MaskSet

    Raises
    ------
    MaskError
        Invalid ``D``, widths, ordering or rule, or ``index < 0``.
    """
    if index < 0:
        raise MaskError(f"mask index must be >= 0, got {index}")
    hidden = tuple(int(h) for h in hidden)
    o_index = index if order_agnostic else 0
    c_index = index if connectivity_agnostic else 0
    o_rng = np.random.default_rng([seed, o_index, 0])
    if o_index == 0:
        m0 = input_ordering(D, ordering, o_rng, given_ordering)
    elif orderings == "uniform":
        m0 = input_ordering(D, "random", o_rng)
    elif orderings == "segments":
        m0 = segment_ordering(D, o_rng) if o_rng.random() < 0.5 else input_ordering(D, "random", o_rng)
    else:
        raise MaskError(f"unknown bank orderings {orderings!r}: choose one of {', '.join(BANK_ORDERINGS)}")
    c_rng = np.random.default_rng([seed, c_index, 1])
    degs = [m0]  # the input degrees, then each hidden layer's (drawn from the previous layer's)
    for width in hidden:
        degs.append(hidden_degrees(degs[-1], width, D, degrees, c_rng))
    return maskset_of(index, m0, degs[1:])


def maskset_of(index: int, ordering, degrees) -> MaskSet:
    """The :class:`MaskSet` of an ordering m^0 (shape (D,)) and the hidden layers' degrees m^l (each
    (H_l,)): every layer's mask from the degrees it joins (paper eqs. 12-13, direct eq. 11)."""
    degs = (ordering, *degrees)
    return MaskSet(index=index, ordering=ordering, degrees=tuple(degrees), hidden=tuple(map(hidden_mask, degs, degs[1:])),
                   output=output_mask(degs[-1], ordering), direct=direct_mask(ordering))


def path_matrix(maskset: MaskSet, direct: bool = False) -> np.ndarray:
    """Which inputs can reach which outputs through the masks.

    Parameters
    ----------
    maskset : MaskSet
    direct : bool
        Include the direct input-to-output mask M^A.

    Returns
    -------
    ndarray of bool, shape (D, D)
        ``P[j, d]`` is True when some path of unmasked weights leads from input ``j``
        to output ``d``. The autoregressive property is ``P[j, d] => m^0(j) < m^0(d)``.
    """
    reach = np.eye(maskset.D, dtype=np.int64)
    for m in list(maskset.hidden) + [maskset.output]:
        reach = (reach @ m.astype(np.int64) > 0).astype(np.int64)
    reach = reach > 0
    if direct:
        reach = reach | maskset.direct
    return reach
