"""The engine and the mean-field theory hold each other: measured per-layer gradient
slopes against ln(chi1)/2 at ordered, critical and chaotic points."""

import math

import numpy as np
import pytest

import pyjac
from pyjac import theory

POINTS = [
    # (activation, sigma_w2, sigma_b2): ordered, critical, chaotic
    ("tanh", 1.2, 0.05), ("tanh", 1.760954639606737, 0.05), ("tanh", 3.0, 0.05),
    ("relu", 1.5, 0.0), ("relu", 2.0, 0.0), ("relu", 2.5, 0.0),
    ("linear", 0.8, 0.0), ("linear", 1.0, 0.0), ("linear", 1.2, 0.0),
]


@pytest.mark.parametrize("activation,sigma_w2,sigma_b2", POINTS)
def test_measured_gradient_slope_matches_chi1(activation, sigma_w2, sigma_b2):
    depth, width, batch, seeds = 50, 1024, 8, 3
    chi1 = theory.chi1(activation, sigma_w2, sigma_b2)
    q = theory.q_star(activation, sigma_w2, sigma_b2)
    q = 1.0 if not math.isfinite(q) or q == 0 else q  # relu/linear: any q is a fixed point
    slopes = []
    for seed in range(seeds):
        net = pyjac.Chain(depth, width, activation=activation, init="gaussian",
                          gain=math.sqrt(sigma_w2), bias_std=math.sqrt(sigma_b2), seed=seed,
                          dtype="float64")
        data = np.random.default_rng(1000 + seed)
        # Input second moment (q - sigma_b2) / sigma_w2 puts the first pre-activation at q*.
        x = data.standard_normal((batch, width)) * math.sqrt((q - sigma_b2) / sigma_w2)
        r = net.backprop(x, grad_output=data.standard_normal((batch, width)))
        layers = np.arange(depth + 1)
        # ||dL/dh_l|| grows by sqrt(chi1) per layer going back towards the input.
        slopes.append(-np.polyfit(layers, np.log(r.grad_norm), 1)[0])
    assert np.mean(slopes) == pytest.approx(math.log(chi1) / 2, abs=0.02)


def test_sigmoid_bound_holds_for_the_engine():
    net = pyjac.Chain(20, 128, activation="sigmoid", init="orthogonal", seed=0, dtype="float64")
    r = net.backprop(np.random.default_rng(0).standard_normal((4, 128)),
                     grad_output=np.ones((4, 128)))
    ratio = r.grad_norm[0] / r.grad_norm[-1]
    assert ratio <= theory.sigmoid_bound(20)


@pytest.mark.parametrize(
    "activation,init,sigma_w2,sigma_b2",
    [
        ("linear", "gaussian", 1.0, 0.0),     # variance L
        ("linear", "orthogonal", 1.0, 0.0),   # variance 0: dynamical isometry
        ("relu", "gaussian", 2.0, 0.0),       # variance 2L
        ("relu", "orthogonal", 2.0, 0.0),     # variance L
        ("tanh", "orthogonal", 1.760954639606737, 0.05),
    ],
)
def test_jacobian_singular_value_moments_match_free_probability(activation, init, sigma_w2,
                                                                 sigma_b2):
    depth, width, seeds = 4, 512, 6
    pred = theory.jacobian_spectrum_moments(activation, init, sigma_w2, sigma_b2, depth)
    # The input's second moment that puts the first pre-activation at q*.
    q = pred.q_star if math.isfinite(pred.q_star) and pred.q_star > 0 else sigma_w2
    second_moment = (q - sigma_b2) / sigma_w2
    means, variances = [], []
    for seed in range(seeds):
        net = pyjac.Chain(depth, width, activation=activation, init=init,
                          gain=math.sqrt(sigma_w2), bias_std=math.sqrt(sigma_b2), seed=seed,
                          dtype="float64")
        x = np.random.default_rng(seed).standard_normal(width) * math.sqrt(second_moment)
        lam = net.jacobian_norms(x, singular_values_at=[depth]).singular_values[depth] ** 2
        means.append(lam.mean())
        variances.append(lam.var())
    assert np.mean(means) == pytest.approx(pred.mean, rel=0.10)
    if pred.variance == 0:
        assert np.mean(variances) < 1e-10
    else:
        assert np.mean(variances) == pytest.approx(pred.variance, rel=0.10)


# The residual chains of the issue: depth 100, width 1024, He (ReLU) or Xavier init, a
# dL/dh_L independent of the network (the mean-field setting) or the sum-of-squares loss.
RESIDUAL = [(act, sw2, scale, loss)
            for act, sw2 in (("relu", 2.0), ("tanh", 1.0), ("linear", 1.0))
            for scale in (1.0, 0.5, 0.25)
            for loss in ("random", "sum_squares")]


@pytest.mark.parametrize("activation,sigma_w2,scale,loss", RESIDUAL)
def test_residual_theory_fits_the_engine_within_three_percent(activation, sigma_w2, scale,
                                                               loss):
    depth, width, batch, seeds = 100, 1024, 8, 3
    measured = []
    for seed in range(seeds):
        net = pyjac.Chain(depth, width, activation=activation, init="gaussian",
                          gain=math.sqrt(sigma_w2), residual=True, residual_scale=scale,
                          seed=seed, dtype="float64")
        data = np.random.default_rng(2000 + seed)
        x = data.standard_normal((batch, width))
        if loss == "random":
            r = net.backprop(x, grad_output=data.standard_normal((batch, width)))
        else:
            r = net.backprop(x)
        measured.append(r.log_grad_norm[0] - r.log_grad_norm[-1])
    predicted = theory.predicted_log_grad_norm(activation, sigma_w2, 0.0, depth, True, scale,
                                               input_second_moment=1.0, width=width,
                                               loss=loss)[0]
    assert predicted == pytest.approx(np.mean(measured), rel=0.03)


def test_residual_relu_theory_without_a_width_gives_no_line():
    with pytest.warns(RuntimeWarning, match="give width="):
        pred = theory.predicted_log_grad_norm("relu", 2.0, 0.0, 50, True, 1.0)
    assert np.isnan(pred).all()
    # tanh and linear branches have nothing to seed: no width needed.
    assert np.isfinite(theory.predicted_log_grad_norm("tanh", 1.0, 0.0, 50, True, 1.0)).all()
    # A chain knows its width.
    net = pyjac.Chain(20, 64, activation="relu", residual=True, seed=0)
    assert np.isfinite(theory.predicted_log_grad_norm(net)).all()
