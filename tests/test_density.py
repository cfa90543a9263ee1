"""Tests of made_np.density: exact tables of small MADEs, KL divergence, entropy."""
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest

from made_np.density import (
    MAX_TABLE_SIZE, density_table, entropy, expected_nll, kl_divergence, log_density_table,
)
from made_np.model import MADE, MADEConfig
from made_np.optim import make_optimizer
from made_np.sampling import sample

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DIST = SHARED / "distribution.npy"
ENCODINGS = ("onehot", "raw", "scaled")


def all_configurations(C, D):
    """Every x in {0..C-1}^D, shape (C^D, D), C-order (the layout of a (C,)*D table)."""
    return np.array(list(itertools.product(range(C), repeat=D)), dtype=np.uint8)


def categorical(D, C=5, encoding="onehot", direct=False, num_masks=1, dtype="float64", seed=3, stand=None, **kw):
    cfg = MADEConfig(D=D, hidden=kw.pop("hidden", (16, 12)), classes=C, head="categorical",
                     input_encoding=encoding, direct=direct, num_masks=num_masks, dtype=dtype,
                     seed=seed, **kw)
    model = MADE(cfg) if stand is None else stand.made(cfg)
    # Non-trivial conditionals: random biases on top of the random weights.
    rng = np.random.default_rng(seed + 1)
    for layer in model.layers:
        layer.b[...] = model._on_device(rng.normal(size=tuple(layer.b.shape)), layer.b.dtype)
    return model


# --------------------------------------------------------------------------- exact tables


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("D", [2, 3])
@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("ordering", ["natural", "random"])
def test_table_normalises_and_matches_log_prob(encoding, D, direct, ordering, stand):
    C = 5
    model = categorical(D, C, encoding, direct, ordering=ordering, stand=stand)
    table = log_density_table(model, batch_size=7)  # several batches
    assert table.shape == (C,) * D and table.dtype == np.float64
    assert abs(np.exp(table).sum() - 1.0) < 1e-9
    brute = stand.get(model.log_prob(stand.put(all_configurations(C, D)))).reshape((C,) * D)
    np.testing.assert_allclose(table, brute, atol=1e-10)
    assert np.ptp(table) > 0.5  # a non-uniform model: the check above has teeth


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("D", [2, 3])
@pytest.mark.parametrize("direct", [False, True])
def test_ensemble_table_is_the_mixture_of_probabilities(encoding, D, direct, stand):
    C, K = 4, 3
    model = categorical(D, C, encoding, direct, num_masks=K, order_agnostic=True,
                        connectivity_agnostic=True, seed=4, stand=stand)
    orderings = {tuple(model.maskset_at(k).ordering) for k in range(K)}
    assert len(orderings) >= 2  # seed 4 gives masks with both orderings of 2 variables
    table = log_density_table(model, mask_indices=range(K))
    assert abs(np.exp(table).sum() - 1.0) < 1e-9
    per_mask = [np.exp(log_density_table(model, mask_indices=[k])) for k in range(K)]
    np.testing.assert_allclose(np.exp(table), np.mean(per_mask, axis=0), rtol=1e-10, atol=1e-14)
    spread = max(np.abs(a - b).max() for a, b in itertools.combinations(per_mask, 2))
    assert spread > 1e-3  # some masks really differ (for D = 2 only the ordering can)
    x = stand.put(all_configurations(C, D))
    np.testing.assert_allclose(table.reshape(-1), -stand.get(model.ensemble_nll(x, range(K))), atol=1e-10)


def test_float32_model_table_still_sums_to_one_in_float64():
    model = categorical(2, C=50, encoding="onehot", dtype="float32", hidden=(64,))
    table = log_density_table(model)
    assert abs(np.exp(table).sum() - 1.0) < 1e-9
    brute = model.log_prob(all_configurations(50, 2)).reshape(50, 50)
    np.testing.assert_allclose(table, brute, atol=1e-4)


def test_bernoulli_model_table():
    model = MADE(MADEConfig(D=4, hidden=(10,), dtype="float64", direct=True, ordering="random", seed=2))
    table = log_density_table(model)
    assert table.shape == (2, 2, 2, 2)
    assert abs(np.exp(table).sum() - 1.0) < 1e-12
    np.testing.assert_allclose(table.reshape(-1), model.log_prob(all_configurations(2, 4)), atol=1e-12)


def test_table_agrees_with_ancestral_samples():
    C = 4
    model = categorical(2, C, "onehot", direct=True, ordering="random", seed=5)
    p = density_table(model)
    x = sample(model, 40_000, seed=0)
    freq = np.bincount(x[:, 0] * C + x[:, 1], minlength=C * C).reshape(C, C) / len(x)
    assert np.abs(freq - p).max() < 0.01  # 4 sigma of a binomial frequency at n = 40,000


