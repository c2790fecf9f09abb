"""Backprop keeps the true gradient where float64 (or float32) cannot hold it.

The reference runs the backward pass in numpy's long double (x86's 80-bit format, whose
exponent reaches 1e-4951), an independent implementation with a range float64 lacks.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import forward_backward

import pyjac

LONG = np.longdouble
pytestmark = pytest.mark.skipif(
    np.finfo(LONG).minexp > -16000, reason="needs an extended-range long double"
)
TINY = np.finfo(np.float64).smallest_normal


def _reference(net, x, **kw):
    weights = [np.asarray(w, dtype=np.float64) for w in net.weights]
    biases = [np.asarray(b, dtype=np.float64) for b in net.biases]
    return forward_backward(weights, biases, net.activations, np.asarray(x, np.float64),
                            residual=net.residual, scale=net.residual_scale, norm=net.norm,
                            backward_dtype=LONG, **kw)


def _log(values):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(values, dtype=LONG)).astype(np.float64)


@pytest.mark.parametrize("dtype, atol", [("float64", 1e-9), ("float32", 2e-3)])
def test_a_thousand_layer_sigmoid_chain_keeps_every_log(dtype, atol):
    # The case: Xavier sigmoid, 1000 layers; float64 underflows near layer 500.
    net = pyjac.Chain(1000, 64, activation="sigmoid", init="xavier", seed=0, dtype=dtype)
    x = np.random.default_rng(0).standard_normal((8, 64))
    r = net.backprop(x)
    ref = _reference(net, x)
    ref_log = _log(ref["grad_norm"])
    assert np.all(np.isfinite(r.log_grad_norm))
    np.testing.assert_allclose(r.log_grad_norm, ref_log, rtol=0, atol=atol)
    np.testing.assert_allclose(r.log_weight_grad_norm, _log(ref["weight_grad_norm"]),
                               rtol=0, atol=atol)
    np.testing.assert_allclose(r.log_bias_grad_norm, _log(ref["bias_grad_norm"]),
                               rtol=0, atol=atol)
    assert ref_log[0] < -1400  # far below float64's range, and reported
    # Plain values: right wherever float64 holds them, and the first layer below its
    # normal range is named.
    plain = np.asarray(ref["grad_norm"], dtype=np.float64)
    normal = plain >= TINY
    np.testing.assert_allclose(r.grad_norm[normal], plain[normal], rtol=1e3 * atol)
    below = np.flatnonzero(~normal)
    assert r.first_underflow_layer == below.max()
    assert "first_underflow_layer=" in repr(r)


def test_underflow_layer_is_none_in_range():
    net = pyjac.Chain(5, 16, activation="tanh", seed=1, dtype="float64")
    x = np.random.default_rng(1).standard_normal((4, 16))
    r = net.backprop(x)
    assert r.first_underflow_layer is None
    # Inside the range nothing is rescaled: the logs are the logs of the plain values.
    np.testing.assert_array_equal(r.log_grad_norm, np.log(r.grad_norm))
    np.testing.assert_array_equal(r.log_weight_grad_norm, np.log(r.weight_grad_norm))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("norm", [None, "layernorm"])
def test_vanishing_chains_match_long_double(dtype, norm):
    # A bounded activation keeps the forward pass in range while the gradient vanishes
    # past float32's range. The layernorm chain runs the layer-at-a-time pass, the other
    # the tiled one.
    depth, width = 300, 24
    rng = np.random.default_rng(2)
    net = pyjac.Chain(depth, width, activation="sigmoid", init="xavier", norm=norm, seed=3,
                      dtype=dtype)
    x = rng.standard_normal((5, width))
    g_out = rng.standard_normal((5, width))
    r = net.backprop(x, grad_output=g_out)
    ref = _reference(net, x, grad_output=g_out)
    ref_log = _log(ref["grad_norm"])
    assert abs(ref_log[0] - ref_log[-1]) > 89  # beyond float32's range
    tol = 1e-9 if dtype == "float64" else 1e-5
    assert np.all(np.isfinite(r.log_grad_norm))
    assert r.first_nonfinite_layer is None
    np.testing.assert_allclose(r.log_grad_norm, ref_log, rtol=0, atol=tol * depth)
    np.testing.assert_allclose(r.log_weight_grad_norm, _log(ref["weight_grad_norm"]),
                               rtol=0, atol=tol * depth)
    np.testing.assert_allclose(r.log_bias_grad_norm, _log(ref["bias_grad_norm"]),
                               rtol=0, atol=tol * depth)


@pytest.mark.parametrize("dtype, depth, gain, x_scale, tol", [
    ("float64", 300, 30.0, 1e-300, 1e-9), ("float32", 100, 4.0, 1e-36, 1e-5)])
def test_exploding_linear_chains_past_the_range(dtype, depth, gain, x_scale, tol):
    # The gradient grows past the dtype's largest value (float64: ~1e443); the input is
    # tiny so that the forward pass stays in range. (A chain with a bounded activation
    # that explodes is chaotic: its forward rounding errors grow as fast as the gradient,
    # so no reference can follow it that far.)
    width = 16
    net = pyjac.Chain(depth, width, activation="linear", init="xavier", gain=gain, seed=7,
                      dtype=dtype)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, width)) * x_scale
    g_out = rng.standard_normal((3, width))
    r = net.backprop(x, grad_output=g_out)
    ref = _reference(net, x, grad_output=g_out)
    ref_log = _log(ref["grad_norm"])
    assert ref_log[0] > np.log(np.finfo(dtype).max) + 10
    np.testing.assert_allclose(r.log_grad_norm, ref_log, rtol=0, atol=tol * depth)
    np.testing.assert_allclose(r.log_weight_grad_norm, _log(ref["weight_grad_norm"]),
                               rtol=0, atol=tol * depth)
    if dtype == "float64":  # the plain value reads inf there, reported as such
        assert r.grad_norm[0] == np.inf and np.isfinite(r.log_grad_norm[0])
        assert r.first_nonfinite_stage == "backward"
    else:  # float64 holds what float32 cannot
        assert r.first_nonfinite_layer is None
        np.testing.assert_allclose(r.grad_norm, np.asarray(ref["grad_norm"], np.float64),
                                   rtol=tol * depth)


def test_a_chaotic_tanh_chain_scales_exactly_with_its_output_gradient():
    # Backprop is linear in dL/dh_L: a gradient 2^-100 smaller gives logs exactly
    # 100 ln 2 lower at every layer, whether or not it leaves float32's range.
    net = pyjac.Chain(300, 24, activation="tanh", init="xavier", gain=8.0, seed=3,
                      dtype="float32")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 24))
    g_out = rng.standard_normal((5, 24)).astype(np.float32)
    big = net.backprop(x, grad_output=g_out)
    small = net.backprop(x, grad_output=g_out * np.float32(2.0**-100))
    assert big.log_grad_norm[0] > 100  # e^100: past float32's largest value
    np.testing.assert_allclose(big.log_grad_norm - small.log_grad_norm, 100 * np.log(2.0),
                               rtol=1e-12)
    np.testing.assert_allclose(big.log_weight_grad_norm - small.log_weight_grad_norm,
                               100 * np.log(2.0), rtol=1e-12)


def test_residual_chain_rescales_the_skip_path_too():
    net = pyjac.Chain(400, 16, activation="tanh", residual=True, residual_scale=0.5,
                      init="xavier", seed=4, dtype="float64")
    x = np.random.default_rng(4).standard_normal((3, 16))
    g_out = np.full((3, 16), 1e-300)
    g_out[0, 0] = 3e-310  # a subnormal entry, kept as given
    r = net.backprop(x, grad_output=g_out)
    ref = _reference(net, x, grad_output=g_out)
    np.testing.assert_allclose(r.log_grad_norm, _log(ref["grad_norm"]), rtol=0, atol=1e-8)
    np.testing.assert_allclose(r.grad_norm, np.asarray(ref["grad_norm"], np.float64),
                               rtol=1e-9)


def test_kept_gradients_are_the_true_values_in_the_dtype():
    # Gradients around 1e-330 in float64: the kept arrays hold them as subnormals or
    # zero, exactly as rounding the true value gives, and their norms match the logs.
    net = pyjac.Chain(40, 12, activation="linear", init="xavier", gain=0.2, seed=5,
                      dtype="float64")
    x = np.random.default_rng(5).standard_normal((4, 12))
    r = net.backprop(x, grad_output=np.ones((4, 12)), keep_grads=True)
    ref = _reference(net, x, grad_output=np.ones((4, 12)))
    for got, want in zip(r.weight_grads, ref["weight_grads"]):
        np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=1e-9,
                                   atol=np.finfo(np.float64).smallest_subnormal * 4)
    for got, want in zip(r.bias_grads, ref["bias_grads"]):
        np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=1e-9,
                                   atol=np.finfo(np.float64).smallest_subnormal * 4)
    np.testing.assert_allclose(r.log_weight_grad_norm, _log(ref["weight_grad_norm"]),
                               rtol=0, atol=1e-9)


def test_low_precision_emulation_still_flushes():
    # Rounding to float16 is what grad_dtype measures: no rescaling there.
    net = pyjac.Chain(60, 32, activation="sigmoid", init="xavier", seed=0, dtype="float32")
    x = np.random.default_rng(0).standard_normal((8, 32))
    r = net.backprop(x, grad_dtype="float16")
    assert r.underflow_count.sum() > 0
    assert r.grad_norm[0] == 0.0 and r.log_grad_norm[0] == -np.inf


@pytest.mark.parametrize("n_threads", [1, 2])
def test_rescaled_pass_is_identical_at_every_thread_count(n_threads):
    net = pyjac.Chain(600, 96, activation="sigmoid", init="xavier", seed=6, dtype="float32")
    x = np.random.default_rng(6).standard_normal((64, 96))
    a = net.backprop(x, n_threads=1)
    b = net.backprop(x, n_threads=n_threads)
    np.testing.assert_array_equal(a.log_grad_norm, b.log_grad_norm)
    np.testing.assert_array_equal(a.log_weight_grad_norm, b.log_weight_grad_norm)
    np.testing.assert_array_equal(a.per_example_weight_grad_norm, b.per_example_weight_grad_norm)


# ---- recurrent nets over time ----------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("batch", [3, 80])  # the unit-split and the row-split passes
def test_linear_rnn_keeps_exact_logs_far_below_the_range(dtype, tol, batch):
    # W = a Q with Q orthogonal: ||dL/dh_t|| = a^(T-t) ||dL/dh_T|| and each step's share
    # of dL/dW has norm a^(T-1) ||G_T^T H_0||_F, closed forms; a^400 = 1e-400.
    a, T, n = 0.1, 400, 24
    rnn = pyjac.Recurrent(n, cell="linear", init="orthogonal", spectral_radius=a, dtype=dtype)
    rng = np.random.default_rng(8)
    go = rng.standard_normal((batch, n))
    h0 = rng.standard_normal((batch, n))
    r = rnn.backprop(steps=T, h0=h0, grad_output=go)
    go32, h032 = go.astype(dtype).astype(np.float64), h0.astype(dtype).astype(np.float64)
    expected = np.log(np.linalg.norm(go32)) + (T - np.arange(T + 1)) * np.log(a)
    np.testing.assert_allclose(r.log_grad_norm, expected, rtol=0, atol=tol * 10)
    # The forward states h_t = a^t ... leave the range too (they are stored as they
    # are): the shares are checked where h_{t-1} is still normal in the dtype.
    share = np.log(np.linalg.norm(go32.T @ h032)) + (T - 1) * np.log(a)
    forward_ok = np.arange(T) * -np.log10(a) < (300 if dtype == "float64" else 30)
    np.testing.assert_allclose(r.log_step_weight_grad_norm[forward_ok], share, rtol=0,
                               atol=tol * 10)
    plain = np.exp(expected)
    normal = plain >= TINY
    np.testing.assert_allclose(r.grad_norm[normal], plain[normal], rtol=tol * 10)
    assert r.first_underflow_step == np.flatnonzero(~normal).max()
    assert "first_underflow_step=" in repr(r)


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
@pytest.mark.parametrize("batch", [2, 72])
@pytest.mark.parametrize("dtype, shift", [("float64", 1000), ("float32", 100)])
def test_recurrent_logs_scale_exactly_with_the_output_gradient(cell, batch, dtype, shift):
    # Backprop through time is linear in dL/dh_T: a gradient 2^-shift smaller (still
    # normal where it starts, past the dtype's range after some steps) gives logs
    # exactly shift * ln 2 lower.
    rnn = pyjac.Recurrent(16, 4, cell=cell, seed=2, dtype=dtype)
    rng = np.random.default_rng(9)
    xs = rng.standard_normal((200, batch, 4))
    z = rng.standard_normal((batch, 16))
    go = (np.sign(z) * (1 + np.abs(z))).astype(dtype)  # |entries| >= 1: still normal scaled
    big = rnn.backprop(xs, grad_output=go)
    small = rnn.backprop(xs, grad_output=go * np.asarray(2.0**-shift, dtype=dtype))
    assert np.all(np.isfinite(small.log_grad_norm))
    if dtype == "float64":
        assert small.first_underflow_step is not None
    else:  # below what float32 holds, so the pass rescaled
        assert small.log_grad_norm.min() < np.log(np.finfo(np.float32).smallest_normal)
    step = shift * np.log(2.0)
    np.testing.assert_allclose(big.log_grad_norm - small.log_grad_norm, step, rtol=1e-12)
    # Step 1's share is exactly zero: h_0 = 0.
    zero = big.log_step_weight_grad_norm == -np.inf
    np.testing.assert_array_equal(zero, small.log_step_weight_grad_norm == -np.inf)
    # The shares' Gram matrices take float32 products of the smallest entries, which
    # round differently at the two scales: agreement to float32's precision there.
    np.testing.assert_allclose(
        big.log_step_weight_grad_norm[~zero] - small.log_step_weight_grad_norm[~zero], step,
        rtol=1e-12 if dtype == "float64" else 0, atol=0 if dtype == "float64" else 1e-6)
    if cell == "lstm":
        np.testing.assert_allclose(big.log_cell_grad_norm - small.log_cell_grad_norm, step,
                                   rtol=1e-12)


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
@pytest.mark.parametrize("batch", [2, 72])
@pytest.mark.parametrize("dtype, shift, rtol", [("float64", 1000, 1e-12), ("float32", 100, 1e-5)])
def test_weight_gradients_of_a_rescaled_pass_are_the_true_values(cell, batch, dtype, shift,
                                                                  rtol):
    # The weight gradients are linear in dL/dh_T too. A gradient 2^-shift smaller makes
    # the pass store its later steps at several powers of two (each run of steps is
    # summed at its own scale); the kept dW, dU, db and their norms must still be the
    # unscaled pass's times 2^-shift, to the dtype's precision (2^-shift times O(1)
    # is a normal number in both dtypes).
    rnn = pyjac.Recurrent(16, 4, cell=cell, seed=3, dtype=dtype)
    rng = np.random.default_rng(12)
    xs = rng.standard_normal((300, batch, 4))
    go = rng.standard_normal((batch, 16)).astype(dtype)
    big = rnn.backprop(xs, grad_output=go, keep_grads=True)
    small = rnn.backprop(xs, grad_output=go * np.asarray(2.0**-shift, dtype=dtype),
                         keep_grads=True)
    assert small.log_grad_norm.min() < np.log(np.finfo(dtype).smallest_normal)
    for name in ("W", "U", "b"):
        want = big.weight_grads[name].astype(np.float64)
        got = np.ldexp(small.weight_grads[name].astype(np.float64), shift)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())
    np.testing.assert_allclose(np.ldexp(small.total_grad_norm, shift), big.total_grad_norm,
                               rtol=rtol)


@pytest.mark.parametrize("batch", [2, 72])
def test_the_losses_own_gradient_joins_a_rescaled_one(batch):
    # dL/dh_t given at every step: at the last step and at step 1 only. The gradient
    # from step T has fallen to 1e-400 by step 1, where an O(1) one joins it, so
    # dL/dh_0 = a * ||its gradient||, to every digit float64 holds.
    a, T, n = 0.1, 401, 8
    rnn = pyjac.Recurrent(n, cell="linear", init="orthogonal", spectral_radius=a,
                          dtype="float64")
    rng = np.random.default_rng(10)
    go = np.zeros((T, batch, n))
    go[-1] = rng.standard_normal((batch, n))
    go[0] = rng.standard_normal((batch, n))
    r = rnn.backprop(steps=T, h0=np.ones((batch, n)), grad_output=go, loss="all")
    np.testing.assert_allclose(r.grad_norm[0], a * np.linalg.norm(go[0]), rtol=1e-12)
    np.testing.assert_allclose(r.log_grad_norm[2:T + 1],
                               np.log(np.linalg.norm(go[-1])) + (T - np.arange(2, T + 1))
                               * np.log(a), rtol=0, atol=1e-9)


def test_rescaled_recurrent_pass_is_identical_at_every_thread_count():
    for batch in (4, 96):
        rnn = pyjac.Recurrent(64, cell="lstm", seed=1, dtype="float32")
        go = np.full((batch, 64), 2.0**-120, dtype=np.float32)
        a = rnn.backprop(steps=80, grad_output=go, h0=np.ones((batch, 64)), n_threads=1)
        b = rnn.backprop(steps=80, grad_output=go, h0=np.ones((batch, 64)), n_threads=2)
        np.testing.assert_array_equal(a.log_grad_norm, b.log_grad_norm)
        np.testing.assert_array_equal(a.log_step_weight_grad_norm, b.log_step_weight_grad_norm)
        assert a.total_grad_norm == b.total_grad_norm


def test_diagnose_reads_the_exact_logs_of_a_chain_past_float64():
    # Its per-layer factors and mean rate come from the logs: finite where the plain
    # norms are 0 below layer ~500.
    rng = np.random.default_rng(11)
    model = [(rng.standard_normal((32, 32)) / np.sqrt(32), np.zeros(32), "sigmoid")
             for _ in range(1000)]
    x = rng.standard_normal((4, 32))
    rep = pyjac.diagnose(model, x)
    r = pyjac.Chain.from_weights([w for w, _, _ in model], [b for _, b, _ in model],
                                 activation="sigmoid").backprop(
        np.asarray(x, np.float64))
    assert r.first_underflow_layer is not None
    assert np.all(np.isfinite(rep.step)) and np.all(rep.step > 0)
    np.testing.assert_allclose(np.log(rep.rate),
                               (r.log_grad_norm[0] - r.log_grad_norm[-1]) / 1000, rtol=1e-9)
    assert set(rep.verdicts[:400]) == {"vanishing"}
