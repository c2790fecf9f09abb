"""Power-iteration spectral norms (matrices and chains) and spectral radii."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import pyjac

RTOL = {"float32": 1e-5, "float64": 1e-5}


def haar(n, rng):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def cases():
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((30, 3)), rng.standard_normal((3, 30))
    nonnormal = np.triu(rng.standard_normal((12, 12)), 1) * 3 + np.eye(12)
    return {
        "random": rng.standard_normal((40, 25)),
        "wide": rng.standard_normal((7, 50)),
        "orthogonal": haar(30, rng),
        "rank_deficient": u @ v,
        "nonnormal_2x2": np.array([[1.0, 100.0], [0.0, 1.0]]),
        "nonnormal_triangular": nonnormal,
        "scalar": np.array([[-3.5]]),
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(cases()))
def test_matrix_spectral_norm_against_svd(name, dtype):
    a = cases()[name].astype(dtype)
    r = pyjac.spectral_norm(a)
    ref = np.linalg.svd(a.astype(np.float64), compute_uv=False)[0]
    assert r.converged and isinstance(r.value, float) and isinstance(r.iterations, int)
    assert 1 <= r.iterations <= 1000
    np.testing.assert_allclose(r.value, ref, rtol=RTOL[dtype])
    np.testing.assert_allclose(r.log_value, math.log(ref), rtol=RTOL[dtype], atol=1e-6)


def test_spectral_norm_is_not_the_spectral_radius():
    a = cases()["nonnormal_2x2"]
    assert pyjac.spectral_radius(a) == pytest.approx(1.0, rel=1e-12)
    assert pyjac.spectral_norm(a).value == pytest.approx(50 + math.sqrt(2501), rel=1e-9)
    t = cases()["nonnormal_triangular"]
    assert pyjac.spectral_radius(t) == pytest.approx(1.0, rel=1e-12)
    assert pyjac.spectral_norm(t).value > 5.0


def test_not_converged_is_reported():
    # sigma_1 / sigma_2 = 1.0001: power iteration needs ~1e5 iterations for 1e-9.
    rng = np.random.default_rng(1)
    q1, q2 = haar(20, rng), haar(20, rng)
    s = np.linspace(1.0, 0.1, 20)
    s[1] = 1.0 / 1.0001
    a = q1 @ np.diag(s) @ q2.T
    r = pyjac.spectral_norm(a, iters=20, tol=1e-9)
    assert not r.converged and r.iterations == 20
    assert r.value <= 1.0 + 1e-12  # estimates approach sigma_max from below
    full = pyjac.spectral_norm(a, iters=200_000, tol=1e-9)
    assert full.converged
    np.testing.assert_allclose(full.value, 1.0, rtol=1e-6)


def test_zero_matrix():
    r = pyjac.spectral_norm(np.zeros((3, 4)))
    assert r.value == 0.0 and r.log_value == -np.inf and r.converged


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(1, 8)),
              elements=st.floats(-10, 10, allow_subnormal=False)))
def test_norm_bounds_property(a):
    ref = np.linalg.svd(a, compute_uv=False)[0]
    r = pyjac.spectral_norm(a, tol=1e-10, iters=100_000)
    # estimates are Rayleigh quotients: never above sigma_max
    assert r.value <= ref * (1 + 1e-12) + 1e-300
    if r.converged and ref > 0:
        np.testing.assert_allclose(r.value, ref, rtol=1e-5)
    if a.shape[0] == a.shape[1]:
        assert pyjac.spectral_radius(a) <= ref * (1 + 1e-9) + 1e-12


# ---- chains ---------------------------------------------------------------------------
def chain_and_reference(dtype="float64", **kw):
    net = pyjac.Chain(kw.pop("depth", 6), kw.pop("width", 10), activation=kw.pop("act", "tanh"),
                      init="gaussian", gain=1.4, bias_std=0.2, seed=2, dtype=dtype, **kw)
    x = np.random.default_rng(8).standard_normal(net.widths[0]).astype(dtype)
    return net, x


@pytest.mark.parametrize("kw", [dict(), dict(residual=True), dict(norm="layernorm"),
                                dict(act="gelu", width=[10, 14, 6, 9, 12, 8, 11])],
                         ids=["tanh", "residual", "layernorm", "gelu-widths"])
def test_chain_spectral_norm_against_svd(kw):
    net, x = chain_and_reference(**kw)
    r = net.spectral_norm(x)
    jac = net.jacobian(x)
    ref = np.linalg.svd(jac, compute_uv=False)[0]
    assert r.converged
    np.testing.assert_allclose(r.value, ref, rtol=1e-5)
    assert r.first_nonfinite_layer is None
    per = net.spectral_norm(x, per_layer=True)
    assert per.value.shape == (net.depth,) and per.converged.all()
    assert per.iterations.dtype.kind == "i"
    # per-layer reference: J_l = d h_l / d h_{l-1} from a chain that starts at h_{l-1}
    h = x.astype(np.float64)
    for layer in range(net.depth):
        sub = pyjac.Chain.from_weights([net.weights[layer]], [net.biases[layer]],
                                       activation=net.activations[layer], residual=net.residual,
                                       residual_scale=net.residual_scale, norm=net.norm)
        jl = sub.jacobian(h)
        np.testing.assert_allclose(per.value[layer], np.linalg.svd(jl, compute_uv=False)[0],
                                   rtol=1e-5)
        h = sub.backprop(h).output.astype(np.float64)


def test_deep_chain_log_value_never_overflows():
    n, depth = 16, 2000
    q = haar(n, np.random.default_rng(3)).astype(np.float32)
    net = pyjac.Chain.from_weights([2.0 * q] * depth, activation="linear")
    r = net.spectral_norm(np.ones(n, np.float32), tol=1e-5)
    assert r.value == np.inf  # e^1386 is beyond float64
    np.testing.assert_allclose(r.log_value, depth * math.log(2.0), rtol=1e-5)
    # and the opposite direction: 0.5 * Q would underflow every float32 vector
    shrink = pyjac.Chain.from_weights([0.5 * q] * depth, activation="linear")
    r = shrink.spectral_norm(np.ones(n, np.float32), tol=1e-5)
    np.testing.assert_allclose(r.log_value, depth * math.log(0.5), rtol=1e-5)


@pytest.mark.parametrize("dtype,gain", [("float32", 1e37), ("float64", 1e305)])
def test_single_layers_beyond_the_rescaling_range(dtype, gain):
    # One layer moves the vector by more than 2^120 (float32) or 2^1000 (float64): the
    # pass must rescale in place instead of folding the factor into the next GEMV.
    n = 130  # three row tiles, the last one partial
    rng = np.random.default_rng(5)
    qs = [haar(n, rng) for _ in range(3)]
    weights = [(gain * qs[0]).astype(dtype), (qs[1] / gain).astype(dtype),
               (gain * qs[2]).astype(dtype)]
    net = pyjac.Chain.from_weights(weights, activation="linear")
    r = net.spectral_norm(np.ones(n, dtype), tol=1e-7)
    prod = np.linalg.multi_dot([w.astype(np.float64) / gain ** (1 if i != 1 else -1)
                                for i, w in enumerate(weights[::-1])])
    expected = math.log(gain) + math.log(np.linalg.svd(prod, compute_uv=False)[0])
    np.testing.assert_allclose(r.log_value, expected, rtol=1e-6)


def test_wide_residual_chain_against_svd():
    net = pyjac.Chain(4, 200, activation="tanh", residual=True, residual_scale=0.7,
                      init="gaussian", gain=1.3, seed=4, dtype="float64")
    x = np.random.default_rng(2).standard_normal(200)
    ref = np.linalg.svd(net.jacobian(x), compute_uv=False)[0]
    np.testing.assert_allclose(net.spectral_norm(x, tol=1e-10).value, ref, rtol=1e-8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_numbers_for_any_thread_count(dtype):
    net, x = chain_and_reference(dtype, width=700, depth=3)
    for per_layer in (False, True):
        a = net.spectral_norm(x, per_layer=per_layer, n_threads=1, iters=30)
        b = net.spectral_norm(x, per_layer=per_layer, n_threads=-1, iters=30)
        np.testing.assert_array_equal(a.value, b.value)
        np.testing.assert_array_equal(a.iterations, b.iterations)
    m = np.random.default_rng(0).standard_normal((900, 700)).astype(dtype)
    assert (pyjac.spectral_norm(m, iters=20, n_threads=1).value
            == pyjac.spectral_norm(m, iters=20, n_threads=-1).value)


# ---- spectral radius --------------------------------------------------------------------
def test_spectral_radius_against_numpy():
    rng = np.random.default_rng(4)
    for a in (rng.standard_normal((25, 25)), haar(10, rng) * 0.9,
              np.array([[0.0, -2.0], [2.0, 0.0]]), rng.standard_normal((5, 5)).astype(np.float32)):
        ref = np.max(np.abs(np.linalg.eigvals(a.astype(np.float64))))
        assert pyjac.spectral_radius(a) == pytest.approx(ref, rel=1e-10)
    assert pyjac.spectral_radius([[2.0]]) == 2.0


def test_bad_arguments_name_the_argument():
    a = np.eye(3)
    with pytest.raises(ValueError, match="matrix"):
        pyjac.spectral_radius(np.ones((2, 3)))
    with pytest.raises(ValueError, match="matrix"):
        pyjac.spectral_radius(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="matrix"):
        pyjac.spectral_norm(np.array([[np.inf]]))
    with pytest.raises(ValueError, match="matrix"):
        pyjac.spectral_norm(np.ones(3))
    with pytest.raises(ValueError, match="matrix"):
        pyjac.spectral_norm(np.ones((0, 3)))
    with pytest.raises(TypeError, match="matrix"):
        pyjac.spectral_norm(np.array([["a"]]))
    with pytest.raises(ValueError, match="iters"):
        pyjac.spectral_norm(a, iters=0)
    with pytest.raises(ValueError, match="tol"):
        pyjac.spectral_norm(a, tol=0.0)
    with pytest.raises(ValueError, match="tol"):
        pyjac.spectral_norm(a, tol=-1e-3)
    with pytest.raises(ValueError, match="tol"):
        pyjac.spectral_norm(a, tol=float("nan"))
    net, x = chain_and_reference(width=4, depth=2)
    with pytest.raises(ValueError, match="iters"):
        net.spectral_norm(x, iters=0)
    with pytest.raises(ValueError, match="tol"):
        net.spectral_norm(x, tol=0)
    with pytest.raises(TypeError, match="per_layer"):
        net.spectral_norm(x, per_layer="yes")
    with pytest.raises(ValueError, match="x:"):
        net.spectral_norm(np.ones((3, 4)))
