"""Mean-field theory of signal and gradient propagation in deep random chains.

The chain is ``h_0 = x``, ``z_l = W_l h_{l-1} + b_l`` and ``h_l = phi(z_l)``, or with
``residual=True``, ``h_l = h_{l-1} + residual_scale * phi(z_l)``. Weight entries have
variance ``sigma_w2 / fan_in`` and bias entries variance ``sigma_b2``.

At infinite width every pre-activation ``z_l`` of a random chain is Gaussian with a
variance ``q_l`` that obeys the deterministic *length map* (Poole et al. 2016)::

    q_l = sigma_w2 * E_z[phi(sqrt(q_{l-1}) z)^2] + sigma_b2,     z ~ N(0, 1),

whose stable fixed point is ``q*``. Backpropagated gradients obey, under the usual
gradient-independence assumption, ``E||dL/dh_{l-1}||^2 = chi1 * E||dL/dh_l||^2`` with
(Schoenholz et al. 2017)::

    chi1 = sigma_w2 * E_z[phi'(sqrt(q*) z)^2].

``chi1 < 1`` is the ordered phase (vanishing gradients, depth scale
``-1/ln chi1``), ``chi1 > 1`` the chaotic phase (exploding gradients) and ``chi1 = 1`` the
critical line ("edge of chaos"). The squared singular values of the end-to-end
input-output Jacobian have mean ``chi1**L`` and a variance that free probability
gives in closed form (Pennington, Schoenholz & Ganguli 2017).

Conventions
-----------
* Activations are named: ``"linear"``, ``"sigmoid"``, ``"tanh"``, ``"relu"``,
  ``"leaky_relu"`` (negative slope 0.01), ``"gelu"`` (exact, ``x * Phi(x)``) and
  ``"silu"`` (``x * sigmoid(x)``). ``relu'(0)`` is taken as 0 (a null set anyway).
* ``q`` always means the variance of a pre-activation ``z`` (not of ``h``).
* Logs are natural logs.
* Nothing here is Monte Carlo. Gaussian expectations are deterministic quadratures
  (see :func:`gaussian_expectation`); piecewise-linear activations use closed forms.

This module is pure numpy and imports nothing else from pyjac.

References
----------
.. [1] B. Poole, S. Lahiri, M. Raghu, J. Sohl-Dickstein, S. Ganguli, "Exponential
   expressivity in deep neural networks through transient chaos", NeurIPS 2016.
.. [2] S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein, "Deep information
   propagation", ICLR 2017.
.. [3] J. Pennington, S. S. Schoenholz, S. Ganguli, "Resurrecting the sigmoid in deep
   learning through dynamical isometry: theory and practice", NeurIPS 2017.
.. [4] R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent neural
   networks", ICML 2013.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable

import numpy as np
from numpy.polynomial.legendre import leggauss

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "LEAKY_RELU_SLOPE",
    "JacobianSpectrumMoments",
    "PascanuCondition",
    "activation_derivative",
    "activation_fn",
    "c_star",
    "chi1",
    "chi_c",
    "correlation_depth_scale",
    "correlation_map",
    "critical_sigma_w2",
    "depth_scale",
    "derivative_bound",
    "gaussian_expectation",
    "jacobian_spectrum_moments",
    "length_map",
    "pascanu_condition",
    "predicted_grad_norm",
    "predicted_log_grad_norm",
    "q_star",
    "scalar_chain",
    "sigmoid_bound",
]

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
_erfc = np.frompyfunc(math.erfc, 1, 1)

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
    # erfc keeps full relative accuracy in the lower tail, where erf would cancel.
    return 0.5 * _erfc(-x / _SQRT2).astype(np.float64)


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


# --------------------------------------------------------------------------------------
# Gaussian quadrature
# --------------------------------------------------------------------------------------
# A plain Gauss-Hermite rule converges slowly once q is larger than ~1: tanh(sqrt(q) z)
# has poles at distance pi / (2 sqrt(q)) from the real z axis, and with 200 nodes the
# error of E[tanh'(sqrt(q) z)^2] is already ~2e-5 at q = 4 and ~2e-3 at q = 10. The
# integrand has two length scales instead: the Gaussian (order 1 in z) and the
# activation (order 1 in u = sqrt(q) z). A composite Gauss-Legendre rule whose panels
# are at most _H wide in both z and u resolves both to ~1e-15 for every q.
_Z_MAX = 13.0  # N(0,1) mass beyond 13 sigma is ~1e-38.
_U_MAX = 40.0  # beyond |u| = 40 the activations sit on their asymptotes (~e^-40).
_H = 0.5


@cache
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return leggauss(n)


@cache
def _reference_rules(n_gl: int, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    gx, gw = _gauss_legendre(n_gl)
    # z-rule for q <= 1, density included.
    edges = np.arange(-_Z_MAX, _Z_MAX + 0.5 * h, h)
    mid, half = 0.5 * (edges[:-1] + edges[1:]), 0.5 * np.diff(edges)
    z = (mid[:, None] + half[:, None] * gx).ravel()
    wz = (half[:, None] * gw).ravel() * np.exp(-0.5 * z * z) / _SQRT_2PI
    # u-rule on [-_U_MAX, _U_MAX] for q > 1, density excluded; kept per panel.
    edges = np.arange(-_U_MAX, _U_MAX + 0.5 * h, h)
    mid, half = 0.5 * (edges[:-1] + edges[1:]), 0.5 * np.diff(edges)
    u = mid[:, None] + half[:, None] * gx
    wu = np.broadcast_to(half[:, None] * gw, u.shape).copy()
    return z, wz, u, wu


def _rule_parts(q: float, n_gl: int, h: float) -> tuple[
        np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rule of :func:`_rule` in two parts: ``(keep, u_in, w_in, u_out, w_out)``.

    For ``q > 1`` the inner nodes are the fixed reference nodes ``u_ref[keep]``, so values
    of a fixed integrand there can be cached; ``keep`` is None otherwise.
    """
    empty = np.zeros(0)
    if q == 0.0:
        return None, np.zeros(1), np.ones(1), empty, empty
    z, wz, u_ref, wu_ref = _reference_rules(n_gl, h)
    s = math.sqrt(q)
    if s <= 1.0:
        return None, s * z, wz, empty, empty
    # Inner part in u: panels overlapping |u| < _Z_MAX * s (the rest has no mass).
    keep = np.abs(u_ref[:, 0] + u_ref[:, -1]) * 0.5 < _Z_MAX * s + h
    u_in = u_ref[keep].ravel()
    w_in = wu_ref[keep].ravel() * np.exp(-0.5 * u_in * u_in / q) / (_SQRT_2PI * s)
    a = _U_MAX / s
    if a >= _Z_MAX:
        return keep, u_in, w_in, empty, empty
    # Outer tails |u| > _U_MAX, integrated in z where the Gaussian sets the scale.
    gx, gw = _gauss_legendre(n_gl)
    n = max(1, math.ceil((_Z_MAX - a) / h))
    edges = np.linspace(a, _Z_MAX, n + 1)
    mid, half = 0.5 * (edges[:-1] + edges[1:]), 0.5 * np.diff(edges)
    zo = (mid[:, None] + half[:, None] * gx).ravel()
    wo = (half[:, None] * gw).ravel() * np.exp(-0.5 * zo * zo) / _SQRT_2PI
    return keep, u_in, w_in, np.concatenate([s * zo, -s * zo]), np.concatenate([wo, wo])


