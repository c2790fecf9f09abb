"""Tests of pyjac.theory: mean-field signal propagation and textbook bounds.

Reference values come from independent computations done here (dense trapezoid
integrals, exact formulas, and -- in tests only -- seeded Monte Carlo products of random
matrices), plus the published tanh critical point of Schoenholz et al. (2017).
"""

from __future__ import annotations

import ast
import math
import pathlib
import time
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyjac import theory

SMOOTH = ("sigmoid", "tanh", "gelu", "silu")
TANH_CRIT_005 = 1.7609546396067  # this module's value; literature quotes ~1.76


# ----------------------------------------------------------------------------------
# Independent references
# ----------------------------------------------------------------------------------
def _phi(name, x):
    """Activations written out again, independently of the module."""
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, x, 0.01 * x)
    if name == "tanh":
        return np.tanh(x)
    sig = 1.0 / (1.0 + np.exp(-np.clip(x, -700, 700)))
    if name == "sigmoid":
        return sig
    if name == "silu":
        return x * sig
    erf = np.vectorize(math.erf, otypes=[float])(x / math.sqrt(2.0))
    return x * 0.5 * (1.0 + erf)  # gelu


def _dphi(name, x, h=1e-5):
    # Central differences are accurate to ~1e-10 here, plenty for 1e-7 comparisons.
    if name in ("relu", "leaky_relu", "linear"):
        slope = {"relu": 0.0, "leaky_relu": 0.01, "linear": 1.0}[name]
        return np.where(x > 0, 1.0, slope)
    return (_phi(name, x + h) - _phi(name, x - h)) / (2.0 * h)


def _trap_expect(f, q, n=40001):
    """E[f(u)], u ~ N(0, q), by the trapezoid rule on a dense grid.

    u = 0 is a node; there f takes the mean of its one-sided limits, so that a jump at
    0 (relu') keeps the rule second-order accurate.
    """
    s = math.sqrt(q)
    u = np.linspace(-12.0 * s, 12.0 * s, n)
    fu = f(u)
    fu[n // 2] = 0.5 * (f(np.array([-1e-300]))[0] + f(np.array([1e-300]))[0])
    y = fu * np.exp(-0.5 * u * u / q) / math.sqrt(2.0 * math.pi * q)
    h = u[1] - u[0]
    return float(h * (y.sum() - 0.5 * (y[0] + y[-1])))


def _trap_bivariate(f, q, c, n=1201):
    """E[f(u1) f(u2)] for a correlated pair, by a 2-D trapezoid rule in (z1, z2)."""
    z = np.linspace(-9.0, 9.0, n)
    w = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    w[[0, -1]] *= 0.5
    s = math.sqrt(q)
    u1 = s * z[:, None]
    u2 = s * (c * z[:, None] + math.sqrt(max(0.0, 1 - c * c)) * z[None, :])
    return float(w @ (f(u1) * f(u2)) @ w)


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _mc_jacobian_moments(act, init, sw, sb, depth, n=300, seeds=3):
    """Eigenvalue moments of J J^T from explicit random chains.

    Returns the mean, the variance, and the mean predicted from the sampled D's
    (``prod_l sigma_w2 * mean(D_l^2)``), all averaged over seeds.
    """
    qs = theory.q_star(act, sw, sb)
    m1, m2, cond = [], [], []
    for seed in range(seeds):
        rng = np.random.default_rng(1234 + seed)
        h = rng.standard_normal(n)
        h *= math.sqrt(max(qs - sb, 0.0) / sw * n) / np.linalg.norm(h)  # z_1 at q*
        jac = np.eye(n)
        cm = 1.0
        for _ in range(depth):
            if init == "gaussian":
                w = rng.standard_normal((n, n)) * math.sqrt(sw / n)
            else:
                w = _orthogonal(rng, n) * math.sqrt(sw)
            z = w @ h + rng.standard_normal(n) * math.sqrt(sb)
            d = _dphi(act, z)
            cm *= sw * np.mean(d * d)
            jac = d[:, None] * (w @ jac)
            h = _phi(act, z)
        a = jac @ jac.T
        m1.append(np.trace(a) / n)
        m2.append(np.sum(a * a) / n)
        cond.append(cm)
    mean = float(np.mean(m1))
    return mean, float(np.mean(m2)) - mean**2, float(np.mean(cond))


# ----------------------------------------------------------------------------------
# Module hygiene and activations
# ----------------------------------------------------------------------------------
def test_module_imports_nothing_from_pyjac():
    # The theory package stands alone: its modules import one another, numpy and SciPy.
    folder = pathlib.Path(theory.__file__).parent
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1), f"import from outside pyjac.theory in {path.name}"
                assert node.level == 1 or (node.module or "").split(".")[0] in (
                                                              "__future__", "numpy", "scipy",
                                                              "math", "warnings", "numbers",
                                                              "collections", "dataclasses",
                                                              "functools", "typing")
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] != "pyjac"


