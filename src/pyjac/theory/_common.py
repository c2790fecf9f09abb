"""Names, constants, argument checks and the activations of the theory."""

from __future__ import annotations

import math
import numbers
from functools import cache
from typing import Any, Callable

import numpy as np

ACTIVATIONS: tuple[str, ...] = (
    "linear",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "gelu",
    "silu",
)
"""Names of the supported activations."""

INITS: tuple[str, ...] = ("gaussian", "orthogonal")
"""Weight ensembles known to :func:`jacobian_spectrum_moments`."""

LEAKY_RELU_SLOPE = 0.01
"""Negative-side slope of ``"leaky_relu"``."""

# i.i.d. initialisations whose squared singular values follow Marchenko-Pastur (by
# universality), hence behave like "gaussian" for the spectrum moments.
_IID_ALIASES = {"gaussian": "gaussian", "he": "gaussian", "xavier": "gaussian",
                "xavier_uniform": "gaussian", "orthogonal": "orthogonal"}

# Piecewise-linear activations: every Gaussian moment has a closed form.
_PIECEWISE_LINEAR = ("linear", "relu", "leaky_relu")
# Activations that grow like relu at large |x|: q can run off to infinity.
_RELU_LIKE = ("gelu", "silu")

_SQRT2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)

# A forward iterate of the length map beyond this is taken to be diverging. Only the
# unbounded activations can get there, and they do so geometrically.
_Q_DIVERGED = 1e15


# --------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------
def _activation_name(activation: Any) -> str:
    name = activation
    if not isinstance(name, str):
        # pybind11 / Python enums expose the member name.
        name = getattr(activation, "name", None)
    if not isinstance(name, str):
        raise ValueError(
            f"activation: expected a name, one of {', '.join(ACTIVATIONS)}; "
            f"got {activation!r}"
        )
    key = name.strip().lower().replace("-", "_")
    if key not in ACTIVATIONS:
        raise ValueError(
            f"activation: unknown activation {name!r}; valid names are "
            f"{', '.join(ACTIVATIONS)}"
        )
    return key


def _real(value: Any, name: str, *, nonneg: bool = False, positive: bool = False,
          allow_inf: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a real number, got {value!r}")
    try:
        x = float(value)
    except OverflowError:  # an int such as 10**400
        raise ValueError(f"{name}: {type(value).__name__} beyond the float64 range") from None
    if math.isnan(x) or (math.isinf(x) and not allow_inf):
        raise ValueError(f"{name}: must be finite, got {x}")
    if positive and not x > 0:
        raise ValueError(f"{name}: must be positive, got {x}")
    if nonneg and x < 0:
        raise ValueError(f"{name}: must be non-negative (it is a variance), got {x}")
    return x


def _depth(value: Any, name: str = "depth") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral,)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    d = int(value)
    if d < 1:
        raise ValueError(f"{name}: must be at least 1, got {d}")
    return d


def _variances(sigma_w2: Any, sigma_b2: Any) -> tuple[float, float]:
    return _real(sigma_w2, "sigma_w2", nonneg=True), _real(sigma_b2, "sigma_b2", nonneg=True)


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp(-log(1 + e^-x)) is accurate in both tails and never overflows.
    return np.exp(-np.logaddexp(0.0, -x))


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF (SciPy's ``ndtr``: accurate in both tails)."""
    # Imported on first use: SciPy's import would double pyjac's start-up (and every
    # sweep worker's) for the gelu activation alone.
    from scipy.special import ndtr

    return ndtr(np.asarray(x, dtype=np.float64))


def _phi_raw(name: str, x: np.ndarray) -> np.ndarray:
    if name == "linear":
        return x.copy()
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, x, LEAKY_RELU_SLOPE * x)
    if name == "gelu":
        return x * _norm_cdf(x)
    return x * _sigmoid(x)  # silu


