"""Recurrent chains: one cell applied T times, backprop through time in one C++ call.

The cells, with a batch as rows and ``s`` the logistic sigmoid::

    plain   h_t = phi(W h_{t-1} + U x_t + b)         phi = linear, tanh, relu, sigmoid
    lstm    [i, f, g, o] = [s, s, tanh, s](W h_{t-1} + U x_t + b)
            c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
    gru     r = s(W_r h_{t-1} + U_r x_t + b_r),  z = s(W_z h_{t-1} + U_z x_t + b_z)
            n = tanh(U_n x_t + b_n + r * (W_n h_{t-1})),  h_t = (1 - z) * n + z * h_{t-1}

Weight layout: the gates' matrices are stacked row-wise, in PyTorch's order:
``W`` is ``(G*width, width)``, ``U`` is ``(G*width, input_size)``, ``b`` is ``(G*width,)``
with ``G`` = 1 (plain), 4 (LSTM: i, f, g, o) or 3 (GRU: r, z, n). So ``W`` is PyTorch's
``weight_hh_l0`` and ``U`` its ``weight_ih_l0``. There is a single bias: for the LSTM and
the GRU's r and z gates it stands for PyTorch's ``bias_ih + bias_hh``; for the GRU's n gate
it is ``bias_ih`` (``b_in``) and PyTorch's hidden bias ``b_hn``, the one inside
``r * (W_hn h + b_hn)``, is zero. A PyTorch GRU with ``bias_hh_l0[2n:] == 0`` computes
exactly what this GRU computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core
from ._results import _fmt
from ._validation import (
    as_float_array,
    check_allocation,
    check_bool,
    check_choice,
    check_dtype,
    check_int,
    check_real,
    check_seed,
    check_threads,
    raw_array,
)
from .spectral import spectral_radius

CELLS = ("linear", "tanh", "relu", "sigmoid", "lstm", "gru")
RECURRENT_INITS = ("orthogonal", "gaussian", "identity", "xavier", "xavier_uniform", "he")
_GATES = {"lstm": 4, "gru": 3}
_GATE_NAMES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


def _parse_clip(clip: Any) -> tuple[str, float]:
    if clip is None:
        return "none", 0.0
    if isinstance(clip, str) or not isinstance(clip, (tuple, list)) or len(clip) != 2:
        raise ValueError(
            f"clip: expected None, ('norm', tau) or ('value', c), got {clip!r}"
        )
    kind, threshold = clip
    kind = check_choice(kind, ("norm", "value"), "clip[0]")
    threshold = check_real(threshold, "clip[1]", positive=True)
    return kind, threshold


def _dict_or_none(value: Any) -> dict | None:
    return None if value is None else dict(value)


@dataclass(frozen=True)
class RecurrentBackpropResult:
    """What one pass of backprop through time measured.

    Arrays indexed by time follow one convention: index ``t`` of a ``(steps+1,)`` array
    is ``h_t`` (0 is the initial state), index ``t-1`` of a ``(steps,)`` array is step
    ``t``. Norms are Frobenius over the whole batch; every array is float64.

    Attributes
    ----------
    loss : float or None
        ``0.5*||h_T||^2`` (loss="last") or ``0.5*sum_{t>=1} ||h_t||^2`` (loss="all");
        None when a ``grad_output`` was given.
    grad_norm : ndarray, shape (steps+1,)
        ``||dL/dh_t||``, the total derivative (through every later step).
    cell_grad_norm : ndarray, shape (steps+1,), or None
        LSTM only: ``||dL/dc_t||``, total derivative with respect to the cell state.
    state_norm : ndarray, shape (steps+1,)
        ``||h_t||``, the forward signal.
    weight_grad_norm : dict or None
        ``{"W": ||dL/dW||, "U": ||dL/dU||, "b": ||dL/db||}`` before clipping. None,
        like every weight-gradient field below, after ``weight_grads=False``.
    step_weight_grad_norm : ndarray, shape (steps,), or None
        ``||dL/dW|_t||``: the norm of step ``t``'s share of ``dL/dW`` (the gradient
        flowing into ``W`` through its use at step ``t``); these sum, as matrices, to
        ``dL/dW``.
    log_grad_norm, log_cell_grad_norm, log_step_weight_grad_norm : ndarray
        Natural logs of the three arrays above (``log_cell_grad_norm`` None unless
        LSTM), finite over any number of steps: the backward pass carries a power-of-two
        scale (exact in binary floating point) where the gradient would leave the
        dtype's range, so these hold the true values where the float64 arrays underflow
        to zero. ``-inf`` only for an exactly zero gradient.
    first_underflow_step : int or None
        The first step, in the order the backward pass reaches them (``steps`` down to
        0), where ``grad_norm`` is below float64's normal range (zero or subnormal)
        while ``log_grad_norm`` keeps the value; None when every plain value is normal.
    total_grad_norm, clipped_grad_norm : float or None
        Global norm of ``(dL/dW, dL/dU, dL/db)`` before and after clipping.
    clip_cosine : float or None
        Cosine of the angle between the gradient before and after clipping: 1 for
        norm clipping (direction kept), below 1 when value clipping turned it.
    clipped_fraction : float or None
        Fraction of gradient entries value clipping changed (0 otherwise).
    first_nonfinite_step : int or None
        Where a NaN/Inf first appeared, as an index of the ``(steps+1,)`` arrays, in the
        order the computation ran (forward ``h_1..h_T``, then backward
        ``dL/dh_T..dL/dh_0``); None when everything stayed finite.
    first_nonfinite_stage : {"forward", "backward"} or None
    h_last, c_last : ndarray
        The final state (``c_last`` for the LSTM only), in the cell's dtype.
    weight_grads : dict or None
        With ``keep_grads=True``: ``{"W", "U", "b"}`` gradients after clipping.
    h0_grad, c0_grad : ndarray or None
        With ``keep_grads=True``: ``dL/dh_0`` (and ``dL/dc_0`` for the LSTM).
    """

    loss: float | None
    grad_norm: np.ndarray
    cell_grad_norm: np.ndarray | None
    state_norm: np.ndarray
    weight_grad_norm: dict | None
    step_weight_grad_norm: np.ndarray | None
    log_grad_norm: np.ndarray
    log_cell_grad_norm: np.ndarray | None
    log_step_weight_grad_norm: np.ndarray | None
    first_underflow_step: int | None
    total_grad_norm: float | None
    clipped_grad_norm: float | None
    clip_cosine: float | None
    clipped_fraction: float | None
    first_nonfinite_step: int | None
    first_nonfinite_stage: str | None
    h_last: np.ndarray = field(repr=False)
    c_last: np.ndarray | None = field(default=None, repr=False)
    weight_grads: dict | None = field(default=None, repr=False)
    h0_grad: np.ndarray | None = field(default=None, repr=False)
    c0_grad: np.ndarray | None = field(default=None, repr=False)

    @property
    def steps(self) -> int:
        return int(self.grad_norm.shape[0]) - 1

    def __repr__(self) -> str:
        loss = "None" if self.loss is None else f"{self.loss:.6g}"
        total = "None" if self.total_grad_norm is None else f"{self.total_grad_norm:.6g}"
        return (
            f"RecurrentBackpropResult(steps={self.steps}, loss={loss}, "
            f"grad_norm={_fmt(self.grad_norm)}, log_grad_norm={_fmt(self.log_grad_norm)}, "
            f"total_grad_norm={total}, "
            f"first_underflow_step={self.first_underflow_step}, "
            f"first_nonfinite_step={self.first_nonfinite_step})"
        )


@dataclass(frozen=True)
class RecurrentJacobianResult:
    """Norms of the state Jacobians ``d s_T / d s_t`` along one trajectory.

    The state ``s`` is ``h``, or ``(h, c)`` stacked for the LSTM. Index ``t`` of each
    ``(steps+1,)`` array is ``d s_T / d s_t``; index ``T`` is the identity (log spectral
    norm 0, log Frobenius norm ``log(sqrt(state_size))``). Natural logs, float64.

    Attributes
    ----------
    log_spectral_norm : ndarray, shape (steps+1,)
        ``log ||d s_T / d s_t||_2``: power iteration on the exactly formed product,
        warm-started from the previous step's singular vector, to relative tolerance
        1e-12 (float64) or 1e-6 (float32).
    log_frobenius_norm : ndarray, shape (steps+1,)
        ``log ||d s_T / d s_t||_F``, exact.
    first_nonfinite_step : int or None
        The first step whose state or product was NaN/Inf; entries past it are NaN.
    """

    log_spectral_norm: np.ndarray
    log_frobenius_norm: np.ndarray
    first_nonfinite_step: int | None

    @property
    def steps(self) -> int:
        return int(self.log_spectral_norm.shape[0]) - 1

    def __repr__(self) -> str:
        return (
            f"RecurrentJacobianResult(steps={self.steps}, "
            f"log_spectral_norm={_fmt(self.log_spectral_norm)})"
        )


class Recurrent:
    """A recurrent cell unrolled over time, whose gradients pyjac measures exactly.

    ``h_t = phi(W h_{t-1} + U x_t + b)`` for the plain cells; LSTM and GRU use the
    standard gate equations (see the module docstring for the equations and the weight
    layout, which is PyTorch's).

    Parameters
    ----------
    width : int
        Hidden units (at least 1).
    input_size : int, default 0
        Size of ``x_t``; 0 for the autonomous recurrence ``h_t = phi(W h_{t-1} + b)``.
    cell : {"tanh", "linear", "relu", "sigmoid", "lstm", "gru"}
    init : str, default "orthogonal"
        How each gate's ``(width, width)`` block of ``W`` is drawn: "orthogonal" (Haar,
        times gain), "gaussian" (std gain/sqrt(width)), "identity" (gain * I),
        "xavier", "xavier_uniform" (variance gain^2/width for a square block), "he"
        (variance 2 gain^2/width). ``U`` is Gaussian with variance 1/input_size.
    spectral_radius : float, optional
        Rescale each gate block of ``W`` so that its largest ``|eigenvalue|`` is exactly
        this (computed with LAPACK). For the plain cells the block is ``W`` itself.
    gain : float, optional
        Multiplies the drawn ``W`` (1 when None).
    forget_bias : float, default 1
        The LSTM's forget-gate bias entries (``b[width:2*width]``); the other biases
        start at zero.
    seed : int, None or numpy.random.Generator, default 0
        Same seed, same weights, whatever the thread count. None draws fresh entropy and
        a Generator one integer; the integer used is kept as ``.seed``.
    dtype : {"float32", "float64"}

    Examples
    --------
    >>> import pyjac
    >>> rnn = pyjac.Recurrent(64, cell="tanh", spectral_radius=0.9)
    >>> r = rnn.backprop(steps=100)
    >>> bool(r.grad_norm[0] < 0.9**100 * r.grad_norm[-1])
    True
    """

    def __init__(
        self,
        width: int,
        input_size: int = 0,
        *,
        cell: str = "tanh",
        init: str = "orthogonal",
        spectral_radius: float | None = None,
        gain: float | None = None,
        forget_bias: float = 1.0,
        seed: int = 0,
        dtype: Any = "float32",
    ) -> None:
        width = check_int(width, "width", minimum=1)
        input_size = check_int(input_size, "input_size", minimum=0)
        cell = check_choice(cell, CELLS, "cell")
        init = check_choice(init, RECURRENT_INITS, "init")
        radius = -1.0
        if spectral_radius is not None:
            radius = check_real(spectral_radius, "spectral_radius", nonneg=True)
        gain_value = 1.0 if gain is None else check_real(gain, "gain")
        forget_bias = check_real(forget_bias, "forget_bias")
        seed = check_seed(seed)
        np_dtype = check_dtype(dtype)
        G = _GATES.get(cell, 1)
        check_allocation(
            G * width * (width + input_size + 1) * np_dtype.itemsize,
            f"width: a recurrent cell of width {width}",
        )
        W, U, b = _core.recurrent_init(
            cell, width, input_size, init, gain_value, forget_bias, radius, seed, np_dtype.name
        )
        if not np.isfinite(W).all():
            culprit = "spectral_radius" if spectral_radius is not None else "gain"
            raise ValueError(
                f"{culprit}: {radius if spectral_radius is not None else gain_value:.3g} "
                f"gives recurrent weights beyond {np_dtype.name}'s range"
            )
        self._setup(cell, W, U, b)
        self.init: str | None = init
        self.gain: float | None = gain_value
        self.forget_bias: float | None = forget_bias if cell == "lstm" else None
        self.spectral_radius: float | None = None if spectral_radius is None else radius
        self.seed: int | None = seed

    @classmethod
    def from_weights(
        cls, W: Any, U: Any = None, b: Any = None, *, cell: str = "tanh", copy: bool = True
    ) -> Recurrent:
        """Build a recurrent cell from given matrices (layout as in the module docstring).

        The dtype is float32 when every given array is float32, float64 otherwise.
        ``U=None`` means no input (``input_size=0``), ``b=None`` zero biases. With
        ``copy=True`` (the default) the cell holds copies of the arrays; ``copy=False``
        keeps the caller's arrays where no conversion is needed.
        """
        cell = check_choice(cell, CELLS, "cell")
        check_bool(copy, "copy")
        G = _GATES.get(cell, 1)
        given = [raw_array(a, name) for a, name in ((W, "W"), (U, "U"), (b, "b")) if a is not None]
        dtype = np.dtype(
            np.float32 if all(a.dtype == np.float32 for a in given) else np.float64
        )
        W_arr = as_float_array(W, "W", dtype, copy=copy)
        if W_arr.ndim != 2 or W_arr.shape[1] < 1 or W_arr.shape[0] != G * W_arr.shape[1]:
            raise ValueError(
                f"W: expected shape ({G}*width, width) for cell {cell!r}, got {W_arr.shape}"
            )
        width = W_arr.shape[1]
        if U is None:
            U_arr = np.zeros((G * width, 0), dtype=dtype)
        else:
            U_arr = as_float_array(U, "U", dtype, copy=copy)
            if U_arr.ndim != 2 or U_arr.shape[0] != G * width:
                raise ValueError(
                    f"U: expected shape ({G * width}, input_size), got {U_arr.shape}"
                )
        if b is None:
            b_arr = np.zeros(G * width, dtype=dtype)
        else:
            b_arr = as_float_array(b, "b", dtype, copy=copy)
            if b_arr.shape != (G * width,):
                raise ValueError(f"b: expected shape ({G * width},), got {b_arr.shape}")
        rnn = cls.__new__(cls)
        rnn._setup(cell, W_arr, U_arr, b_arr)
        rnn.init = None
        rnn.gain = None
        rnn.forget_bias = None
        rnn.spectral_radius = None
        rnn.seed = None
        return rnn

    def _setup(self, cell: str, W: np.ndarray, U: np.ndarray, b: np.ndarray) -> None:
        self.cell: str = cell
        self.W: np.ndarray = W
        self.U: np.ndarray = U
        self.b: np.ndarray = b
        self.dtype = W.dtype

    @property
    def width(self) -> int:
        return int(self.W.shape[1])

    @property
    def input_size(self) -> int:
        return int(self.U.shape[1])

    @property
    def gates(self) -> int:
        """Gate blocks stacked in ``W``, ``U`` and ``b``: 1, 4 (LSTM) or 3 (GRU)."""
        return _GATES.get(self.cell, 1)

    @property
    def state_size(self) -> int:
        """Size of the recurrent state: ``2*width`` for the LSTM's ``(h, c)``."""
        return 2 * self.width if self.cell == "lstm" else self.width

    def spectral_radii(self) -> dict[str, float]:
        """Largest ``|eigenvalue|`` of each gate's square block of ``W``.

        Keys are the gate names ("W" for the plain cells; "i", "f", "g", "o" for the
        LSTM; "r", "z", "n" for the GRU).
        """
        n = self.width
        names = _GATE_NAMES.get(self.cell, ("W",))
        return {name: spectral_radius(self.W[k * n:(k + 1) * n]) for k, name in enumerate(names)}

    def __repr__(self) -> str:
        extras = f", input_size={self.input_size}" if self.input_size else ""
        if self.init is not None:
            extras += f", init={self.init!r}"
        if self.spectral_radius is not None:
            extras += f", spectral_radius={self.spectral_radius:g}"
        return (
            f"Recurrent({self.width}{extras}, cell={self.cell!r}, dtype={self.dtype.name!r})"
        )

    # -- inputs shared by every measurement -----------------------------------------
    def _inputs(
        self, xs: Any, steps: Any, h0: Any, c0: Any
    ) -> tuple[np.ndarray | None, int, np.ndarray | None, np.ndarray | None, bool]:
        """Checked (xs, steps, h0, c0, single); single: the caller gave one sequence."""
        n, m = self.width, self.input_size
        single = False
        batch = None
        xs_arr = None
        if xs is not None:
            xs_arr = as_float_array(xs, "xs", self.dtype)
            if xs_arr.ndim == 2:
                xs_arr = xs_arr[:, None, :]
                single = True
            if xs_arr.ndim == 3 and xs_arr.shape[2] == m and 0 in xs_arr.shape[:2]:
                what = "no steps" if xs_arr.shape[0] == 0 else "an empty batch"
                raise ValueError(f"xs: {what} (shape {xs_arr.shape})")
            if xs_arr.ndim != 3 or xs_arr.shape[2] != m or xs_arr.shape[0] < 1 or (
                xs_arr.shape[1] < 1
            ):
                raise ValueError(
                    f"xs: expected shape (steps, batch, {m}) or (steps, {m}), got {np.shape(xs)}"
                )
            if steps is not None and check_int(steps, "steps", minimum=1) != xs_arr.shape[0]:
                raise ValueError(
                    f"steps: {steps} does not match xs, which has {xs_arr.shape[0]} steps"
                )
            steps = xs_arr.shape[0]
            batch = xs_arr.shape[1]
        else:
            if steps is None:
                raise ValueError("steps: give xs or the number of steps")
            steps = check_int(steps, "steps", minimum=1)
        if h0 is not None:
            h0_arr = as_float_array(h0, "h0", self.dtype)
            if h0_arr.ndim == 1:
                h0_arr = h0_arr[None, :]
                single = batch is None or single
            if h0_arr.ndim == 2 and h0_arr.shape == (0, n):
                raise ValueError(f"h0: the batch is empty (shape {h0_arr.shape})")
            if h0_arr.ndim != 2 or h0_arr.shape[1] != n or (
                batch is not None and h0_arr.shape[0] != batch
            ):
                want = f"({batch if batch is not None else 'batch'}, {n})"
                raise ValueError(f"h0: expected shape {want}, got {np.shape(h0)}")
        elif xs_arr is not None:
            h0_arr = None  # zeros, in C++
        else:
            # The autonomous recurrence from h_0 = 0 with b = 0 never moves: start from a
            # seeded standard normal state instead.
            rng = np.random.default_rng(self.seed if self.seed is not None else 0)
            h0_arr = np.ascontiguousarray(rng.standard_normal((1, n)), dtype=self.dtype)
            single = True
        c0_arr = None
        if c0 is not None:
            if self.cell != "lstm":
                raise ValueError(f"c0: only the 'lstm' cell has a cell state, not {self.cell!r}")
            rows = h0_arr.shape[0] if h0_arr is not None else batch
            c0_arr = as_float_array(c0, "c0", self.dtype)
            if c0_arr.ndim == 1:
                c0_arr = c0_arr[None, :]
            if c0_arr.shape != (rows, n):
                raise ValueError(f"c0: expected shape ({rows}, {n}), got {np.shape(c0)}")
        return xs_arr, int(steps), h0_arr, c0_arr, single

    def _batch_of(self, xs: np.ndarray | None, h0: np.ndarray | None) -> int:
        return xs.shape[1] if xs is not None else (h0.shape[0] if h0 is not None else 1)

    def backprop(
        self,
        xs: Any = None,
        steps: int | None = None,
        h0: Any = None,
        *,
        c0: Any = None,
        loss: str = "last",
        grad_output: Any = None,
        clip: Any = None,
        keep_grads: bool = False,
        weight_grads: bool = True,
        n_threads: int | None = None,
    ) -> RecurrentBackpropResult:
        """Run the recurrence and backprop through time, in one C++ call.

        Parameters
        ----------
        xs : array_like, shape (steps, batch, input_size) or (steps, input_size), optional
            Inputs ``x_1..x_T``. Without them the recurrence is autonomous (``x_t = 0``)
            and ``steps`` says how long it runs.
        steps : int, optional
            Number of steps ``T``; taken from ``xs`` when given.
        h0 : array_like, shape (batch, width) or (width,), optional
            Initial state. Default: zeros when ``xs`` is given; for the autonomous
            recurrence a standard normal ``(1, width)`` state drawn with the cell's seed
            (from zero with zero bias nothing would move).
        c0 : array_like, optional
            LSTM only: initial cell state, zeros by default.
        loss : {"last", "all"}
            ``0.5*||h_T||^2`` or ``0.5*sum_{t=1..T} ||h_t||^2``.
        grad_output : array_like, optional
            A given ``dL/dh_T`` of shape (batch, width) (with loss="last"), or given
            ``dL/dh_t`` for t = 1..T of shape (steps, batch, width) (with loss="all"),
            instead of the built-in losses.
        clip : None, ("norm", tau) or ("value", c)
            Clipping of the weight gradient ``g = (dL/dW, dL/dU, dL/db)``: global norm,
            ``g <- g * min(1, tau/||g||)``, or elementwise to ``[-c, c]``. The result
            reports the norm before and after and the cosine between the two.
        keep_grads : bool
            Also return the (clipped) weight gradients and ``dL/dh_0``.
        weight_grads : bool
            False when only the gradient through time is wanted (``grad_norm``,
            ``log_grad_norm``, ``dL/dh_0``): the weight gradients, their norms and
            per-step shares are not computed (None in the result) and the backward pass
            is one product with ``W`` per step. ``clip`` needs them.
        n_threads : int, optional
            None or -1 for every core, or a positive count.

        Returns
        -------
        RecurrentBackpropResult
            Exploding runs are data: a NaN/Inf arising inside is reported in
            ``first_nonfinite_step`` and the pass finishes.

        Notes
        -----
        The forward pass keeps every state (and the gates) for the backward pass:
        memory grows as ``steps * batch * width * (1 + gates)``. The weight gradients of
        all steps come from one large product each at the end. Results are bit-identical
        for every ``n_threads``: work is split into blocks fixed by the shapes alone.
        """
        keep_grads = check_bool(keep_grads, "keep_grads")
        weight_grads = check_bool(weight_grads, "weight_grads")
        n_threads = check_threads(n_threads)
        xs_arr, steps, h0_arr, c0_arr, single = self._inputs(xs, steps, h0, c0)
        loss = check_choice(loss, ("last", "all"), "loss")
        batch = self._batch_of(xs_arr, h0_arr)
        go = None
        loss_name = loss
        if grad_output is not None:
            go = as_float_array(grad_output, "grad_output", self.dtype)
            if loss == "last":
                if single and go.ndim == 1:
                    go = go[None, :]
                want = (batch, self.width)
                loss_name = "grad_last"
            else:
                if single and go.ndim == 2:
                    go = go[:, None, :]
                want = (steps, batch, self.width)
                loss_name = "grad_all"
            if go.shape != want:
                shown = want[:-2] + want[-1:] if single else want  # as the caller sees it
                raise ValueError(
                    f"grad_output: with loss={loss!r} expected shape {shown}, "
                    f"got {np.shape(grad_output)}"
                )
        clip_kind, clip_threshold = _parse_clip(clip)
        if clip_kind != "none" and not weight_grads:
            raise ValueError("clip: clips the weight gradients, which weight_grads=False skips")
        nbytes = _core.recurrent_workspace_bytes(
            self.cell, self.width, self.input_size, steps, batch, self.dtype.itemsize
        )
        check_allocation(nbytes, f"steps: backprop through {steps} steps on a batch of {batch}")
        raw = _core.recurrent_backprop(
            self.cell, self.W, self.U if self.input_size else None, self.b, xs_arr, steps,
            h0_arr, c0_arr, loss_name, go, clip_kind, clip_threshold, keep_grads, weight_grads,
            n_threads,
        )

        def squeeze(a):
            return a[0] if (single and a is not None) else a

        return RecurrentBackpropResult(
            loss=None if go is not None else float(raw["loss"]),
            grad_norm=raw["grad_norm"],
            cell_grad_norm=raw["cell_grad_norm"],
            state_norm=raw["state_norm"],
            weight_grad_norm=_dict_or_none(raw["weight_grad_norm"]),
            step_weight_grad_norm=raw["step_weight_grad_norm"],
            log_grad_norm=raw["log_grad_norm"],
            log_cell_grad_norm=raw["log_cell_grad_norm"],
            log_step_weight_grad_norm=raw["log_step_weight_grad_norm"],
            first_underflow_step=raw["first_underflow_step"],
            total_grad_norm=raw["total_grad_norm"],
            clipped_grad_norm=raw["clipped_grad_norm"],
            clip_cosine=raw["clip_cosine"],
            clipped_fraction=raw["clipped_fraction"],
            first_nonfinite_step=raw["first_nonfinite_step"],
            first_nonfinite_stage=raw["first_nonfinite_stage"],
            h_last=squeeze(raw["h_last"]),
            c_last=squeeze(raw["c_last"]),
            weight_grads=_dict_or_none(raw["weight_grads"]) if keep_grads else None,
            h0_grad=squeeze(raw.get("h0_grad")),
            c0_grad=squeeze(raw.get("c0_grad")),
        )

    # -- Jacobian products of the recurrence --------------------------------------------
    def _trajectory(self, xs: Any, steps: Any, h0: Any, c0: Any, what: str):
        xs_arr, steps, h0_arr, c0_arr, _ = self._inputs(xs, steps, h0, c0)
        batch = self._batch_of(xs_arr, h0_arr)
        if batch != 1:
            name = "xs" if xs_arr is not None else "h0"
            raise ValueError(
                f"{name}: {what} follows one trajectory; give a batch of 1, got {batch}"
            )
        S = self.state_size
        nbytes = _core.recurrent_workspace_bytes(
            self.cell, self.width, self.input_size, steps, 1, self.dtype.itemsize
        ) + 3 * S * S * self.gates * self.dtype.itemsize
        check_allocation(nbytes, f"steps: {what} over {steps} steps")
        return xs_arr, steps, h0_arr, c0_arr

    def jacobian_norms(
        self,
        xs: Any = None,
        steps: int | None = None,
        h0: Any = None,
        *,
        c0: Any = None,
        n_threads: int | None = None,
    ) -> RecurrentJacobianResult:
        """Log norms of ``d s_T / d s_t`` for t = 0..T along one trajectory.

        The product of the step Jacobians is formed exactly, backward from ``T``
        (``state_size`` vector-Jacobian products per step), rescaled to norm 1 after
        every step with the scale carried as a log, so that neither vanishing nor
        exploding products under- or overflow. For the LSTM the state is ``(h, c)``.

        Parameters
        ----------
        xs : array_like, shape (steps, input_size) or (steps, 1, input_size), optional
        steps : int, optional
        h0 : array_like, shape (width,), optional
            As in :meth:`backprop`, for a batch of one.
        c0 : array_like, optional
        n_threads : int, optional

        Returns
        -------
        RecurrentJacobianResult
        """
        n_threads = check_threads(n_threads)
        xs_arr, steps, h0_arr, c0_arr = self._trajectory(xs, steps, h0, c0, "jacobian_norms")
        raw = _core.recurrent_jacobian_norms(
            self.cell, self.W, self.U if self.input_size else None, self.b, xs_arr, steps,
            h0_arr, c0_arr, n_threads,
        )
        return RecurrentJacobianResult(
            log_spectral_norm=raw["log_spectral_norm"],
            log_frobenius_norm=raw["log_frobenius_norm"],
            first_nonfinite_step=raw["first_nonfinite_step"],
        )

    def lyapunov_exponents(
        self,
        xs: Any = None,
        steps: int | None = None,
        h0: Any = None,
        *,
        c0: Any = None,
        k: int | None = None,
        n_threads: int | None = None,
    ) -> np.ndarray:
        """The ``k`` largest Lyapunov exponents of the recurrence along one trajectory.

        QR method: a Haar-random orthonormal ``k``-frame (seeded with the cell's seed) is
        pushed forward by the step Jacobians and re-orthonormalised every step; the
        exponents are the means over the steps of ``log |diag R|`` (natural log per
        step), accumulated in float64. For the LSTM the state is ``(h, c)``.

        Parameters
        ----------
        xs, steps, h0, c0, n_threads
            As in :meth:`jacobian_norms`.
        k : int, optional
            How many exponents; all ``state_size`` of them by default.

        Returns
        -------
        ndarray, shape (k,)
            Descending; NaN if the trajectory or the frame became non-finite.
        """
        n_threads = check_threads(n_threads)
        S = self.state_size
        k = S if k is None else check_int(k, "k", minimum=1)
        if k > S:
            raise ValueError(f"k: at most the state size {S}, got {k}")
        xs_arr, steps, h0_arr, c0_arr = self._trajectory(
            xs, steps, h0, c0, "lyapunov_exponents"
        )
        seed = self.seed if self.seed is not None else 0
        raw = _core.recurrent_lyapunov(
            self.cell, self.W, self.U if self.input_size else None, self.b, xs_arr, steps,
            h0_arr, c0_arr, k, seed, n_threads,
        )
        return raw["exponents"]
