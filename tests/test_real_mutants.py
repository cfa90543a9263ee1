"""Tests for the survivors of the mutation run on the real-valued code (issue 21's targets): each
pins a documented fact of the real heads, imputation, the CSV reader, the discrete columns, the
standardisation, the recipe, the ensemble or the thread policy that a realistic slip broke unnoticed."""
import numpy as np
import pytest

from made_np import backend
from made_np.heads import LOG_SCALE_BOUND, U_MARGIN, GaussianHead, MixedHead, MixtureHead, log_scale, log_softmax

EDGE = backend.ndtri(np, np.array([U_MARGIN]))[0]  # Phi^-1(2^-53) = -8.12: the most extreme draw


def test_the_soft_clamp_bounds_log_sigma_at_7():
    """docs/math.md Sec. 13: scales within exp(+-7) standard deviations; the sharpest density the
    Gaussian head can express at x = mu is log(2 pi)/2 - 7 nats."""
    assert np.allclose(log_scale(np, np.array([-1e4, 1e4]))[0], [-7.0, 7.0]) and LOG_SCALE_BOUND == 7.0
    z = np.array([[0.0, -1e4]])  # mu 0, log sigma -> -7
    assert np.isclose(GaussianHead(np, 0).nll_per_variable(z, np.zeros((1, 1)))[0, 0], 0.5 * np.log(2 * np.pi) - 7)


def test_noise_at_0_and_1_draws_phi_inverse_of_2_to_the_minus_53():
    """The uniforms are clipped to [2^-53, 1 - 2^-53] (U_MARGIN): a draw at the edge of the noise
    is mu -+ 8.12 sigma, finite, not a clip at a coarser margin."""
    z = np.zeros((2, 2))  # mu 0, sigma 1
    x = GaussianHead(np, 0).sample(z, np.array([[0.0], [1.0]]))
    assert np.allclose(x[:, 0], [EDGE, -EDGE], rtol=1e-12) and EDGE < -8.1


def test_mixture_weights_of_huge_logits_are_normalised_stably():
    """log_softmax subtracts the largest logit first: logits of 1000 give weights, not NaN."""
    z = np.array([[1000.0, 999.0, 0.0, 0.0, 0.0, 0.0]])  # K = 2: logits, means, raw log-scales
    nll = MixtureHead(np, 0, 2).nll_per_variable(z, np.zeros((1, 1)))
    assert np.isclose(nll[0, 0], 0.5 * np.log(2 * np.pi))
    assert np.isfinite(MixtureHead(np, 0, 2).sample(z, np.array([[0.3]]))).all()


def test_a_mixture_draw_at_a_cumulative_weight_takes_the_next_component():
    """The component k with F_(k-1) <= u < F_k (MixtureHead.sample's docstring): at u = F_0 = 1/2 of
    two equal components, component 1, at the lower edge of its residual uniform."""
    z = np.array([[0.0, 0.0, -10.0, 10.0, 0.0, 0.0]])  # equal weights, means -10 and 10, sigma 1
    x = MixtureHead(np, 0, 2).sample(z, np.array([[0.5]]))
    assert np.isclose(x[0, 0], 10.0 + EDGE)


def test_noise_just_below_1_draws_from_the_last_component_when_weights_sum_below_1():
    """Cumulative weights may end just below 1 (0.9999999999999998): a u above them still takes the
    last component (the draw is clamped to K - 1, not wrapped to the first)."""
    rng = np.random.default_rng(0)
    K, n = 3, 4000
    logits = rng.normal(size=(n, K)) * 3
    z = np.concatenate([logits, np.tile([-10.0, 0.0, 10.0], (n, 1)), np.zeros((n, K))], axis=1)
    head = MixtureHead(np, 0, K)
    F = np.cumsum(np.exp(log_softmax(np, head._blocks(z)[0], axis=0)), axis=0)[-1, :, 0]
    u = np.full((n, 1), np.nextafter(1.0, 0.0))
    assert (F < u[:, 0]).any()  # the case is present
    assert (head.sample(z, u)[:, 0] > 5).all()


