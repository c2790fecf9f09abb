"""Mixed-precision emulation: float16/bfloat16 storage of the backward pass.

The reference is numpy: ``astype(np.float16)`` for float16 and an integer
round-to-nearest-even on the float32 bit pattern for bfloat16 (numpy has no bfloat16).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import dphi, phi

import pyjac
from pyjac import _core


def _f16(a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return a.astype(np.float16).astype(a.dtype)


def _bf16(a: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 with integer arithmetic on their bits."""
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return rounded.astype(np.uint32).view(np.float32)


def _random_float32(rng, n):
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    return x[np.isfinite(x)]


def test_float16_rounding_matches_numpy_bit_for_bit(rng):
    # Random bit patterns cover every exponent; the log-uniform draw is dense around
    # float16's subnormal range and its overflow threshold.
    x = np.concatenate([
        _random_float32(rng, 400_000),
        (rng.standard_normal(400_000) * np.exp(rng.uniform(-25, 12, 400_000))).astype(np.float32),
        np.float32([65504, 65519.99, 65520, -65520, 2.0**-24, 2.0**-25, 2.0**-25 * 1.0001, 0.0]),
    ])
    rounded, under, over = _core.round_to_format(x, "float16")
    expected = _f16(x)
    assert np.array_equal(rounded.view(np.uint32), expected.view(np.uint32))
    assert under == np.count_nonzero((x != 0) & (expected == 0))
    assert over == np.count_nonzero(np.isinf(expected))


def test_float16_rounding_from_float64_is_one_rounding(rng):
    x = rng.standard_normal(200_000) * np.exp(rng.uniform(-20, 12, 200_000))
    rounded, _, _ = _core.round_to_format(x, "float16")
    assert np.array_equal(rounded, _f16(x))


def test_bfloat16_rounding_matches_bit_arithmetic(rng):
    x = np.concatenate([
        _random_float32(rng, 400_000),
        np.float32([3.3895313892515355e38, -3.4e38, 1e-45, 1.1754944e-38, 0.0]),
    ])
    rounded, under, over = _core.round_to_format(x, "bfloat16")
    expected = _bf16(x)
    assert np.array_equal(rounded.view(np.uint32), expected.view(np.uint32))
    assert under == np.count_nonzero((x != 0) & (expected == 0))
    assert over == np.count_nonzero(np.isinf(expected) & np.isfinite(x))


def _reference_counts(net, x, grad_format, scale):
    """The chain's backward pass in numpy, rounding every stored gradient."""
    rnd = _f16 if grad_format == "float16" else (lambda a: a)
    hs, us = [x], []
    for w, b, a in zip(net.weights, net.biases, net.activations):
        us.append(hs[-1] @ w.T + b)
        hs.append(phi(a, us[-1]))
    raw = hs[-1] * scale  # loss 0.5 * sum(h_L^2)
    g = rnd(raw)
    under = [np.count_nonzero((raw != 0) & (g == 0))]
    zeros = [np.count_nonzero(g == 0)]
    norms = [np.linalg.norm(g) / scale]
    for layer in range(net.depth - 1, -1, -1):
        dz = rnd(g * dphi(net.activations[layer], us[layer]))
        raw = dz @ net.weights[layer]
        g = rnd(raw)
        under.append(np.count_nonzero((raw != 0) & (g == 0)))
        zeros.append(np.count_nonzero(g == 0))
        norms.append(np.linalg.norm(g) / scale)
    return np.array(under[::-1]), np.array(norms[::-1]), np.array(zeros[::-1])


@pytest.mark.parametrize("scale", [1.0, 2.0**12])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_underflow_counts_match_numpy_float16_float64_chain(activation, scale, rng):
    # Weights small enough that the gradient sweeps through float16's subnormal range.
    net = pyjac.Chain(14, 48, activation=activation, init="gaussian", gain=0.5, seed=3,
                      dtype="float64")
    x = rng.standard_normal((16, 48))
    r = net.backprop(x, grad_dtype="float16", loss_scale=scale)
    under, norms, zeros = _reference_counts(net, x, "float16", scale)
    assert under.sum() > 0, "the test chain must underflow somewhere"
    np.testing.assert_array_equal(r.underflow_count, under)
    np.testing.assert_array_equal(r.zero_fraction * x.size, zeros)
    np.testing.assert_allclose(r.grad_norm, norms, rtol=1e-10, atol=0)


def test_underflow_counts_match_numpy_float16_float32_chain(rng):
    # float32 GEMMs round differently from numpy's, so a few entries next to a float16
    # rounding boundary may fall either way: counts agree to 1% of the entries.
    net = pyjac.Chain(14, 64, activation="sigmoid", init="xavier", seed=5, dtype="float32")
    x = rng.standard_normal((32, 64)).astype(np.float32)
    r = net.backprop(x, grad_dtype="float16")
    under, _, _ = _reference_counts(net, x, "float16", 1.0)
    assert under.sum() > 0
    np.testing.assert_allclose(r.underflow_count, under, atol=0.01 * 32 * 64)