def _dphi_raw(name: str, x: np.ndarray) -> np.ndarray:
    if name == "linear":
        return np.ones_like(x)
    if name == "sigmoid":
        return _sigmoid(x) * _sigmoid(-x)
    if name == "tanh":
        # sech^2 written with exp(-2|x|) so that it neither overflows nor cancels.
        e = np.exp(-2.0 * np.abs(x))
        return 4.0 * e / (1.0 + e) ** 2
    if name == "relu":
        return (x > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(x > 0, 1.0, LEAKY_RELU_SLOPE)
    if name == "gelu":
        return _norm_cdf(x) + x * np.exp(-0.5 * x * x) / _SQRT_2PI
    s = _sigmoid(x)  # silu
    return s * (1.0 + x * _sigmoid(-x))


def _vectorised(fn: Callable[[str, np.ndarray], np.ndarray], name: str) -> Callable[[Any], Any]:
    def f(x: Any) -> Any:
        arr = np.asarray(x, dtype=np.float64)
        out = fn(name, np.atleast_1d(arr)).reshape(arr.shape)
        return out[()] if out.ndim == 0 else out

    return f


def activation_fn(name: str) -> Callable[[Any], Any]:
    """Return the activation ``phi`` as a vectorised numpy function.

    Parameters
    ----------
    name : str
        One of :data:`ACTIVATIONS`.

    Returns
    -------
    callable
        ``phi(x)`` for array-like ``x``: an ndarray of the same shape (a numpy scalar
        for a scalar input), float64.

    Raises
    ------
    ValueError
        If ``name`` is not a known activation.

    Examples
    --------
    >>> from pyjac import theory
    >>> float(theory.activation_fn("relu")(-2.0))
    0.0
    """
    key = _activation_name(name)
    f = _vectorised(_phi_raw, key)
    f.__name__ = key
    f.__doc__ = f"The {key} activation, vectorised over numpy arrays."
    return f


def activation_derivative(name: str) -> Callable[[Any], Any]:
    """Return the derivative ``phi'`` of an activation as a vectorised numpy function.

    Parameters
    ----------
    name : str
        One of :data:`ACTIVATIONS`. For relu and leaky_relu the value at 0 is the
        left derivative (0 and 0.01).

    Returns
    -------
    callable
        ``phi'(x)`` for array-like ``x``, float64, same shape as ``x``.

    Raises
    ------
    ValueError
        If ``name`` is not a known activation.
    """
    key = _activation_name(name)
    f = _vectorised(_dphi_raw, key)
    f.__name__ = f"d_{key}"
    f.__doc__ = f"Derivative of the {key} activation, vectorised over numpy arrays."
    return f


@cache
def derivative_bound(activation: str) -> float:
    """Return ``gamma = sup_x |phi'(x)|`` for an activation.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.

    Returns
    -------
    float
        1 for linear, tanh, relu and leaky_relu; 1/4 for sigmoid; about 1.1289 for gelu
        (at ``x = sqrt(2)``) and about 1.0998 for silu (found numerically).
    """
    key = _activation_name(activation)
    exact = {"linear": 1.0, "tanh": 1.0, "relu": 1.0, "leaky_relu": 1.0, "sigmoid": 0.25}
    if key in exact:
        return exact[key]
    # Coarse grid, then golden-section refinement of the maximum of |phi'|.
    x = np.linspace(-10.0, 10.0, 20001)
    y = np.abs(_dphi_raw(key, x))
    i = int(np.argmax(y))
    a, b = x[max(i - 1, 0)], x[min(i + 1, x.size - 1)]
    g = (math.sqrt(5.0) - 1.0) / 2.0

    def h(t: float) -> float:
        return float(abs(_dphi_raw(key, np.array([t]))[0]))

    for _ in range(100):
        c, d = b - g * (b - a), a + g * (b - a)
        if h(c) > h(d):
            b = d
        else:
            a = c
    return h(0.5 * (a + b))
