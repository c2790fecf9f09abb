"""An independent numpy implementation of a chain's forward and backward pass.

Written from the math, not from the C++ code: normalisation layers are
differentiated through their explicit Jacobian matrices, and weight gradients are
formed explicitly (the core uses Gram-matrix "ghost" norms instead).
"""

from __future__ import annotations

import math

import numpy as np

EPS = 1e-5
_erf = np.vectorize(math.erf)


def _sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def phi(name, u):
    if name == "linear":
        return u
    if name == "sigmoid":
        return _sigmoid(u)
    if name == "tanh":
        return np.tanh(u)
    if name == "relu":
        return np.maximum(u, 0.0)
    if name == "leaky_relu":
        return np.where(u > 0, u, 0.01 * u)
    if name == "gelu":
        return u * 0.5 * (1.0 + _erf(u / math.sqrt(2.0)))
    if name == "silu":
        return u * _sigmoid(u)
    raise ValueError(name)


def dphi(name, u):
    if name == "linear":
        return np.ones_like(u)
    if name == "sigmoid":
        s = _sigmoid(u)
        return s * (1 - s)
    if name == "tanh":
        return 1.0 / np.cosh(u) ** 2
    if name == "relu":
        return (u > 0).astype(u.dtype)
    if name == "leaky_relu":
        return np.where(u > 0, 1.0, 0.01)
    if name == "gelu":
        return 0.5 * (1.0 + _erf(u / math.sqrt(2.0))) + u * np.exp(-0.5 * u * u) / math.sqrt(
            2 * math.pi
        )
    if name == "silu":
        s = _sigmoid(u)
        return s + u * s * (1 - s)
    raise ValueError(name)


def _normalise(z, axis):
    mu = z.mean(axis=axis, keepdims=True)
    sd = np.sqrt(z.var(axis=axis, keepdims=True) + EPS)
    return (z - mu) / sd, sd


def _norm_jacobian(u_vec, sd):
    """d u / d z for u = (z - mean z) / sqrt(var z + eps) along one vector."""
    n = u_vec.size
    return (np.eye(n) - 1.0 / n - np.outer(u_vec, u_vec) / n) / sd


def forward_backward(weights, biases, activations, x, *, residual=False, scale=1.0, norm=None,
                     loss="sum_squares", target=None, grad_output=None,
                     backward_dtype=np.float64):
    """Returns a dict with the same names as BackpropResult.

    The forward pass runs in float64; the backward pass in ``backward_dtype``
    (``np.longdouble``, whose exponent reaches 1e-4951 on x86, gives gradients that
    float64 cannot hold).
    """
    bd = backward_dtype
    x = np.asarray(x, dtype=np.float64)
    hs, us, sds = [x], [], []
    for W, b, act in zip(weights, biases, activations):
        z = hs[-1] @ W.T + b
        if norm == "layernorm":
            u, sd = _normalise(z, axis=1)
        elif norm == "batchnorm":
            u, sd = _normalise(z, axis=0)
        else:
            u, sd = z, None
        branch = phi(act, u)
        # A residual chain skips the layers whose input and output widths match.
        skip = residual and W.shape[0] == W.shape[1]
        hs.append(hs[-1] + scale * branch if skip else branch)
        us.append(u)
        sds.append(sd)
    out = hs[-1]
    B, n_out = out.shape
    if grad_output is not None:
        g, value = np.asarray(grad_output, dtype=np.float64), None
    elif loss == "sum_squares":
        g, value = out.copy(), 0.5 * np.sum(out**2)
    elif loss == "mse":
        d = out - target
        g, value = 2 * d / d.size, np.mean(d**2)
    else:  # cross_entropy
        m = out.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(out - m).sum(axis=1, keepdims=True))
        p = np.exp(out - lse)
        onehot = np.eye(n_out)[target]
        g, value = (p - onehot) / B, float(np.mean(lse[:, 0] - out[np.arange(B), target]))
    g = np.asarray(g, dtype=bd)
    grad_norm = [np.linalg.norm(g)]
    wg, bg, per_ex = [], [], []
    for l in range(len(weights) - 1, -1, -1):
        W, act, u, sd = np.asarray(weights[l], dtype=bd), activations[l], us[l], sds[l]
        h = hs[l].astype(bd)
        skip = residual and W.shape[0] == W.shape[1]
        du = bd(scale if skip else 1.0) * g * dphi(act, u).astype(bd)
        if norm == "layernorm":
            dz = np.stack([_norm_jacobian(u[i], sd[i, 0]).astype(bd).T @ du[i]
                           for i in range(B)])
        elif norm == "batchnorm":
            dz = np.stack(
                [_norm_jacobian(u[:, j], sd[0, j]).astype(bd).T @ du[:, j]
                 for j in range(u.shape[1])], axis=1
            )
        else:
            dz = du
        dW = dz.T @ h
        wg.append(dW)
        bg.append(dz.sum(axis=0))
        per_ex.append([np.linalg.norm(np.outer(dz[i], h[i])) for i in range(B)])
        g = dz @ W + (g if skip else bd(0))
        grad_norm.append(np.linalg.norm(g))
    all_d = [dphi(a, u) for a, u in zip(activations, us)]
    return {
        "loss": value,
        "output": out,
        "grad_norm": np.array(grad_norm[::-1]),
        "activation_norm": np.array([np.linalg.norm(h) for h in hs]),
        "weight_grads": wg[::-1],
        "bias_grads": bg[::-1],
        "weight_grad_norm": np.array([np.linalg.norm(w) for w in wg[::-1]]),
        "bias_grad_norm": np.array([np.linalg.norm(b) for b in bg[::-1]]),
        "per_example_weight_grad_norm": np.array(per_ex[::-1]),
        "derivative_mean": np.array([d.mean() for d in all_d]),
        "dead_fraction": np.array([np.mean(np.all(d == 0, axis=0)) for d in all_d]),
    }


# The measurements every backprop result shares with forward_backward's.
MEASURED = ("grad_norm", "activation_norm", "weight_grad_norm", "bias_grad_norm",
            "per_example_weight_grad_norm", "derivative_mean", "dead_fraction")


def assert_matches(result, ref):
    """A BackpropResult against forward_backward's dict: output, loss and every measured
    norm, to float64 rounding."""
    import pytest

    np.testing.assert_allclose(result.output, ref["output"], rtol=1e-12, atol=1e-12)
    assert result.loss == pytest.approx(ref["loss"], rel=1e-12)
    for name in MEASURED:
        np.testing.assert_allclose(getattr(result, name), ref[name], rtol=1e-10, atol=1e-13,
                                   err_msg=name)
