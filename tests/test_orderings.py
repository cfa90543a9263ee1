"""Segment-first orderings of an order-agnostic bank (``MADEConfig.orderings == "segments"``).

Half of the bank's masks put a contiguous run of variable indices first (for raster images: the
top or bottom rows), the orderings whose conditionals top/bottom completions read
(docs/math.md, section 10); the others are the paper's uniform permutations.
"""
import numpy as np
import pytest
from conftest import examples
from hypothesis import given
from hypothesis import strategies as st

from made_np.config import MADEConfig
from made_np.masks import MaskError, draw_masks, path_matrix, segment_ordering
from made_np.model import MADE


def segment_first(m0) -> bool:
    """Whether positions 1..c hold the indices 0..c-1 or the indices D-c..D-1, for some 0 < c < D."""
    D = len(m0)
    var_at = np.argsort(m0)
    for c in range(1, D):
        head = np.sort(var_at[:c])
        if np.array_equal(head, np.arange(c)) or np.array_equal(head, np.arange(D - c, D)):
            return True
    return False


@examples(30)
@given(st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_segment_ordering_is_a_permutation_with_a_contiguous_head(D, seed):
    m0 = segment_ordering(D, np.random.default_rng(seed))
    assert np.array_equal(np.sort(m0), np.arange(1, D + 1))
    assert D == 1 or segment_first(m0)


def test_segments_bank_mixes_segment_first_and_uniform_orderings():
    D, hidden = 30, (40,)
    masks = [draw_masks(D, hidden, seed=3, index=i, order_agnostic=True, connectivity_agnostic=True,
                        orderings="segments") for i in range(1, 201)]
    share = np.mean([segment_first(ms.ordering) for ms in masks])
    assert 0.4 < share < 0.65  # a fair coin (a uniform permutation is almost never segment-first)
    for ms in masks[:20]:  # any permutation keeps the autoregressive property
        P = path_matrix(ms)
        assert not (P & ~(ms.ordering[:, None] < ms.ordering[None, :])).any()
    again = draw_masks(D, hidden, seed=3, index=7, order_agnostic=True, connectivity_agnostic=True,
                       orderings="segments")
    assert np.array_equal(again.ordering, masks[6].ordering)  # a function of (seed, index)
    mask0 = draw_masks(D, hidden, seed=3, index=0, order_agnostic=True, orderings="segments")
    assert np.array_equal(mask0.ordering, np.arange(1, D + 1))  # mask 0 keeps its ordering
    uniform = draw_masks(D, hidden, seed=3, index=5, order_agnostic=True)
    assert np.array_equal(uniform.ordering, draw_masks(D, hidden, seed=3, index=5, order_agnostic=True,
                                                       orderings="uniform").ordering)


def test_the_model_and_config_take_the_option():
    model = MADE(MADEConfig(D=12, hidden=(16,), num_masks=0, orderings="segments"))
    expected = draw_masks(12, (16,), seed=0, index=3, order_agnostic=True, connectivity_agnostic=True,
                          orderings="segments")
    assert np.array_equal(model.mask(3)[0].ordering, expected.ordering)
    with pytest.raises(ValueError, match="unknown orderings 'blocks': choose one of uniform, segments"):
        MADEConfig(D=3, orderings="blocks")
    with pytest.raises(MaskError, match="bank orderings"):
        draw_masks(3, (), index=1, order_agnostic=True, orderings="blocks")


def test_segment_orderings_cut_inside_and_put_either_end_first():
    """The cut lies in 1..D-1 (never a uniform permutation: a cut at 0 would put every variable in one
    'segment'), and a fair coin puts the segment of variable 0 or the one of variable D-1 first."""
    rng = np.random.default_rng(0)
    orders = [segment_ordering(5, rng) for _ in range(400)]
    assert all(segment_first(m0) for m0 in orders)
    zero_first = np.mean([m0[0] < m0[-1] for m0 in orders])  # variable 0 before variable D-1: its segment led
    assert 0.4 < zero_first < 0.6