def _rule(q: float, n_gl: int = 16, h: float = _H) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``u`` and weights ``w`` with ``sum(w * f(u)) ~= E[f(sqrt(q) z)]``.

    ``n_gl`` Gauss-Legendre nodes on panels at most ``h`` wide in both ``z`` and ``u``.
    """
    _, u_in, w_in, u_out, w_out = _rule_parts(q, n_gl, h)
    if u_out.size == 0:
        return u_in, w_in
    return np.concatenate([u_in, u_out]), np.concatenate([w_in, w_out])


def gaussian_expectation(f: Callable[[np.ndarray], Any], q: float = 1.0) -> float:
    """Compute ``E[f(u)]`` for ``u ~ N(0, q)`` by deterministic quadrature.

    Parameters
    ----------
    f : callable
        Vectorised function of a float64 array, returning an array of the same shape.
        The rule assumes what activations satisfy: ``f`` is smooth on unit scale for
        ``|u| <= 40`` and slowly varying (polynomial or settling to an asymptote) beyond.
        Kinks cost accuracy (the piecewise-linear activations use closed forms
        elsewhere in this module), and so do oscillations at large ``|u|``.
    q : float, default 1
        Variance, ``>= 0``.

    Returns
    -------
    float
        The expectation. For ``q <= 1`` a composite Gauss-Legendre rule in
        ``z = u / sqrt(q)`` (panels of width 0.5 on ``|z| <= 13``); for ``q > 1`` a
        composite rule in ``u`` (panels of width 0.5 on ``|u| <= 40``) plus the tails in
        ``z``. This resolves both the Gaussian and the activation's own length scale,
        to about 1e-14 relative for smooth activations and any ``q``.

    Notes
    -----
    A single Gauss-Hermite rule (``numpy.polynomial.hermite_e.hermegauss``) is exact
    for polynomials but converges slowly once ``sqrt(q)`` exceeds ~1 for saturating
    activations (poles of ``tanh(sqrt(q) z)`` approach the real axis), which is why
    it is not used here.
    """
    q = _real(q, "q", nonneg=True)
    u, w = _rule(q)
    return float(np.dot(w, np.asarray(f(u), dtype=np.float64)))


def _moment(name: str, kind: str, q: float) -> float:
    """Gaussian moment of an activation at pre-activation variance ``q``.

    ``kind``: "phi" -> E[phi], "phi2" -> E[phi^2], "dphi2" -> E[phi'^2],
    "dphi4" -> E[phi'^4]. ``q`` may be ``inf`` (limits).
    """
    if name in _PIECEWISE_LINEAR:
        a = {"linear": 1.0, "relu": 0.0, "leaky_relu": LEAKY_RELU_SLOPE}[name]
        # phi(x) = x for x > 0 and a*x for x < 0.
        if kind == "phi":
            return (1.0 - a) * math.sqrt(q / (2.0 * math.pi)) if q != math.inf else (
                0.0 if a == 1.0 else math.inf)
        if kind == "phi2":
            return 0.5 * (1.0 + a * a) * q
        if kind == "dphi2":
            return 0.5 * (1.0 + a * a)
        return 0.5 * (1.0 + a**4)
    if q == math.inf:
        # phi'(sqrt(q) z) tends to a step (relu-like) or to 0 (saturating) pointwise.
        if kind in ("dphi2", "dphi4"):
            return 0.5 if name in _RELU_LIKE else 0.0
        if name == "tanh":
            return 1.0 if kind == "phi2" else 0.0
        if name == "sigmoid":
            return 0.5
        return math.inf
    keep, u_in, w_in, u_out, w_out = _rule_parts(q, 16, _H)
    vals = _inner_values(name, kind)[keep].ravel() if keep is not None else _integrand(
        name, kind, u_in)
    total = float(np.dot(w_in, vals))
    if u_out.size:
        total += float(np.dot(w_out, _integrand(name, kind, u_out)))
    return total


def _integrand(name: str, kind: str, u: np.ndarray) -> np.ndarray:
    if kind == "phi":
        return _phi_raw(name, u)
    if kind == "phi2":
        return _phi_raw(name, u) ** 2
    if kind == "dphi2":
        return _dphi_raw(name, u) ** 2
    return _dphi_raw(name, u) ** 4


@cache
def _inner_values(name: str, kind: str) -> np.ndarray:
    # The inner nodes for q > 1 do not depend on q: evaluate each integrand there once.
    u_ref = _reference_rules(16, _H)[2]
    return _integrand(name, kind, u_ref.ravel()).reshape(u_ref.shape)


# --------------------------------------------------------------------------------------
# Scalar root finding and fixed points (no scipy)
# --------------------------------------------------------------------------------------
def _bracket_root(g: Callable[[float], float], a: float, ga: float, b: float, gb: float,
                  xtol: Callable[[float], float]) -> float:
    """Root of ``g`` in a sign-changing bracket: Illinois steps, bisection as a guard."""
    if ga == 0.0:
        return a
    if gb == 0.0:
        return b
    if (ga > 0) == (gb > 0):
        raise RuntimeError("internal error: bracket does not change sign")
    side = 0
    width = abs(b - a)
    stalls = 0
    c_prev = math.nan
    for _ in range(2000):
        if stalls >= 2:
            c = 0.5 * (a + b)
            stalls = 0
        else:
            c = (a * gb - b * ga) / (gb - ga)
            if not (min(a, b) < c < max(a, b)):
                c = 0.5 * (a + b)
        gc = g(c)
        if gc == 0.0 or abs(c - c_prev) <= 0.5 * xtol(c):
            # Illinois converges superlinearly: a negligible step means converged.
            return c
        c_prev = c
        if (gc > 0) == (gb > 0):
            b, gb = c, gc
            if side == -1:
                ga *= 0.5
            side = -1
        else:
            a, ga = c, gc
            if side == 1:
                gb *= 0.5
            side = 1
        new_width = abs(b - a)
        if new_width <= xtol(c):
            return a - ga * (b - a) / (gb - ga)
        # Regula falsi can leave one end parked; force a bisection if it stalls.
        stalls = stalls + 1 if new_width > 0.5 * width else 0
        width = new_width
    return 0.5 * (a + b)


def _fixed_point(f: Callable[[float], float], x0: float, *, lo: float, hi: float, tol: float,
                 max_iter: int, what: str) -> float:
    """Fixed point of a monotone increasing map reached by iterating from ``x0``.

    Plain iteration moves monotonically towards that fixed point and never jumps over
    it. Each step also tries a secant extrapolation, pushed slightly past the estimate;
    it is used only when it lands beyond the fixed point (sign change of f(x) - x), in
    which case the root is polished inside that bracket. When the steps grow instead
    of shrinking, the first sign change is searched on a geometric grid towards the
    bound (this could only miss a pair of fixed points within one grid cell).
    Returns ``inf`` when no fixed point exists below ``_Q_DIVERGED`` (only possible when
    ``hi`` is infinite).
    """

    def g(x: float) -> float:
        return f(x) - x

    def xtol(x: float) -> float:
        return tol * max(1.0, abs(x))

    x, fx = x0, f(x0)
    if not math.isfinite(fx):
        return math.inf
    gx = fx - x
    if gx == 0.0:
        return x
    d = 1.0 if gx > 0 else -1.0
    bound = hi if d > 0 else lo

    def scan(a: float, ga: float) -> float:
        # First sign change of g on a geometric grid from a towards the bound (factor 2
        # in x when the bound is infinite, else halving the distance to it); the bound
        # itself when the grid gets within tolerance of it without one.
        for _ in range(4000):
            if bound == math.inf:
                b = 2.0 * a
                if b > _Q_DIVERGED:
                    return math.inf
            else:
                b = bound + 0.5 * (a - bound)
                if abs(b - bound) <= xtol(bound) or b == a:
                    return bound
            gb = g(b)
            if not math.isfinite(gb):
                return math.inf
            if d * gb <= 0:
                return _bracket_root(g, a, ga, b, gb, xtol)
            a, ga = b, gb
        return bound

    push = 0.05
    for _ in range(max_iter):
        xn = min(max(fx, lo), hi)
        if d > 0 and hi == math.inf and xn > _Q_DIVERGED:
            return math.inf
        fxn = f(xn)
        if not math.isfinite(fxn):
            return math.inf
        gn = fxn - xn
        if gn == 0.0:
            return xn
        if d * gn < 0:  # only reachable through rounding: polish in the bracket
            return _bracket_root(g, x, gx, xn, gn, xtol)
        if abs(gn) <= xtol(xn):
            return min(max(fxn, lo), hi)
        if d * gn >= d * gx:
            # Steps that do not shrink: the iterate is running away or crawling through
            # a nearly flat stretch (e.g. gelu/silu near sigma_w2 = 2).
            return scan(xn, gn)
        if gn != gx:
            cand = xn - gn * (xn - x) / (gn - gx)
            if math.isfinite(cand) and d * (cand - xn) > 0:
                cand += d * push * abs(cand - xn)
                if d * (cand - bound) >= 0:
                    # The extrapolation leaves the domain: the fixed point is the bound
                    # or lies between; search the way there.
                    return scan(xn, gn)
                gc = g(cand)
                if d * gc <= 0:
                    return _bracket_root(g, xn, gn, cand, gc, xtol)
                # Not past the fixed point yet: convergence is sub-linear (a marginal or
                # nearly tangent fixed point, or the bottleneck of a saddle-node ghost).
                # Jump to the candidate if no sign change shows on a grid in between,
                # else solve in the first bracketing cell; and push harder next time.
                push = min(2.0 * push, 10.0)
                ts = xn + (cand - xn) * np.linspace(0.0, 1.0, 6)[1:-1]
                prev_t, prev_g = xn, gn
                for t in ts:
                    gt = g(float(t))
                    if d * gt <= 0:
                        return _bracket_root(g, prev_t, prev_g, float(t), gt, xtol)
                    prev_t, prev_g = float(t), gt
                x, fx, gx = cand, cand + gc, gc
                continue
        x, fx, gx = xn, fxn, gn
    raise RuntimeError(
        f"{what}: not converged after max_iter={max_iter} iterations (last iterate "
        f"{x:.6g}, last step {gx:.3g}); with the default max_iter this happens only very "
        "close to a marginally stable fixed point. Increase max_iter or tol."
    )


# --------------------------------------------------------------------------------------
# Length map, q*, chi1, depth scales
# --------------------------------------------------------------------------------------
def length_map(activation: str, q: Any, sigma_w2: float, sigma_b2: float) -> Any:
    """Apply the variance (length) map once: ``sigma_w2 * E[phi(sqrt(q) z)^2] + sigma_b2``.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    q : float or array_like
        Pre-activation variance(s) ``q_{l-1} >= 0``.
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).

    Returns
    -------
    float or ndarray
        ``q_l``; an array of the shape of ``q`` when ``q`` is an array.

    Raises
    ------
    ValueError
        For an unknown activation, a negative variance or a negative ``q``.
    """
    name = _activation_name(activation)
    sw, sb = _variances(sigma_w2, sigma_b2)
    arr = np.asarray(q, dtype=np.float64)
    if np.isnan(arr).any() or (arr < 0).any():
        raise ValueError(f"q: must be non-negative variances, got {q!r}")
    out = np.array([sw * _moment(name, "phi2", float(v)) + sb for v in arr.ravel()])
    out = out.reshape(arr.shape)
    return float(out) if out.ndim == 0 else out


def q_star(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0,
           tol: float = 1e-12, max_iter: int = 10000) -> float:
    """Fixed point ``q*`` of the length map reached by iterating from ``q0``.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).
    q0 : float, default 1
        Starting pre-activation variance. Matters only when the map has several fixed
        points (e.g. gelu/silu with ``2 < sigma_w2 < 4``: an unstable fixed point
        separates a finite attractor from divergence).
    tol : float, default 1e-12
        Absolute tolerance on ``q`` below 1, relative above.
    max_iter : int, default 10000
        Iteration cap.

    Returns
    -------
    float
        ``q*``, or ``numpy.inf`` when the iterates grow without bound (no finite
        fixed point is reached from ``q0``).

    Raises
    ------
    ValueError
        For an unknown activation, negative variances or ``q0 < 0``.
    RuntimeError
        If the iteration has neither converged nor diverged after ``max_iter``
        steps, which only happens extremely close to a marginally stable fixed point.

    Notes
    -----
    Piecewise-linear activations have the affine map ``q -> c q + sigma_b2`` with
    ``c = sigma_w2`` (linear), ``sigma_w2 / 2`` (relu) or ``sigma_w2 (1 + a^2) / 2``
    (leaky relu), so ``q* = sigma_b2 / (1 - c)`` for ``c < 1``; for ``c > 1`` the
    iterates diverge (``inf``) unless ``q0 = sigma_b2 = 0``; for ``c = 1`` every ``q`` is
    a fixed point when ``sigma_b2 = 0`` (``q0`` is returned) and none is when
    ``sigma_b2 > 0`` (``inf``).

    Otherwise the map is monotone increasing, so the iteration is monotone; it is
    accelerated by secant steps that are accepted only when they bracket the fixed
    point, which keeps the answer the fixed point the plain iteration converges to.
    """
    name = _activation_name(activation)
    sw, sb = _variances(sigma_w2, sigma_b2)
    q0 = _real(q0, "q0", nonneg=True)
    tol = _real(tol, "tol", positive=True)
    max_iter = _depth(max_iter, "max_iter")
    if name in _PIECEWISE_LINEAR:
        c = sw * _moment(name, "dphi2", 1.0)  # the slope of the affine length map
        if c < 1.0:
            return sb / (1.0 - c)
        if c == 1.0:
            return q0 if sb == 0.0 else math.inf
        return 0.0 if (sb == 0.0 and q0 == 0.0) else math.inf
    # tanh and the logistic have phi^2 <= 1, so the map stays below sigma_w2 + sigma_b2:
    # a finite bound keeps huge variances (sigma_w2 = 1e20) from reading as divergence.
    hi = sw + sb if name in ("tanh", "sigmoid") else math.inf
    return _fixed_point(lambda q: sw * _moment(name, "phi2", q) + sb, min(q0, hi), lo=0.0,
                        hi=hi, tol=tol, max_iter=max_iter, what="q_star")


def chi1(activation: str, sigma_w2: float, sigma_b2: float, *, q: float | None = None,
         q0: float = 1.0) -> float:
    """Mean squared singular value of one layer's Jacobian, ``sigma_w2 E[phi'(sqrt(q) z)^2]``.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).
    q : float, optional
        Pre-activation variance at which to evaluate; default ``q*`` (from
        :func:`q_star` started at ``q0``).
    q0 : float, default 1
        Start of the ``q*`` iteration (ignored when ``q`` is given).

    Returns
    -------
    float
        ``chi1``; ``E||dL/dh_{l-1}||^2 = chi1 E||dL/dh_l||^2`` at the fixed point.
        Exactly ``sigma_w2`` for linear, ``sigma_w2 / 2`` for relu and
        ``sigma_w2 (1 + 0.01^2) / 2`` for leaky relu, whatever ``q``. When ``q*`` is
        infinite (gelu/silu past divergence) the ``q -> inf`` limit
        ``sigma_w2 / 2`` is returned (``phi'`` tends to a step function).

    Raises
    ------
    ValueError
        For an unknown activation or negative variances.
    """
    name = _activation_name(activation)
    sw, sb = _variances(sigma_w2, sigma_b2)
    if name in _PIECEWISE_LINEAR:
        return sw * _moment(name, "dphi2", 1.0)
    qq = q_star(name, sw, sb, q0=q0) if q is None else _real(q, "q", nonneg=True,
                                                                allow_inf=True)
    return sw * _moment(name, "dphi2", qq)


def _inverse_abs_log(c: float) -> float:
    if c == 1.0:
        return math.inf
    if c == 0.0:
        return 0.0
    return 1.0 / abs(math.log(c))


def depth_scale(activation: str, sigma_w2: float, sigma_b2: float, *,
                q0: float = 1.0) -> float:
    """Gradient depth scale ``xi = 1 / |ln chi1|`` (Schoenholz et al. 2017).

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).
    q0 : float, default 1
        Start of the ``q*`` iteration.

    Returns
    -------
    float
        Number of layers over which ``E||dL/dh_l||^2`` changes by a factor ``e``:
        ``-1/ln chi1`` in the ordered phase (``chi1 < 1``, vanishing gradients),
        ``1/ln chi1`` in the chaotic phase (``chi1 > 1``, exploding gradients; Schoenholz
        et al.'s ``xi_nabla = -1/ln chi1`` is negative there, this returns its absolute
        value), ``inf`` at criticality (``chi1 == 1``) and 0 when ``chi1 == 0``. Compare
        ``chi1(...)`` with 1 to tell vanishing from exploding.
    """
    return _inverse_abs_log(chi1(activation, sigma_w2, sigma_b2, q0=q0))


def critical_sigma_w2(activation: str, sigma_b2: float = 0.0, *, q0: float = 1.0,
                      sigma_w2_max: float = 1000.0, xtol: float = 1e-12) -> float:
    """Weight variance on the order-to-chaos boundary, where ``chi1 = 1``.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sigma_b2 : float, default 0
        Bias variance (``>= 0``).
    q0 : float, default 1
        Start of each ``q*`` iteration.
    sigma_w2_max : float, default 1000
        Upper end of the search range ``[1e-3, sigma_w2_max]``.
    xtol : float, default 1e-12
        Relative tolerance on the returned ``sigma_w2``.

    Returns
    -------
    float
        The smallest ``sigma_w2`` in the range with ``chi1(sigma_w2) = 1``. Closed forms:
        1 for linear, 2 for relu, ``2 / (1 + 0.01^2)`` for leaky relu (any
        ``sigma_b2``).

    Raises
    ------
    ValueError
        For an unknown activation, a negative ``sigma_b2``, or when ``chi1`` does not
        cross 1 continuously in the range (no critical point there). gelu and silu with
        small ``sigma_b2`` (below about 0.18 and 0.55) are such cases: the fixed point
        reached from ``q0`` jumps (to 0 or to infinity) and ``chi1`` jumps past 1 with it.

    Notes
    -----
    ``chi1`` is scanned on a log-spaced grid and the first upward crossing of 1 is
    refined by a safeguarded regula falsi (Illinois) in the bracketing cell.

    Values (``sigma_b2`` -> ``sigma_w2``): tanh 0 -> 1, 0.01 -> 1.4242, 0.05 -> 1.7610
    (Schoenholz et al. 2017 quote ~1.76), 1 -> 3.4432; sigmoid 0 -> 103.0 (a sigmoid
    chain needs very large weights to reach criticality); gelu 0.2 -> 1.9707 and silu
    1 -> 1.9670, just below the relu-like value 2.
    """
    name = _activation_name(activation)
    sb = _real(sigma_b2, "sigma_b2", nonneg=True)
    hi = _real(sigma_w2_max, "sigma_w2_max", positive=True)
    if name in _PIECEWISE_LINEAR:
        return 1.0 / _moment(name, "dphi2", 1.0)
    lo = 1e-3
    if hi <= lo:
        raise ValueError(f"sigma_w2_max: must exceed {lo}, got {hi}")

    def excess(sw: float) -> float:
        return chi1(name, sw, sb, q0=q0) - 1.0

    grid = np.geomspace(lo, hi, 49)
    prev_s, prev_e = float(grid[0]), excess(float(grid[0]))
    if prev_e >= 0.0:
        raise ValueError(
            f"activation: {name} is already chaotic (chi1 >= 1) at sigma_w2={lo} with "
            f"sigma_b2={sb}; no critical point in [{lo}, {hi}]")
    for s in grid[1:]:
        s = float(s)
        e = excess(s)
        if e >= 0.0:
            jump = ValueError(
                f"activation: for {name} with sigma_b2={sb}, chi1 jumps across 1 near "
                f"sigma_w2={{:.6g}} (q* jumps there, e.g. to infinity); there is no "
                f"critical point")
            # Coarse solve first: a discontinuity shows without polishing all the way.
            root = _bracket_root(excess, prev_s, prev_e, s, e, lambda x: 1e-6 * x)
            if abs(excess(root)) > 1e-3:
                raise ValueError(str(jump.args[0]).format(root))
            a, b = root * (1.0 - 4e-6), root * (1.0 + 4e-6)
            ea, eb = excess(a), excess(b)
            if not (ea < 0.0 <= eb):
                a, ea, b, eb = prev_s, prev_e, s, e
            root = _bracket_root(excess, a, ea, b, eb, lambda x: xtol * x)
            if abs(excess(root)) > 1e-6:
                raise ValueError(str(jump.args[0]).format(root))
            return root
        prev_s, prev_e = s, e
    raise ValueError(
        f"activation: {name} with sigma_b2={sb} has no critical point for sigma_w2 in "
        f"[{lo}, {hi}] (chi1 stays below 1); raise sigma_w2_max to search further")


# --------------------------------------------------------------------------------------
# Correlation map (two-input propagation)
# --------------------------------------------------------------------------------------
def _bivariate(name: str, kind: str, q: float, c: float) -> float:
    """E[f(u1) f(u2)] with f = phi ("phi") or phi' ("dphi"); var q, correlation c."""
    if name in _PIECEWISE_LINEAR:
        a = {"linear": 1.0, "relu": 0.0, "leaky_relu": LEAKY_RELU_SLOPE}[name]
        # phi = a x + (1 - a) relu(x): arc-cosine kernels (Cho & Saul 2009).
        theta = math.acos(c)
        p_both = (math.pi - theta) / (2.0 * math.pi)  # P(u1 > 0, u2 > 0)
        if kind == "dphi":
            return a * a + a * (1.0 - a) + (1.0 - a) ** 2 * p_both
        relu_relu = q / (2.0 * math.pi) * (math.sqrt(max(0.0, 1.0 - c * c)) + (math.pi - theta) * c)
        return a * a * q * c + a * (1.0 - a) * q * c + (1.0 - a) ** 2 * relu_relu
    # Rotated coordinates u1 = x + y, u2 = x - y with independent x ~ N(0, q(1+c)/2) and
    # y ~ N(0, q(1-c)/2): each factor then has its own well-resolved 1-D rule. Panels
    # of width 1 with 8 nodes still give ~1e-13 (the nearest singularity of tanh is
    # pi/2 away) at a quarter of the cost of the 1-D default.
    fn = _phi_raw if kind == "phi" else _dphi_raw
    ux, wx = _rule(q * (1.0 + c) / 2.0, n_gl=8, h=1.0)
    uy, wy = _rule(q * (1.0 - c) / 2.0, n_gl=8, h=1.0)
    kx, ky = wx > 1e-25 * wx.max(), wy > 1e-25 * wy.max()  # drop negligible nodes
    ux, wx, uy, wy = ux[kx], wx[kx], uy[ky], wy[ky]
    s = ux[:, None] + uy[None, :]
    t = ux[:, None] - uy[None, :]
    return float(wx @ (fn(name, s) * fn(name, t)) @ wy)