def test_mixed_outputs_per_variable_are_max_of_3k_and_the_levels():
    """R = max(3 K, largest number of levels) (MixedHead's docstring, docs/math.md Sec. 13.1)."""
    assert MixedHead(np, 0, 1, 2, (0,), ((0.0, 1.0, 2.0, 3.0, 4.0),)).logits_per_variable == 5
    assert MixedHead(np, 0, 2, 2, (0,), ((0.0, 1.0, 2.0, 3.0, 4.0),)).logits_per_variable == 6


def test_discrete_draws_are_levels_at_the_edges_of_the_noise():
    """A discrete column's inverse CDF: the first level whose cumulative probability exceeds u
    (u = 1/2 of two equal levels: the second), and a u above a cumulative sum that rounds below 1
    still a level of that column (never the +inf padding of a column with fewer levels)."""
    head = MixedHead(np, 0, 1, 2, (0, 1), ((5.0, 7.0), (0.0, 1.0, 2.0, 3.0)))
    R = head.logits_per_variable
    z = np.zeros((1, 2 * R))
    assert head.sample(z, np.array([[0.5, 0.5]]))[0].tolist() == [7.0, 2.0]
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4000, 2 * R)) * 3
    x = head.sample(z, np.full((4000, 2), np.nextafter(1.0, 0.0)))
    assert set(x[:, 0]) <= {5.0, 7.0} and set(x[:, 1]) <= {0.0, 1.0, 2.0, 3.0}


def test_a_relabelled_mixed_head_moves_its_discrete_columns_with_the_data():
    """relabelled(perm) is the head of x[:, perm]: new column d is old column perm[d], so old column 0
    under perm (1, 2, 0) is new column 2 (with its levels)."""
    head = MixedHead(np, 0, 1, 3, (0, 1), ((0.0, 1.0), (3.0, 4.0, 5.0)))
    moved = head.relabelled([1, 2, 0])
    assert moved.discrete_columns == (0, 2) and moved.levels == ((3.0, 4.0, 5.0), (0.0, 1.0))


def test_posterior_summary_of_real_draws_is_their_mean_and_sample_std():
    """docs/math.md Sec. 10, "Imputation": the posterior mean's estimate is the sample mean (not a
    median), the spread the sample standard deviation (ddof 1)."""
    from made_np import MADE, MADEConfig
    from made_np.conditional import posterior_summary
    model = MADE(MADEConfig(D=2, hidden=(4,), classes=0, head="gaussian", input_encoding="raw"), np)
    comps = np.array([[[0.0, 1.0], [0.0, 2.0], [3.0, 6.0]]])  # (N = 1, S = 3, D = 2)
    mean, std = posterior_summary(model, comps)
    assert np.allclose(mean, [[1.0, 3.0]]) and np.allclose(std, [[np.sqrt(3.0), np.sqrt(7.0)]])


def test_a_header_with_some_numeric_names_is_a_header(tmp_path):
    """The first line is a header when one of its cells is not a number (read_csv's docstring):
    'x,2019,y' names three columns."""
    from made_np import read_table
    (tmp_path / "h.csv").write_text("x,2019,y\n1.5,2.5,3.5\n4.5,5.5,6.5\n")
    x, columns = read_table(tmp_path / "h.csv")
    assert columns == ["x", "2019", "y"] and x.tolist() == [[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]]


def test_discrete_columns_are_those_of_at_most_ten_values_missing_aside():
    """data.find_discrete_columns: columns (NaN, missing, aside) of <= MAX_DISCRETE_VALUES = 10 distinct
    values, whole numbers or not (0.5/1.5 and 1 vs 1 + 1e-15: a density on them is unbounded); 11
    values stay continuous."""
    from made_np.data import MAX_DISCRETE_VALUES, find_discrete_columns
    n = 110
    i = np.arange(n)
    x = np.stack([i % 10, i % 11, np.where(i % 7 == 0, np.nan, i % 3), 0.5 + i % 2, np.sin(i),
                  1 + (i % 2) * 1e-15, 0.1 * (i % 11)], axis=1).astype(float)
    assert MAX_DISCRETE_VALUES == 10 and find_discrete_columns(x) == (0, 2, 3, 5)