def test_activation_names():
    assert theory.ACTIVATIONS == (
        "linear", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu")


@pytest.mark.parametrize("name", theory.ACTIVATIONS)
def test_activation_fn_matches_reference(name):
    x = np.linspace(-6.0, 6.0, 241)
    np.testing.assert_allclose(theory.activation_fn(name)(x), _phi(name, x), rtol=1e-14,
                               atol=1e-15)
    xs = x[np.abs(x) > 1e-3]  # keep away from the kink of relu / leaky relu
    np.testing.assert_allclose(theory.activation_derivative(name)(xs), _dphi(name, xs),
                               rtol=1e-8, atol=1e-9)


def test_activation_known_values_and_shapes():
    assert float(theory.activation_fn("gelu")(1.0)) == pytest.approx(0.8413447460685429,
                                                                      rel=1e-15)
    assert float(theory.activation_fn("silu")(1.0)) == pytest.approx(0.7310585786300049,
                                                                      rel=1e-15)
    assert float(theory.activation_fn("leaky_relu")(-1.0)) == pytest.approx(-0.01)
    assert float(theory.activation_derivative("sigmoid")(0.0)) == pytest.approx(0.25)
    assert np.ndim(theory.activation_fn("tanh")(0.3)) == 0
    assert theory.activation_fn("tanh")(np.zeros((2, 3))).shape == (2, 3)
    # Tails stay finite and accurate (no overflow warnings: pytest runs with -W error).
    big = np.array([-800.0, 800.0])
    np.testing.assert_allclose(theory.activation_derivative("tanh")(big), 0.0, atol=0)
    np.testing.assert_allclose(theory.activation_fn("sigmoid")(big), [0.0, 1.0], atol=0)


def test_activation_names_are_normalised():
    assert float(theory.activation_fn(" Leaky-ReLU ")(-2.0)) == pytest.approx(-0.02)


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match="softplus") as info:
        theory.chi1("softplus", 1.0, 0.0)
    for name in theory.ACTIVATIONS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="activation"):
        theory.activation_fn(3)


def test_derivative_bound():
    sq2 = math.sqrt(2.0)
    gelu_max = 0.5 * (1 + math.erf(1.0)) + sq2 * math.exp(-1.0) / math.sqrt(2 * math.pi)
    assert theory.derivative_bound("gelu") == pytest.approx(gelu_max, rel=1e-12)
    x = np.linspace(0, 6, 600001)
    assert theory.derivative_bound("silu") == pytest.approx(np.max(_dphi("silu", x)), rel=1e-9)
    assert theory.derivative_bound("sigmoid") == 0.25
    assert theory.derivative_bound("tanh") == 1.0


# ----------------------------------------------------------------------------------
# Quadrature and the length map
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("q", [1e-6, 0.3, 1.0, 4.0, 50.0, 1e4])
def test_gaussian_expectation_exact_cases(q):
    assert theory.gaussian_expectation(lambda u: u * u, q) == pytest.approx(q, rel=1e-13)
    assert theory.gaussian_expectation(lambda u: u**4, q) == pytest.approx(3 * q * q, rel=1e-12)
    if q <= 4.0:  # cos keeps oscillating beyond |u| = 40, outside the documented scope
        assert theory.gaussian_expectation(np.cos, q) == pytest.approx(math.exp(-q / 2),
                                                                       abs=1e-14)
    # Saturating integrand, sharp (scale 1/sqrt(q)) in z: against a dense trapezoid rule.
    ref = _trap_expect(lambda u: np.tanh(u) ** 2, q, n=400001)
    assert theory.gaussian_expectation(lambda u: np.tanh(u) ** 2, q) == pytest.approx(ref,
                                                                                   rel=1e-9)


def test_gaussian_expectation_rejects_negative_variance():
    with pytest.raises(ValueError, match="q"):
        theory.gaussian_expectation(np.cos, -1.0)