def correlation_map(activation: str, c: Any, sigma_w2: float, sigma_b2: float, *,
                    q: float | None = None, q0: float = 1.0) -> Any:
    """Apply the correlation map once (Poole et al. 2016, Schoenholz et al. 2017).

    ``C(c) = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q`` where ``(u1, u2)`` are
    jointly Gaussian with variances ``q`` and correlation ``c``; it maps the correlation
    of two inputs' pre-activations at one layer to the next.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    c : float or array_like
        Correlation(s) in ``[-1, 1]``.
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).
    q : float, optional
        Common pre-activation variance; default ``q*`` (so that ``C(1) = 1``).
    q0 : float, default 1
        Start of the ``q*`` iteration.

    Returns
    -------
    float or ndarray
        ``C(c)``.

    Raises
    ------
    ValueError
        For bad arguments, or when ``q`` is infinite or zero.
    """
    name = _activation_name(activation)
    sw, sb = _variances(sigma_w2, sigma_b2)
    qq = q_star(name, sw, sb, q0=q0) if q is None else _real(q, "q", nonneg=True)
    if not (0.0 < qq < math.inf):
        raise ValueError(f"q: the correlation map needs a finite positive q, got q={qq}")
    arr = np.asarray(c, dtype=np.float64)
    if np.isnan(arr).any() or (np.abs(arr) > 1.0).any():
        raise ValueError(f"c: correlations must lie in [-1, 1], got {c!r}")
    out = np.array([(sw * _bivariate(name, "phi", qq, float(v)) + sb) / qq
                    for v in arr.ravel()]).reshape(arr.shape)
    return float(out) if out.ndim == 0 else out


