"""Textbook bounds: the sigmoid's 1/4, scalar chains and Pascanu's condition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import _activation_name, derivative_bound


# --------------------------------------------------------------------------------------
# Textbook bounds
# --------------------------------------------------------------------------------------
def _nonneg_array(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if np.isnan(arr).any() or (arr < 0).any():
        raise ValueError(f"{name}: must be non-negative, got {x!r}")
    return arr


def sigmoid_bound(depth: Any) -> Any:
    """Upper bound ``0.25**depth`` on the gradient gain through a sigmoid chain.

    ``|sigmoid'| <= 1/4``, so with unit-norm weights the gradient norm shrinks at least
    geometrically: the textbook vanishing-gradient argument.

    Parameters
    ----------
    depth : int, float or array_like
        Number(s) of layers, ``>= 0``.

    Returns
    -------
    float or ndarray
        ``0.25**depth``, elementwise for arrays.
    """
    arr = _nonneg_array(depth, "depth")
    out = 0.25**arr
    return float(out) if out.ndim == 0 else out


def scalar_chain(a: Any, n: Any) -> Any:
    """Product of ``n`` identical scalar layer gains: ``a**n``.

    The one-dimensional caricature of vanishing (``|a| < 1``) and exploding
    (``|a| > 1``) gradients.

    Parameters
    ----------
    a : float or array_like
        Per-layer gain.
    n : int, float or array_like
        Number(s) of layers, ``>= 0`` (broadcast against ``a``).

    Returns
    -------
    float or ndarray
        ``a**n``.
    """
    base = np.asarray(a, dtype=np.float64)
    if np.isnan(base).any():
        raise ValueError(f"a: must be a number, got {a!r}")
    exp = _nonneg_array(n, "n")
    with np.errstate(over="ignore"):
        out = np.power(base, exp)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class PascanuCondition:
    """Result of :func:`pascanu_condition`.

    Attributes
    ----------
    sigma_max : float
        Largest singular value of the recurrent matrix.
    gamma : float
        Bound on ``|phi'|``.
    threshold : float
        ``1 / gamma``.
    sufficient_for_vanishing : bool
        ``sigma_max < 1 / gamma``: then every step contracts the gradient, which
        therefore vanishes exponentially with the number of steps.
    """

    sigma_max: float
    gamma: float
    threshold: float
    sufficient_for_vanishing: bool


def pascanu_condition(W: Any, activation: str = "tanh") -> PascanuCondition:
    """Sufficient condition for vanishing gradients in an RNN (Pascanu et al. 2013).

    With ``h_t = phi(W h_{t-1} + ...)``, ``||dh_t/dh_{t-1}|| <= gamma * sigma_max(W)``
    where ``gamma = sup |phi'|``, so ``sigma_max < 1/gamma`` suffices for the gradient to
    vanish. (``sigma_max > 1/gamma`` is necessary, not sufficient, for explosion.)

    Parameters
    ----------
    W : array_like, shape (n, m)
        Recurrent weight matrix.
    activation : str, default "tanh"
        One of :data:`ACTIVATIONS`; ``gamma`` from :func:`derivative_bound` (1 for tanh,
        relu, leaky relu and linear, 1/4 for sigmoid).

    Returns
    -------
    PascanuCondition

    Raises
    ------
    ValueError
        If ``W`` is not a non-empty finite 2-D array, or the activation is unknown.
    """
    gamma = derivative_bound(_activation_name(activation))
    arr = np.asarray(W, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"W: expected a non-empty 2-D matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("W: contains NaN or infinite entries")
    smax = float(np.linalg.norm(arr, 2))
    return PascanuCondition(sigma_max=smax, gamma=gamma, threshold=1.0 / gamma,
                            sufficient_for_vanishing=smax < 1.0 / gamma)