@pytest.mark.parametrize("name", theory.ACTIVATIONS)
@pytest.mark.parametrize("q", [0.05, 1.0, 7.0])
def test_length_map_matches_trapezoid(name, q):
    ref = 1.7 * _trap_expect(lambda u: _phi(name, u) ** 2, q) + 0.1
    assert theory.length_map(name, q, 1.7, 0.1) == pytest.approx(ref, rel=1e-8)


def test_length_map_vectorised():
    q = np.array([[0.5, 1.0], [2.0, 3.0]])
    out = theory.length_map("relu", q, 2.0, 0.1)
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out, q + 0.1, rtol=1e-15)
    with pytest.raises(ValueError, match="q"):
        theory.length_map("relu", -1.0, 2.0, 0.1)


# ----------------------------------------------------------------------------------
# q*
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sw,sb", [(0.5, 0.3), (0.9, 0.0), (0.2, 2.0)])
def test_q_star_closed_forms(sw, sb):
    assert theory.q_star("linear", sw, sb) == pytest.approx(sb / (1 - sw), abs=1e-15)
    assert theory.q_star("relu", 2 * sw, sb) == pytest.approx(sb / (1 - sw), abs=1e-15)
    a2 = 0.01**2
    assert theory.q_star("leaky_relu", 2 * sw, sb) == pytest.approx(
        sb / (1 - sw * (1 + a2)), rel=1e-14, abs=1e-15)


def test_q_star_marginal_and_divergent_piecewise_linear():
    assert theory.q_star("linear", 1.0, 0.0, q0=3.5) == 3.5  # every q is a fixed point
    assert theory.q_star("relu", 2.0, 0.0, q0=0.7) == 0.7
    assert theory.q_star("linear", 1.0, 0.1) == math.inf
    assert theory.q_star("relu", 2.5, 0.0) == math.inf
    assert theory.q_star("relu", 2.5, 0.0, q0=0.0) == 0.0


@pytest.mark.parametrize("name,sw,sb", [("gelu", 3.0, 0.1), ("silu", 4.5, 0.0),
                                        ("gelu", 2.02, 0.5), ("silu", 2.001, 1.0)])
def test_q_star_diverging_returns_inf_quickly(name, sw, sb):
    t0 = time.perf_counter()
    assert theory.q_star(name, sw, sb) == math.inf
    assert time.perf_counter() - t0 < 2.0


def test_q_star_ordered_zero_fixed_point():
    # tanh without bias: q* = 0 for sigma_w2 <= 1 (also at the marginal point 1, where
    # plain iteration would only creep towards 0 like 1/n).
    assert theory.q_star("tanh", 0.8, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert theory.q_star("tanh", 1.0, 0.0) == pytest.approx(0.0, abs=1e-9)
    q = theory.q_star("tanh", 1.5, 0.0)
    assert q > 0.1
    assert theory.length_map("tanh", q, 1.5, 0.0) == pytest.approx(q, rel=1e-10)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(SMOOTH), sw=st.floats(0.05, 4.0), sb=st.floats(0.0, 2.0),
       q0=st.floats(0.0, 5.0))
def test_q_star_is_a_fixed_point(name, sw, sb, q0):
    q = theory.q_star(name, sw, sb, q0=q0)
    if math.isinf(q):
        assert name in ("gelu", "silu")  # only unbounded activations can diverge
        return
    assert q >= 0.0
    assert theory.length_map(name, q, sw, sb) == pytest.approx(q, rel=1e-9, abs=1e-10)


def test_q_star_iteration_cap_raises():
    with pytest.raises(RuntimeError, match="max_iter=1"):
        theory.q_star("tanh", 1.5, 0.05, q0=5.0, max_iter=1)
    assert theory.q_star("tanh", 1.5, 0.05, q0=5.0) == pytest.approx(
        theory.q_star("tanh", 1.5, 0.05, q0=0.01), rel=1e-11)


def test_q_star_bad_arguments():
    with pytest.raises(ValueError, match="sigma_w2"):
        theory.q_star("tanh", -1.0, 0.0)
    with pytest.raises(ValueError, match="sigma_b2"):
        theory.q_star("tanh", 1.0, -0.1)
    with pytest.raises(ValueError, match="q0"):
        theory.q_star("tanh", 1.0, 0.1, q0=-1.0)
    with pytest.raises(ValueError, match="sigma_w2"):
        theory.q_star("tanh", float("nan"), 0.1)
    with pytest.raises(ValueError, match="max_iter"):
        theory.q_star("tanh", 1.0, 0.1, max_iter=0)