def c_star(activation: str, sigma_w2: float, sigma_b2: float, *, c0: float = 0.0,
           q0: float = 1.0, tol: float = 1e-10, max_iter: int = 10000) -> float:
    """Stable fixed point ``c*`` of the correlation map.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).
    c0 : float, default 0
        Starting correlation of the iteration, in ``[-1, 1]``.
    q0 : float, default 1
        Start of the ``q*`` iteration.
    tol : float, default 1e-10
        Absolute tolerance on ``c``.
    max_iter : int, default 10000
        Iteration cap.

    Returns
    -------
    float
        1 in the ordered phase and at criticality (``chi1 <= 1``: ``c = 1`` is stable and
        all inputs collapse together); otherwise the fixed point ``< 1`` reached from
        ``c0``.

    Raises
    ------
    ValueError
        For bad arguments, or if ``q*`` is infinite or zero.
    """
    name = _activation_name(activation)
    sw, sb = _variances(sigma_w2, sigma_b2)
    c0 = _real(c0, "c0")
    if abs(c0) > 1.0:
        raise ValueError(f"c0: must lie in [-1, 1], got {c0}")
    if chi1(name, sw, sb, q0=q0) <= 1.0:
        return 1.0
    qq = q_star(name, sw, sb, q0=q0)
    if not (0.0 < qq < math.inf):
        raise ValueError(f"sigma_w2: q* = {qq} here, the correlation map is undefined")

    def cmap(c: float) -> float:
        return min(1.0, max(-1.0, (sw * _bivariate(name, "phi", qq, c) + sb) / qq))

    return _fixed_point(cmap, c0, lo=-1.0, hi=1.0, tol=_real(tol, "tol", positive=True),
                        max_iter=_depth(max_iter, "max_iter"), what="c_star")