def test_table_too_large_and_empty_ensemble_raise():
    model = MADE(MADEConfig(D=4, hidden=(8,), classes=100, head="categorical", input_encoding="raw"))
    assert 100**4 > MAX_TABLE_SIZE
    with pytest.raises(ValueError, match="exceeds the limit"):
        log_density_table(model)
    small = categorical(2, 3)
    with pytest.raises(ValueError, match="at least one mask"):
        log_density_table(small, mask_indices=[])


# --------------------------------------------------------------------------- KL and entropy


def test_kl_of_a_table_with_itself_is_zero_and_positive_otherwise():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.dirichlet(np.full(30, 0.5))
        q = rng.dirichlet(np.full(30, 0.5))
        assert kl_divergence(p, np.log(p)) == pytest.approx(0.0, abs=1e-12)
        assert kl_divergence(p, np.log(q)) > 0.0
    # A value by hand: KL((1/2, 1/2) || (1/4, 3/4)) = 1/2 log 2 + 1/2 log(2/3).
    assert kl_divergence([0.5, 0.5], np.log([0.25, 0.75])) == pytest.approx(
        0.5 * math.log(2) + 0.5 * math.log(2 / 3), rel=1e-12)


def test_kl_ignores_zero_p_and_is_infinite_where_q_vanishes():
    p = np.array([0.0, 0.5, 0.5])
    assert kl_divergence(p, np.log([0.5, 0.25, 0.25])) == pytest.approx(math.log(2))
    with np.errstate(divide="ignore"):
        assert kl_divergence(p, np.log([0.5, 0.5, 0.0])) == math.inf


def test_kl_and_entropy_reject_bad_tables():
    with pytest.raises(ValueError, match="shape"):
        kl_divergence(np.full(4, 0.25), np.zeros(5))
    with pytest.raises(ValueError, match="sums to"):
        kl_divergence(np.full(4, 0.3), np.zeros(4))
    with pytest.raises(ValueError, match="non-negative"):
        entropy(np.array([1.5, -0.5]))


def test_a_probability_table_may_miss_1_by_1e_6():
    """p_true and p are taken when they sum to 1 within 1e-6 (a float32 table rounds by about
    1e-7), refused beyond it, with the sum and the tolerance named."""
    base = np.full(4, 0.25)
    for off in (9e-7, -9e-7):
        p = base + off / 4
        assert kl_divergence(p, np.log(base)) == pytest.approx((1 + off) * math.log(1 + off), abs=1e-15)
        assert entropy(p) == pytest.approx(-(1 + off) * math.log((1 + off) / 4), rel=1e-12)
    for off in (1.1e-6, -1.1e-6, 1e-3):
        with pytest.raises(ValueError, match=rf"p_true sums to {1 + off:.8g}, not 1 \(tolerance 1e-6\)"):
            kl_divergence(base + off / 4, np.log(base))
        with pytest.raises(ValueError, match="p sums to"):
            entropy(base + off / 4)


@pytest.mark.parametrize("C,D", [(2, 1), (5, 2), (7, 3), (200, 2)])
def test_entropy_of_uniform_is_log_of_the_number_of_cells(C, D):
    p = np.full((C,) * D, 1.0 / C**D)
    assert entropy(p) == pytest.approx(D * math.log(C), rel=1e-12)


def test_entropy_of_a_point_mass_is_zero_and_expected_nll_adds_kl():
    delta = np.zeros((3, 3))
    delta[1, 2] = 1.0
    assert entropy(delta) == 0.0
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(9)), rng.dirichlet(np.ones(9))
    assert expected_nll(p, np.log(q)) == pytest.approx(-(p * np.log(q)).sum(), rel=1e-12)


# --------------------------------------------------------------------------- end to end