# ----------------------------------------------------------------------------------
# chi1, depth scales, criticality
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", theory.ACTIVATIONS)
@pytest.mark.parametrize("sw,sb", [(0.7, 0.2), (1.5, 0.05)])
def test_chi1_matches_trapezoid(name, sw, sb):
    q = theory.q_star(name, sw, sb)
    if name == "linear" and sw >= 1.0:
        assert q == math.inf  # no finite fixed point; chi1 does not depend on q
        assert theory.chi1(name, sw, sb) == sw
        return
    # The fixed point, checked with an independent integral ...
    ref_q = sw * _trap_expect(lambda u: _phi(name, u) ** 2, q) + sb
    assert ref_q == pytest.approx(q, rel=1e-8, abs=1e-12)
    # ... and chi1 = sigma_w2 E[phi'(sqrt(q*) z)^2] by the same independent integral.
    ref = sw * _trap_expect(lambda u: _dphi(name, u) ** 2, q)
    assert theory.chi1(name, sw, sb) == pytest.approx(ref, rel=1e-7)


def test_chi1_closed_forms():
    assert theory.chi1("linear", 1.3, 0.4) == 1.3
    assert theory.chi1("relu", 1.3, 0.4) == pytest.approx(0.65, rel=1e-15)
    assert theory.chi1("leaky_relu", 1.3, 0.4) == pytest.approx(1.3 * (1 + 1e-4) / 2, rel=1e-15)
    # q* infinite for a relu-like activation: the q -> inf limit sigma_w2 / 2.
    assert theory.q_star("gelu", 3.0, 0.1) == math.inf
    assert theory.chi1("gelu", 3.0, 0.1) == pytest.approx(1.5)
    # Explicit q overrides the fixed point.
    ref = 1.2 * _trap_expect(lambda u: _dphi("tanh", u) ** 2, 2.0)
    assert theory.chi1("tanh", 1.2, 0.05, q=2.0) == pytest.approx(ref, rel=1e-8)


@settings(max_examples=50, deadline=None)
@given(sw=st.floats(0.0, 10.0), sb=st.floats(0.0, 10.0))
def test_chi1_relu_is_half_sigma_w2(sw, sb):
    assert theory.chi1("relu", sw, sb) == pytest.approx(sw / 2, rel=1e-15, abs=0)
    assert theory.chi1("leaky_relu", sw, sb) == pytest.approx(sw * (1 + 1e-4) / 2, rel=1e-15)


def test_tanh_chi1_and_depth_scale_published_point():
    # Independent check: trapezoid fixed-point iteration and trapezoid chi1.
    q = 1.0
    for _ in range(200):
        q = 1.2 * _trap_expect(lambda u: np.tanh(u) ** 2, q, n=8001) + 0.05
    ref_chi = 1.2 * _trap_expect(lambda u: _dphi("tanh", u) ** 2, q)
    c = theory.chi1("tanh", 1.2, 0.05)
    assert c == pytest.approx(ref_chi, rel=1e-7)
    assert c == pytest.approx(0.845, abs=0.01)
    xi = theory.depth_scale("tanh", 1.2, 0.05)
    assert xi == pytest.approx(-1.0 / math.log(c), rel=1e-14)
    assert xi == pytest.approx(5.94, abs=0.02)


def test_depth_scale_phases():
    assert theory.depth_scale("relu", 2.0, 0.3) == math.inf
    assert theory.depth_scale("relu", 1.0, 0.3) == pytest.approx(1 / math.log(2))
    # Chaotic phase: the explosion scale 1/ln(chi1) (positive).
    assert theory.depth_scale("relu", 4.0, 0.3) == pytest.approx(1 / math.log(2))
    assert theory.depth_scale("linear", 0.0, 0.3) == 0.0