def chi_c(activation: str, sigma_w2: float, sigma_b2: float, *, q0: float = 1.0) -> float:
    """Slope of the correlation map at its stable fixed point ``c*``.

    ``chi_c = sigma_w2 E[phi'(u1) phi'(u2)]`` with ``(u1, u2)`` at variance ``q*`` and
    correlation ``c*``. At ``c* = 1`` it equals :func:`chi1`.

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).
    q0 : float, default 1
        Start of the ``q*`` iteration.

    Returns
    -------
    float
        ``chi_c`` (``<= 1`` since ``c*`` is stable).
    """
    name = _activation_name(activation)
    sw, sb = _variances(sigma_w2, sigma_b2)
    cs = c_star(name, sw, sb, q0=q0)
    if cs == 1.0:
        return chi1(name, sw, sb, q0=q0)
    qq = q_star(name, sw, sb, q0=q0)
    return sw * _bivariate(name, "dphi", qq, cs)


def correlation_depth_scale(activation: str, sigma_w2: float, sigma_b2: float, *,
                            q0: float = 1.0) -> float:
    """Correlation depth scale ``xi_c = -1 / ln chi_c`` (Schoenholz et al. 2017).

    The number of layers over which the correlation of two inputs relaxes to ``c*`` by
    a factor ``e`` (how deep information about input geometry survives).

    Parameters
    ----------
    activation : str
        One of :data:`ACTIVATIONS`.
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).
    q0 : float, default 1
        Start of the ``q*`` iteration.

    Returns
    -------
    float
        ``xi_c`` (positive), ``inf`` at criticality, 0 when ``chi_c == 0``. In the ordered
        phase it equals :func:`depth_scale`.
    """
    return _inverse_abs_log(chi_c(activation, sigma_w2, sigma_b2, q0=q0))


