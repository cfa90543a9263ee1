"""Masked dense layers and activations, against values computed by hand (paper eqs. 10-13).

``y = x (W * M) + b``; backward ``dW = (x^T delta) * M``, ``db = sum_batch delta``,
``dx = delta (W * M)^T``; ReLU ``max(a, 0)`` with derivative ``1[a > 0]``; leaky ReLU
with slope 0.01. The numbers in the 2x3 example below were worked out on paper.
"""
from __future__ import annotations

import numpy as np
import pytest

from made_np.layers import (INITS, Dense, LeakyReLU, MaskedDense, ReLU, initial_weights, make_activation,
                             orthogonal_init, uniform_init)

X = np.array([[1.0, 2.0], [3.0, -1.0]])
W = np.array([[1.0, -2.0, 0.5], [3.0, 1.0, -1.0]])
M = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
B = np.array([0.1, 0.2, 0.3])
DELTA = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.5]])
# W * M = [[1, 0, 0.5], [3, 1, 0]]
Y = np.array([[7.1, 2.2, 0.8], [0.1, -0.8, 1.8]])
DW = np.array([[7.0, 0.0, 0.5], [0.0, -1.0, 0.0]])  # (x^T delta) = [[7, 3, .5], [0, -1, -2.5]], times M
DB = np.array([3.0, 1.0, -0.5])
DX = np.array([[0.5, 3.0], [2.25, 7.0]])


def hand_layer(dtype="float64", fixed=False, need_input_grad=True):
    layer = MaskedDense(2, 3, np, np.random.default_rng(0), dtype, need_input_grad=need_input_grad, fixed=fixed)
    layer.W[...] = W * M if fixed else W  # a fixed layer's owner keeps W masked
    layer.b[...] = B
    return layer


@pytest.mark.parametrize("fixed", [False, True])
def test_masked_dense_forward_backward_by_hand(fixed):
    layer = hand_layer(fixed=fixed)
    y = layer.forward(X, M, keep=True)
    np.testing.assert_allclose(y, Y, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(layer.forward(X, M), y)  # the same without keeping
    dx = layer.backward(DELTA.copy(), M)
    np.testing.assert_allclose(layer.dW, DW, rtol=0, atol=1e-15)
    np.testing.assert_allclose(layer.db, DB, rtol=0, atol=1e-15)
    np.testing.assert_allclose(dx, DX, rtol=0, atol=1e-15)
    assert np.all(layer.dW[M == 0] == 0.0)
    if fixed:  # W itself is stored masked
        np.testing.assert_array_equal(layer.W, W * M)
    else:
        np.testing.assert_array_equal(layer.W, W)


def test_masked_dense_float32_and_no_input_grad():
    layer = hand_layer("float32", need_input_grad=False)
    y = layer.forward(X.astype(np.float32), M.astype(np.float32), keep=True)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, Y, rtol=1e-6)
    assert layer.backward(DELTA.astype(np.float32), M.astype(np.float32)) is None
    np.testing.assert_allclose(layer.dW, DW, rtol=1e-6)


def test_masked_dense_changing_mask_changes_the_function():
    layer = hand_layer()
    np.testing.assert_allclose(layer.forward(X, np.ones((2, 3))), X @ W + B, atol=1e-15)
    np.testing.assert_allclose(layer.forward(X, np.zeros((2, 3)), keep=True), np.broadcast_to(B, (2, 3)), atol=0)
    layer.backward(DELTA.copy(), np.zeros((2, 3)))
    assert not layer.dW.any()
    assert not hasattr(hand_layer(), "x")  # a pass without keep writes nothing to the layer


def test_masked_dense_init_and_parameter_lists():
    rng = np.random.default_rng(1)
    layer = MaskedDense(16, 5, np, rng, "float32")
    assert layer.W.shape == (16, 5) and layer.W.dtype == np.float32
    assert np.all(np.abs(layer.W) <= 1 / 4) and np.std(layer.W) > 0.05
    assert np.array_equal(layer.b, np.zeros(5))
    assert [p is q for p, q in zip(layer.params, [layer.W, layer.b])] == [True, True]
    assert [g is q for g, q in zip(layer.grads, [layer.dW, layer.db])] == [True, True]
    nob = MaskedDense(3, 2, np, rng, "float64", bias=False)
    assert nob.b is None and len(nob.params) == 1 and len(nob.grads) == 1
    y = nob.forward(np.ones((1, 3)), np.ones((3, 2)))
    np.testing.assert_allclose(y, np.ones((1, 3)) @ nob.W)
    # the same host seed gives the same initial weights
    a = MaskedDense(4, 3, np, np.random.default_rng(7), "float64")
    b = MaskedDense(4, 3, np, np.random.default_rng(7), "float64")
    assert np.array_equal(a.W, b.W)