def test_critical_tanh_published_values():
    # Schoenholz et al. (2017): the tanh critical line passes (sigma_w2, sigma_b2) ~ (1.76, 0.05).
    s = theory.critical_sigma_w2("tanh", 0.05)
    assert s == pytest.approx(1.76, rel=0.02)
    assert s == pytest.approx(TANH_CRIT_005, rel=1e-9)
    assert theory.chi1("tanh", s, 0.05) == pytest.approx(1.0, abs=1e-8)
    s = theory.critical_sigma_w2("tanh", 0.01)
    assert s == pytest.approx(1.424, abs=0.002)
    assert theory.chi1("tanh", s, 0.01) == pytest.approx(1.0, abs=1e-8)
    # Without bias the line starts at sigma_w2 = 1 (q* = 0, chi1 = sigma_w2).
    assert theory.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-6)


def test_critical_sigma_w2_monotone_along_line():
    vals = [theory.critical_sigma_w2("tanh", sb) for sb in (0.02, 0.1, 0.3, 1.0)]
    assert all(b > a for a, b in zip(vals, vals[1:]))


@pytest.mark.parametrize("sb", [0.0, 0.05, 1.0])
def test_critical_piecewise_linear(sb):
    assert theory.critical_sigma_w2("relu", sb) == 2.0
    assert theory.critical_sigma_w2("linear", sb) == 1.0
    assert theory.critical_sigma_w2("leaky_relu", sb) == pytest.approx(2 / (1 + 1e-4))


def test_critical_sigmoid_and_range_errors():
    s = theory.critical_sigma_w2("sigmoid", 0.0)
    assert 90 < s < 120
    assert theory.chi1("sigmoid", s, 0.0) == pytest.approx(1.0, abs=1e-8)
    with pytest.raises(ValueError, match="no critical point"):
        theory.critical_sigma_w2("sigmoid", 0.0, sigma_w2_max=50.0)
    # gelu without bias: q* jumps from 0 to infinity, chi1 from < 1 to > 1.
    with pytest.raises(ValueError, match="no critical point"):
        theory.critical_sigma_w2("gelu", 0.0, sigma_w2_max=4.0)
    with pytest.raises(ValueError, match="sigma_b2"):
        theory.critical_sigma_w2("tanh", -0.1)


# ----------------------------------------------------------------------------------
# Correlation map
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["relu", "tanh", "leaky_relu", "silu"])
@pytest.mark.parametrize("c", [-0.5, 0.3, 0.9])
def test_correlation_map_matches_2d_trapezoid(name, c):
    q = 1.3
    ref = (1.5 * _trap_bivariate(lambda u: _phi(name, u), q, c) + 0.1) / q
    got = theory.correlation_map(name, c, 1.5, 0.1, q=q)
    # The 2-D trapezoid rule is only O(h^2) across the kinks of relu / leaky relu.
    assert got == pytest.approx(ref, rel=1e-8 if name in ("tanh", "silu") else 3e-5)


def test_correlation_fixed_points():
    assert theory.correlation_map("tanh", 1.0, 1.5, 0.05) == pytest.approx(1.0, abs=1e-12)
    # Ordered phase: c* = 1 and chi_c = chi1.
    assert theory.c_star("tanh", 1.2, 0.05) == 1.0
    assert theory.correlation_depth_scale("tanh", 1.2, 0.05) == pytest.approx(
        theory.depth_scale("tanh", 1.2, 0.05))
    # Chaotic phase: a stable c* < 1 with slope < 1.
    cs = theory.c_star("tanh", 2.5, 0.05)
    assert 0.0 < cs < 1.0
    assert theory.correlation_map("tanh", cs, 2.5, 0.05) == pytest.approx(cs, abs=1e-9)
    assert 0.0 < theory.chi_c("tanh", 2.5, 0.05) < 1.0
    # Odd activation, no bias, chaotic: c* = 0.
    assert theory.c_star("tanh", 3.0, 0.0) == pytest.approx(0.0, abs=1e-9)
    # Criticality: xi_c diverges.
    assert theory.correlation_depth_scale("tanh", TANH_CRIT_005, 0.05) > 1e6
    with pytest.raises(ValueError, match="c"):
        theory.correlation_map("tanh", 1.5, 1.0, 0.1)


# ----------------------------------------------------------------------------------
# Predicted gradient norms
# ----------------------------------------------------------------------------------
def test_predicted_grad_norm_fixed_point():
    r = theory.predicted_grad_norm("tanh", 1.2, 0.05, 10)
    c = theory.chi1("tanh", 1.2, 0.05)
    assert r.shape == (11,)
    assert r[-1] == 1.0
    np.testing.assert_allclose(r, c ** (10 - np.arange(11)), rtol=1e-12)
    lg = theory.predicted_log_grad_norm("tanh", 1.2, 0.05, 10)
    np.testing.assert_allclose(lg, 0.5 * np.log(r), rtol=1e-12, atol=1e-15)