# --------------------------------------------------------------------------------------
# Predicted gradient norms
# --------------------------------------------------------------------------------------
def _from_chain(obj: Any) -> dict[str, Any]:
    """Read the mean-field parameters of a chain-like object (duck typing)."""
    missing = [a for a in ("activation", "depth", "sigma_w2", "sigma_b2") if not hasattr(obj, a)]
    if missing:
        raise ValueError(
            f"activation: expected an activation name or a chain-like object with "
            f"attributes activation, depth, sigma_w2, sigma_b2; {type(obj).__name__} "
            f"lacks {', '.join(missing)}")
    if getattr(obj, "norm", None) is not None:
        raise ValueError(f"chain: norm={obj.norm!r} is not covered by the mean-field theory here")
    return {
        "activation": obj.activation,
        "depth": obj.depth,
        "sigma_w2": obj.sigma_w2,
        "sigma_b2": obj.sigma_b2,
        "residual": bool(getattr(obj, "residual", False)),
        "residual_scale": getattr(obj, "residual_scale", 1.0),
        "init": getattr(obj, "init", None),
        "width": _uniform_width(getattr(obj, "widths", None)),
    }


def _uniform_width(widths: Any) -> int | None:
    """The width of a chain whose layers all have it; None otherwise or when unknown."""
    if widths is None:
        return None
    values = {int(w) for w in widths}
    return values.pop() if len(values) == 1 else None