def test_discrete_columns_are_found_over_every_split(tmp_path):
    """A column of 3 values in train but 11 over all splits is continuous (the column's kind is that
    of all its values, not of the training split's)."""
    from made_np import load_dataset
    rng = np.random.default_rng(0)
    splits = {k: np.c_[rng.integers(0, 3, (n, 1)), rng.normal(size=(n, 1))] for k, n in
              (("train_data", 40), ("valid_data", 10), ("test_data", 10))}
    np.savez(tmp_path / "d.npz", **splits)
    assert load_dataset(str(tmp_path / "d.npz")).discrete_columns == (0,)
    splits["test_data"][:8, 0] = 3.5 + np.arange(8)  # 8 more values: 11 in all
    np.savez(tmp_path / "e.npz", **splits)
    assert load_dataset(str(tmp_path / "e.npz")).discrete_columns == ()


def test_levels_of_a_discrete_column_with_missing_entries_leave_nan_out():
    """Training on rows with NaN: a discrete column's levels are its observed values only."""
    from made_np import MADEImputer
    rng = np.random.default_rng(0)
    X = np.c_[rng.integers(0, 3, (60, 1)).astype(float), rng.normal(size=(60, 2))]
    X[::5, 0] = np.nan
    imp = MADEImputer(hidden=(4,), epochs=1, masks=2, draws=4, random_state=0).fit(X)
    assert imp.model_.config.discrete_columns == (0,) and imp.model_.config.levels == ((0.0, 1.0, 2.0),)


def test_a_header_after_blank_lines_is_read_as_the_header(tmp_path):
    from made_np.npyio import read_csv
    (tmp_path / "b.csv").write_text("\n \nx,y\n1.5,2\n3,4.5\n")
    values, lines, names = read_csv(tmp_path / "b.csv")
    assert names == ("x", "y") and lines.tolist() == [4, 5] and values.tolist() == [[1.5, 2.0], [3.0, 4.5]]


def test_a_1d_npy_table_is_one_row(tmp_path):
    from made_np import read_table
    np.save(tmp_path / "r.npy", np.array([1.5, np.nan, 3.0]))
    x, columns = read_table(tmp_path / "r.npy")
    assert x.shape == (1, 3) and np.isnan(x[0, 1]) and columns is None


def test_standardisation_leaves_the_skipped_discrete_columns_alone():
    """check_real_columns: a mixed head's discrete columns (skip) keep mean 0 and std 1, are not
    refused as constant (a rare level may be absent from the training split) and are not divided
    by their largest magnitude (an all-0 column is no 0/0)."""
    from made_np.checks import check_real_columns
    x = np.c_[np.linspace(-1.0, 3.0, 8), np.zeros(8), np.full(8, 2.0)]
    mean, std = check_real_columns(np, x, skip=(1, 2))
    assert np.allclose(mean, [1.0, 0.0, 0.0]) and np.allclose(std, [np.std(x[:, 0]), 1.0, 1.0])
    with pytest.raises(ValueError, match="column 2 is constant"):
        check_real_columns(np, x, skip=(1,))


def test_a_value_far_from_the_training_data_names_their_mean_and_the_fix():
    from made_np import MADEDensity
    X = np.random.default_rng(0).normal(size=(40, 2))
    m = MADEDensity(hidden=(4,), epochs=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"x has 1e\+30 at row 0, column 1: more than 1e\+12 standard deviations "
                                         r"from the training data's mean; check the file's units"):
        m.score_samples([[0.0, 1e30]])