def test_predicted_grad_norm_very_deep_stays_finite_in_log():
    lg = theory.predicted_log_grad_norm("relu", 4.0, 0.0, 5000)
    assert lg[0] == pytest.approx(0.5 * 5000 * math.log(2.0))
    assert np.isinf(theory.predicted_grad_norm("relu", 4.0, 0.0, 5000)[0])


def test_predicted_grad_norm_from_chain_like_object():
    chain = SimpleNamespace(activation="tanh", depth=6, sigma_w2=1.2, sigma_b2=0.05,
                            residual=False, residual_scale=1.0, norm=None)
    np.testing.assert_allclose(theory.predicted_grad_norm(chain),
                               theory.predicted_grad_norm("tanh", 1.2, 0.05, 6), rtol=1e-15)
    res = SimpleNamespace(activation="linear", depth=4, sigma_w2=1.0, sigma_b2=0.0,
                          residual=True, residual_scale=0.5)
    np.testing.assert_allclose(theory.predicted_grad_norm(res), 1.25 ** (4 - np.arange(5)),
                               rtol=1e-14)
    with pytest.raises(ValueError, match="not both"):
        theory.predicted_grad_norm(chain, 1.0, 0.0, 3)
    with pytest.raises(ValueError, match="norm"):
        theory.predicted_grad_norm(SimpleNamespace(**{**vars(chain), "norm": "layernorm"}))
    with pytest.raises(ValueError, match="depth"):
        theory.predicted_grad_norm(SimpleNamespace(activation="tanh"))


def test_predicted_grad_norm_residual_closed_forms():
    r = theory.predicted_grad_norm("linear", 2.0, 0.3, 5, residual=True, residual_scale=0.3)
    np.testing.assert_allclose(r, (1 + 0.09 * 2.0) ** (5 - np.arange(6)), rtol=1e-14)
    # ReLU: the independent factor 1 + s^2 sigma_w2 / 2 is the infinite-width limit; the
    # component along the stream starts from a seed of size 1/sqrt(width).
    r = theory.predicted_grad_norm("relu", 2.0, 0.3, 5, residual=True, residual_scale=0.3,
                                   width=10**16)
    np.testing.assert_allclose(r, (1 + 0.09 * 1.0) ** (5 - np.arange(6)), rtol=1e-9)
    narrow = theory.predicted_grad_norm("relu", 2.0, 0.3, 5, residual=True,
                                        residual_scale=0.3, width=64)
    assert np.all(narrow[:-1] > r[:-1])


def test_predicted_grad_norm_transient_and_per_layer_activations():
    # Following q_l from the input: starting on q* reproduces the fixed-point result.
    qs = theory.q_star("tanh", 1.5, 0.1)
    p0 = (qs - 0.1) / 1.5
    np.testing.assert_allclose(
        theory.predicted_grad_norm("tanh", 1.5, 0.1, 8, input_second_moment=p0),
        theory.predicted_grad_norm("tanh", 1.5, 0.1, 8), rtol=1e-9)
    mixed = theory.predicted_grad_norm(["relu", "linear", "relu"], 2.0, 0.0, 3,
                                       input_second_moment=1.0)
    np.testing.assert_allclose(mixed, [2.0, 2.0, 1.0, 1.0], rtol=1e-14)


def test_predicted_grad_norm_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        theory.predicted_grad_norm("tanh", 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="depth"):
        theory.predicted_grad_norm("tanh", 1.0, 0.0, 2.5)
    with pytest.raises(ValueError, match="sigma_w2"):
        theory.predicted_grad_norm("tanh", -1.0, 0.0, 3)
    with pytest.raises(ValueError, match="required"):
        theory.predicted_grad_norm("tanh")
    with pytest.raises(ValueError, match="one name per layer"):
        theory.predicted_grad_norm(["tanh", "relu"], 1.0, 0.0, 3)


