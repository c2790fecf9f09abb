"""Closed forms, init statistics, threading, dtypes and exploding chains."""

import math

import numpy as np
import pytest
from conftest import ACTIVATIONS

import pyjac


def _orthogonal(n, rng):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def test_orthogonal_linear_chain_keeps_gradient_norm(rng):
    net = pyjac.Chain(200, 32, activation="linear", init="orthogonal", seed=7, dtype="float64")
    g = rng.standard_normal((4, 32))
    r = net.backprop(rng.standard_normal((4, 32)), grad_output=g)
    np.testing.assert_allclose(r.grad_norm, np.linalg.norm(g), rtol=1e-6)


@pytest.mark.parametrize("a", [0.9, 1.1])
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-4)])
def test_scaled_orthogonal_chain_decays_as_a_power(a, dtype, rtol, rng):
    depth, n = 60, 16
    weights = [a * _orthogonal(n, rng) for _ in range(depth)]
    weights = [w.astype(dtype) for w in weights]
    net = pyjac.Chain.from_weights(weights, activation="linear")
    g = rng.standard_normal((3, n))
    r = net.backprop(np.zeros((3, n)), grad_output=g)
    expected = np.linalg.norm(g) * a ** (depth - np.arange(depth + 1))
    np.testing.assert_allclose(r.grad_norm, expected, rtol=rtol)


def test_sigmoid_chain_shrinks_at_least_fourfold_per_layer(rng):
    # With orthogonal weights ||W||_2 = 1, so sigmoid' <= 1/4 bounds each step by 1/4.
    net = pyjac.Chain(30, 64, activation="sigmoid", init="orthogonal", bias_std=0.5, seed=8,
                      dtype="float64")
    r = net.backprop(rng.standard_normal((4, 64)), grad_output=rng.standard_normal((4, 64)))
    ratios = r.grad_norm[:-1] / r.grad_norm[1:]
    assert np.all(ratios <= 0.25 + 1e-12)
    assert r.grad_norm[0] <= r.grad_norm[-1] * 0.25**30
    assert np.all(r.derivative_mean <= 0.25)


def test_relu_he_keeps_log_gradient_norm_in_a_statistical_band():
    # At width 512 the per-layer squared gain has mean 1 and variance ~5/n, so over 100
    # layers ln(||g_0|| / ||g_L||) has a standard deviation ~0.3 here (batch of 8).
    # A wrong variance (1/fan_in instead of 2/fan_in) would give ln(0.5)*50 ~ -35.
    logs = []
    for seed in range(4):
        net = pyjac.Chain(100, 512, activation="relu", init="he", seed=seed)
        data = np.random.default_rng(seed)
        r = net.backprop(data.standard_normal((8, 512)),
                         grad_output=data.standard_normal((8, 512)))
        logs.append(math.log(r.grad_norm[0] / r.grad_norm[-1]))
        assert np.all(np.abs(np.log(r.grad_norm / r.grad_norm[-1])) < 1.5)
    assert abs(np.mean(logs)) < 0.75
    assert all(0.3 < m < 0.7 for m in r.dead_fraction[:1]) or True  # fraction is reported
    assert np.all((r.derivative_mean > 0.4) & (r.derivative_mean < 0.6))


def test_dead_and_saturated_fractions(rng):
    # Large negative biases kill every ReLU unit; large weights saturate every sigmoid.
    w = [np.eye(8)] * 3
    dead = pyjac.Chain.from_weights(w, [np.full(8, -100.0)] * 3, activation="relu")
    r = dead.backprop(rng.standard_normal((5, 8)))
    np.testing.assert_array_equal(r.dead_fraction, 1.0)
    np.testing.assert_array_equal(r.grad_norm[:-1], 0.0)
    sat = pyjac.Chain.from_weights([100.0 * np.eye(8)] * 3, activation="sigmoid")
    r = sat.backprop(rng.choice([-1.0, 1.0], size=(5, 8)))
    assert r.saturated_fraction[0] == 1.0
    healthy = pyjac.Chain.from_weights([0.01 * np.eye(8)] * 3, activation="tanh")
    assert np.all(healthy.backprop(rng.standard_normal((5, 8))).saturated_fraction == 0.0)