def smooth_table(C):
    """A smooth, correlated C x C table: a tilted Gaussian bump on a floor."""
    i, j = np.meshgrid(np.arange(C), np.arange(C), indexing="ij")
    t = 0.05 + np.exp(-((i - 0.3 * C) ** 2 + (j - 0.6 * C) ** 2 - 1.2 * (i - 0.3 * C) * (j - 0.6 * C))
                      / (0.1 * C * C))
    return t / t.sum()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_tiny_fit_on_a_10x10_table_lowers_kl(encoding):
    C = 10
    p = smooth_table(C)
    rng = np.random.default_rng(0)
    flat = rng.choice(C * C, size=5000, p=p.ravel())
    x = np.stack([flat // C, flat % C], axis=1).astype(np.uint8)
    model = MADE(MADEConfig(D=2, hidden=(32,), classes=C, head="categorical",
                            input_encoding=encoding, seed=0))
    opt = make_optimizer("adam", model.params, model.xp, lr=1e-2)
    kl0 = kl_divergence(p, log_density_table(model))
    for _ in range(10):
        perm = rng.permutation(len(x))
        for s in range(0, len(x), 100):
            model.loss_and_grad(x[perm[s:s + 100]])
            opt.step(model.grads)
    kl1 = kl_divergence(p, log_density_table(model))
    uniform = kl_divergence(p, np.full((C, C), -2 * math.log(C)))
    assert kl1 < 0.25 * kl0
    assert kl1 < 0.25 * uniform  # it learned the correlated shape, not just the mass
    assert kl1 < 0.05


@pytest.mark.skipif(not DIST.exists(), reason=f"real 2-D table not found at {DIST}")
def test_real_table_entropy_and_untrained_model_table():
    p = np.load(DIST, allow_pickle=False).astype(np.float64)
    p /= p.sum()
    assert p.shape == (200, 200)
    H = entropy(p)
    assert H == pytest.approx(10.5198, abs=1e-3)
    assert kl_divergence(p, np.full(p.shape, -math.log(p.size))) == pytest.approx(math.log(p.size) - H)
    model = MADE(MADEConfig(D=2, hidden=(50,), classes=200, head="categorical", input_encoding="onehot"))
    table = log_density_table(model)
    assert table.shape == (200, 200)
    assert abs(np.exp(table).sum() - 1.0) < 1e-9
    assert kl_divergence(p, table) > 0.0


# --------------------------------------------------------------------------- the density command


def _train_cli(args, monkeypatch, cwd):
    from click.testing import CliRunner

    from made_np.cli import cli

    monkeypatch.chdir(cwd)
    res = CliRunner().invoke(cli, ["train", "--hidden", "8", "--epochs", "1", "--batch-size", "500",
                                   "-q", *args])
    assert res.exit_code == 0, res.output
    return cli, CliRunner()


def test_density_command_on_a_2d_npy_without_true_table(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "pairs.npy", rng.integers(0, 6, size=(600, 2)).astype(np.uint8))
    cli, runner = _train_cli(["--dataset", str(tmp_path / "pairs.npy"), "--out", str(tmp_path / "run")],
                             monkeypatch, tmp_path)
    res = runner.invoke(cli, ["density", str(tmp_path / "run"), "--out", str(tmp_path / "d.png"), "-n", "500"])
    assert res.exit_code == 0, res.output
    assert "exact table of 36 cells" in res.output
    nll = float(re.search(r"test NLL \(exact table\)\s*: ([0-9.]+) nats", res.output).group(1))
    assert 0.5 * math.log(36) < nll < 1.5 * math.log(36)
    assert "KL and entropy skipped" in res.output
    assert (tmp_path / "d.png").stat().st_size > 1000


def test_density_command_refuses_a_model_that_is_not_2d(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "triples.npy", rng.integers(0, 4, size=(300, 3)).astype(np.uint8))
    cli, runner = _train_cli(["--dataset", str(tmp_path / "triples.npy"), "--out", str(tmp_path / "run")],
                             monkeypatch, tmp_path)
    res = runner.invoke(cli, ["density", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "needs a model of D = 2" in res.output and "Traceback" not in res.output


@pytest.mark.skipif(not DIST.exists(), reason=f"real 2-D table not found at {DIST}")
def test_density_command_on_the_real_2d_data(tmp_path, monkeypatch):
    cli, runner = _train_cli(["--dataset", "2d", "--dataset-path", str(DIST), "--out", str(tmp_path / "run")],
                             monkeypatch, tmp_path)
    res = runner.invoke(cli, ["density", str(tmp_path / "run"), "--out", str(tmp_path / "d.png"),
                              "-n", "2000"])
    assert res.exit_code == 0, res.output
    H = float(re.search(r"entropy of the true table : ([0-9.]+)", res.output).group(1))
    kl = float(re.search(r"KL\(p_true \|\| p_model\)\s*: ([0-9.]+)", res.output).group(1))
    nll = float(re.search(r"test NLL \(exact table\)\s*: ([0-9.]+)", res.output).group(1))
    assert H == pytest.approx(10.5198, abs=1e-3)
    assert 0.0 < kl < 0.2
    assert nll == pytest.approx(H + kl, abs=0.02)  # E[-log q] = H + KL, up to the test set's noise
    assert (tmp_path / "d.png").exists()


def test_a_conditional_model_has_no_single_table():
    """It used to fail inside NumPy's matmul (the pass's context guard moved to the boundary)."""
    model = MADE(MADEConfig(D=3, hidden=(4,), context=2))
    with pytest.raises(ValueError, match="conditional"):
        log_density_table(model)


def test_the_table_of_a_bank_is_the_density_log_prob_gives():
    """log_density_table(model) and MADE.log_prob answer the same question: a bank's ensemble."""
    model = categorical(2, 3, "onehot", False, num_masks=3, order_agnostic=True, connectivity_agnostic=True, seed=4)
    x = all_configurations(3, 2)
    np.testing.assert_allclose(log_density_table(model).reshape(-1), model.log_prob(x), atol=1e-10)
    assert not np.allclose(log_density_table(model), log_density_table(model, mask_indices=[0]))