def test_predicted_grad_norm_vs_simulated_chain():
    # Plain tanh chain at the fixed point, width 400, batch of gradients, 3 seeds.
    sw, sb, depth, n = 1.2, 0.05, 8, 400
    qs = theory.q_star("tanh", sw, sb)
    ratios = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        h = rng.standard_normal(n)
        h *= math.sqrt((qs - sb) / sw * n) / np.linalg.norm(h)
        ws, ds = [], []
        for _ in range(depth):
            w = rng.standard_normal((n, n)) * math.sqrt(sw / n)
            z = w @ h + rng.standard_normal(n) * math.sqrt(sb)
            ws.append(w)
            ds.append(_dphi("tanh", z))
            h = np.tanh(z)
        g = rng.standard_normal((n, 16))
        norms = [np.sum(g * g)]
        for w, d in zip(reversed(ws), reversed(ds)):
            g = w.T @ (d[:, None] * g)
            norms.append(np.sum(g * g))
        ratios.append(np.array(norms[::-1]) / norms[0])
    mc = np.mean(ratios, axis=0)
    np.testing.assert_allclose(mc, theory.predicted_grad_norm("tanh", sw, sb, depth), rtol=0.1)


@pytest.mark.parametrize("name,sw,sb,s", [("linear", 1.0, 0.0, 0.5), ("tanh", 2.0, 0.1, 1.0),
                                          ("relu", 2.0, 0.0, 0.5)])
def test_predicted_grad_norm_residual_vs_simulated_chain(name, sw, sb, s):
    depth, n = 8, 400
    ratios = []
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        h = rng.standard_normal(n)
        h *= math.sqrt(n) / np.linalg.norm(h)  # input second moment 1 (the default)
        ws, ds = [], []
        for _ in range(depth):
            w = rng.standard_normal((n, n)) * math.sqrt(sw / n)
            z = w @ h + rng.standard_normal(n) * math.sqrt(sb)
            ws.append(w)
            ds.append(_dphi(name, z))
            h = h + s * _phi(name, z)
        g = rng.standard_normal((n, 16))
        norms = [np.sum(g * g)]
        for w, d in zip(reversed(ws), reversed(ds)):
            g = g + s * (w.T @ (d[:, None] * g))
            norms.append(np.sum(g * g))
        ratios.append(np.array(norms[::-1]) / norms[0])
    mc = np.mean(ratios, axis=0)
    pred = theory.predicted_grad_norm(name, sw, sb, depth, residual=True, residual_scale=s,
                                      width=n)
    np.testing.assert_allclose(mc, pred, rtol=0.12)


# ----------------------------------------------------------------------------------
# Jacobian spectrum moments
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 5, 30])
def test_jacobian_moments_known_cases(depth):
    lin_g = theory.jacobian_spectrum_moments("linear", "gaussian", 1.0, 0.0, depth)
    lin_o = theory.jacobian_spectrum_moments("linear", "orthogonal", 1.0, 0.0, depth)
    relu_g = theory.jacobian_spectrum_moments("relu", "gaussian", 2.0, 0.0, depth)
    relu_o = theory.jacobian_spectrum_moments("relu", "orthogonal", 2.0, 0.0, depth)
    for r in (lin_g, lin_o, relu_g, relu_o):
        assert r.mean == pytest.approx(1.0, rel=1e-15)
    assert lin_g.variance == pytest.approx(depth, rel=1e-14)
    assert lin_o.variance == pytest.approx(0.0, abs=1e-15)
    assert relu_g.variance == pytest.approx(2 * depth, rel=1e-14)
    assert relu_o.variance == pytest.approx(depth, rel=1e-14)


def test_jacobian_moments_general_formula_and_fields():
    r = theory.jacobian_spectrum_moments("tanh", "orthogonal", 1.2, 0.05, 6)
    q = theory.q_star("tanh", 1.2, 0.05)
    mu1 = _trap_expect(lambda u: _dphi("tanh", u) ** 2, q)
    mu2 = _trap_expect(lambda u: _dphi("tanh", u) ** 4, q)
    assert r.mu1 == pytest.approx(mu1, rel=1e-7)
    assert r.mu2 == pytest.approx(mu2, rel=1e-7)
    assert r.mean == pytest.approx((1.2 * mu1) ** 6, rel=1e-6)
    assert r.variance == pytest.approx(r.mean**2 * 6 * (mu2 / mu1**2 - 1), rel=1e-6)
    g = theory.jacobian_spectrum_moments("tanh", "gaussian", 1.2, 0.05, 6)
    assert g.variance - r.variance == pytest.approx(r.mean**2 * 6, rel=1e-12)
    # i.i.d. aliases behave like "gaussian".
    assert theory.jacobian_spectrum_moments("tanh", "he", 1.2, 0.05, 6).variance == g.variance