def test_uniform_init_draws_what_it_always_drew():
    """Seeds keep their weights: the uniform init is the generator's uniform(-1/sqrt(fan_in), ...)."""
    got = MaskedDense(9, 4, np, np.random.default_rng(3), "float64").W
    np.testing.assert_array_equal(got, np.random.default_rng(3).uniform(-1 / 3, 1 / 3, size=(9, 4)))
    np.testing.assert_array_equal(uniform_init(9, 4, np.random.default_rng(3)), got)


@pytest.mark.parametrize("fan_in, fan_out", [(5, 12), (12, 5), (7, 7), (1, 3), (3, 1)])
def test_orthogonal_init_has_orthonormal_rows_or_columns(fan_in, fan_out):
    W = initial_weights("orthogonal", fan_in, fan_out, np.random.default_rng(0))
    assert W.shape == (fan_in, fan_out)
    if fan_in <= fan_out:  # rows orthonormal
        np.testing.assert_allclose(W @ W.T, np.eye(fan_in), atol=1e-12)
    if fan_in >= fan_out:  # columns orthonormal
        np.testing.assert_allclose(W.T @ W, np.eye(fan_out), atol=1e-12)
    # not a fixed matrix: another seed draws another one, the same seed the same one
    assert not np.allclose(W, initial_weights("orthogonal", fan_in, fan_out, np.random.default_rng(1)))
    np.testing.assert_array_equal(W, initial_weights("orthogonal", fan_in, fan_out, np.random.default_rng(0)))


@pytest.mark.parametrize("fan_in, fan_out", [(12, 5), (5, 12), (6, 6)])
def test_orthogonal_init_is_the_q_of_a_positive_diagonal_r(fan_in, fan_out):
    """The signs are fixed so that Q^T A = R has a positive diagonal (the Haar-distributed Q of
    the Gaussian A the generator draws): its first column is A's first column normalised, not
    the sign LAPACK happens to give."""
    W = orthogonal_init(fan_in, fan_out, np.random.default_rng(4))
    a = np.random.default_rng(4).standard_normal((max(fan_in, fan_out), min(fan_in, fan_out)))
    q = W if fan_in >= fan_out else W.T
    r = q.T @ a
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-12)
    assert np.all(np.diag(r) > 0)
    np.testing.assert_allclose(q[:, 0], a[:, 0] / np.linalg.norm(a[:, 0]), rtol=1e-12)


def test_orthogonal_init_entries_are_about_one_over_sqrt_of_the_larger_fan():
    W = initial_weights("orthogonal", 100, 2500, np.random.default_rng(0))
    assert abs(W.std() - 1 / 50) < 1e-3 and abs(W.mean()) < 1e-3


def test_layers_take_the_init_by_name():
    rng = np.random.default_rng(0)
    for layer in (MaskedDense(6, 10, np, rng, "float64", init="orthogonal"),
                  Dense(6, 10, np, rng, "float64", init="orthogonal")):
        np.testing.assert_allclose(layer.W @ layer.W.T, np.eye(6), atol=1e-12)
        # row-major although the wide draw is a transpose: the fast optimisers chunk C arrays
        assert layer.W.flags.c_contiguous and layer.dW.flags.c_contiguous
    with pytest.raises(ValueError, match="unknown init 'glorot': choose one of uniform, orthogonal"):
        MaskedDense(2, 2, np, rng, init="glorot")
    assert set(INITS) == {"uniform", "orthogonal"}


def test_relu_by_hand():
    relu = ReLU(np)
    a = np.array([[-1.0, 0.0, 2.0, -0.5]])
    h = relu.forward(a, keep=True)
    assert h.tolist() == [[0.0, 0.0, 2.0, 0.0]]
    assert relu.backward(np.array([[1.0, 1.0, 3.0, 1.0]])).tolist() == [[0.0, 0.0, 3.0, 0.0]]


def test_leaky_relu_by_hand():
    act = LeakyReLU(np)
    h = act.forward(np.array([[-1.0, 0.0, 2.0, -300.0]]), keep=True)
    np.testing.assert_allclose(h, [[-0.01, 0.0, 2.0, -3.0]], rtol=1e-15)
    np.testing.assert_allclose(act.backward(np.array([[1.0, 2.0, 3.0, -1.0]])), [[0.01, 0.02, 3.0, -0.01]],
                               rtol=1e-15)


def test_make_activation():
    assert isinstance(make_activation("relu", np), ReLU)
    assert isinstance(make_activation("leaky_relu", np), LeakyReLU)
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        make_activation("tanh", np)
