"""Residual chains: the recursion that tracks the gradient's component along the stream."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._common import _PIECEWISE_LINEAR, LEAKY_RELU_SLOPE, activation_derivative, activation_fn
from .quadrature import _moment, gaussian_expectation


# --------------------------------------------------------------------------------------
# Residual chains: the gradient's component along the stream
# --------------------------------------------------------------------------------------
def _residual_moments(name: str, q: float) -> dict[str, float]:
    """The Gaussian moments over ``z ~ N(0, q)`` that the residual recursion needs."""
    out = {"mu": _moment(name, "phi", q), "phi2": _moment(name, "phi2", q),
           "dphi2": _moment(name, "dphi2", q)}
    if name in _PIECEWISE_LINEAR:
        a = {"linear": 1.0, "relu": 0.0, "leaky_relu": LEAKY_RELU_SLOPE}[name]
        r = math.sqrt(q / (2.0 * math.pi))
        out.update(z_dphi=(1.0 - a) * r, z_dphi_phi=0.5 * (1.0 + a * a) * q,
                   dphi2_phi=(1.0 - a**3) * r, dphi2_phi2=0.5 * (1.0 + a**4) * q)
        return out
    f, d = activation_fn(name), activation_derivative(name)
    out.update(
        z_dphi=gaussian_expectation(lambda u: u * d(u), q),
        z_dphi_phi=gaussian_expectation(lambda u: u * d(u) * f(u), q),
        dphi2_phi=gaussian_expectation(lambda u: d(u) ** 2 * f(u), q),
        dphi2_phi2=gaussian_expectation(lambda u: (d(u) * f(u)) ** 2, q))
    return out


def _residual_log_factors(names: list[str], sw: float, sb: float, s: float, p0: float,
                          m0: float, width: int | None, loss: str) -> np.ndarray:
    """ln E||g_{l-1}||^2 / E||g_l||^2 of ``h_l = h_{l-1} + s phi(W_l h_{l-1} + b_l)``.

    The gradient-independence assumption drops the cross term of
    ``g_{l-1} = g_l + s W_l^T D_l g_l``, but ``D_l`` depends on ``W_l`` through
    ``y = W_l h_{l-1}``. Conditioning the Gaussian ``W_l`` on ``y`` splits it exactly into
    ``y h^T / ||h||^2`` and a part ``W_perp`` independent of ``y`` (and of ``g_l``,
    which sees ``W_l`` only through ``y``)::

        W_l^T D_l g_l = alpha_l h_{l-1} + nu_l,
        alpha_l = E[y phi'(z) g_l] / E[h^2],   nu_l ~ N(0, sigma_w2 E[phi'(z)^2 g_l^2]).

    So the gradient picks up components along the stream, ``g_l = g_L + s sum_{k>l}
    (alpha_k h_{k-1} + nu_k)``, and through ``h_{k-1} = h_{l-1} + s sum phi(z_m)`` a
    component ``c_l phi(z_l)`` with ``c_l = s^2 sum_{k>l} alpha_k``. Per unit, every
    expectation the recursion needs follows from the forward moments (mean ``m`` and
    second moment ``p`` of the stream) and the one-dimensional Gaussian moments of
    ``phi`` at ``q_l = sigma_w2 p_{l-1} + sigma_b2``; it tracks ``E[g^2]``, the mean
    ``gamma = E[g]``, the sums ``U = sum alpha_k`` and ``V = sum alpha_k S(.)`` that
    give ``E[g_l h_{l-1}]``. With ``alpha = 0`` (odd activations, linear branches: then
    ``E[y phi'(z)] = 0`` and nothing seeds it) it is the classic factor
    ``1 + s^2 sigma_w2 E[phi'^2]``.

    For ReLU-like branches ``(gamma, alpha)`` grow exponentially from their seed: the
    mean of ``dL/dh_L`` over the ``width`` units, of size ``sqrt(E[g^2] / width)`` for
    a gradient independent of the network (``loss="random"``), or the stream's own mean
    for ``loss="sum_squares"`` (``g_L = h_L``). Without a width the random case has no
    prediction (NaN, with a warning).
    """
    L = len(names)
    nan = np.full(L, np.nan)
    # ---- forward: the stream's per-unit mean and second moment ----------------------
    p, m = p0, m0
    stream_p, stream_m, moments = [], [], []
    for i, name in enumerate(names):
        if not (math.isfinite(p) and p <= 1e300):
            warnings.warn(f"residual chain: the stream's second moment leaves float64's "
                          f"range at layer {i}; no prediction", RuntimeWarning, stacklevel=4)
            return nan
        q = sw * p + sb
        mom = _residual_moments(name, q)
        mom["q"] = q
        stream_p.append(p)
        stream_m.append(m)
        moments.append(mom)
        p, m = p + 2.0 * s * m * mom["mu"] + s * s * mom["phi2"], m + s * mom["mu"]
    seeded = any(abs(mom["z_dphi"]) > 1e-12 * math.sqrt(mom["q"]) for mom in moments)
    # ---- the gradient at the output ---------------------------------------------------
    if loss == "sum_squares" and s != 0.0:
        # g_L = h_L = s * (1/s) h_L: a virtual alpha_{L+1} = 1/s.
        G, gamma = p, m
        U, V = 1.0 / s, moments[-1]["mu"] / s
    else:
        if seeded and width is None:
            warnings.warn(
                f"residual {'/'.join(sorted(set(names)))} chain: the gradient's component "
                f"along the stream grows from its finite-width seed and dominates at any "
                f"practical width; give width= for a prediction", RuntimeWarning,
                stacklevel=4)
            return nan
        G, U, V = 1.0, 0.0, 0.0
        gamma = math.sqrt(1.0 / width) if width is not None else 0.0
    # ---- backward ----------------------------------------------------------------------
    out = np.empty(L)
    for k in range(L - 1, -1, -1):  # layer k+1 maps h_k to h_{k+1}
        mom, pk, mk = moments[k], stream_p[k], stream_m[k]
        c = s * s * U
        overlap = s * (U * pk + s * mk * V)  # E[g h_k]
        mean_a = gamma - c * mom["mu"]       # the part of g independent of z
        sq_a = G - 2.0 * c * mean_a * mom["mu"] - c * c * mom["phi2"]
        alpha = (sw / mom["q"]) * (mean_a * mom["z_dphi"] + c * mom["z_dphi_phi"])
        d2g2 = mom["dphi2"] * sq_a + 2.0 * c * mean_a * mom["dphi2_phi"] + \
            c * c * mom["dphi2_phi2"]
        G_next = G + s * s * (alpha * alpha * pk + sw * d2g2) + 2.0 * s * alpha * overlap
        if not (G_next > 0.0 and math.isfinite(G_next)):
            return nan
        out[k] = math.log(G_next / G)
        gamma += s * alpha * mk
        U += alpha
        V += (moments[k - 1]["mu"] if k >= 1 else 0.0) * U
        # The recursion is homogeneous: E[g^2] back to 1, the linear quantities with it.
        r = 1.0 / math.sqrt(G_next)
        G, gamma, U, V = 1.0, gamma * r, U * r, V * r
    return out