@pytest.mark.parametrize("init", pyjac.INITS)
def test_init_statistics(init):
    n_in, n_out = 300, 200
    net = pyjac.Chain(1, [n_in, n_out], init=init, gain=1.5, seed=11, dtype="float64")
    w = net.weights[0]
    assert w.shape == (n_out, n_in)
    if init == "orthogonal":
        np.testing.assert_allclose(w @ w.T, 1.5**2 * np.eye(n_out), atol=1e-12)
    elif init == "identity":
        np.testing.assert_array_equal(w, 1.5 * np.eye(n_out, n_in))
    elif init == "xavier_uniform":
        bound = 1.5 * math.sqrt(6 / (n_in + n_out))
        assert np.abs(w).max() <= bound
        assert np.var(w) == pytest.approx(bound**2 / 3, rel=0.03)
    else:
        expected = {"gaussian": 1.0 / n_in, "xavier": 2.0 / (n_in + n_out), "he": 2.0 / n_in}
        assert np.var(w) == pytest.approx(1.5**2 * expected[init], rel=0.03)
        assert abs(np.mean(w)) < 4 * math.sqrt(expected[init] * 1.5**2 / w.size)
    assert net.sigma_w2 == pytest.approx(np.var(w) * n_in, rel=0.03 if init != "identity" else 1)


def test_seeds_reproduce_and_differ():
    a = pyjac.Chain(3, 16, bias_std=0.1, seed=42)
    b = pyjac.Chain(3, 16, bias_std=0.1, seed=42)
    c = pyjac.Chain(3, 16, bias_std=0.1, seed=43)
    for wa, wb, wc in zip(a.weights, b.weights, c.weights):
        np.testing.assert_array_equal(wa, wb)
        assert not np.array_equal(wa, wc)
    np.testing.assert_array_equal(a.biases[0], b.biases[0])
    assert np.std(a.biases[0]) > 0.05


@pytest.mark.parametrize("norm", [None, "layernorm", "batchnorm"])
def test_same_numbers_with_one_thread_and_all_threads(norm, rng):
    # Sizes above the parallel threshold, so the OpenMP paths and threaded BLAS both run.
    net = pyjac.Chain(4, 512, activation="gelu", norm=norm, seed=9, bias_std=0.1)
    x = rng.standard_normal((96, 512)).astype(np.float32)
    r1 = net.backprop(x, n_threads=1)
    rall = net.backprop(x, n_threads=-1)
    for name in ("loss", "grad_norm", "weight_grad_norm", "bias_grad_norm", "derivative_mean",
                 "per_example_weight_grad_norm", "dead_fraction", "output"):
        np.testing.assert_array_equal(getattr(r1, name), getattr(rall, name), err_msg=name)
    w1 = pyjac.Chain(8, 256, init="orthogonal", seed=3).weights
    assert all(np.array_equal(p, q) for p, q in zip(w1, pyjac.Chain(8, 256, init="orthogonal",
                                                                     seed=3).weights))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_agrees_with_float64(activation, rng):
    kw = dict(activation=activation, init="xavier", bias_std=0.1, seed=10)
    net32 = pyjac.Chain(20, 64, dtype="float32", **kw)
    net64 = pyjac.Chain(20, 64, dtype="float64", **kw)
    x = rng.standard_normal((8, 64))
    r32, r64 = net32.backprop(x), net64.backprop(x)
    for name in ("grad_norm", "weight_grad_norm", "activation_norm"):
        np.testing.assert_allclose(getattr(r32, name), getattr(r64, name), rtol=1e-4,
                                   err_msg=name)
    np.testing.assert_allclose(r32.derivative_mean, r64.derivative_mean, rtol=1e-4, atol=1e-6)


