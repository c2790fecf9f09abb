"""Curvature and gradient noise against numpy references that need no torch: central
differences of the exact gradients of tests/reference.py's independent implementation."""

from __future__ import annotations

import numpy as np
import pytest
from reference import forward_backward

import pyjac


def _problem(net, loss, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, net.widths[0]))
    n_out = net.widths[-1]
    target = {"sum_squares": None, "mse": rng.standard_normal((batch, n_out)),
              "cross_entropy": rng.integers(0, n_out, batch)}[loss]
    return x, target


def _split(net, flat):
    out, at = [], 0
    for w, b in zip(net.weights, net.biases):
        out.append((flat[at:at + w.size].reshape(w.shape), flat[at + w.size:at + w.size + b.size]))
        at += w.size + b.size
    return out


def _reference(net, params, x, **kw):
    weights = [np.asarray(w, np.float64) for w, _ in params]
    biases = [np.asarray(b, np.float64) for _, b in params]
    return forward_backward(weights, biases, net.activations, x, residual=net.residual,
                            scale=net.residual_scale, norm=net.norm, **kw)


def _gradient(net, params, x, loss, target):
    r = _reference(net, params, x, loss=loss, target=target)
    return np.concatenate([np.concatenate([w.ravel(), b.ravel()])
                           for w, b in zip(r["weight_grads"], r["bias_grads"])])


def _flat_parameters(net):
    return np.concatenate([np.concatenate([np.asarray(w, np.float64).ravel(),
                                           np.asarray(b, np.float64).ravel()])
                           for w, b in zip(net.weights, net.biases)])


def fd_hvp(net, x, loss, target, v, eps=1e-5):
    """(grad(theta + eps v) - grad(theta - eps v)) / (2 eps), Richardson-extrapolated."""
    theta = _flat_parameters(net)

    def central(h):
        plus = _gradient(net, _split(net, theta + h * v), x, loss, target)
        minus = _gradient(net, _split(net, theta - h * v), x, loss, target)
        return (plus - minus) / (2 * h)

    return (4 * central(eps / 2) - central(eps)) / 3


def fd_gauss_newton(net, x, loss, target, v, eps=1e-5):
    """J^T H_L J v: J v by central differences of the reference output, H_L in closed form,
    J^T u by the reference backward pass with grad_output = u."""
    theta = _flat_parameters(net)

    def out(t):
        return _reference(net, _split(net, t), x)["output"]

    jv = (out(theta + eps * v) - out(theta - eps * v)) / (2 * eps)
    h = out(theta)
    if loss == "sum_squares":
        u = jv
    elif loss == "mse":
        u = 2 * jv / jv.size
    else:
        p = np.exp(h - h.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        u = (p * jv - p * np.sum(p * jv, axis=1, keepdims=True)) / h.shape[0]
    r = _reference(net, _split(net, theta), x, grad_output=u)
    return np.concatenate([np.concatenate([w.ravel(), b.ravel()])
                           for w, b in zip(r["weight_grads"], r["bias_grads"])])


CASES = [
    dict(depth=3, width=[4, 6, 5, 3], activation="tanh", bias_std=0.2),
    dict(depth=3, width=[4, 6, 5, 3], activation="gelu", bias_std=0.3),
    dict(depth=2, width=[4, 6, 3], activation="sigmoid"),
    dict(depth=2, width=[4, 6, 3], activation="silu"),
    dict(depth=3, width=[5, 5, 5, 3], activation="tanh", residual=True, residual_scale=0.6),
    dict(depth=2, width=[4, 6, 3], activation="tanh", norm="layernorm", bias_std=0.3),
    dict(depth=2, width=[4, 6, 3], activation="gelu", norm="batchnorm"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("loss", ["sum_squares", "mse", "cross_entropy"])
def test_hvp_and_gauss_newton_match_differences_of_the_reference_gradient(case, loss):
    net = pyjac.Chain(dtype="float64", seed=case, **CASES[case])
    x, target = _problem(net, loss, seed=case)
    H = net.hessian(x, loss=loss, target=target)
    v = np.random.default_rng(9).standard_normal(H.size)
    ref = fd_hvp(net, x, loss, target, v)
    np.testing.assert_allclose(H.hvp(v), ref, rtol=0, atol=2e-7 * np.abs(ref).max())
    G = net.hessian(x, loss=loss, target=target, kind="gauss_newton")
    ref = fd_gauss_newton(net, x, loss, target, v)
    np.testing.assert_allclose(G.hvp(v), ref, rtol=0, atol=2e-7 * np.abs(ref).max())


def _dense(H):
    return np.stack([H.hvp(e) for e in np.eye(H.size)], axis=1)


def test_lanczos_trace_and_density_match_numpy_on_the_dense_matrix():
    net = pyjac.Chain(3, [5, 7, 6, 3], activation="tanh", bias_std=0.3, dtype="float64", seed=2)
    x, y = _problem(net, "mse", batch=6)
    H = net.hessian(x, loss="mse", target=y)
    dense = _dense(H)
    # the products form a symmetric matrix, whose first column the differences confirm
    np.testing.assert_allclose(dense, dense.T, atol=1e-12 * np.abs(dense).max())
    e0 = np.zeros(H.size)
    e0[0] = 1.0
    np.testing.assert_allclose(dense[:, 0], fd_hvp(net, x, "mse", y, e0),
                               atol=2e-7 * np.abs(dense).max())
    exact = np.linalg.eigvalsh(dense)
    both = H.eigenvalues(k=2, which="both")
    np.testing.assert_allclose(both.values, np.r_[exact[:2], exact[-2:]], rtol=1e-8,
                               atol=1e-9 * abs(exact).max())
    assert both.converged
    tr = H.trace(samples=60)
    assert abs(tr.value - np.trace(dense)) < 3 * tr.standard_error
    d = H.density(n_vectors=100, steps=H.size, seed=2)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-6)
    points = np.quantile(exact, [0.25, 0.5, 0.75])
    slq = [np.mean(np.sum(d.weights * (d.nodes <= p + 1e-12), axis=1)) for p in points]
    np.testing.assert_allclose(slq, [np.mean(exact <= p + 1e-12) for p in points], atol=0.1)
    # per-layer: the diagonal blocks
    Hl = net.hessian(x, loss="mse", target=y, per_layer=True)
    offsets = np.cumsum([0] + [w.size + b.size for w, b in zip(net.weights, net.biases)])
    top = Hl.eigenvalues()
    for l, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        assert top.values[l, 0] == pytest.approx(np.linalg.eigvalsh(dense[a:b, a:b])[-1],
                                                 rel=1e-8)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "sum_squares"])
def test_gradient_noise_matches_per_example_gradients_from_single_example_passes(loss):
    net = pyjac.Chain(3, [5, 8, 8, 4], activation="tanh", bias_std=0.2, dtype="float64",
                      seed=3)
    x, target = _problem(net, loss, batch=9, seed=4)
    r = net.backprop(x, loss=loss, target=target)
    params = list(zip(net.weights, net.biases))
    grads = []
    for i in range(x.shape[0]):
        t = None if target is None else target[i:i + 1]
        grads.append(_reference(net, params, x[i:i + 1], loss=loss, target=t)["weight_grads"])
    for l in range(net.depth):
        g = np.array([gi[l].ravel() for gi in grads])
        mean = g.mean(axis=0)
        tr = np.sum(np.var(g, axis=0, ddof=1))
        assert r.gradient_noise_scale[l] == pytest.approx(tr / (mean @ mean), rel=1e-9)
        assert r.gradient_snr[l] == pytest.approx((mean @ mean) / (tr / len(g)), rel=1e-9)
