"""Result containers returned by the public API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _fmt(values: np.ndarray) -> str:
    if values.size <= 6:
        return np.array2string(values, precision=3)
    head = np.array2string(values[:3], precision=3)[:-1]
    tail = np.array2string(values[-3:], precision=3)[1:]
    return f"{head} ... {tail}"


def summarize(value: Any) -> str:
    """A short repr: arrays as numpy prints long ones (ends only), everything else as is."""
    if isinstance(value, np.ndarray):
        return np.array2string(value, threshold=8, edgeitems=3, precision=4, separator=", ")
    return repr(value)


@dataclass(frozen=True)
class BackpropResult:
    """What one forward and backward pass through a :class:`Chain` measured.

    Per-layer arrays follow the depth convention: index ``l`` of a ``(depth+1,)``
    array is ``h_l`` (0 is the input), index ``l-1`` of a ``(depth,)`` array is layer
    ``l``. Norms are Frobenius over the whole batch; every array is float64.

    Attributes
    ----------
    loss : float or None
        The loss value; None when a ``grad_output`` was given instead of a loss.
    grad_norm : ndarray, shape (depth+1,)
        ``||dL/dh_l||``.
    activation_norm : ndarray, shape (depth+1,)
        ``||h_l||``, the forward signal.
    weight_grad_norm, bias_grad_norm : ndarray, shape (depth,), or None
        ``||dL/dW_l||`` and ``||dL/db_l||``. None, like the other weight and bias
        fields below, after ``weight_grads=False``.
    log_grad_norm : ndarray, shape (depth+1,)
        Natural log of ``||dL/dh_l||``, finite at any depth: the backward pass carries a
        power-of-two scale (exact in binary floating point) where the gradient would
        leave the dtype's range, so this holds the true value where ``grad_norm``, a
        float64, underflows to zero. ``-inf`` only for a gradient that is exactly zero
        (dead ReLU units), NaN/inf where the pass produced them.
    log_weight_grad_norm, log_bias_grad_norm : ndarray, shape (depth,), or None
        The same for ``||dL/dW_l||`` and ``||dL/db_l||``.
    first_underflow_layer : int or None
        The first layer, in the order the backward pass reaches them (``depth`` down to
        0), where ``grad_norm`` is below float64's normal range (zero or subnormal) while
        ``log_grad_norm`` keeps the value; None when every plain value is normal.
    per_example_weight_grad_norm : ndarray, shape (depth, batch), or None
        ``||dL_i/dW_l||`` for each example's contribution to the batch gradient.
    gradient_noise_scale : ndarray, shape (depth,), or None
        Per layer, McCandlish et al. (2018)'s simple noise scale from this batch,
        ``B_simple = tr(S) / ||g_bar||^2``, with ``g_i`` each example's gradient of
        ``W_l`` (its own loss term), ``g_bar`` their mean and ``S`` their sample
        covariance: the batch size above which a larger batch stops paying off. From
        the per-example norms the pass already has (``sum ||g_i||^2`` and ``||sum g_i||``),
        no extra products. NaN where the examples' gradients agree to within the
        rounding of the pass (the noise is below what it resolves) or a norm left
        float64's range, and for a batch of one; None without weight gradients and for
        batchnorm (whose batch statistics tie the examples together).
    gradient_snr : ndarray, shape (depth,), or None
        The batch gradient's signal-to-noise ratio ``||g_bar||^2 / (tr(S) / batch)``
        (``batch / B_simple``): below 1, the noise of this batch's gradient outweighs
        its mean.
    derivative_mean : ndarray, shape (depth,)
        Mean of ``phi'(u_l)`` over the batch and the units.
    saturated_fraction : ndarray, shape (depth,)
        Fraction of entries whose ``phi'`` is below 5% of its maximum (sigmoid and
        tanh; zero for the other activations).
    dead_fraction : ndarray, shape (depth,)
        Fraction of units whose ``phi'`` is exactly zero for every example of the batch.
    first_nonfinite_layer : int or None
        Where the first NaN/Inf appeared, as an index of the ``(depth+1,)`` arrays, in
        the order the computation ran (forward ``h_1..h_L``, then backward
        ``dL/dh_L..dL/dh_0``); None when everything stayed finite.
    first_nonfinite_stage : {"forward", "backward"} or None
    grad_dtype : str or None
        The storage format of the backward pass ("float16", "bfloat16", or the chain's
        dtype); None when ``backprop`` was called without ``grad_dtype``, and then the
        count and fraction fields below are None too.
    loss_scale : float
        The loss scale the backward pass ran with (the norms above are unscaled).
    underflow_count, overflow_count : ndarray of int64, shape (depth+1,)
        Entries of ``dL/dh_l`` that rounding to ``grad_dtype`` flushed from non-zero
        to zero, and from finite to inf, at that stage.
    zero_fraction : ndarray, shape (depth+1,)
        Fraction of the stored ``dL/dh_l`` entries that are zero: what underflow (here
        or upstream) and dead units left of the gradient.
    underflow_fraction : ndarray, shape (depth+1,)
        ``underflow_count`` over the entries of ``dL/dh_l`` (batch * width).
    dz_underflow_count, dz_overflow_count : ndarray of int64, shape (depth,)
        The same for the pre-activation gradients ``dL/dz_l``, also rounded.
    weight_grads, bias_grads : list of ndarray or None
        Full gradients, in the chain's dtype, with ``keep_grads=True``.
    output : ndarray
        ``h_L``, shape (batch, widths[-1]), in the chain's dtype.
    """

    loss: float | None
    grad_norm: np.ndarray
    activation_norm: np.ndarray
    weight_grad_norm: np.ndarray | None
    bias_grad_norm: np.ndarray | None
    per_example_weight_grad_norm: np.ndarray | None
    derivative_mean: np.ndarray
    saturated_fraction: np.ndarray
    dead_fraction: np.ndarray
    log_grad_norm: np.ndarray
    log_weight_grad_norm: np.ndarray | None
    log_bias_grad_norm: np.ndarray | None
    first_underflow_layer: int | None
    first_nonfinite_layer: int | None
    first_nonfinite_stage: str | None
    grad_dtype: str | None
    loss_scale: float
    underflow_count: np.ndarray | None
    overflow_count: np.ndarray | None
    zero_fraction: np.ndarray | None
    underflow_fraction: np.ndarray | None
    dz_underflow_count: np.ndarray | None
    dz_overflow_count: np.ndarray | None
    output: np.ndarray = field(repr=False)
    weight_grads: list[np.ndarray] | None = field(default=None, repr=False)
    bias_grads: list[np.ndarray] | None = field(default=None, repr=False)
    gradient_noise_scale: np.ndarray | None = field(default=None, repr=False)
    gradient_snr: np.ndarray | None = field(default=None, repr=False)

    @property
    def depth(self) -> int:
        return int(self.grad_norm.shape[0]) - 1

    def __repr__(self) -> str:
        loss = "None" if self.loss is None else f"{self.loss:.6g}"
        return (
            f"BackpropResult(depth={self.depth}, loss={loss}, "
            f"grad_norm={_fmt(self.grad_norm)}, "
            f"log_grad_norm={_fmt(self.log_grad_norm)}, "
            f"first_underflow_layer={self.first_underflow_layer}, "
            f"first_nonfinite_layer={self.first_nonfinite_layer})"
        )
