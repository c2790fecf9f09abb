"""Curvature of a chain's loss: exact Hessian (or Gauss-Newton) products, eigenvalues,
traces and spectral densities, for all parameters or layer by layer.

Built by :meth:`pyjac.Chain.hessian`. The forward and backward pass run once, when the
object is made; every product after that is one tangent forward pass and one tangent
backward pass over the kept tape, in C++ (forward-over-reverse differentiation: each
activation's second derivative and the norm layers' second-order terms included).
Parameters are ordered ``[W_1, b_1, W_2, b_2, ...]``, the order of ``parameters()`` of
a torch ``nn.Sequential`` of ``Linear`` layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._results import summarize
from ._validation import (
    check_allocation,
    check_bool,
    check_choice,
    check_int,
    check_real,
    check_seed,
    check_threads,
)

KINDS = ("hessian", "gauss_newton")
WHICH = ("largest", "smallest", "both")
TRACE_METHODS = ("hutch++", "hutchinson")

__all__ = ["KINDS", "Hessian", "HessianDensity", "HessianEigenvalues", "HessianTrace"]


def _stack(items: list[dict], key: str) -> np.ndarray:
    return np.stack([np.asarray(item[key]) for item in items])


@dataclass(frozen=True)
class HessianEigenvalues:
    """Extreme eigenvalues of a curvature matrix by Lanczos.

    With ``per_layer=True`` every field has a leading ``depth`` axis (index ``l-1`` is
    layer ``l``'s own diagonal block).

    Attributes
    ----------
    values : ndarray, shape (k,), (2k,), or (depth, ...)
        "largest": descending; "smallest": ascending; "both": the k smallest then the k
        largest, ascending. NaN when a product was not finite.
    residuals : ndarray
        The bound ``||H y - theta y||`` on each Ritz pair (``|theta - lambda| <=``
        residual): the convergence report.
    converged : bool or ndarray of bool
        Every wanted value met ``residual <= tol * max(|theta|, eps**(2/3) * max|theta|)``.
    iterations : int or ndarray of int
        Products with the matrix (Lanczos steps).
    vectors : ndarray or None
        Unit eigenvectors as rows, flat over the parameters (or the layer's block), when
        asked for.
    """

    values: np.ndarray
    residuals: np.ndarray
    converged: Any
    iterations: Any
    vectors: Any = None

    def __repr__(self) -> str:
        return (f"HessianEigenvalues(values={summarize(self.values)}, "
                f"converged={summarize(self.converged)}, "
                f"iterations={summarize(self.iterations)})")


@dataclass(frozen=True)
class HessianTrace:
    """A trace estimate and its standard error.

    Attributes
    ----------
    value : float or ndarray (depth,)
        The estimate of ``tr(H)``.
    standard_error : float or ndarray
        The sample standard deviation of the random terms over the square root of their
        number (for Hutch++, of its residual part; the deflated part is exact).
    products : int or ndarray
        Products with the matrix used.
    method : str
        "hutch++" or "hutchinson".
    """

    value: Any
    standard_error: Any
    products: Any
    method: str

    def __repr__(self) -> str:
        return (f"HessianTrace(value={summarize(self.value)}, "
                f"standard_error={summarize(self.standard_error)}, method={self.method!r})")


@dataclass(frozen=True)
class HessianDensity:
    """The spectral density of a curvature matrix by stochastic Lanczos quadrature.

    ``density`` is the Gaussian-smoothed measure ``(1/m) sum_v sum_i w_vi
    N(t; theta_vi, sigma^2)`` on ``grid``; it integrates to 1 (the grid reaches 6 sigma
    past the extreme nodes). ``nodes`` and ``weights`` are the quadrature itself: for each
    start vector ``q``, ``sum_i w_i theta_i**p`` is ``q^T H^p q / q^T q`` exactly for
    ``p < 2 * steps``, so their average over vectors estimates ``tr(H^p) / n``.

    Attributes
    ----------
    grid, density : ndarray, shape (n_grid,) or (depth, n_grid)
    nodes, weights : ndarray, shape (n_vectors, steps) or (depth, n_vectors, steps)
    sigma : float or ndarray
        The smoothing width.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: Any

    def moment(self, p: int) -> Any:
        """The quadrature's estimate of ``tr(H**p) / n`` (one per layer when per-layer)."""
        p = check_int(p, "p", minimum=0)
        return np.mean(np.sum(self.weights * self.nodes ** p, axis=-1), axis=-1)

    def plot(self, *, ax: Any = None, layer: int | None = None, log: bool = True) -> Any:
        """Draws the density (of one layer's block when per-layer) and returns the axes."""
        from .plot import _axes

        grid, density = self.grid, self.density
        if grid.ndim == 2:
            if layer is None:
                raise ValueError("layer: a per-layer density needs the layer (1-based) to draw")
            layer = check_int(layer, "layer", minimum=1, maximum=grid.shape[0])
            grid, density = grid[layer - 1], density[layer - 1]
        ax = _axes(ax)
        floor = density.max() * 1e-12 if density.size and density.max() > 0 else 1e-300
        (ax.semilogy if log else ax.plot)(grid, np.maximum(density, floor) if log else density)
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density")
        title = "Hessian eigenvalue density (SLQ)"
        ax.set_title(title if layer is None else f"{title}, layer {layer}")
        return ax

    def __repr__(self) -> str:
        return (f"HessianDensity(grid={summarize(self.grid)}, sigma={summarize(self.sigma)}, "
                f"n_vectors={self.nodes.shape[-2]}, steps={self.nodes.shape[-1]})")


def _smoothed(nodes: np.ndarray, weights: np.ndarray, n_grid: int,
              sigma: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    finite = np.isfinite(nodes) & np.isfinite(weights)
    if not finite.all():
        nan = np.full(n_grid, np.nan)
        return nan, nan.copy(), float("nan")
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        spread = hi - lo
        sigma = spread / 200 if spread > 0 else max(abs(hi), 1.0) * 1e-3
    grid = np.linspace(lo - 6 * sigma, hi + 6 * sigma, n_grid)
    # Nodes carry weights summing to 1 per vector: a mixture of unit Gaussians.
    kernel = np.exp(-0.5 * ((grid[:, None] - nodes.reshape(1, -1)) / sigma) ** 2)
    density = kernel @ weights.reshape(-1) / (nodes.shape[0] * sigma * np.sqrt(2 * np.pi))
    return grid, density, float(sigma)


class Hessian:
    """The curvature of a chain's loss at one batch, with respect to every weight and bias.

    Made by :meth:`pyjac.Chain.hessian`; see there for the arguments. The chain's
    parameters and the batch are copied when it is made: later changes to the chain do
    not change it.

    Attributes
    ----------
    kind : {"hessian", "gauss_newton"}
        The Hessian of the loss, or the generalised Gauss-Newton matrix ``J^T H_L J``
        (``J`` the Jacobian of the output with respect to the parameters, ``H_L`` the
        loss's Hessian in the output: positive semi-definite for the losses here).
    per_layer : bool
        Every method works on each layer's own diagonal block ``(W_l, b_l)`` instead of
        the whole matrix, and returns one result per layer.
    loss : float or None
        The loss at the batch (None with a ``grad_output``).
    size : int
        Parameters in all.
    shapes : list of tuple
        ``[W_1.shape, b_1.shape, ...]``.
    """

    def __init__(self, core: Any, *, kind: str, per_layer: bool, loss: float | None,
                 shapes: list[tuple[int, ...]], dtype: np.dtype, n_threads: int) -> None:
        self._core = core
        self.kind = kind
        self.per_layer = per_layer
        self.loss = loss
        self.shapes = shapes
        self.size = int(core.size)
        self._offsets = list(core.block_offsets)
        self._dtype = dtype
        self._n_threads = n_threads

    @property
    def depth(self) -> int:
        return len(self.shapes) // 2

    def __repr__(self) -> str:
        return (f"Hessian(kind={self.kind!r}, per_layer={self.per_layer}, size={self.size}, "
                f"loss={self.loss!r})")

    # -- products ----------------------------------------------------------------------
    def _flat(self, v: Any) -> tuple[np.ndarray, bool]:
        as_list = (isinstance(v, (list, tuple)) and len(v) == len(self.shapes)
                   and all(np.ndim(part) >= 1 for part in v))
        if as_list:
            parts = []
            for i, (part, shape) in enumerate(zip(v, self.shapes)):
                a = np.asarray(part)
                if a.shape != shape:
                    raise ValueError(f"v[{i}]: expected shape {shape}, got {a.shape}")
                parts.append(a.reshape(-1))
            flat = np.concatenate(parts)
        else:
            flat = np.asarray(v)
            if flat.ndim != 1 or flat.shape[0] != self.size:
                raise ValueError(f"v: expected {self.size} entries (every weight and bias, "
                                 f"flattened) or {len(self.shapes)} arrays shaped like "
                                 f"[W_1, b_1, ...], got shape {flat.shape}")
        if not (np.issubdtype(flat.dtype, np.floating) or np.issubdtype(flat.dtype, np.integer)):
            raise TypeError(f"v: expected real numbers, got {flat.dtype}")
        # The core reads v (converted to float64 where it is not already) and checks that
        # it is finite; it never writes to it.
        return flat, as_list

    def _unflat(self, flat: np.ndarray) -> list[np.ndarray]:
        out, at = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape))
            out.append(flat[at:at + n].reshape(shape))
            at += n
        return out

    def hvp(self, v: Any) -> Any:
        """The product ``H v`` (block-diagonal ``diag(H_ll) v`` with ``per_layer=True``).

        Parameters
        ----------
        v : ndarray of ``size`` entries, or list of arrays
            A flat vector over every parameter, or arrays shaped like
            ``[W_1, b_1, W_2, b_2, ...]``. Converted to float64 (not changed).

        Returns
        -------
        ndarray or list of ndarray
            float64, in the form ``v`` was given.
        """
        flat, as_list = self._flat(v)
        out = self._core.layer_products(flat) if self.per_layer else self._core.product(flat)
        return self._unflat(out) if as_list else out

    def _blocks(self) -> list[int]:
        if self.per_layer:
            return [self._offsets[l + 1] - self._offsets[l] for l in range(self.depth)]
        return [self.size]

    # -- eigenvalues, traces, densities -------------------------------------------------
    def eigenvalues(self, k: int = 1, which: str = "largest", *, tol: float | None = None,
                    max_iter: int | None = None, seed: int = 0,
                    return_eigenvectors: bool = False) -> HessianEigenvalues:
        """Extreme eigenvalues by Lanczos with full reorthogonalisation, in C++.

        Parameters
        ----------
        k : int, default 1
            How many (at each end for ``which="both"``).
        which : {"largest", "smallest", "both"}
            Algebraically largest, smallest, or both ends.
        tol : float, optional
            Relative residual asked for: 1e-8 for float64 chains, 1e-4 for float32
            (whose products carry float32 rounding).
        max_iter : int, optional
            Most products (Lanczos steps): by default ``min(size, 100 + 10 k)``. The
            basis takes ``8 * max_iter * size`` bytes (checked first).
        seed : int, default 0
            Seeds the start vector.
        return_eigenvectors : bool, default False
            Also return the Ritz vectors.

        Returns
        -------
        HessianEigenvalues
        """
        k = check_int(k, "k", minimum=1)
        which = check_choice(which, WHICH, "which")
        wanted = 2 * k if which == "both" else k
        smallest_block = min(self._blocks())
        if wanted > smallest_block:
            raise ValueError(f"k: {wanted} eigenvalues asked for, but a block has only "
                             f"{smallest_block}")
        if tol is None:
            tol = 1e-8 if self._dtype == np.float64 else 1e-4
        tol = check_real(tol, "tol", positive=True)
        if max_iter is None:
            max_iter = 100 + 10 * wanted
        max_iter = check_int(max_iter, "max_iter", minimum=wanted)
        seed = check_seed(seed)
        return_eigenvectors = check_bool(return_eigenvectors, "return_eigenvectors")
        largest_block = max(self._blocks())
        check_allocation(8 * (min(max_iter, largest_block) + 2) * largest_block,
                         f"max_iter: a Lanczos basis of {max_iter} vectors")
        raw = self._core.eigenvalues(self.per_layer, k, which, max_iter, tol, seed,
                                     return_eigenvectors, self._n_threads)
        if not self.per_layer:
            r = raw[0]
            return HessianEigenvalues(values=r["values"], residuals=r["residuals"],
                                      converged=bool(r["converged"]),
                                      iterations=int(r["iterations"]), vectors=r["vectors"])
        return HessianEigenvalues(
            values=_stack(raw, "values"), residuals=_stack(raw, "residuals"),
            converged=_stack(raw, "converged").astype(bool),
            iterations=_stack(raw, "iterations").astype(np.int64),
            vectors=[r["vectors"] for r in raw] if return_eigenvectors else None)

    def trace(self, samples: int = 99, *, method: str = "hutch++", seed: int = 0) -> HessianTrace:
        """``tr(H)`` (of each layer's block when per-layer) by random sign vectors.

        Parameters
        ----------
        samples : int, default 99
            Products with the matrix to spend.
        method : {"hutch++", "hutchinson"}
            Hutch++ (Meyer et al. 2021) spends a third of them on a random range, whose
            trace it takes exactly, a third projecting, and the rest on Hutchinson's
            estimator for what is left, far more accurate when a few eigenvalues
            dominate; "hutchinson" is the plain mean of ``z^T H z``.
        seed : int, default 0

        Returns
        -------
        HessianTrace
        """
        samples = check_int(samples, "samples", minimum=1)
        method = check_choice(method, TRACE_METHODS, "method")
        seed = check_seed(seed)
        largest_block = max(self._blocks())
        if method == "hutch++":
            check_allocation(8 * (samples // 3 + 3) * largest_block,
                             f"samples: Hutch++ with {samples} samples")
        raw = self._core.trace(self.per_layer, samples, method == "hutch++", seed,
                               self._n_threads)
        if not self.per_layer:
            r = raw[0]
            return HessianTrace(value=float(r["trace"]),
                                standard_error=float(r["standard_error"]),
                                products=int(r["products"]), method=method)
        return HessianTrace(value=_stack(raw, "trace"),
                            standard_error=_stack(raw, "standard_error"),
                            products=_stack(raw, "products"), method=method)

    def density(self, n_vectors: int = 8, steps: int = 64, *, n_grid: int = 1000,
                sigma: float | None = None, seed: int = 0) -> HessianDensity:
        """The eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al. 2019).

        Parameters
        ----------
        n_vectors : int, default 8
            Random start vectors (the quadrature is averaged over them).
        steps : int, default 64
            Lanczos steps per vector (at most the block's size).
        n_grid : int, default 1000
            Points of the returned grid.
        sigma : float, optional
            Width of the Gaussian smoothing; by default 1/200 of the nodes' span.
        seed : int, default 0

        Returns
        -------
        HessianDensity
            With ``.plot()``.
        """
        n_vectors = check_int(n_vectors, "n_vectors", minimum=1)
        steps = check_int(steps, "steps", minimum=1)
        n_grid = check_int(n_grid, "n_grid", minimum=2)
        if sigma is not None:
            sigma = check_real(sigma, "sigma", positive=True)
        seed = check_seed(seed)
        largest_block = max(self._blocks())
        check_allocation(8 * (min(steps, largest_block) + 2) * largest_block,
                         f"steps: a Lanczos basis of {steps} vectors")
        layers = self.depth if self.per_layer else 1
        check_allocation(8 * n_grid * (n_vectors * min(steps, largest_block) + 3) * layers,
                         f"n_grid: a density on {n_grid} points")
        raw = self._core.quadrature(self.per_layer, n_vectors, steps, seed, self._n_threads)
        parts = [_smoothed(r["nodes"], r["weights"], n_grid, sigma) for r in raw]
        if not self.per_layer:
            grid, density, width = parts[0]
            return HessianDensity(grid=grid, density=density, nodes=raw[0]["nodes"],
                                  weights=raw[0]["weights"], sigma=width)
        return HessianDensity(grid=np.stack([p[0] for p in parts]),
                              density=np.stack([p[1] for p in parts]),
                              nodes=_stack(raw, "nodes"), weights=_stack(raw, "weights"),
                              sigma=np.array([p[2] for p in parts]))


def make_hessian(chain: Any, core_parameters: tuple[Any, Any], xb: np.ndarray, loss_name: str,
                 target: Any, kind: str, per_layer: bool, n_threads: int) -> Hessian:
    """Builds the core object for :meth:`pyjac.Chain.hessian` (arguments checked there)."""
    from . import _core

    kind = check_choice(kind, KINDS, "kind")
    per_layer = check_bool(per_layer, "per_layer")
    n_threads = check_threads(n_threads)
    nbytes = _core.curvature_workspace_bytes(chain.widths, xb.shape[0], chain.dtype.itemsize)
    check_allocation(nbytes, f"x: the curvature's tapes for a batch of {xb.shape[0]}")
    core = _core.ChainCurvature(*core_parameters, chain.activations, chain.residual,
                                chain.residual_scale, chain.norm or "none", xb, loss_name,
                                target, kind, n_threads)
    shapes: list[tuple[int, ...]] = []
    for l in range(chain.depth):
        shapes += [(chain.widths[l + 1], chain.widths[l]), (chain.widths[l + 1],)]
    loss_value = None if loss_name == "grad_output" else float(core.loss)
    return Hessian(core, kind=kind, per_layer=per_layer, loss=loss_value, shapes=shapes,
                   dtype=chain.dtype, n_threads=n_threads)