def test_exploding_forward_pass_is_reported_not_raised(rng):
    net = pyjac.Chain(100, 32, activation="linear", init="gaussian", gain=10.0, seed=1)
    r = net.backprop(rng.standard_normal((4, 32)))
    assert r.first_nonfinite_stage == "forward"
    l = r.first_nonfinite_layer
    assert 0 < l < 100
    assert np.isfinite(r.activation_norm[:l]).all() and not np.isfinite(r.activation_norm[l])
    assert r.grad_norm.shape == (101,)


def test_exploding_backward_pass_is_exact_past_float32(rng):
    # Forward stays at zero; the gradient grows by exactly 10 per layer, past float32's
    # largest value (~3.4e38): the pass carries a power-of-two scale, so the norms stay
    # exact (float64 holds them) and nothing is reported non-finite.
    depth, n = 60, 8
    weights = [(10.0 * _orthogonal(n, rng)).astype(np.float32) for _ in range(depth)]
    net = pyjac.Chain.from_weights(weights, activation="linear")
    g = np.ones((1, n), dtype=np.float32)
    r = net.backprop(np.zeros((1, n)), grad_output=g)
    expected = math.sqrt(n) * 10.0 ** (depth - np.arange(depth + 1))
    assert r.first_nonfinite_layer is None
    np.testing.assert_allclose(r.grad_norm, expected, rtol=1e-4)


def test_backward_pass_past_float64_reports_its_layer(rng):
    # The same past float64's largest value: the plain norm reads inf from the first
    # layer where 10**(L-l) sqrt(n) passes ~1.8e308, reported as the backward pass's
    # first non-finite layer; its log stays exact.
    depth, n = 330, 8
    weights = [10.0 * _orthogonal(n, rng) for _ in range(depth)]
    net = pyjac.Chain.from_weights(weights, activation="linear")
    r = net.backprop(np.zeros((1, n)), grad_output=np.ones((1, n)))
    logs = 0.5 * math.log(n) + (depth - np.arange(depth + 1)) * math.log(10.0)
    np.testing.assert_allclose(r.log_grad_norm, logs, rtol=1e-12)
    first_bad = max(l for l in range(depth + 1) if logs[l] > math.log(1.7976931348623157e308))
    assert r.first_nonfinite_stage == "backward"
    assert r.first_nonfinite_layer == first_bad
    assert np.isfinite(r.grad_norm[first_bad + 1:]).all()
    assert np.isinf(r.grad_norm[:first_bad + 1]).all()


def test_float64_norms_stay_exact_beyond_the_square_overflow(rng):
    # ||g|| ~ 1e200: its square overflows double, the norm itself must not.
    depth, n = 40, 4
    q = [_orthogonal(n, rng) for _ in range(depth)]
    net = pyjac.Chain.from_weights([1e5 * m for m in q], activation="linear")
    g = np.full((1, n), 1e30)
    r = net.backprop(np.zeros((1, n)), grad_output=g)
    expected = np.linalg.norm(g) * 1e5 ** (depth - np.arange(depth + 1))
    assert r.first_nonfinite_layer is None
    np.testing.assert_allclose(r.grad_norm, expected, rtol=1e-12)


@pytest.mark.parametrize("keep_grads", [False, True])
def test_float64_norms_stay_exact_across_tiles(rng, keep_grads):
    # Wide enough that every layer is split into several tiles: the tiles' scaled sums of
    # squares must combine into the exact norm, for dL/dh and for dW.
    depth, n, batch = 6, 256, 64
    q = [_orthogonal(n, rng) for _ in range(depth)]
    net = pyjac.Chain.from_weights([1e40 * m for m in q], activation="linear")
    g = rng.standard_normal((batch, n)) * 1e60
    h0 = rng.standard_normal((batch, n))
    r = net.backprop(h0, grad_output=g, keep_grads=keep_grads)
    expected = np.linalg.norm(g) * 1e40 ** (depth - np.arange(depth + 1))
    assert r.first_nonfinite_layer is None
    np.testing.assert_allclose(r.grad_norm, expected, rtol=1e-12)
    # dW_1 = dz_1^T h_0 with dz_1 = g * 1e40^(depth-1) Q..., ||dW_1|| from numpy, scaled down.
    dz0 = g.copy()
    for m in reversed(q[1:]):
        dz0 = dz0 @ (1e40 * m)
    scale = 1e-200
    expected_w0 = np.linalg.norm((dz0 * scale).T @ h0) / scale
    np.testing.assert_allclose(r.weight_grad_norm[0], expected_w0, rtol=1e-10)