@pytest.mark.parametrize(
    "act,init,sw,sb,depth",
    [
        ("tanh", "gaussian", TANH_CRIT_005, 0.05, 8),  # critical
        ("tanh", "orthogonal", TANH_CRIT_005, 0.05, 8),
        ("relu", "gaussian", 2.0, 0.0, 5),
        ("relu", "orthogonal", 2.0, 0.0, 5),
        ("tanh", "gaussian", 1.2, 0.05, 6),  # ordered: mean chi1^L < 1
        ("tanh", "orthogonal", 3.0, 0.1, 4),  # chaotic: mean chi1^L > 1
    ],
)
def test_jacobian_moments_vs_random_matrix_products(act, init, sw, sb, depth):
    pred = theory.jacobian_spectrum_moments(act, init, sw, sb, depth)
    n = 300 if init == "gaussian" else 200  # QR for Haar matrices is the slow part
    mean, var, cond_mean = _mc_jacobian_moments(act, init, sw, sb, depth, n=n)
    # The sample mean of D^2 fluctuates by ~1/sqrt(n) per layer, so the raw mean gets a
    # loose tolerance; given the sampled D's, the trace is tight (free independence);
    # the normalised variance is insensitive to that common scale.
    assert mean == pytest.approx(pred.mean, rel=0.2)
    assert mean == pytest.approx(cond_mean, rel=0.05)
    assert var / mean**2 == pytest.approx(pred.variance / pred.mean**2, rel=0.12)


def test_jacobian_moments_bad_arguments_and_chain():
    with pytest.raises(ValueError, match="init"):
        theory.jacobian_spectrum_moments("tanh", "identity", 1.0, 0.0, 3)
    with pytest.raises(ValueError, match="depth"):
        theory.jacobian_spectrum_moments("tanh", "gaussian", 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="sigma_b2"):
        theory.jacobian_spectrum_moments("tanh", "gaussian", 1.0, -1.0, 3)
    chain = SimpleNamespace(activation="relu", init="orthogonal", depth=4, sigma_w2=2.0,
                            sigma_b2=0.0, residual=False, norm=None)
    r = theory.jacobian_spectrum_moments(chain)
    assert (r.mean, r.variance, r.init) == (pytest.approx(1.0), pytest.approx(4.0), "orthogonal")
    assert theory.jacobian_spectrum_moments(chain, "gaussian").variance == pytest.approx(8.0)


# ----------------------------------------------------------------------------------
# Textbook bounds
# ----------------------------------------------------------------------------------
def test_sigmoid_bound_and_scalar_chain():
    assert theory.sigmoid_bound(3) == 0.25**3
    np.testing.assert_allclose(theory.sigmoid_bound(np.arange(4)), [1, 0.25, 0.0625, 0.015625])
    assert theory.scalar_chain(0.9, 10) == pytest.approx(0.9**10)
    np.testing.assert_allclose(theory.scalar_chain(1.1, [0, 1, 2]), [1.0, 1.1, 1.21])
    assert theory.scalar_chain(10.0, 400) == math.inf
    with pytest.raises(ValueError, match="depth"):
        theory.sigmoid_bound(-1)
    with pytest.raises(ValueError, match="n"):
        theory.scalar_chain(0.5, -2)


def test_pascanu_condition():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((50, 50)) / math.sqrt(50)
    r = theory.pascanu_condition(w, "tanh")
    assert r.sigma_max == pytest.approx(np.linalg.svd(w, compute_uv=False)[0], rel=1e-12)
    assert (r.gamma, r.threshold) == (1.0, 1.0)
    assert r.sufficient_for_vanishing == (r.sigma_max < 1.0)
    r = theory.pascanu_condition(3.9 * np.eye(4), "sigmoid")
    assert (r.gamma, r.threshold, r.sufficient_for_vanishing) == (0.25, 4.0, True)
    assert theory.pascanu_condition(4.1 * np.eye(4), "sigmoid").sufficient_for_vanishing is False
    assert theory.pascanu_condition(0.5 * np.eye(3)).sufficient_for_vanishing is True
    with pytest.raises(ValueError, match="W"):
        theory.pascanu_condition(np.ones(3))
    with pytest.raises(ValueError, match="W"):
        theory.pascanu_condition(np.array([[np.nan]]))
