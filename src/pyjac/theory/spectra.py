"""Moments of the input-output Jacobian's squared singular values (free probability)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import _IID_ALIASES, _activation_name, _depth, _variances
from .gradients import _from_chain, _is_chain
from .mean_field import q_star
from .quadrature import _moment


# --------------------------------------------------------------------------------------
# Jacobian spectrum (free probability)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JacobianSpectrumMoments:
    """Moments of the squared singular values of the input-output Jacobian.

    Attributes
    ----------
    mean : float
        Mean of ``lambda`` (eigenvalues of ``J J^T``), ``chi1**L``.
    variance : float
        Variance of ``lambda``.
    chi1 : float
        ``sigma_w2 * mu1``.
    mu1, mu2 : float
        ``E[phi'(sqrt(q*) z)^2]`` and ``E[phi'(sqrt(q*) z)^4]``.
    q_star : float
        Fixed point used.
    depth : int
        Number of layers ``L``.
    init : str
        "gaussian" or "orthogonal".
    """

    mean: float
    variance: float
    chi1: float
    mu1: float
    mu2: float
    q_star: float
    depth: int
    init: str


def jacobian_spectrum_moments(activation: Any, init: str | None = None,
                              sigma_w2: float | None = None, sigma_b2: float | None = None,
                              depth: int | None = None, *,
                              q0: float = 1.0) -> JacobianSpectrumMoments:
    """Mean and variance of the spectrum of ``J J^T``, ``J = D_L W_L ... D_1 W_1``.

    Infinite-width result of Pennington, Schoenholz & Ganguli (2017), with
    ``D_l = diag(phi'(z_l))`` and every layer at the fixed point ``q*``.

    Parameters
    ----------
    activation : str or chain-like object
        One of :data:`ACTIVATIONS`, or an object with attributes ``activation``,
        ``init``, ``depth``, ``sigma_w2``, ``sigma_b2`` (the other arguments must then
        be left out, except ``init`` which overrides the chain's).
    init : {"gaussian", "orthogonal"}
        Weight ensemble: i.i.d. Gaussian entries of variance ``sigma_w2 / n`` or
        ``sqrt(sigma_w2)`` times a Haar orthogonal matrix. "he", "xavier" and
        "xavier_uniform" are accepted as i.i.d. ensembles (Marchenko-Pastur
        universality).
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).
    depth : int
        Number of layers ``L >= 1``.
    q0 : float, default 1
        Start of the ``q*`` iteration.

    Returns
    -------
    JacobianSpectrumMoments
        ``mean = chi1**L`` and ``variance = chi1**(2L) * L * (mu2/mu1**2 - 1 + v_W)``
        where ``v_W`` is the normalised variance of one weight matrix's squared singular
        values: 1 for Gaussian (Marchenko-Pastur at aspect ratio 1), 0 for orthogonal.

    Notes
    -----
    Free probability: the S-transform of a product of freely independent matrices is
    the product of their S-transforms. Writing ``S(z) = (1/m1) (1 - v z + O(z^2))``, where
    ``m1`` is the mean and ``v = m2/m1^2 - 1`` the normalised variance of a spectrum,
    means multiply and normalised variances add. ``J J^T`` is the free product of
    ``L`` copies of ``D^2`` (``m1 = mu1``, ``v = mu2/mu1^2 - 1``) and ``L`` copies of
    ``W W^T`` (``m1 = sigma_w2``, ``v = v_W``). This reproduces the paper's critical
    (``chi1 = 1``) result ``sigma^2 = L (mu2/mu1^2 - 1 - s1)``, in its notation
    ``s1 = -v_W`` (``s1 = -1`` Gaussian, 0 orthogonal). Known cases: linear Gaussian
    ``L``, linear orthogonal 0, relu Gaussian ``2L``, relu orthogonal ``L`` (at
    criticality). Finite width adds ``O(L/N)`` corrections. When ``q*`` is infinite
    (gelu/silu past divergence) the ``q -> inf`` limits ``mu1 = mu2 = 1/2`` are used.

    Raises
    ------
    ValueError
        For an unknown activation or init, negative variances or depth < 1.
    """
    if _is_chain(activation):
        if any(v is not None for v in (sigma_w2, sigma_b2, depth)):
            raise ValueError("sigma_w2, sigma_b2, depth: give either a chain or these "
                             "parameters, not both")
        p = _from_chain(activation)
        if p["residual"]:
            raise ValueError("chain: residual chains are not covered by "
                             "jacobian_spectrum_moments")
        activation, sigma_w2, sigma_b2, depth = (p["activation"], p["sigma_w2"],
                                                 p["sigma_b2"], p["depth"])
        init = p["init"] if init is None else init
    if sigma_w2 is None or sigma_b2 is None or depth is None:
        raise ValueError("sigma_w2, sigma_b2, depth: required when activation is a name")
    name = _activation_name(activation)
    key = init.strip().lower() if isinstance(init, str) else init
    if key not in _IID_ALIASES:
        raise ValueError(
            f"init: expected 'gaussian' or 'orthogonal' (or the i.i.d. aliases 'he', "
            f"'xavier', 'xavier_uniform'), got {init!r}")
    ens = _IID_ALIASES[key]
    sw, sb = _variances(sigma_w2, sigma_b2)
    L = _depth(depth)
    qq = q_star(name, sw, sb, q0=q0)
    mu1 = _moment(name, "dphi2", qq)
    mu2 = _moment(name, "dphi4", qq)
    c = sw * mu1
    v_w = 1.0 if ens == "gaussian" else 0.0
    with np.errstate(over="ignore"):
        mean = float(np.float64(c) ** L)
        rel = (mu2 / mu1**2 - 1.0 + v_w) if mu1 > 0 else math.nan
        variance = float(np.float64(mean) ** 2 * L * rel) if mu1 > 0 else 0.0
    return JacobianSpectrumMoments(mean=mean, variance=variance, chi1=c, mu1=mu1, mu2=mu2,
                                   q_star=qq, depth=L, init=ens)