def test_the_large_real_recipe_holds_up_to_four_variables_and_only_for_real_data():
    """LARGE_REAL_DEFAULTS: real data of SMALL_DATA_ROWS+ rows; no mask limit for D <= FEW_ORDERINGS_D
    = 4 (4 variables included); data of classes keep the digits' recipe whatever their rows."""
    from types import SimpleNamespace
    from made_np import MADEConfig
    from made_np.config import FEW_ORDERINGS_D, SMALL_DATA_ROWS
    real = SimpleNamespace(train=np.zeros((SMALL_DATA_ROWS, FEW_ORDERINGS_D)), D=FEW_ORDERINGS_D, classes=0, name="r")
    assert FEW_ORDERINGS_D == 4 and MADEConfig.for_data(real).num_masks == 0
    binary = SimpleNamespace(train=np.zeros((SMALL_DATA_ROWS, 3), dtype=np.uint8), D=3, classes=2, name="b")
    c = MADEConfig.for_data(binary)
    assert (c.hidden, c.components, c.num_masks) == ((500,), 5, 1)


def test_an_ensemble_of_one_ordering_and_several_connectivities_is_not_deduplicated():
    """Masks are one pass only when their ordering *and* degrees agree: a connectivity-agnostic bank
    of a single ordering has K different masks, and its ensemble is the mean of their K densities."""
    from made_np import MADE, MADEConfig
    model = MADE(MADEConfig(D=3, hidden=(6,), classes=0, head="gaussian", input_encoding="raw", num_masks=4,
                            order_agnostic=False, connectivity_agnostic=True, seed=1), np)
    rng = np.random.default_rng(0)
    for p in model.params:
        p[...] = rng.normal(scale=0.5, size=p.shape)
    x = rng.normal(size=(5, 3))
    per_mask = np.stack([model.nll(x, mask=k) for k in range(4)])
    expected = np.log(4) - np.logaddexp.reduce(-per_mask, axis=0)
    assert np.ptp(per_mask, axis=0).max() > 1e-3  # the masks differ
    assert np.allclose(model.ensemble_nll(x, range(4)), expected, rtol=1e-6)


def fed(candidates=(1, 2), **kw):
    """A ThreadChooser fed step times by hand (record), with no clock."""
    from made_np.fast.threads import ThreadChooser
    return ThreadChooser(candidates, **kw)


def test_auto_keeps_n_threads_only_strictly_beyond_the_margin_and_takes_medians_of_pairs():
    c = fed(probe_steps=1, margin=0.25)
    c.record(1, 1.0), c.record(2, 0.75)  # exactly 25% faster: a tie, 1 kept
    assert c.current == 1
    c = fed(probe_steps=2)
    for n, t in ((1, 1.0), (2, 1.5), (1, 2.0), (2, 1.6)):  # medians of two: 1.5 and 1.55
        c.record(n, t)
    assert c.current == 1 and c.decisions[-1][2] == pytest.approx({1: 1.5, 2: 1.55})


def test_auto_probes_again_every_n_steps_and_when_a_load_stops():
    c = fed(probe_steps=1, every=3, first=3, window=2, drift=1.5)
    c.record(1, 1.0), c.record(2, 0.5)  # decided: 2 threads at 0.5 s
    assert c.current == 2 and not c._plan
    c.record(2, 0.5), c.record(2, 0.5), c.record(2, 0.5)  # the 3rd step after the decision re-probes
    assert c._plan == [1, 2]
    c = fed(probe_steps=1, every=1000, window=2, drift=1.5)
    c.record(1, 1.0), c.record(2, 0.6)
    c.record(2, 0.2), c.record(2, 0.2)  # 3x faster than the kept median: the load stopped, re-probe
    assert c._plan == [1, 2]


def test_the_drift_window_holds_the_last_steps_only():
    c = fed(probe_steps=1, every=1000, window=3, drift=1.5)
    c.record(1, 1.0), c.record(2, 0.5)
    for t in (5.0, 0.5, 0.5, 0.5, 0.5):  # one slow step, then steady: it leaves the window
        c.record(2, t)
    assert not c._plan and len(c._recent) == 3


def test_an_epochs_threads_tie_goes_to_the_count_used_last():
    c = fed(probe_steps=2)
    for n in (1, 2, 1, 2):
        c.record(n, 1.0)
    assert c.epoch_threads() == 2  # two steps each: the last one's count
    c.record(1, 1.0)
    assert c.epoch_threads() == 1 and c.epoch_threads() == 1  # counted since the last call
