"""Spectral norms by power iteration and spectral radii.

The spectral norm ``sigma_max(A)`` bounds how much ``A`` can stretch a vector (and so
a gradient); the spectral radius ``max |lambda(A)|`` governs ``A^t`` for large ``t``.
They coincide for normal matrices and can differ by any factor otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from ._chain_like import ChainLike
from ._results import summarize
from ._validation import (
    as_float_array,
    check_bool,
    check_int,
    check_real,
    check_seed,
    check_threads,
)


@dataclass(frozen=True)
class SpectralNormResult:
    """A largest singular value estimated by power iteration.

    Scalars for one matrix or one end-to-end Jacobian; ``(depth,)`` arrays with
    ``per_layer=True`` (index ``l-1`` is layer ``l``).

    Attributes
    ----------
    value : float or ndarray
        The estimate of ``sigma_max``, a lower bound that increases with iterations;
        inf where it leaves the float64 range (deep chains: use ``log_value``).
    log_value : float or ndarray
        Its natural log, finite however deep the chain.
    iterations : int or ndarray
        Iterations used (one ``J`` and one ``J^T`` product each).
    converged : bool or ndarray
        True when the relative change fell below ``tol`` and so did the remaining
        error extrapolated from the observed rate of convergence. False means the
        iteration budget ran out first: the value is then a lower bound of unknown
        accuracy (close singular values converge slowly).
    first_nonfinite_layer : int or None
        For chains: the first ``h_l`` of the forward pass holding a NaN/Inf.
    """

    value: float | np.ndarray
    log_value: float | np.ndarray
    iterations: int | np.ndarray
    converged: bool | np.ndarray
    first_nonfinite_layer: int | None = None

    def __float__(self) -> float:
        return float(self.value)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={summarize(getattr(self, name))}" for name in (
            "value", "log_value", "iterations", "converged", "first_nonfinite_layer"))
        return f"SpectralNormResult({fields})"


def _options(iters: Any, tol: Any, seed: Any) -> tuple[int, float, int]:
    iters = check_int(iters, "iters", minimum=1)
    tol = check_real(tol, "tol", positive=True)
    seed = check_seed(seed)
    return iters, tol, seed


def _result(raw: dict, scalar: bool, first_nonfinite_layer: Any = None) -> SpectralNormResult:
    if scalar:
        return SpectralNormResult(
            value=float(raw["value"][0]),
            log_value=float(raw["log_value"][0]),
            iterations=int(raw["iterations"][0]),
            converged=bool(raw["converged"][0]),
            first_nonfinite_layer=first_nonfinite_layer,
        )
    return SpectralNormResult(
        value=raw["value"],
        log_value=raw["log_value"],
        iterations=raw["iterations"],
        converged=raw["converged"],
        first_nonfinite_layer=first_nonfinite_layer,
    )


def _matrix(matrix: Any) -> np.ndarray:
    raw = np.asarray(matrix)
    dtype = np.float32 if raw.dtype == np.float32 else np.float64
    arr = as_float_array(matrix, "matrix", np.dtype(dtype))
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"matrix: expected a non-empty 2-D array, got shape {arr.shape}")
    return arr


def spectral_norm(
    matrix: Any,
    iters: int = 1000,
    tol: float = 1e-6,
    *,
    seed: int = 0,
    n_threads: int | None = None,
) -> SpectralNormResult:
    """Largest singular value of a matrix by power iteration on ``A^T A``.

    Parameters
    ----------
    matrix : array_like, shape (m, n)
        float32 stays float32; anything else is computed in float64.
    iters : int, default 1000
        Most iterations to run.
    tol : float, default 1e-6
        Relative accuracy asked for. In float32 rounding limits the estimate to
        about 1e-7 relative.
    seed : int, default 0
        Seeds the random start vector.
    n_threads : int, optional
        None or -1 for every core.

    Returns
    -------
    SpectralNormResult
        ``sigma_max``, not the largest ``|eigenvalue|`` (see :func:`spectral_radius`).

    Examples
    --------
    >>> import numpy as np, pyjac
    >>> a = np.array([[1.0, 100.0], [0.0, 1.0]])
    >>> round(pyjac.spectral_norm(a).value, 4), pyjac.spectral_radius(a)
    (100.01, 1.0)
    """
    iters, tol, seed = _options(iters, tol, seed)
    n_threads = check_threads(n_threads)
    arr = _matrix(matrix)
    return _result(_core.matrix_spectral_norm(arr, iters, tol, seed, n_threads), True)


def spectral_radius(matrix: Any) -> float:
    """Largest ``|eigenvalue|`` of a square matrix, exactly (LAPACK ``dgeev``, float64).

    For the recurrent weight matrix ``W`` of ``h_t = phi(W h_{t-1} + ...)`` this
    governs ``W^t`` for large ``t``; :func:`spectral_norm` bounds one step.
    """
    arr = as_float_array(matrix, "matrix", np.dtype(np.float64))
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"matrix: expected a non-empty square 2-D array, got shape {arr.shape}")
    return float(_core.spectral_radius(arr))


def chain_spectral_norm(net: ChainLike, x: Any, per_layer: bool = False, iters: int = 1000,
                        tol: float = 1e-6, seed: int = 0,
                        n_threads: int | None = None) -> SpectralNormResult:
    """See :meth:`pyjac.Chain.spectral_norm`."""
    from .jacobian import _chain_args, _single_input

    iters, tol, seed = _options(iters, tol, seed)
    n_threads = check_threads(n_threads)
    per_layer = check_bool(per_layer, "per_layer")
    x1 = _single_input(net, x)
    raw = _core.chain_spectral_norm(*_chain_args(net), x1, per_layer, iters, tol, seed,
                                    n_threads)
    return _result(raw, not per_layer, raw["first_nonfinite_layer"])
