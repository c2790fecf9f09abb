"""Explicit Jacobians, Jacobian-product norms and Lyapunov exponents.

References are independent of the C++ code: layer Jacobians are written out from the
math (LayerNorm through its explicit Jacobian matrix), products and spectra come from
numpy, and finite differences check the whole forward pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyjac

ACTS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu")
EPS_NORM = 1e-5
_erf = np.vectorize(math.erf)


# ---- an independent numpy reference ----------------------------------------------
def phi(name, u):
    return {
        "linear": lambda: u,
        "sigmoid": lambda: 1 / (1 + np.exp(-u)),
        "tanh": lambda: np.tanh(u),
        "relu": lambda: np.maximum(u, 0),
        "leaky_relu": lambda: np.where(u > 0, u, 0.01 * u),
        "gelu": lambda: u * 0.5 * (1 + _erf(u / math.sqrt(2))),
        "silu": lambda: u / (1 + np.exp(-u)),
    }[name]()


def dphi(name, u):
    s = 1 / (1 + np.exp(-u))
    return {
        "linear": lambda: np.ones_like(u),
        "sigmoid": lambda: s * (1 - s),
        "tanh": lambda: 1 / np.cosh(u) ** 2,
        "relu": lambda: (u > 0).astype(float),
        "leaky_relu": lambda: np.where(u > 0, 1.0, 0.01),
        "gelu": lambda: 0.5 * (1 + _erf(u / math.sqrt(2))) + u * np.exp(-u * u / 2) / math.sqrt(
            2 * math.pi),
        "silu": lambda: s + u * s * (1 - s),
    }[name]()


def layernorm(z):
    mu, var = z.mean(), z.var()
    sd = math.sqrt(var + EPS_NORM)
    u = (z - mu) / sd
    n = z.size
    jac = (np.eye(n) - np.ones((n, n)) / n - np.outer(u, u) / n) / sd
    return u, jac


def forward(net, x, depth=None):
    depth = net.depth if depth is None else depth
    h = np.asarray(x, dtype=np.float64)
    jacs = []
    for layer in range(depth):
        w = net.weights[layer].astype(np.float64)
        z = w @ h + net.biases[layer].astype(np.float64)
        nj = np.eye(z.size)
        if net.norm == "layernorm":
            z, nj = layernorm(z)
        act = net.activations[layer]
        j = dphi(act, z)[:, None] * (nj @ w)
        if net.residual:
            h = h + net.residual_scale * phi(act, z)
            j = np.eye(z.size) + net.residual_scale * j
        else:
            h = phi(act, z)
        jacs.append(j)
    return h, jacs


def product(jacs):
    p = np.eye(jacs[0].shape[1])
    out = []
    for j in jacs:
        p = j @ p
        out.append(p)
    return out


def make_chain(activation="tanh", width=6, depth=3, residual=False, norm=None, gain=1.3,
               seed=0, dtype="float64", bias_std=0.3):
    return pyjac.Chain(depth, width, activation=activation, init="gaussian", gain=gain,
                       bias_std=bias_std, residual=residual, residual_scale=0.7, norm=norm,
                       seed=seed, dtype=dtype)


VARIANTS = [dict(), dict(residual=True), dict(norm="layernorm"),
            dict(residual=True, norm="layernorm")]


# ---- explicit Jacobian --------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("variant", VARIANTS, ids=["plain", "residual", "layernorm", "res+ln"])
def test_jacobian_against_finite_differences_and_numpy(activation, variant):
    net = make_chain(activation, **variant)
    x = np.random.default_rng(1).standard_normal(6)
    jac = net.jacobian(x)
    assert jac.shape == (6, 6) and jac.dtype == np.float64
    # 4th-order central differences of the reference forward pass, float64
    eps = 1e-4
    cols = []
    for e in np.eye(6):
        f = [forward(net, x + c * eps * e)[0] for c in (-2, -1, 1, 2)]
        cols.append((f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * eps))
    fd = np.stack(cols, axis=1)
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-7)
    ref = product(forward(net, x)[1])[-1]
    np.testing.assert_allclose(jac, ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("widths", [[5, 7, 3, 4], [4, 9, 8, 6]])
def test_jacobian_varying_widths_and_depths(widths):
    # [5, 7, 3, 4]: reverse accumulation is cheaper; [4, 9, 8, 6]: forward.
    net = pyjac.Chain(3, widths, activation="gelu", init="gaussian", dtype="float64", seed=3)
    x = np.random.default_rng(2).standard_normal(widths[0])
    prods = product(forward(net, x)[1])
    for d in range(1, 4):
        jac = net.jacobian(x, depth=d)
        assert jac.shape == (widths[d], widths[0])
        np.testing.assert_allclose(jac, prods[d - 1], rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(net.jacobian(x, depth=0), np.eye(widths[0]))
    np.testing.assert_array_equal(net.jacobian(x[None, :]), net.jacobian(x))


def test_jacobian_float32():
    net = make_chain("silu", width=16, depth=5, dtype="float32", norm="layernorm")
    x = np.random.default_rng(0).standard_normal(16).astype(np.float32)
    jac = net.jacobian(x)
    assert jac.dtype == np.float32
    ref = product(forward(net, x)[1])[-1]
    np.testing.assert_allclose(jac, ref, rtol=2e-4, atol=2e-5 * np.abs(ref).max())


# ---- norms of the product at every depth ----------------------------------------------
@pytest.mark.parametrize("method", ["product", "qr"])
@pytest.mark.parametrize("variant", VARIANTS[:3], ids=["plain", "residual", "layernorm"])
def test_jacobian_norms_against_numpy_svd(method, variant):
    net = make_chain("tanh", width=12, depth=25, gain=1.6, **variant)
    x = np.random.default_rng(5).standard_normal(12)
    at = [1, 7, 25]
    r = net.jacobian_norms(x, singular_values_at=at, method=method)
    assert r.method == method and r.converged.all()
    prods = product(forward(net, x)[1])
    svs = [np.linalg.svd(p, compute_uv=False) for p in prods]
    ls = np.log([s[0] for s in svs])
    lf = np.log([np.linalg.norm(p) for p in prods])
    np.testing.assert_allclose(r.log_spectral_norm, ls, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(r.log_frobenius_norm, lf, rtol=1e-6, atol=1e-9)
    assert sorted(r.singular_values) == at
    for d in at:
        ref = svs[d - 1]
        got = r.singular_values[d]
        assert got.shape == ref.shape and np.all(np.diff(got) <= 0)
        # numpy's own SVD of the explicit product is exact only to ~1e-15 sigma_max
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-13 * ref[0])
        np.testing.assert_allclose(r.log_singular_values[d][0], np.log(ref[0]), rtol=1e-9)


def test_jacobian_norms_auto_method_and_single_int():
    net = make_chain(width=5, depth=4)
    x = np.ones(5)
    assert net.jacobian_norms(x).method == "product"
    r = net.jacobian_norms(x, singular_values_at=4)
    assert r.method == "qr" and list(r.singular_values) == [4]
    assert r.depth == 4 and "JacobianNorms" in repr(r)


def test_qr_keeps_tiny_singular_values():
    # P_l = Q diag(d^l) Q^T: singular values d^l spread over 40 orders of magnitude,
    # far beyond what an explicit product can hold next to sigma_max.
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    d = np.array([2.0, 1.0, 0.5, 0.1])
    w = q @ np.diag(d) @ q.T
    net = pyjac.Chain.from_weights([w] * 30, activation="linear")
    r = net.jacobian_norms(np.ones(4), singular_values_at=[10, 30], method="qr")
    for depth in (10, 30):
        np.testing.assert_allclose(r.log_singular_values[depth], depth * np.log(d), rtol=1e-8,
                                   atol=1e-8)


@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-10)])
def test_scaled_orthogonal_chain_never_overflows(dtype, rtol):
    n, depth = 32, 10_000
    q = np.linalg.qr(np.random.default_rng(7).standard_normal((n, n)))[0]
    w = (1.1 * q).astype(dtype)
    net = pyjac.Chain.from_weights([w] * depth, activation="linear")
    r = net.jacobian_norms(np.ones(n, dtype=dtype))
    expected = np.arange(1, depth + 1) * np.log(1.1)
    np.testing.assert_allclose(r.log_spectral_norm, expected, rtol=rtol)
    np.testing.assert_allclose(r.log_frobenius_norm, expected + 0.5 * np.log(n), rtol=rtol)
    assert np.isfinite(r.log_spectral_norm).all()
    assert r.spectral_norm[-1] == np.inf  # e^953 is beyond float64; its log is not
    # the naive product is inf long before depth 10,000
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.linalg.matrix_power(w, depth)
    assert not np.isfinite(naive).all()


def test_zero_product_and_nonfinite_forward():
    # Every pre-activation negative: ReLU kills the Jacobian, exactly.
    net = pyjac.Chain.from_weights([np.eye(4)] * 3, [np.full(4, -5.0)] * 3, activation="relu")
    r = net.jacobian_norms(np.zeros(4))
    assert np.all(r.log_spectral_norm == -np.inf) and np.all(r.log_frobenius_norm == -np.inf)
    assert net.lyapunov_exponents(np.zeros(4))[0] == -np.inf
    # float32 overflow before LayerNorm (inf - inf) gives NaN Jacobians: reported, not
    # raised, and everything from there on is NaN.
    w = np.diag([3e38, 3e38, 3e38, 3e38]).astype(np.float32)  # |u| > 1.14 overflows
    net = pyjac.Chain.from_weights([np.eye(4, dtype=np.float32), w, w],
                                   activation="linear", norm="layernorm")
    x = np.array([1.0, -3.0, 2.0, 5.0], dtype=np.float32)
    r = net.jacobian_norms(x)
    assert r.first_nonfinite_layer == 2 and r.first_nonfinite_depth == 2
    assert np.isfinite(r.log_spectral_norm[0])
    assert np.isnan(r.log_spectral_norm[1:]).all() and np.isnan(r.log_frobenius_norm[1:]).all()
    assert np.isnan(net.spectral_norm(x).log_value)


@pytest.mark.parametrize("method", ["product", "qr"])
def test_varying_widths_spectra(method):
    # widths narrower than the input: the QR frame shrinks with them
    widths = [6, 9, 4, 7, 3, 8]
    net = pyjac.Chain(5, widths, activation="silu", init="gaussian", gain=1.3, bias_std=0.2,
                      seed=11, dtype="float64")
    x = np.random.default_rng(0).standard_normal(6)
    r = net.jacobian_norms(x, singular_values_at=list(range(1, 6)), method=method)
    for d, p in enumerate(product(forward(net, x)[1]), start=1):
        ref = np.linalg.svd(p, compute_uv=False)
        got = r.singular_values[d]
        assert got.shape == (min(widths[d], 6),)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12 * ref[0])
        np.testing.assert_allclose(r.log_frobenius_norm[d - 1], np.log(np.linalg.norm(p)),
                                   rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    activation=st.sampled_from(ACTS),
    method=st.sampled_from(["product", "qr"]),
    seed=st.integers(0, 2**16),
)
def test_norms_property(widths, activation, method, seed):
    net = pyjac.Chain(len(widths) - 1, widths, activation=activation, init="gaussian",
                      gain=1.5, bias_std=0.5, seed=seed, dtype="float64")
    x = np.random.default_rng(seed).standard_normal(widths[0])
    r = net.jacobian_norms(x, method=method)
    prods = product(forward(net, x)[1])
    for d, p in enumerate(prods):
        s = np.linalg.svd(p, compute_uv=False)
        if s[0] < 1e-200:
            assert r.log_spectral_norm[d] == -np.inf
            continue
        assert r.log_frobenius_norm[d] >= r.log_spectral_norm[d] - 1e-12
        np.testing.assert_allclose(r.log_spectral_norm[d], np.log(s[0]), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(r.log_frobenius_norm[d], np.log(np.linalg.norm(p)),
                                   rtol=1e-6, atol=1e-9)


# ---- Lyapunov exponents -----------------------------------------------------------------
@pytest.mark.parametrize("a", [0.8, -1.7, 3.0])
def test_lyapunov_scalar_recurrence(a):
    net = pyjac.Chain.from_weights([np.array([[a]])] * 50, activation="linear")
    np.testing.assert_allclose(net.lyapunov_exponents(np.ones(1)), [math.log(abs(a))],
                               rtol=1e-12)


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-6), ("float64", 1e-13)])
def test_lyapunov_orthogonal_and_scaled_orthogonal(dtype, atol):
    rng = np.random.default_rng(0)
    qs = [np.linalg.qr(rng.standard_normal((8, 8)))[0].astype(dtype) for _ in range(40)]
    net = pyjac.Chain.from_weights(qs, activation="linear")
    le = net.lyapunov_exponents(np.ones(8, dtype=dtype))
    assert le.shape == (8,)
    np.testing.assert_allclose(le, 0.0, atol=atol)
    scaled = pyjac.Chain.from_weights([(2.5 * q).astype(dtype) for q in qs],
                                      activation="linear")
    np.testing.assert_allclose(scaled.lyapunov_exponents(np.ones(8, dtype=dtype)),
                               math.log(2.5), atol=atol * 10)
    np.testing.assert_allclose(scaled.lyapunov_exponents(np.ones(8, dtype=dtype), k=3),
                               math.log(2.5), atol=atol * 10)


def test_lyapunov_sum_is_mean_log_determinant_and_k_is_a_prefix():
    net = make_chain("tanh", width=10, depth=60, gain=1.4, seed=4)
    x = np.random.default_rng(9).standard_normal(10)
    le = net.lyapunov_exponents(x)
    _, jacs = forward(net, x)
    logdet = np.mean([np.linalg.slogdet(j)[1] for j in jacs])
    np.testing.assert_allclose(le.sum(), logdet, rtol=1e-10)
    np.testing.assert_allclose(net.lyapunov_exponents(x, k=4), le[:4], rtol=1e-10, atol=1e-12)
    # the top exponent is the growth rate of the product's norm, up to O(1/depth)
    r = net.jacobian_norms(x)
    assert abs(le[0] - r.log_spectral_norm[-1] / 60) < 0.1
    other = net.lyapunov_exponents(x, seed=1)
    assert abs(other.sum() - le.sum()) < 1e-10


# ---- threads and errors ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_numbers_for_any_thread_count(dtype):
    # width 160: two output tiles of 128, so the parallel path really runs
    net = make_chain("gelu", width=160, depth=12, dtype=dtype, norm="layernorm", gain=1.2)
    x = np.random.default_rng(3).standard_normal(160).astype(dtype)
    one = dict(n_threads=1)
    every = dict(n_threads=-1)
    np.testing.assert_array_equal(net.jacobian(x, **one), net.jacobian(x, **every))
    for kw in (dict(), dict(singular_values_at=[3, 12])):
        a, b = net.jacobian_norms(x, **kw, **one), net.jacobian_norms(x, **kw, **every)
        np.testing.assert_array_equal(a.log_spectral_norm, b.log_spectral_norm)
        np.testing.assert_array_equal(a.log_frobenius_norm, b.log_frobenius_norm)
        for d in a.singular_values:
            np.testing.assert_array_equal(a.singular_values[d], b.singular_values[d])
    np.testing.assert_array_equal(net.lyapunov_exponents(x, **one),
                                  net.lyapunov_exponents(x, **every))


def test_bad_arguments_name_the_argument():
    net = make_chain(width=4, depth=3)
    x = np.ones(4)
    with pytest.raises(ValueError, match="x:"):
        net.jacobian(np.ones((2, 4)))
    with pytest.raises(ValueError, match="x:"):
        net.jacobian_norms(np.ones(5))
    with pytest.raises(ValueError, match="x:"):
        net.lyapunov_exponents(np.array([1.0, np.nan, 0, 0]))
    with pytest.raises(ValueError, match="depth"):
        net.jacobian(x, depth=4)
    with pytest.raises(ValueError, match="depth"):
        net.jacobian(x, depth=-1)
    with pytest.raises(TypeError, match="depth"):
        net.jacobian(x, depth=1.5)
    with pytest.raises(ValueError, match="singular_values_at"):
        net.jacobian_norms(x, singular_values_at=[0])
    with pytest.raises(ValueError, match="singular_values_at"):
        net.jacobian_norms(x, singular_values_at=[4])
    with pytest.raises(ValueError, match="method"):
        net.jacobian_norms(x, method="svd")
    with pytest.raises(ValueError, match="k:"):
        net.lyapunov_exponents(x, k=5)
    with pytest.raises(ValueError, match="k:"):
        net.lyapunov_exponents(x, k=0)
    with pytest.raises(ValueError, match="n_threads"):
        net.jacobian(x, n_threads=0)
    narrow = pyjac.Chain(2, [4, 2, 4], dtype="float64")
    with pytest.raises(ValueError, match="k: at most the narrowest width 2"):
        narrow.lyapunov_exponents(x, k=3)
    bn = make_chain(width=4, depth=2, norm="batchnorm")
    for call in (bn.jacobian, bn.jacobian_norms, bn.lyapunov_exponents, bn.spectral_norm):
        with pytest.raises(ValueError, match="batchnorm"):
            call(x)
