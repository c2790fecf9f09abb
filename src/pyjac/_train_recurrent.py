"""The recurrent side of :func:`pyjac.train`: data checks, the readout, one epoch in the
core per call, and the history with per-gate records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core
from ._validation import as_float_array, check_allocation, check_choice
from .recurrent import _GATE_NAMES, Recurrent
from .train import TrainingHistory, _history_fields, _optimizer_state, _writable

PREDICT = ("last", "every_step")


@dataclass(frozen=True)
class RecurrentTrainingHistory(TrainingHistory):
    """What :func:`pyjac.train` recorded for a :class:`Recurrent` and its readout.

    As :class:`TrainingHistory`, with parameter groups in place of layers: the per-group
    arrays (``weight_grad_norm``, ``weight_change``, ``weight_histogram``) have one column
    per gate block of ``W`` (the recurrent weights), then per gate block of ``U`` (the
    input weights), then the readout ``V``; ``parameter_names`` says which is which
    ("W_i", "W_f", ..., "U_i", ..., "V" for the LSTM; "W", "U", "V" for plain cells).

    Attributes
    ----------
    grad_norm, log_grad_norm : ndarray, shape (epochs, steps+1)
        Mean over the epoch's minibatches of ``||dL/dh_t||``, t = 0..steps (the gradient
        through time), and of its natural log (finite where the norm underflows).
        ``log_weight_grad_norm`` is None.
    last_grad_norm, last_log_grad_norm : ndarray, shape (epochs, steps+1)
        ``||dL/dh_t||`` of each epoch's last minibatch, and its natural log (finite
        where the norm leaves float64's range).
    parameter_names : tuple of str
    readout_weight, readout_bias : ndarray
        The trained readout ``V`` (n_out, width) and ``c`` (n_out,).
    """

    last_grad_norm: np.ndarray | None = field(repr=False, default=None)
    last_log_grad_norm: np.ndarray | None = field(repr=False, default=None)
    parameter_names: tuple[str, ...] = ()
    readout_weight: np.ndarray | None = field(repr=False, default=None)
    readout_bias: np.ndarray | None = field(repr=False, default=None)

    @property
    def steps(self) -> int:
        return int(self.grad_norm.shape[1] - 1)

    def __repr__(self) -> str:
        val = ""
        if self.val_loss is not None:
            val = f", val_loss {self.val_loss[0]:.4g} -> {self.val_loss[-1]:.4g}"
        return (
            f"RecurrentTrainingHistory(epochs={self.epochs}, steps={self.steps}, "
            f"loss {self.loss[0]:.4g} -> {self.loss[-1]:.4g}{val}, weight_change "
            + ", ".join(f"{name} {v:.3g}" for name, v in zip(self.parameter_names,
                                                              self.weight_change[-1]))
            + ")"
        )


def parameter_names(cell: str) -> tuple[str, ...]:
    gates = _GATE_NAMES.get(cell)
    if gates is None:
        return ("W", "U", "V")
    return tuple(f"W_{g}" for g in gates) + tuple(f"U_{g}" for g in gates) + ("V",)


class RecurrentTrainee:
    """What the epoch loop needs of a recurrent net and its readout."""

    def __init__(self, rnn: Recurrent, x: Any, y: Any, loss: str, predict: str, readout: Any,
                 validation: Any, batch_size: int, seed: int) -> None:
        if rnn.input_size < 1:
            raise ValueError("model: a recurrent net trains on inputs; build it with "
                             "input_size >= 1")
        self.rnn, self.loss, self.batch_size = rnn, loss, batch_size
        self.predict = check_choice(predict, PREDICT, "predict")
        self.every_step = self.predict == "every_step"
        self.x = self._sequences(x, "x")
        self.y = self._targets(y, self.x.shape[:2], "y")
        self.V, self.c = self._readout(readout, seed)
        n_out = self.V.shape[0]
        self._check_classes(self.y, n_out, "y")
        self.val = None
        if validation is not None:
            xv = self._sequences(validation[0], "validation[0]")
            yv = self._targets(validation[1], xv.shape[:2], "validation[1]")
            self._check_classes(yv, n_out, "validation[1]")
            self.val = (xv, yv)
        self.groups = len(parameter_names(rnn.cell))
        self._check_memory()

    def _check_memory(self) -> None:
        """A minibatch's tape and the readout's outputs, and evaluation's chunks of 256
        sequences (one at a time), must fit in memory before anything is allocated."""
        rnn, (n, steps) = self.rnn, self.x.shape[:2]
        size = rnn.dtype.itemsize
        n_out = self.V.shape[0]
        rows = steps if self.every_step else 1
        worst = 0
        for batch in (min(self.batch_size, n), min(256, n)):
            tape = _core.recurrent_workspace_bytes(rnn.cell, rnn.width, rnn.input_size, steps,
                                                   batch, size)
            worst = max(worst, tape + (steps * rnn.input_size + 3 * rows * n_out) * batch * size)
        check_allocation(worst, f"x: training on sequences of {steps} steps")

    # -- checks and conversions ----------------------------------------------------------
    def _sequences(self, x: Any, name: str) -> np.ndarray:
        arr = as_float_array(x, name, self.rnn.dtype)
        if arr.ndim != 3 or arr.shape[2] != self.rnn.input_size or 0 in arr.shape[:2]:
            raise ValueError(f"{name}: expected sequences of shape (n, steps, "
                             f"{self.rnn.input_size}), got {np.shape(x)}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains NaN or Inf")
        return arr

    def _targets(self, y: Any, lead: tuple[int, ...], name: str) -> np.ndarray:
        arr = np.asarray(y)
        want_lead = lead if self.every_step else lead[:1]
        if self.loss == "cross_entropy":
            if not np.issubdtype(arr.dtype, np.integer) or arr.shape != want_lead:
                raise ValueError(f"{name}: cross_entropy needs integer labels of shape "
                                 f"{want_lead}, got {arr.dtype} {arr.shape}")
            if arr.min() < 0:
                raise ValueError(f"{name}: labels must be non-negative, got {arr.min()}")
            return np.ascontiguousarray(arr, dtype=np.int64)
        arr = as_float_array(y, name, self.rnn.dtype)
        if arr.shape == want_lead:  # one target value per prediction
            arr = arr[..., None]
        if arr.ndim != len(want_lead) + 1 or arr.shape[:-1] != want_lead or arr.shape[-1] < 1:
            raise ValueError(f"{name}: mse needs targets of shape {want_lead + ('n_out',)}, "
                             f"got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains NaN or Inf")
        return np.ascontiguousarray(arr)

    def _check_classes(self, y: np.ndarray, n_out: int, name: str) -> None:
        if self.loss == "cross_entropy" and y.max() >= n_out:
            raise ValueError(f"{name}: label {y.max()} out of range [0, {n_out}) of the readout")
        if self.loss == "mse" and y.shape[-1] != n_out:
            raise ValueError(f"{name}: targets have {y.shape[-1]} outputs, the readout {n_out}")

    def _readout(self, readout: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
        width, dtype = self.rnn.width, self.rnn.dtype
        if readout is None:
            n_out = int(self.y.max()) + 1 if self.loss == "cross_entropy" else self.y.shape[-1]
            # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
            rng = np.random.default_rng([seed, 0x5EAD])
            bound = 1.0 / np.sqrt(width)
            V = rng.uniform(-bound, bound, size=(n_out, width)).astype(dtype)
            return V, rng.uniform(-bound, bound, size=n_out).astype(dtype)
        if not isinstance(readout, (tuple, list)) or len(readout) != 2:
            raise TypeError("readout: expected a pair (V, c)")
        V, c = readout
        V_arr = V if _writable(V, dtype) else as_float_array(V, "readout[0]", dtype, copy=True)
        c_arr = c if _writable(c, dtype) else as_float_array(c, "readout[1]", dtype, copy=True)
        if V_arr.ndim != 2 or V_arr.shape[1] != width or V_arr.shape[0] < 1:
            raise ValueError(f"readout[0]: expected shape (n_out, {width}), got {V_arr.shape}")
        if c_arr.shape != (V_arr.shape[0],):
            raise ValueError(f"readout[1]: expected shape ({V_arr.shape[0]},), got "
                             f"{c_arr.shape}")
        for arr, name in ((V_arr, "readout[0]"), (c_arr, "readout[1]")):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name}: contains NaN or Inf")
        return V_arr, c_arr

    # -- the loop's interface --------------------------------------------------------------
    def start(self, settings: dict[str, Any]) -> None:
        rnn = self.rnn
        for name in ("W", "U", "b"):
            if not _writable(getattr(rnn, name), rnn.dtype):
                setattr(rnn, name, np.array(getattr(rnn, name), dtype=rnn.dtype, order="C"))
        self.params = [rnn.W, rnn.U, rnn.b, self.V, self.c]
        self.initial = [rnn.W.copy(), rnn.U.copy(), self.V.copy()]
        self.state1, self.state2 = _optimizer_state([self.params], settings)

    def histogram_arrays(self) -> list[np.ndarray]:
        n, G = self.rnn.width, self.rnn.gates
        blocks = [self.rnn.W[g * n:(g + 1) * n] for g in range(G)]
        blocks += [self.rnn.U[g * n:(g + 1) * n] for g in range(G)]
        return blocks + [self.V]

    def evaluate(self, data: tuple[np.ndarray, np.ndarray], n_threads: int) -> tuple[float, float]:
        return _core.evaluate_recurrent(self.rnn.cell, self.params, data[0], data[1], self.loss,
                                        self.every_step, n_threads)

    def epoch(self, order: np.ndarray, settings: dict[str, Any], steps_before: int,
              clip_mode: str, clip: float, n_threads: int) -> dict[str, Any]:
        return _core.train_recurrent_epoch(
            self.rnn.cell, self.params, self.state1, self.state2, self.initial, self.x, self.y,
            order, self.loss, self.every_step, self.batch_size, settings, steps_before,
            clip_mode, clip, n_threads)


def recurrent_history(trainee: RecurrentTrainee, records: dict[str, list],
                      first_nonfinite: int | None, config: dict[str, Any],
                      histogram_ranges: list[float]) -> RecurrentTrainingHistory:
    """The records of every epoch as one :class:`RecurrentTrainingHistory`."""
    return RecurrentTrainingHistory(
        **_history_fields(records, trainee.val is not None, first_nonfinite, config,
                          histogram_ranges),
        last_grad_norm=np.vstack(records["last_grad_norm"]),
        last_log_grad_norm=np.vstack(records["last_log_grad_norm"]),
        parameter_names=parameter_names(trainee.rnn.cell),
        readout_weight=trainee.V,
        readout_bias=trainee.c,
    )
