"""Repeated Jacobian products of a chain: explicit Jacobians, log norms at every depth,
singular values and Lyapunov exponents.

The product ``P_l = J_l ... J_1`` of the layer Jacobians at one input sets how a
gradient grows or shrinks on its way from layer ``l`` back to the input. Its norms
leave the float range after a few hundred layers, so everything here is carried in
the log domain: the C++ core rescales the product by exact powers of two at every
layer and keeps the logs in float64.

How exact
---------
``log_frobenius_norm`` is the norm of the carried product, summed in float64.

``log_spectral_norm`` at every depth comes from a Lanczos solver on ``P_l^T P_l``
(block Lanczos once ``P_l`` outgrows the cache), warm-started from the previous
depth's top singular vector, which converges with depth. It stops when the residual
of the top Ritz pair is below ``tol * sigma^2`` with ``tol`` = 1e-10 (float64) or
1e-6 (float32). That certifies the value to ``tol / 2`` relative as a singular value
of the carried product; Rayleigh-Ritz makes it a lower bound of ``sigma_max``, and a
fresh random component in every start makes it ``sigma_max`` itself with probability
one. ``converged`` says whether the tolerance was met (the pass budget is generous).

The carried product itself has the rounding of the compute dtype: every layer adds
a relative error of about ``eps * sqrt(width)`` to the directions that matter for
``sigma_max`` and ``||P||_F``, whether the product is carried explicitly or in
Benettin's QR form (both are backward stable per layer). Measured: a float32 chain of
``1.1 * Q`` is within 2e-7 relative of ``l ln 1.1`` at ``l = 10,000``; float64 chains
match numpy's SVD of the explicit product to 1e-12. Chaotic chains (tanh with
gain > 1) amplify any rounding in the *forward pass*: after a few hundred layers two
implementations follow different trajectories and their Jacobians differ, which is a
property of the chain, not an error.

Singular values at the depths asked for come from an SVD of the carried factor in
float64: one-sided Jacobi on ``(R_l ... R_1)^T`` in the QR method, which keeps small
singular values to high relative accuracy (a product ``Q diag(d^l) Q^T`` gives
``d^l`` to 1e-8 across 40 orders of magnitude), or ``gesdd`` on the explicit product
(absolute accuracy ``eps * sigma_max``). Values below ~1e-300 of the largest
underflow (log ``-inf``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core
from ._chain_like import ChainLike
from ._results import _fmt
from ._validation import check_allocation, check_choice, check_int, check_seed, check_threads

METHODS = ("auto", "product", "qr")
# Relative residual at which the sigma_max solver stops (on sigma^2): the reported
# log spectral norm is then within tol/2 of the log of a singular value of the
# carried product. float32 products carry rounding errors of ~1e-7 and more, so
# asking the solver for more there only costs time (nearly equal singular values,
# as in an orthogonal chain, would need the whole Krylov space to be told apart).
SOLVER_TOL = {"float32": 1e-6, "float64": 1e-10}


@dataclass(frozen=True)
class JacobianNorms:
    """Norms of the Jacobian product ``P_l = d h_l / d h_0`` at every depth ``l``.

    Index ``l-1`` of the ``(depth,)`` arrays is depth ``l``. Logs are natural logs,
    float64, finite wherever the product is nonzero, however deep the chain.

    Attributes
    ----------
    log_spectral_norm : ndarray, shape (depth,)
        ``log sigma_max(P_l)``. Exact to the accuracy of the carried product: the
        warm-started block-Lanczos solver stops at a relative residual of 1e-10 on
        ``sigma^2`` (see ``converged``).
    log_frobenius_norm : ndarray, shape (depth,)
        ``log ||P_l||_F``.
    singular_values, log_singular_values : dict of int to ndarray
        For each depth asked for in ``singular_values_at``: all ``min(n_l, n_0)``
        singular values of ``P_l``, descending. ``singular_values`` over- or
        underflows float64 where the logs do not.
    method : {"product", "qr"}
        How the product was carried (see :meth:`pyjac.Chain.jacobian_norms`).
    converged : ndarray of bool, shape (depth,)
        Whether the sigma_max solver met its tolerance at each depth.
    solver_passes : ndarray of int, shape (depth,)
        Passes over the carried product the solver needed at each depth (0 where an
        SVD was taken instead).
    first_nonfinite_layer : int or None
        First ``h_l`` of the forward pass that held a NaN/Inf (the Jacobians only use
        ``phi'``, so a forward overflow need not spoil them).
    first_nonfinite_depth : int or None
        First depth whose product held a NaN/Inf; values from there on are NaN.
    """

    log_spectral_norm: np.ndarray
    log_frobenius_norm: np.ndarray
    singular_values: dict[int, np.ndarray]
    log_singular_values: dict[int, np.ndarray]
    method: str
    converged: np.ndarray = field(repr=False)
    solver_passes: np.ndarray = field(repr=False)
    first_nonfinite_layer: int | None = None
    first_nonfinite_depth: int | None = None

    @property
    def depth(self) -> int:
        return int(self.log_spectral_norm.shape[0])

    @property
    def spectral_norm(self) -> np.ndarray:
        """``sigma_max(P_l)``; inf or 0 where it leaves the float64 range."""
        with np.errstate(over="ignore", under="ignore"):
            return np.exp(self.log_spectral_norm)

    @property
    def frobenius_norm(self) -> np.ndarray:
        """``||P_l||_F``; inf or 0 where it leaves the float64 range."""
        with np.errstate(over="ignore", under="ignore"):
            return np.exp(self.log_frobenius_norm)

    def __repr__(self) -> str:
        return (
            f"JacobianNorms(depth={self.depth}, method={self.method!r}, "
            f"log_spectral_norm={_fmt(self.log_spectral_norm)}, "
            f"singular_values_at={sorted(self.singular_values)})"
        )


def _chain_args(net: ChainLike) -> tuple[Any, ...]:
    return (*net._core_parameters, net.activations, net.residual, net.residual_scale,
            net.norm or "none")


def _single_input(net: ChainLike, x: Any) -> np.ndarray:
    """One input of the chain as a 1-D array of its dtype; refuse batchnorm."""
    if net.norm == "batchnorm":
        raise ValueError(
            "norm: 'batchnorm' normalises over a batch, so the Jacobian at one input is "
            "not defined; use norm=None or 'layernorm'"
        )
    arr, single = net._batch(x)
    if arr.shape[0] != 1:
        raise ValueError(
            f"x: expected one input of shape ({net.widths[0]},) or (1, {net.widths[0]}), "
            f"got shape {np.shape(x)}"
        )
    return arr[0]


def _check_memory(net: ChainLike, what: str, float64_copies: int) -> None:
    """Refuse before allocating: the carried block is widths[0] x (widest width)."""
    block = net.widths[0] * max(net.widths)
    nbytes = block * (3 * net.dtype.itemsize + 8 * float64_copies)
    check_allocation(nbytes, what)


def _depths(value: Any, depth: int, name: str) -> list[int]:
    if value is None:
        return []
    items = [value] if isinstance(value, (int, np.integer)) else value
    if not isinstance(items, Iterable) or isinstance(items, (str, bytes)):
        raise TypeError(f"{name}: expected an int or a list of ints, got {type(value).__name__}")
    out = []
    for i, v in enumerate(items):
        d = check_int(v, f"{name}[{i}]")
        if not 1 <= d <= depth:
            raise ValueError(f"{name}: depth {d} outside [1, {depth}]")
        out.append(d)
    return sorted(set(out))


def chain_jacobian(net: ChainLike, x: Any, depth: int | None = None,
                   n_threads: int | None = None) -> np.ndarray:
    """See :meth:`pyjac.Chain.jacobian`."""
    n_threads = check_threads(n_threads)
    depth = net.depth if depth is None else check_int(depth, "depth", minimum=0)
    if depth > net.depth:
        raise ValueError(f"depth: must lie in [0, {net.depth}], got {depth}")
    x1 = _single_input(net, x)
    _check_memory(net, "x: the jacobian (widths[0] x widest layer)", 0)
    return _core.chain_jacobian(*_chain_args(net), x1, depth, n_threads)


def chain_jacobian_norms(net: ChainLike, x: Any, singular_values_at: Any = None,
                         method: str = "auto", n_threads: int | None = None) -> JacobianNorms:
    """See :meth:`pyjac.Chain.jacobian_norms`."""
    n_threads = check_threads(n_threads)
    at = _depths(singular_values_at, net.depth, "singular_values_at")
    method = check_choice(method, METHODS, "method")
    if method == "auto":
        method = "qr" if at else "product"
    x1 = _single_input(net, x)
    _check_memory(net, "x: jacobian_norms (widths[0] x widest layer)",
                  3 if method == "qr" else 1)
    raw = _core.chain_jacobian_norms(
        *_chain_args(net), x1, at, method, SOLVER_TOL[net.dtype.name], n_threads
    )
    logs = {d: v for d, v in zip(at, raw["log_singular_values"])}
    with np.errstate(over="ignore", under="ignore"):
        values = {d: np.exp(v) for d, v in logs.items()}
    return JacobianNorms(
        log_spectral_norm=raw["log_spectral_norm"],
        log_frobenius_norm=raw["log_frobenius_norm"],
        singular_values=values,
        log_singular_values=logs,
        method=method,
        converged=raw["converged"],
        solver_passes=raw["solver_passes"],
        first_nonfinite_layer=raw["first_nonfinite_layer"],
        first_nonfinite_depth=raw["first_nonfinite_depth"],
    )


def chain_lyapunov_exponents(net: ChainLike, x: Any, k: int | None = None, seed: int = 0,
                             n_threads: int | None = None) -> np.ndarray:
    """See :meth:`pyjac.Chain.lyapunov_exponents`."""
    n_threads = check_threads(n_threads)
    narrowest = min(net.widths)
    if k is None:
        k = narrowest
    k = check_int(k, "k", minimum=1)
    if k > narrowest:
        raise ValueError(f"k: at most the narrowest width {narrowest}, got {k}")
    seed = check_seed(seed)
    x1 = _single_input(net, x)
    raw = _core.chain_lyapunov_exponents(*_chain_args(net), x1, k, seed, n_threads)
    return raw["exponents"]