def test_native_grad_dtype_counts_without_rounding(rng):
    # A narrow ReLU chain has dead units, so its exact gradient has zeros to count.
    net = pyjac.Chain(10, 6, activation="relu", seed=1, dtype="float64")
    x = rng.standard_normal((8, 6))
    plain = net.backprop(x)
    counted = net.backprop(x, grad_dtype="float64")
    assert plain.grad_dtype is None and plain.zero_fraction is None
    assert counted.grad_dtype == "float64"
    np.testing.assert_array_equal(plain.grad_norm, counted.grad_norm)
    assert counted.underflow_count.sum() == 0 and counted.overflow_count.sum() == 0
    _, _, zeros = _reference_counts(net, x, "native", 1.0)
    assert zeros.sum() > 0
    np.testing.assert_array_equal(counted.zero_fraction * x.size, zeros)


@settings(max_examples=15, deadline=None)
@given(k=st.integers(min_value=0, max_value=10))
def test_power_of_two_loss_scale_changes_nothing_representable(k):
    # A 4-layer tanh chain keeps its float16 gradients well inside the normal range, so
    # scaling by 2^k must leave every unscaled norm bit-identical.
    net = pyjac.Chain(4, 16, activation="tanh", init="orthogonal", seed=2, dtype="float32")
    x = np.linspace(-1, 1, 4 * 16, dtype=np.float32).reshape(4, 16)
    base = net.backprop(x, grad_dtype="float16")
    scaled = net.backprop(x, grad_dtype="float16", loss_scale=2.0**k)
    assert base.underflow_count.sum() == 0
    np.testing.assert_array_equal(scaled.grad_norm, base.grad_norm)
    np.testing.assert_array_equal(scaled.weight_grad_norm, base.weight_grad_norm)


def test_loss_scaling_recovers_vanishing_float16_gradient(rng):
    net = pyjac.Chain(12, 64, activation="sigmoid", init="xavier", seed=0)
    x = rng.standard_normal((32, 64)).astype(np.float32)
    exact = net.backprop(x, grad_dtype="float32")
    fp16 = net.backprop(x, grad_dtype="float16")
    scaled = net.backprop(x, grad_dtype="float16", loss_scale=2.0**16)
    bf16 = net.backprop(x, grad_dtype="bfloat16")
    assert fp16.zero_fraction[0] == 1.0 and fp16.grad_norm[0] == 0.0
    assert scaled.zero_fraction[0] < 0.01
    np.testing.assert_allclose(scaled.grad_norm[0], exact.grad_norm[0], rtol=0.02)
    # bfloat16 has float32's exponent range: no underflow, 8 bits of precision.
    assert bf16.underflow_count.sum() == 0
    np.testing.assert_allclose(bf16.grad_norm, exact.grad_norm, rtol=0.05)


def test_too_large_loss_scale_overflows_and_is_reported(rng):
    net = pyjac.Chain(6, 32, activation="tanh", init="orthogonal", seed=0)
    x = rng.standard_normal((8, 32)).astype(np.float32)
    r = net.backprop(x, grad_dtype="float16", loss_scale=2.0**20)
    assert r.overflow_count[-1] > 0
    assert r.first_nonfinite_stage == "backward"
    assert r.first_nonfinite_layer == net.depth


def test_weight_gradients_are_unscaled(rng):
    net = pyjac.Chain(3, 8, activation="tanh", seed=4, dtype="float64")
    x = rng.standard_normal((5, 8))
    base = net.backprop(x, keep_grads=True)
    scaled = net.backprop(x, keep_grads=True, grad_dtype="float64", loss_scale=1024.0)
    for a, b in zip(base.weight_grads, scaled.weight_grads):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=0)
    for a, b in zip(base.bias_grads, scaled.bias_grads):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=0)
    np.testing.assert_allclose(scaled.per_example_weight_grad_norm,
                               base.per_example_weight_grad_norm, rtol=1e-12)


def test_mixed_precision_same_with_one_and_all_threads(rng):
    net = pyjac.Chain(12, 256, activation="sigmoid", init="xavier", seed=9)
    x = rng.standard_normal((256, 256)).astype(np.float32)
    one = net.backprop(x, grad_dtype="float16", loss_scale=8.0, n_threads=1)
    every = net.backprop(x, grad_dtype="float16", loss_scale=8.0, n_threads=-1)
    np.testing.assert_array_equal(one.grad_norm, every.grad_norm)
    np.testing.assert_array_equal(one.underflow_count, every.underflow_count)
    np.testing.assert_array_equal(one.zero_fraction, every.zero_fraction)


@pytest.mark.parametrize("bad", ["int8", "float8", 3, np.float32])
def test_bad_grad_dtype_names_the_argument(bad):
    net = pyjac.Chain(2, 4, dtype="float64")
    with pytest.raises((ValueError, TypeError), match="grad_dtype"):
        net.backprop(np.ones(4), grad_dtype=bad)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_loss_scale_names_the_argument(bad):
    net = pyjac.Chain(2, 4)
    with pytest.raises(ValueError, match="loss_scale"):
        net.backprop(np.ones(4), loss_scale=bad)