def _is_chain(obj: Any) -> bool:
    return not isinstance(obj, str) and hasattr(obj, "depth") and hasattr(obj, "activation")


def _layer_names(activation: Any, depth: int) -> list[str]:
    if isinstance(activation, str) or not isinstance(activation, Sequence):
        return [_activation_name(activation)] * depth
    names = [_activation_name(a) for a in activation]
    if len(names) != depth:
        raise ValueError(f"activation: a list needs one name per layer ({depth}), got {len(names)}")
    return names


def _log_layer_factors(activation: Any, sigma_w2: Any, sigma_b2: Any, depth: Any,
                       residual: Any, residual_scale: Any, input_second_moment: Any,
                       input_mean: Any, width: Any = None,
                       loss: str = "random") -> tuple[np.ndarray, list[str]]:
    """ln of the per-layer factors E||g_{l-1}||^2 / E||g_l||^2 for l = 1..depth."""
    if _is_chain(activation):
        if any(v is not None for v in (sigma_w2, sigma_b2, depth)):
            raise ValueError("sigma_w2, sigma_b2, depth: give either a chain or these "
                             "parameters, not both")
        p = _from_chain(activation)
        activation, depth = p["activation"], p["depth"]
        sigma_w2, sigma_b2 = p["sigma_w2"], p["sigma_b2"]
        residual, residual_scale = p["residual"], p["residual_scale"]
        if width is None:
            width = p["width"]
    if sigma_w2 is None or sigma_b2 is None or depth is None:
        raise ValueError("sigma_w2, sigma_b2, depth: required when activation is a name")
    L = _depth(depth)
    sw, sb = _variances(sigma_w2, sigma_b2)
    names = _layer_names(activation, L)
    if not isinstance(residual, (bool, np.bool_)):
        raise ValueError(f"residual: expected a bool, got {residual!r}")
    if loss not in ("random", "sum_squares"):
        raise ValueError(f"loss: expected 'random' or 'sum_squares', got {loss!r}")
    if width is not None:
        width = _depth(width, "width")
    s = _real(residual_scale, "residual_scale")
    mean0 = _real(input_mean, "input_mean")
    p0 = None if input_second_moment is None else _real(
        input_second_moment, "input_second_moment", nonneg=True)
    if mean0 * mean0 > (1.0 if p0 is None else p0) * (1.0 + 1e-12):
        raise ValueError(
            f"input_mean: its square ({mean0 * mean0:g}) cannot exceed the input second "
            f"moment ({1.0 if p0 is None else p0:g})")

    with np.errstate(divide="ignore"):
        if not residual:
            if p0 is None and len(set(names)) == 1:
                # Fixed-point picture: every layer sits at q*, one factor chi1 each.
                return np.full(L, np.log(chi1(names[0], sw, sb))), names
            q = sw * (1.0 if p0 is None else p0) + sb
            out = np.empty(L)
            for i, name in enumerate(names):
                out[i] = np.log(chi1(name, sw, sb, q=q))
                q = length_map(name, q, sw, sb) if i + 1 < L else q
            return out, names
        return _residual_log_factors(names, sw, sb, s, 1.0 if p0 is None else p0, mean0,
                                     width, loss), names


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


