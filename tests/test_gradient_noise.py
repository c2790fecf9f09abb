"""Gradient noise scale and SNR against per-example gradients formed explicitly."""

from __future__ import annotations

import numpy as np
import pytest

import pyjac

torch = pytest.importorskip("torch")

from test_curvature import _params, _torch_loss, _torch_output  # noqa: E402


def explicit_noise(net, x, loss, target):
    """B_simple and SNR per layer from every example's own gradient, formed by autograd."""
    out = _torch_output(net, x)
    per_layer = [[] for _ in range(net.depth)]
    for i in range(x.shape[0]):
        params = [p.clone().requires_grad_(True) for p in _params(net)]
        h = out(*params)[i:i + 1]
        tgt = None if target is None else target[i:i + 1]
        _torch_loss(loss, tgt)(h).backward()
        for l in range(net.depth):
            per_layer[l].append(params[2 * l].grad.numpy().ravel())
    scale, snr = [], []
    for grads in per_layer:
        g = np.array(grads)
        mean = g.mean(axis=0)
        tr_cov = np.sum(np.var(g, axis=0, ddof=1))
        scale.append(tr_cov / (mean @ mean))
        snr.append(mean @ mean / (tr_cov / g.shape[0]))
    return np.array(scale), np.array(snr)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "sum_squares"])
@pytest.mark.parametrize("structure", [
    dict(activation="tanh", bias_std=0.2),
    dict(activation="gelu", norm="layernorm"),
    dict(activation="relu", residual=True, residual_scale=0.5),
])
def test_noise_scale_matches_explicit_per_example_gradients(loss, structure):
    net = pyjac.Chain(3, [6, 8, 8, 4], dtype="float64", seed=2, **structure)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 6))
    target = {"mse": rng.normal(size=(10, 4)), "cross_entropy": rng.integers(0, 4, 10),
              "sum_squares": None}[loss]
    r = net.backprop(x, loss=loss, target=target)
    scale, snr = explicit_noise(net, x, loss, target)
    np.testing.assert_allclose(r.gradient_noise_scale, scale, rtol=1e-9)
    np.testing.assert_allclose(r.gradient_snr, snr, rtol=1e-9)
    np.testing.assert_allclose(r.gradient_snr * r.gradient_noise_scale, 10.0, rtol=1e-12)


def test_float32_agrees_and_unresolvable_noise_is_nan():
    kw = dict(depth=3, width=16, activation="tanh", seed=1)
    x = np.random.default_rng(0).normal(size=(32, 16))
    r64 = pyjac.Chain(dtype="float64", **kw).backprop(x)
    r32 = pyjac.Chain(dtype="float32", **kw).backprop(x)
    np.testing.assert_allclose(r32.gradient_noise_scale, r64.gradient_noise_scale, rtol=1e-4)
    # identical examples: no noise at all, which the pass reports as unresolved, not 0
    same = pyjac.Chain(dtype="float64", **kw).backprop(np.ones((8, 16)))
    assert np.isnan(same.gradient_noise_scale).all() and np.isnan(same.gradient_snr).all()
    one = pyjac.Chain(dtype="float64", **kw).backprop(x[:1])
    assert np.isnan(one.gradient_noise_scale).all()


def test_absent_where_per_example_gradients_are_not_defined_or_not_formed():
    x = np.random.default_rng(0).normal(size=(8, 12))
    assert pyjac.Chain(2, 12, norm="batchnorm").backprop(x).gradient_noise_scale is None
    r = pyjac.Chain(2, 12).backprop(x, weight_grads=False)
    assert r.gradient_noise_scale is None and r.gradient_snr is None


def test_training_history_records_the_noise_per_epoch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8))
    y = rng.integers(0, 3, 64)
    net = pyjac.Chain(3, [8, 16, 16, 3], activation="tanh", seed=1, dtype="float64")
    h = pyjac.train(net, x, y, epochs=2, batch_size=16, lr=0.05, progress=False)
    assert h.gradient_noise_scale.shape == (2, 3) and h.gradient_snr.shape == (2, 3)
    assert np.isfinite(h.gradient_noise_scale).all()
    # the first epoch's first step is a backprop at the initial weights
    first = pyjac.Chain(3, [8, 16, 16, 3], activation="tanh", seed=1,
                        dtype="float64").backprop(x[:16], loss="cross_entropy", target=y[:16])
    assert np.all(h.gradient_noise_scale[0] > 0) and np.all(first.gradient_noise_scale > 0)
