"""Atoms of real-valued columns (docs/math.md Sec. 13, "Atoms"): values that a share of the rows
hold exactly get a mixture component pinned there with the head's narrowest scale.

The choice of atoms by :meth:`MADEConfig.for_data`, the pinned outputs of every pass (reference,
block-sparse, the degree-ordered sampler), gradients, checkpoints, the configuration's checks, and
training on a zero-inflated column.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from conftest import random_data, randomize_weights
from made_np import ATOM_RATIO, ATOM_SHARE, MADEConfig, TrainConfig, fit, load_checkpoint, save_checkpoint
from made_np.data import Dataset
from made_np.fast import blocked as blocked_mod
from made_np.fast.blocked import BlockedMADE, block_plan
from made_np.fast.sampler import sample_fast
from made_np.heads import LOG_SCALE_BOUND, PINNED_RAW_SCALE, log_scale
from made_np.model import MADE
from made_np.sampling import sample_naive
from test_gradients import RTOL, check_gradients, kink_free_weights


def zero_inflated(n, seed=0, share=0.3):
    """(n, 3): column 0 ``N(0, 1)``, column 1 zero in ``share`` of the rows else ``Gamma(2, 3)``,
    column 2 ``N(5, 2)`` rounded to 0.1 (each value held by under 2% of the rows: no atom)."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.normal(size=n), np.where(rng.random(n) < share, 0.0, rng.gamma(2.0, 3.0, n)),
                  np.round(rng.normal(5, 2, n), 1)], axis=1)
    return Dataset("zi", x[: n * 8 // 10], x[n * 8 // 10: n * 9 // 10], x[n * 9 // 10:], 0, None)


def atom_model(head="mog", D=3, K=3, atom_columns=(1,), atoms=((0.0, 2.5),), direct=False, ordering="random", **kw):
    cfg = MADEConfig(D=D, hidden=(9, 7), classes=0, head=head, input_encoding="raw", dtype="float64", components=K,
                     ordering=ordering, direct=direct, atom_columns=atom_columns, atoms=atoms, **kw)
    model = MADE(cfg)
    randomize_weights(model, 4)
    rng = np.random.default_rng(5)
    model.set_standardisation(rng.normal(0, 2, size=D), rng.uniform(0.5, 3.0, size=D))
    return model


# --------------------------------------------------------------------------- the choice


def test_the_recipe_finds_the_values_a_share_of_the_rows_hold():
    ds = zero_inflated(2000)
    cfg = MADEConfig.for_data(ds)
    assert cfg.head == "mog" and cfg.atom_columns == (1,) and cfg.atoms == ((0.0,),)
    assert MADEConfig.for_data(ds, atoms=(), atom_columns=()).atom_columns == ()  # turned off


def test_at_most_k_minus_1_atoms_the_most_frequent_and_none_below_the_share():
    rng = np.random.default_rng(0)
    col = np.concatenate([np.repeat([1.0, 2.0, 3.0, 4.0, 7.5], [320, 240, 96, 80, 24]),  # 40, 30, 12, 10, 3%
                          rng.normal(size=40)])  # and continuous values: the median value's count is 1
    x = np.stack([rng.normal(size=1000), np.concatenate([rng.permutation(col), rng.normal(size=200)])], axis=1)
    ds = Dataset("c", x[:800], x[800:900], x[900:], 0, None)
    assert ATOM_SHARE == 0.1 and ATOM_RATIO == 10
    assert MADEConfig.for_data(ds, components=3).atoms == ((1.0, 2.0),)  # the two most frequent
    assert MADEConfig.for_data(ds, components=9).atoms == ((1.0, 2.0, 3.0, 4.0),)  # 7.5 holds 3%
    assert MADEConfig.for_data(ds, head="gaussian").atom_columns == ()  # one Gaussian: nothing to pin


def test_the_peak_of_a_column_recorded_on_a_grid_is_no_atom():
    """Values rounded to 0.1: the most frequent holds over 10% of the rows but under 10 times the
    median value's rows (a grid's peak, not a point mass); a point mass on the same grid is one."""
    rng = np.random.default_rng(3)
    grid = np.round(rng.normal(0, 0.25, 1000), 1)
    assert np.mean(grid == 0.0) > ATOM_SHARE
    spiked = np.where(rng.random(1000) < 0.3, 9.0, np.round(rng.normal(0, 3, 1000), 1))
    x = np.stack([grid, spiked], axis=1)
    ds = Dataset("g", x[:800], x[800:900], x[900:], 0, None)
    assert MADEConfig.for_data(ds).atom_columns == (1,) and MADEConfig.for_data(ds).atoms == ((9.0,),)


def test_a_discrete_column_is_no_atom_column():
    rng = np.random.default_rng(1)
    x = np.stack([rng.normal(size=600), rng.choice([1.0, 2.0], size=600)], axis=1)
    ds = Dataset("d", x[:480], x[480:540], x[540:], 0, None, discrete_columns=(1,))
    cfg = MADEConfig.for_data(ds)
    assert cfg.head == "mixed" and cfg.discrete_columns == (1,) and cfg.atom_columns == ()


@pytest.mark.parametrize("kw, words", [
    ({"head": "gaussian", "atom_columns": (0,), "atoms": ((0.0,),)}, "atom_columns need a mixture"),
    ({"atom_columns": (0,), "atoms": ((0.0, 1.0, 2.0),)}, "at most components - 1 = 2 atoms"),
    ({"atom_columns": (1, 0), "atoms": ((0.0,), (1.0,))}, "atom_columns must be increasing"),
    ({"atom_columns": (5,), "atoms": ((0.0,),)}, "atom_columns must be increasing real"),
    ({"atom_columns": (0,), "atoms": ()}, "atoms must hold one list per atom column"),
    ({"atom_columns": (0,), "atoms": ((1.0, 0.0),)}, "atoms[0] must be 1.."),
])
def test_the_configuration_refuses_atoms_it_cannot_pin(kw, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("(", r"\(")):
        MADEConfig(**{"D": 2, "classes": 0, "head": "mog", "input_encoding": "raw", "components": 3, **kw})


# --------------------------------------------------------------------------- the passes


def test_pinned_outputs_are_the_atoms_standardised_mean_and_the_narrowest_scale():
    model = atom_model(atom_columns=(2,), ordering="natural")  # the last column: its outputs see the others
    x = random_data(model.config, 6, 0)
    z = model.logits(x).reshape(6, -1)[:, 2 * model.out_repeat:]  # column 2's (6, R), whatever the inputs
    K = 3
    shift, scale = model.shift[2], model.scale[2]
    np.testing.assert_array_equal(z[:, K:K + 2], np.tile((np.array([0.0, 2.5]) - shift) / scale, (6, 1)))
    np.testing.assert_array_equal(z[:, 2 * K:2 * K + 2], PINNED_RAW_SCALE)
    assert np.ptp(z[:, K + 2]) > 0 and np.ptp(z[:, 0]) > 0  # the third component's mean and the weights are free
    assert log_scale(np, PINNED_RAW_SCALE)[0] == pytest.approx(-LOG_SCALE_BOUND, abs=0.005)


def test_the_pins_hold_on_the_strict_stand_in_for_a_device(stand):
    """No host array and no function outside the standard in the pinned passes (as on CuPy)."""
    cfg = atom_model(atom_columns=(2,), ordering="natural").config
    model = stand.made(cfg)
    randomize_weights(model, 4)
    model.set_standardisation(stand.put(np.array([0.5, -1.0, 2.0])), stand.put(np.array([1.0, 2.0, 0.5])))
    x = stand.put(random_data(cfg, 6, 0))
    z = stand.get(model.logits(x)).reshape(6, -1)[:, 2 * model.out_repeat:]
    np.testing.assert_allclose(z[:, 3:5], np.tile([(0.0 - 2.0) / 0.5, (2.5 - 2.0) / 0.5], (6, 1)))
    assert np.isfinite(float(stand.get(model.loss_and_grad(x))))
    assert not stand.get(model.layers[-1].db)[2 * model.out_repeat + 3:2 * model.out_repeat + 5].any()
    draws = stand.get(sample_naive(model, noise=stand.put(np.random.default_rng(1).random((40, 3)))))
    assert np.isin(draws[:, 2], [0.0, 2.5]).sum() >= 10 and np.isfinite(draws).all()


@pytest.mark.parametrize("head", ["mog", "mixed"])
@pytest.mark.parametrize("direct", [False, True])
def test_gradients_match_finite_differences(head, direct):
    kw = {"discrete_columns": (2,), "levels": ((0.0, 1.0, 4.0),)} if head == "mixed" else {}
    model = atom_model(head, direct=direct, num_masks=2, **kw)
    x = random_data(model.config, 5, 1)
    x[:2, 1] = 2.5  # rows at an atom
    assert kink_free_weights(model, x, 0, mask=1)
    assert check_gradients(model, x, 0, mask=1) < RTOL


def test_no_gradient_reaches_a_pinned_output():
    model = atom_model(num_masks=1, atom_columns=(2,), ordering="natural")
    x = random_data(model.config, 8, 2)
    model.loss_and_grad(x)
    R, K = 2 * model.out_repeat, 3  # column 2's block
    pinned = [R + K, R + K + 1, R + 2 * K, R + 2 * K + 1]
    V = model.layers[-1]
    assert not V.dW[:, pinned].any() and not V.db[pinned].any()
    assert V.dW[:, R + K + 2].any()  # the free component's mean learns


def test_the_block_sparse_engine_pins_the_relabelled_outputs():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(blocked_mod, "BLOCK_MIN_SIZE", 0)
        mp.setattr(blocked_mod, "BLOCK_MAX_COVERAGE", 1.0)
        mp.setattr(blocked_mod, "block_plan", functools.partial(block_plan, width=3))
        model = atom_model(D=4, atom_columns=(0, 2), atoms=((-1.0,), (0.0, 3.0)), direct=True)
        fast = BlockedMADE(model)
    assert list(fast.input_perm) != list(range(4))  # the columns move
    x = random_data(model.config, 12, 3)
    x[:4, 2] = 3.0
    xp_ = fast.permute_data(x)
    np.testing.assert_allclose(fast.nll(xp_), model.nll(x), rtol=1e-12, atol=1e-10)
    loss = float(fast.loss_and_grad(xp_))
    assert loss == pytest.approx(float(model.loss_and_grad(x)), rel=1e-12)
    for g_fast, g_ref in zip(fast.to_natural(fast.grads), model.grads):
        np.testing.assert_allclose(g_fast, g_ref, rtol=1e-9, atol=1e-12)


def test_the_fast_sampler_draws_the_atoms_of_the_naive_one():
    model = atom_model(D=3, K=3, atom_columns=(0, 1), atoms=((1.0,), (0.0, 2.5)))
    V = model.layers[-1]
    R, K = model.out_repeat, 3
    V.b[R:R + K] = [6.0, 6.0, -6.0]  # column 1: the two atoms' weights dominate
    u = np.random.default_rng(3).random((200, 3))
    a, b = sample_naive(model, noise=u), sample_fast(model, noise=u)
    np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)
    at_atom = np.isin(a[:, 1], [0.0, 2.5])  # a pinned component draws its atom exactly
    assert at_atom.mean() > 0.8 and np.array_equal(at_atom, np.isin(b[:, 1], [0.0, 2.5]))
    assert np.isin(a[:, 0], [1.0]).any() and not np.isin(a[:, 2], [0.0, 2.5, 1.0]).any()


def test_float32_draws_give_the_atoms_exactly_on_both_samplers():
    cfg = atom_model().config
    model = MADE(MADEConfig.from_dict({**cfg.to_dict(), "dtype": "float32"}))
    randomize_weights(model, 4)
    model.set_standardisation(np.array([0.3, 4.7, -2.0]), np.array([1.5, 3.1, 0.7]))
    V = model.layers[-1]
    V.b[model.out_repeat:model.out_repeat + 3] = [6.0, 6.0, -6.0]
    u = np.random.default_rng(8).random((300, 3))
    a, b = sample_naive(model, noise=u), sample_fast(model, noise=u)
    hit = np.isin(a[:, 1], [0.0, 2.5])
    assert hit.mean() > 0.8 and np.array_equal(hit, np.isin(b[:, 1], [0.0, 2.5]))
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_a_checkpoint_keeps_the_atoms(tmp_path):
    model = atom_model()
    save_checkpoint(tmp_path / "m.npz", model)
    loaded = load_checkpoint(tmp_path / "m.npz")[0]
    assert loaded.config.atom_columns == (1,) and loaded.config.atoms == ((0.0, 2.5),)
    x = random_data(model.config, 4, 7)
    np.testing.assert_array_equal(loaded.logits(x), model.logits(x))


# --------------------------------------------------------------------------- training


def test_a_zero_inflated_column_trains_to_its_spike():
    """30% zeros: pinned, the zeros get the spike's density and the NLL falls far below the
    unpinned mixture's after the same epochs (which cannot hold a component on the spike)."""
    ds = zero_inflated(3000, seed=2)
    nll = {}
    for pinned in (True, False):
        mcfg = MADEConfig.for_data(ds, hidden=(32,), components=3, **({} if pinned else {"atoms": (),
                                                                                        "atom_columns": ()}))
        model = MADE(mcfg)
        fit(model, ds, TrainConfig(epochs=15, patience=0, seed=0), threads=1)
        nll[pinned] = float(np.mean(model.nll(ds.test)))
    assert mcfg.atom_columns == () and MADEConfig.for_data(ds).atom_columns == (1,)
    assert nll[True] < nll[False] - 1.0, nll


def test_train_names_the_atoms_and_no_atoms_turns_them_off(tmp_path):
    from click.testing import CliRunner

    from made_np.cli import cli
    ds = zero_inflated(1000, seed=4)
    np.save(tmp_path / "zi.npy", np.concatenate([ds.train, ds.valid, ds.test]))
    args = ["train", "--dataset", str(tmp_path / "zi.npy"), "--hidden", "8", "--epochs", "1", "--num-masks", "1"]
    on = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "on")])
    assert on.exit_code == 0, on.output
    assert "atoms (values many rows hold exactly, each a pinned component): 1 {0}" in on.output
    assert load_checkpoint(tmp_path / "on")[0].config.atoms == ((0.0,),)
    off = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "off"), "--no-atoms"])
    assert off.exit_code == 0 and "atoms (" not in off.output
    assert load_checkpoint(tmp_path / "off")[0].config.atom_columns == ()
    again = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "on"), "--no-atoms"])
    assert again.exit_code == 2 and "--atoms: cannot change a resumed run" in again.output