def predicted_log_grad_norm(activation: Any, sigma_w2: float | None = None,
                            sigma_b2: float | None = None, depth: int | None = None,
                            residual: bool = False, residual_scale: float = 1.0, *,
                            input_second_moment: float | None = None,
                            input_mean: float = 0.0, width: int | None = None,
                            loss: str = "random") -> np.ndarray:
    """Predicted ``ln(||dL/dh_l|| / ||dL/dh_L||)`` for ``l = 0..depth`` (mean field).

    This is ``0.5 * ln`` of :func:`predicted_grad_norm` (natural log of the norm ratio,
    not of its square), computed in log space so that it stays finite for very deep
    chains.

    Parameters
    ----------
    activation : str, sequence of str, or chain-like object
        As in :func:`predicted_grad_norm`.
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).
    depth : int
        Number of layers ``L >= 1``.
    residual : bool, default False
        Residual chain ``h_l = h_{l-1} + residual_scale * phi(z_l)``.
    residual_scale : float, default 1
        Scale of the residual branch.
    input_second_moment : float, optional
        ``||x||^2 / n`` of the input; see :func:`predicted_grad_norm`.
    input_mean : float, default 0
        Mean over units of the input (residual chains only).
    width : int, optional
        Units per layer: residual chains with a ReLU-like branch need it (see
        :func:`predicted_grad_norm`); taken from a chain-like object.
    loss : {"random", "sum_squares"}, default "random"
        ``dL/dh_L``: independent of the network (the mean-field setting), or ``h_L``
        itself (loss ``0.5 ||h_L||^2``). Only residual chains distinguish them.

    Returns
    -------
    ndarray, shape (depth + 1,)
        Entry ``l`` refers to ``h_l``; the last entry is 0.
    """
    logs, _ = _log_layer_factors(activation, sigma_w2, sigma_b2, depth, residual,
                                 residual_scale, input_second_moment, input_mean, width, loss)
    if np.isnan(logs).all():  # no prediction: no line at all
        return np.full(logs.size + 1, np.nan)
    # ratio[l] = prod_{k = l+1}^{L} factor_k: a reversed cumulative sum of the logs.
    tail = np.concatenate([np.cumsum(logs[::-1])[::-1], [0.0]])
    return 0.5 * tail


def predicted_grad_norm(activation: Any, sigma_w2: float | None = None,
                        sigma_b2: float | None = None, depth: int | None = None,
                        residual: bool = False, residual_scale: float = 1.0, *,
                        input_second_moment: float | None = None,
                        input_mean: float = 0.0, width: int | None = None,
                        loss: str = "random") -> np.ndarray:
    """Predicted squared gradient-norm ratios ``E||dL/dh_l||^2 / E||dL/dh_L||^2``.

    Parameters
    ----------
    activation : str, sequence of str, or chain-like object
        An activation name (or one per layer). Alternatively an object with attributes
        ``activation``, ``depth``, ``sigma_w2``, ``sigma_b2`` and optionally
        ``residual``, ``residual_scale`` (e.g. a :class:`pyjac.Chain`); the other
        positional parameters must then be left out. Chains with ``norm`` set are
        rejected.
    sigma_w2, sigma_b2 : float
        Weight and bias variances (``>= 0``).
    depth : int
        Number of layers ``L >= 1``.
    residual : bool, default False
        ``h_l = h_{l-1} + residual_scale * phi(z_l)`` instead of ``h_l = phi(z_l)``.
    residual_scale : float, default 1
        Scale ``s`` of the residual branch.
    input_second_moment : float, optional
        ``||x||^2 / n`` of the input ``h_0``. Plain chain: when None (default), every layer
        is assumed to sit at the fixed point ``q*`` (input prepared on it); when given,
        the transient ``q_1 = sigma_w2 * input_second_moment + sigma_b2``,
        ``q_{l+1} = length_map(q_l)`` is followed. Residual chain: default 1.
    input_mean : float, default 0
        Mean over units of ``h_0``; used by residual chains only (the skip path carries
        it forward).
    width : int, optional
        Units per layer. Residual chains whose branch has ``E[z phi'(z)] != 0``
        (ReLU-like activations) need it: their gradient grows a component along the
        stream from the finite-width mean of ``dL/dh_L``, and that component sets the
        growth rate at any practical width. Without it they get NaN and a warning.
        Taken from a chain-like object (when all its widths agree).
    loss : {"random", "sum_squares"}, default "random"
        ``dL/dh_L`` independent of the network (the mean-field setting), or ``h_L``
        itself (loss ``0.5 ||h_L||^2``). Only residual chains distinguish them.

    Returns
    -------
    ndarray, shape (depth + 1,)
        Entry ``l`` refers to ``h_l``; entry ``depth`` is 1.

    Notes
    -----
    Plain chains (gradient-independence assumption, infinite width): each layer
    multiplies ``E||g||^2`` by ``chi1 = sigma_w2 E[phi'(sqrt(q_l) z)^2]``, so at the fixed
    point the ratio is ``chi1**(L - l)``.

    Residual chains: ``g_{l-1} = g_l + s W_l^T D_l g_l``. With the gradient-independence
    assumption the cross term vanishes and each layer multiplies by
    ``1 + s^2 sigma_w2 E[phi'(sqrt(q_l) z)^2]``, where ``q_l = sigma_w2 p_{l-1} +
    sigma_b2`` follows the stream's per-unit second moment ``p_l = p_{l-1} + s^2
    E[phi^2] + 2 s m_{l-1} E[phi]`` and mean ``m_l = m_{l-1} + s E[phi]``. That is right
    for linear and odd (tanh) branches. For ReLU-like branches ``D_l`` depends on
    ``W_l``, and conditioning ``W_l`` on ``W_l h_{l-1}`` gives the gradient a component
    along the stream (its mean, and the units that are on) that grows from the
    finite-width mean of ``dL/dh_L`` and then sets the rate: at depth 100 and width
    1024 a He-initialised residual ReLU chain grows by ln 50 in the norm, not by the
    34.7 of the independent factor. The recursion that tracks it is in
    ``_residual_log_factors`` (its docstring derives it); it matches the engine within
    about 1% at widths 256 to 1024 (``tests/test_theory_vs_engine.py``).

    Raises
    ------
    ValueError
        For bad arguments (unknown activation, negative variances, depth < 1, ...).
    """
    logs, _ = _log_layer_factors(activation, sigma_w2, sigma_b2, depth, residual,
                                 residual_scale, input_second_moment, input_mean, width, loss)
    if np.isnan(logs).all():
        return np.full(logs.size + 1, np.nan)
    tail = np.concatenate([np.cumsum(logs[::-1])[::-1], [0.0]])
    with np.errstate(over="ignore"):
        return np.exp(tail)


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