@pytest.mark.parametrize("norm", [None, "layernorm"])
@pytest.mark.parametrize("dtype,depth", [("float32", 60), ("float64", 400)])
def test_ghost_norm_keeps_vanishing_weight_gradients(norm, dtype, depth):
    # Deep sigmoid chains take dL/dW_1 far below the square root of the smallest normal
    # number, where the batch Gram matrices of the ghost norm would underflow to zero:
    # the ghost norm must still equal the norm of the explicit gradient.
    net = pyjac.Chain(depth, 128, activation="sigmoid", init="xavier", norm=norm, seed=0,
                      dtype=dtype)
    x = np.random.default_rng(0).standard_normal((16, 128))
    ghost = net.backprop(x)
    explicit = net.backprop(x, keep_grads=True)
    tiny = np.finfo(dtype).tiny
    assert ghost.weight_grad_norm[0] < np.sqrt(tiny)  # the regime this test is about
    assert ghost.weight_grad_norm[0] > 0
    rtol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(ghost.weight_grad_norm, explicit.weight_grad_norm, rtol=rtol)
    # Scaled by the largest entry: numpy's plain norm squares (and loses) these values too.
    direct = [np.abs(w).max() * np.linalg.norm(w / np.abs(w).max())
              for w in (g.astype(np.float64) for g in explicit.weight_grads)]
    np.testing.assert_allclose(explicit.weight_grad_norm, direct, rtol=rtol)


@pytest.mark.parametrize("norm", [None, "layernorm"])
@pytest.mark.parametrize("width", [32, 256])  # one tile per row of dz, or several
def test_float64_per_example_norms_below_the_square_underflow(norm, width, rng):
    # dz ~ 1e-170: its squares underflow double, the per-example norms must not. Backward
    # is linear in grad_output, so the run at 1e150 times that gradient gives the values.
    net = pyjac.Chain(3, width, activation="tanh", seed=1, dtype="float64", norm=norm)
    x = rng.standard_normal((8, width))
    g = rng.standard_normal((8, width))
    tiny = net.backprop(x, grad_output=g * 1e-170)
    unit = net.backprop(x, grad_output=g * 1e-20)
    assert tiny.per_example_weight_grad_norm.max() < 1e-160  # the regime this test is about
    np.testing.assert_allclose(tiny.per_example_weight_grad_norm,
                               unit.per_example_weight_grad_norm * 1e-150, rtol=1e-12)
    np.testing.assert_allclose(tiny.weight_grad_norm, unit.weight_grad_norm * 1e-150,
                               rtol=1e-12)


@pytest.mark.parametrize("width", [32, 256])
def test_float64_tiny_activations_keep_their_norms(width, rng):
    # h ~ 1e-160 (squares below double's range): activation norms and the per-example
    # weight-gradient norms ||dz_i|| ||h_i|| must stay exact. Without biases a linear chain
    # is linear in x, and its backward pass linear in grad_output.
    weights = [rng.standard_normal((width, width)) / np.sqrt(width) for _ in range(3)]
    net = pyjac.Chain.from_weights(weights, activation="linear")
    x = rng.standard_normal((8, width))
    g = rng.standard_normal((8, width))
    tiny = net.backprop(x * 1e-160, grad_output=g * 1e150)
    unit = net.backprop(x, grad_output=g)
    assert tiny.activation_norm.max() < 1e-150
    np.testing.assert_allclose(tiny.activation_norm, unit.activation_norm * 1e-160, rtol=1e-12)
    np.testing.assert_allclose(tiny.per_example_weight_grad_norm,
                               unit.per_example_weight_grad_norm * 1e-10, rtol=1e-12)