def test_data_info_names_a_columns_atoms(tmp_path):
    from click.testing import CliRunner

    from made_np.cli import cli
    ds = zero_inflated(1000, seed=4)
    np.save(tmp_path / "zi.npy", np.concatenate([ds.train, ds.valid, ds.test]))
    out = CliRunner().invoke(cli, ["data", "info", str(tmp_path / "zi.npy")])
    assert out.exit_code == 0, out.output
    from made_np import load_dataset
    share = np.mean(load_dataset(str(tmp_path / "zi.npy")).train[:, 1] == 0)
    assert f"column 1: real, 0 .. " in out.output and f"; atom 0 ({share:.1%} of the observed training rows)" in out.output
    assert "column 0: real" in out.output and out.output.count("atom ") == 1


@pytest.mark.parametrize("cls", ["MADEDensity", "MADEImputer"])
def test_the_estimators_pin_atoms_unless_told_not_to(cls):
    import made_np
    from sklearn.base import clone
    x = np.concatenate([zero_inflated(600, seed=5).train, zero_inflated(600, seed=6).train])
    est = getattr(made_np, cls)(hidden=(8,), epochs=1, random_state=0)
    assert est.get_params()["atoms"] is True
    assert est.fit(x).model_.config.atoms == ((0.0,),)
    off = clone(est).set_params(atoms=False).fit(x)
    assert off.model_.config.atom_columns == ()
    with pytest.raises(ValueError, match="atoms must be true or false"):
        clone(est).set_params(atoms="no").fit(x)


def test_density_says_the_grid_leaves_out_the_atoms(tmp_path):
    from click.testing import CliRunner

    from made_np.cli import cli
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(size=1000), np.where(rng.random(1000) < 0.3, 0.0, rng.gamma(2.0, 3.0, 1000))], axis=1)
    np.save(tmp_path / "two.npy", x)
    assert CliRunner().invoke(cli, ["train", "--dataset", str(tmp_path / "two.npy"), "--hidden", "8", "--epochs", "1",
                                    "--out", str(tmp_path / "r"), "-q"]).exit_code == 0
    out = CliRunner().invoke(cli, ["density", str(tmp_path / "r"), "--out", str(tmp_path / "d.png")])
    assert out.exit_code == 0, out.output
    assert "atoms of x2 at 0: spikes narrower than the grid's cells" in out.output and (tmp_path / "d.png").exists()
