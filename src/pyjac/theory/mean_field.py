"""Mean-field signal propagation: the length map, q*, chi1, depth scales, critical
lines and the correlation map (Poole et al. 2016, Schoenholz et al. 2017)."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ._common import (
    _PIECEWISE_LINEAR,
    _Q_DIVERGED,
    LEAKY_RELU_SLOPE,
    _activation_name,
    _depth,
    _dphi_raw,
    _phi_raw,
    _real,
    _variances,
)
from .quadrature import _moment, _rule

# --------------------------------------------------------------------------------------
# Scalar root finding (SciPy's Brent method) and fixed points
# --------------------------------------------------------------------------------------
# brentq's smallest relative tolerance.
_RTOL_MIN = 4.0 * np.finfo(np.float64).eps


def _bracket_root(g: Callable[[float], float], a: float, ga: float, b: float, gb: float,
                  atol: float, rtol: float) -> float:
    """Root of ``g`` in a sign-changing bracket ``[a, b]`` (SciPy's Brent method), to
    within ``atol + rtol * |root|``; ``ga``, ``gb`` are ``g(a)``, ``g(b)``."""
    if ga == 0.0:
        return a
    if gb == 0.0:
        return b
    if (ga > 0) == (gb > 0):
        raise RuntimeError("internal error: bracket does not change sign")
    # Imported on first use, not with pyjac (SciPy's optimize takes ~0.2 s to import).
    from scipy.optimize import brentq

    lo, hi = (a, b) if a < b else (b, a)
    return float(brentq(g, lo, hi, xtol=max(atol, 1e-300), rtol=max(rtol, _RTOL_MIN),
                        maxiter=2000))


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
                return _bracket_root(g, a, ga, b, gb, tol, tol)
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
            return _bracket_root(g, x, gx, xn, gn, tol, tol)
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
                    return _bracket_root(g, xn, gn, cand, gc, tol, tol)
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
                        return _bracket_root(g, prev_t, prev_g, float(t), gt, tol, tol)
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
            root = _bracket_root(excess, prev_s, prev_e, s, e, 0.0, 1e-6)
            if abs(excess(root)) > 1e-3:
                raise ValueError(str(jump.args[0]).format(root))
            a, b = root * (1.0 - 4e-6), root * (1.0 + 4e-6)
            ea, eb = excess(a), excess(b)
            if not (ea < 0.0 <= eb):
                a, ea, b, eb = prev_s, prev_e, s, e
            root = _bracket_root(excess, a, ea, b, eb, 0.0, xtol)
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
