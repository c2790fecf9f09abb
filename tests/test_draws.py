"""The seeded normal draws behind every Gaussian init: the core's own float32 polynomial
Box-Muller (draw.cpp) against numpy's in float64, applied to the same splitmix64 counters."""

from __future__ import annotations

import numpy as np
import pytest

import pyjac

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _stream(seed, stream, n):
    """Raw outputs 0..n-1 of the core's Rng(seed, stream), in wrapping uint64."""
    key = np.array([seed], dtype=np.uint64) ^ (np.array([0xD1B54A32D192ED03], dtype=np.uint64)
                                               * np.uint64(stream + 1))
    state = _mix(key + GOLDEN)
    k = np.arange(1, n + 1, dtype=np.uint64)
    return _mix(state + k * GOLDEN)


def _box_muller(seed, stream, n):
    """Entries 0..n-1 in float64, and the radius of each: pair j from raw output j, its
    top 31 bits for the radius and its low 32 bits for the angle."""
    x = _stream(seed, stream, (n + 1) // 2)
    u = ((x >> np.uint64(33)).astype(np.float64) + 0.5) * 2.0**-31
    turns = (x & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32
    r = np.sqrt(-2.0 * np.log(u))
    out = np.empty(u.size * 2)
    out[0::2] = r * np.cos(2 * np.pi * turns)
    out[1::2] = r * np.sin(2 * np.pi * turns)
    return out[:n], np.repeat(r, 2)[:n]


def _assert_draws(w, seed, stream):
    """The draws are float32 values within 4e-7 of the float64 Box-Muller, relative to
    their radius (the angle's error moves an entry by that much at any size)."""
    with np.errstate(over="ignore"):
        expected, radius = _box_muller(seed, stream, w.size)
    z = w.ravel()
    assert np.array_equal(z, z.astype(np.float32).astype(np.float64))
    assert np.all(np.abs(z - expected) <= 4e-7 * radius)


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63 + 7])
def test_gaussian_weights_are_box_muller_of_the_counters(seed):
    # fan_in 1 and gain 1: the weights are the normal draws themselves
    n = 40_001  # several chunks of the parallel draw, and an odd count
    w = pyjac.Chain(1, [1, n], init="gaussian", seed=seed, dtype="float64").weights[0]
    _assert_draws(w, seed, 0)
    w32 = pyjac.Chain(1, [1, n], init="gaussian", seed=seed, dtype="float32").weights[0]
    assert np.array_equal(w32, w.astype(np.float32))  # the same draw, rounded


def test_later_layers_and_biases_use_their_own_streams():
    net = pyjac.Chain(3, [1, 1, 1, 500], init="gaussian", bias_std=1.0, seed=5,
                      dtype="float64")
    _assert_draws(net.weights[2], 5, 4)
    _assert_draws(net.biases[2], 5, 5)


def test_the_draws_are_standard_normal():
    from scipy import stats

    w = pyjac.Chain(1, [1, 2**20], init="gaussian", seed=3, dtype="float64").weights[0]
    _assert_draws(w, 3, 0)  # radii down to ~1e-3, where a rounded u would be 1% off
    z = w.ravel()
    assert stats.kstest(z, "norm").pvalue > 1e-4
    assert abs(z.mean()) < 5 / 2**10 and abs(z.var() - 1) < 5 * np.sqrt(2) / 2**10
    # tails: the count beyond 4 sigma (expected 66 of 2^20) within 5 standard deviations
    beyond = np.sum(np.abs(z) > 4)
    expected = 2**20 * 2 * stats.norm.sf(4)
    assert abs(beyond - expected) < 5 * np.sqrt(expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_largest_accepted_gain_gives_finite_weights(dtype):
    # The draws never exceed sqrt(-2 ln 2^-32) = 6.6604 in magnitude, so a gain up to
    # max / 6.67 is accepted and stays finite, and a larger one is refused by name.
    from pyjac._validation import MAX_NORMAL_DRAW

    limit = float(np.finfo(dtype).max) / MAX_NORMAL_DRAW
    w = pyjac.Chain(1, [1, 2**18], init="gaussian", gain=limit, bias_std=limit, seed=0,
                    dtype=dtype)
    assert np.all(np.isfinite(w.weights[0])) and np.all(np.isfinite(w.biases[0]))
    z = w.weights[0].astype(np.float64).ravel() / limit
    assert 4.5 < np.abs(z).max() <= 6.6605
    with pytest.raises(ValueError, match="^gain: "):
        pyjac.Chain(1, [1, 8], init="gaussian", gain=1.01 * limit, dtype=dtype)


def test_a_bias_std_past_float64s_square_gives_an_infinite_sigma_b2():
    net = pyjac.Chain(1, [1, 1], bias_std=1e300, dtype="float64")
    assert net.sigma_b2 == np.inf and np.isfinite(net.biases[0]).all()


@pytest.mark.parametrize("init", ["gaussian", "he", "xavier"])
def test_gains_past_the_square_root_of_float64s_range_scale_the_draws(init):
    # gain^2 overflows past 1.3e154; the weights themselves fit up to ~2.7e307.
    base = pyjac.Chain(1, [64, 64], init=init, seed=2, dtype="float64").weights[0]
    big = pyjac.Chain(1, [64, 64], init=init, gain=1e300, seed=2, dtype="float64").weights[0]
    np.testing.assert_allclose(big / 1e300, base, rtol=1e-15)
    r = pyjac.Recurrent(16, cell="tanh", init="gaussian", gain=1e300, seed=2, dtype="float64")
    r1 = pyjac.Recurrent(16, cell="tanh", init="gaussian", seed=2, dtype="float64")
    np.testing.assert_allclose(r.W / 1e300, r1.W, rtol=1e-15)
