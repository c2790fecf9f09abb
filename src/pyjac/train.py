"""Watch a chain train: minibatch SGD, Adam or AdamW in the C++ core, recorded per epoch
and per layer."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core
from ._progress import Progress
from ._validation import (
    as_float_array,
    check_bool,
    check_choice,
    check_int,
    check_real,
    check_seed,
    check_threads,
)
from .chain import Chain, _grad_dtype
from .recurrent import Recurrent

TRAIN_LOSSES = ("cross_entropy", "mse")
CLIP_MODES = ("norm", "value")
OPTIMIZERS = ("sgd", "adam", "adamw")
# torch.optim's defaults, except SGD's learning rate (torch has none; 0.1 suits the
# small nets pyjac trains).
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "adam": 0.0, "adamw": 1e-2}


def _optimizer_settings(optimizer: Any, lr: Any, momentum: Any, nesterov: Any,
                        weight_decay: Any, betas: Any, eps: Any) -> dict[str, Any]:
    """The optimiser's checked settings, each error naming its argument; None picks
    torch.optim's default for the chosen optimiser."""
    name = check_choice(optimizer, OPTIMIZERS, "optimizer")
    lr = check_real(DEFAULT_LR[name] if lr is None else lr, "lr", positive=True)
    momentum = check_real(momentum, "momentum", nonneg=True)
    if momentum >= 1:
        raise ValueError(f"momentum: must lie in [0, 1), got {momentum}")
    nesterov = check_bool(nesterov, "nesterov")
    if name != "sgd" and (momentum != 0 or nesterov):
        raise ValueError(f"momentum: only for optimizer='sgd'; {name} uses betas")
    if nesterov and momentum == 0:
        raise ValueError("nesterov: needs a momentum above 0")
    weight_decay = check_real(DEFAULT_WEIGHT_DECAY[name] if weight_decay is None
                              else weight_decay, "weight_decay", nonneg=True)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
    beta1, beta2 = (check_real(b, f"betas[{i}]") for i, b in enumerate(betas))
    for i, b in enumerate((beta1, beta2)):
        if not 0 <= b < 1:
            raise ValueError(f"betas[{i}]: must lie in [0, 1), got {b}")
    eps = check_real(eps, "eps", nonneg=True)
    return dict(optimizer=name, lr=lr, momentum=momentum, nesterov=nesterov,
                weight_decay=weight_decay, beta1=beta1, beta2=beta2, eps=eps)


def _optimizer_state(param_lists: list[list[np.ndarray]],
                     settings: dict[str, Any]) -> list[list[np.ndarray]]:
    """Zero-filled state for each list of parameters: first every list's state1 (SGD's
    velocity with momentum, Adam's first moment), then every list's state2 (Adam's second
    moment); a list of states the optimiser does not keep is empty."""
    arrays = 2 if settings["optimizer"] != "sgd" else (1 if settings["momentum"] > 0 else 0)
    return [[np.zeros_like(p) for p in params] if k < arrays else []
            for k in range(2) for params in param_lists]


@dataclass(frozen=True)
class TrainingHistory:
    """What :func:`train` recorded. Row ``t`` of a per-epoch array is after epoch ``t``.

    Attributes
    ----------
    loss, accuracy : ndarray, shape (epochs+1,)
        Row 0: on the whole training set before training. Row ``t``: the mean over
        epoch ``t``'s minibatches, each as it was before its update (how Keras and most
        training loops report it: free, but a mix of the epoch's weights). For the
        exact training loss after every epoch, pass the training set as ``validation``.
    val_loss, val_accuracy : ndarray, shape (epochs+1,), or None
        On ``validation`` (forward passes only), before training and after every epoch.
    weight_grad_norm : ndarray, shape (epochs, depth)
        Mean over the epoch's steps of ``||dL/dW_l||`` (before clipping).
    grad_norm : ndarray, shape (epochs, depth+1)
        Mean over the epoch's steps of ``||dL/dh_l||``.
    weight_change : ndarray, shape (epochs+1, depth)
        ``||W_l(t) - W_l(0)|| / ||W_l(0)||``: how far each layer has moved.
    step_loss : ndarray, shape (steps,)
        Minibatch loss before each update.
    step_grad_norm, step_clipped_grad_norm : ndarray, shape (steps,)
        Global gradient norm (every weight and bias) before and after clipping.
    clipped_fraction : ndarray, shape (epochs,)
        Share of the epoch's steps that clipping changed.
    skipped_steps : ndarray of int, shape (epochs,)
        Steps whose 16-bit gradient (``grad_dtype``) overflowed: their update was
        skipped, as PyTorch's GradScaler does (the loss scale stays fixed here).
    log_grad_norm, log_weight_grad_norm : ndarray, shape (epochs, depth+1) and (epochs, depth)
        Mean over the epoch's steps of the natural logs of ``||dL/dh_l||`` and
        ``||dL/dW_l||`` (the log of their geometric mean): finite where the plain norms
        of a deep net underflow float64 and read 0. ``-inf`` where a step's gradient was
        exactly zero.
    gradient_noise_scale, gradient_snr : ndarray, shape (epochs, depth), or None
        Mean over the epoch's steps of each minibatch's gradient noise scale
        ``B_simple`` and signal-to-noise ratio per layer (see
        :class:`pyjac.BackpropResult`), over the steps where they are finite (NaN when
        none is). From the per-example gradient norms the backward pass forms anyway.
        None for batchnorm chains and recurrent nets.
    weight_histogram : ndarray of int32, shape (epochs+1, depth, weight_bins), or None
        Counts of each layer's weights on bins fixed for the whole run: row 0 before
        training, row ``t`` after epoch ``t``. Layers whose histogram does not move are
        layers the gradient does not reach. None with ``weight_bins=None``.
    weight_histogram_edges : ndarray, shape (depth, weight_bins+1), or None
        Layer ``l``'s bin edges: ``weight_bins`` even bins over ``[-r_l, r_l]``, ``r_l``
        twice the largest ``|W_l(0)|`` entry.
    weight_histogram_outside : ndarray of int32, shape (epochs+1, depth, 2), or None
        Weights below ``-r_l`` and above ``r_l`` (NaN weights are counted nowhere).
    first_nonfinite_step : int or None
        The first step whose loss or gradient was NaN/Inf. Training goes on; without
        ``grad_dtype`` the non-finite update is applied (a diverging run is data).
    steps_per_epoch : int
    config : dict
        The arguments the run used.
    """

    loss: np.ndarray
    accuracy: np.ndarray
    val_loss: np.ndarray | None
    val_accuracy: np.ndarray | None
    weight_grad_norm: np.ndarray
    grad_norm: np.ndarray
    weight_change: np.ndarray
    step_loss: np.ndarray = field(repr=False)
    step_grad_norm: np.ndarray = field(repr=False)
    step_clipped_grad_norm: np.ndarray = field(repr=False)
    clipped_fraction: np.ndarray = field(repr=False)
    skipped_steps: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, int))
    log_grad_norm: np.ndarray | None = field(repr=False, default=None)
    log_weight_grad_norm: np.ndarray | None = field(repr=False, default=None)
    gradient_noise_scale: np.ndarray | None = field(repr=False, default=None)
    gradient_snr: np.ndarray | None = field(repr=False, default=None)
    weight_histogram: np.ndarray | None = field(repr=False, default=None)
    weight_histogram_edges: np.ndarray | None = field(repr=False, default=None)
    weight_histogram_outside: np.ndarray | None = field(repr=False, default=None)
    first_nonfinite_step: int | None = None
    steps_per_epoch: int = 0
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def epochs(self) -> int:
        return int(self.weight_change.shape[0] - 1)

    @property
    def depth(self) -> int:
        return int(self.weight_change.shape[1])

    def __repr__(self) -> str:
        val = ""
        if self.val_accuracy is not None:
            val = f", val_accuracy {self.val_accuracy[0]:.3f} -> {self.val_accuracy[-1]:.3f}"
        return (
            f"TrainingHistory(epochs={self.epochs}, depth={self.depth}, "
            f"loss {self.loss[0]:.4g} -> {self.loss[-1]:.4g}, "
            f"accuracy {self.accuracy[0]:.3f} -> {self.accuracy[-1]:.3f}{val}, "
            f"weight_change first/last layer {self.weight_change[-1, 0]:.3g}/"
            f"{self.weight_change[-1, -1]:.3g})"
        )


def _targets(chain: Chain, loss: str, y: Any, n: int, name: str) -> np.ndarray:
    """Labels for cross_entropy; values for mse (integer labels become one-hot rows)."""
    arr = np.asarray(y)
    if loss == "mse" and arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
        n_out = chain.widths[-1]
        if arr.size and (arr.min() < 0 or arr.max() >= n_out):
            raise ValueError(
                f"{name}: labels must lie in [0, {n_out}), got {arr.min()}..{arr.max()}"
            )
        arr = np.eye(n_out, dtype=chain.dtype)[arr]
    try:
        return chain._target(loss, arr, n, single=False)
    except (ValueError, TypeError) as exc:
        raise type(exc)(str(exc).replace("target:", f"{name}:", 1)) from None


def _inputs(chain: Chain, x: Any, name: str) -> np.ndarray:
    arr = as_float_array(x, name, chain.dtype)
    if arr.ndim != 2 or arr.shape[1] != chain.widths[0] or arr.shape[0] < 1:
        raise ValueError(f"{name}: expected shape (n, {chain.widths[0]}), got {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or Inf")
    return arr


def _writable(a: Any, dtype: np.dtype) -> bool:
    """Whether the core can update ``a`` in place: a writable C-contiguous array of
    ``dtype``."""
    return (isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous
            and a.flags.writeable)


def _parameters_writable(chain: Chain) -> None:
    """The optimiser writes into the chain's arrays: make each one writable in place."""
    for params in (chain.weights, chain.biases):
        for i, a in enumerate(params):
            if not _writable(a, chain.dtype):
                params[i] = np.array(a, dtype=chain.dtype, order="C")


class _ChainTrainee:
    """What the epoch loop needs of a chain: its data, one epoch in the core, evaluation
    and the arrays whose histograms are recorded."""

    def __init__(self, chain: Chain, x: Any, y: Any, loss: str, validation: Any,
                 batch_size: int, grad_format: str, loss_scale: float) -> None:
        self.chain, self.loss = chain, loss
        self.x = _inputs(chain, x, "x")
        self.y = _targets(chain, loss, y, self.x.shape[0], "y")
        self.val = None
        if validation is not None:
            xv = _inputs(chain, validation[0], "validation[0]")
            self.val = (xv, _targets(chain, loss, validation[1], xv.shape[0], "validation[1]"))
        if chain.norm == "batchnorm" and min(batch_size, self.x.shape[0]) < 2:
            raise ValueError("batch_size: norm='batchnorm' needs minibatches of at least 2")
        self.batch_size, self.grad_format, self.loss_scale = batch_size, grad_format, loss_scale
        self.groups = chain.depth

    def start(self, settings: dict[str, Any]) -> None:
        """Owned writable parameters, W(0) and the optimiser's zero state."""
        _parameters_writable(self.chain)
        self.initial = [w.copy() for w in self.chain.weights]
        self.state = _optimizer_state([self.chain.weights, self.chain.biases], settings)
        self.structure = (self.chain.activations, self.chain.residual,
                          self.chain.residual_scale, self.chain.norm or "none")

    def histogram_arrays(self) -> list[np.ndarray]:
        return self.chain.weights

    def evaluate(self, data: tuple[np.ndarray, np.ndarray], n_threads: int) -> tuple[float, float]:
        return _core.evaluate(self.chain.weights, self.chain.biases, *self.structure, data[0],
                              data[1], self.loss, n_threads)

    def epoch(self, order: np.ndarray, settings: dict[str, Any], steps_before: int,
              clip_mode: str, clip: float, n_threads: int) -> dict[str, Any]:
        grad = "native" if self.grad_format == "none" else self.grad_format
        return _core.train_epoch(
            self.chain.weights, self.chain.biases, self.state, self.initial, *self.structure,
            self.x, self.y, order, self.loss, self.batch_size, optimizer=settings,
            steps_before=steps_before, clip_mode=clip_mode, clip=clip, grad_dtype=grad,
            loss_scale=self.loss_scale, n_threads=n_threads)


def train(
    model: Chain | Recurrent,
    x: Any,
    y: Any,
    epochs: int = 10,
    lr: float | None = None,
    batch_size: int = 32,
    *,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    clip: float | None = None,
    clip_mode: str = "norm",
    loss: str = "cross_entropy",
    predict: str = "last",
    readout: tuple[Any, Any] | None = None,
    validation: tuple[Any, Any] | None = None,
    weight_bins: int | None = 32,
    shuffle: bool = True,
    seed: int = 0,
    grad_dtype: Any = None,
    loss_scale: float = 1.0,
    n_threads: int | None = None,
    progress: bool | None = None,
) -> TrainingHistory:
    """Train a chain, or a recurrent net with a linear readout, in place by minibatch
    SGD, Adam or AdamW, recording how every layer (or gate) learns.

    Each step is one exact forward and backward pass in the C++ core (backprop through
    time for a :class:`Recurrent`), then optional clipping, then the optimiser's update of
    every weight and bias, as ``torch.optim`` defines it (checked step by step against
    it). Only the loop over epochs runs in Python.

    Parameters
    ----------
    model : Chain or Recurrent
        Updated in place (``chain.weights`` and ``chain.biases``; ``rnn.W``, ``rnn.U``
        and ``rnn.b``). A recurrent net is trained with a linear readout ``y = V h + c``
        of its state, returned in the history (``readout_weight``, ``readout_bias``).
    x : array_like
        Chain: shape (n, widths[0]). Recurrent: sequences, shape (n, steps,
        input_size), batch first (see :func:`pyjac.adding_problem`,
        :func:`pyjac.copy_problem`).
    y : array_like
        Integer class labels, shape (n,), for "cross_entropy"; targets of shape
        (n, n_out) for "mse" (a chain one-hot encodes integer labels). With
        ``predict="every_step"``, one per step: labels (n, steps), targets
        (n, steps, n_out).
    epochs : int, default 10
    lr : float, optional
        The learning rate; default 0.1 for SGD, 1e-3 (PyTorch's) for Adam and AdamW.
    batch_size : int, default 32
        The last minibatch of an epoch is smaller when ``n`` is not a multiple.
    optimizer : {"sgd", "adam", "adamw"}, default "sgd"
        ``torch.optim.SGD``: ``g += weight_decay * W; v = momentum * v + g;
        W -= lr * v`` (``nesterov``: ``W -= lr * (g + momentum * v)``).
        ``torch.optim.Adam``: ``g += weight_decay * W``, then the moments
        ``m = beta1 m + (1 - beta1) g``, ``s = beta2 s + (1 - beta2) g^2`` and
        ``W -= lr / (1 - beta1^t) * m / (sqrt(s / (1 - beta2^t)) + eps)``.
        ``torch.optim.AdamW``: as Adam, but ``W *= 1 - lr * weight_decay`` instead of
        adding to ``g``. The step count ``t`` runs over the whole run (skipped steps
        excluded).
    momentum : float, default 0
        SGD only; in [0, 1).
    nesterov : bool, default False
        SGD only: Nesterov momentum (needs ``momentum > 0``).
    weight_decay : float, optional
        Default 0, and 0.01 for AdamW (PyTorch's defaults). Applies to every weight and
        bias, as a parameter group of all of them does in PyTorch.
    betas : (float, float), default (0.9, 0.999)
        Adam and AdamW: the moments' decay rates, each in [0, 1).
    eps : float, default 1e-8
        Adam and AdamW: added to the denominator, outside the square root.
    clip : float, optional
        Gradient clipping bound: the global norm over every weight and bias
        (``clip_mode="norm"``, as ``torch.nn.utils.clip_grad_norm_``) or each entry
        (``"value"``, as ``clip_grad_value_``). The norms before and after are logged.
    loss : {"cross_entropy", "mse"}
        The mean over examples (cross_entropy) or over every entry (mse), as PyTorch's
        defaults; with ``predict="every_step"`` over every step too.
    predict : {"last", "every_step"}, default "last"
        Recurrent nets: the readout predicts from the last state (the adding problem)
        or from every state (the copy problem).
    readout : (V, c), optional
        Recurrent nets: the readout's weight (n_out, width) and bias (n_out,), updated in
        place when they are writable arrays of the net's dtype. By default they are
        drawn as PyTorch's ``nn.Linear`` draws them, from ``seed``, with ``n_out`` from
        ``y`` (the largest label + 1, or the targets' last axis).
    validation : (x_val, y_val), optional
        Evaluated before training and after every epoch.
    weight_bins : int or None, default 32
        Bins of the per-layer weight histograms recorded before training and after
        every epoch (``weight_histogram``; plot them with
        :func:`pyjac.plot.weight_histograms`). None records none.
    shuffle : bool, default True
        A fresh seeded permutation of the examples every epoch.
    seed : int, None or numpy.random.Generator, default 0
        Seeds the shuffling (and a recurrent net's readout): same seed, same run,
        whatever the thread count.
    grad_dtype, loss_scale
        Chains: mixed-precision emulation of every backward pass, as in
        :meth:`Chain.backprop`.
    n_threads : int, optional
        None or -1 for every core.
    progress : bool, optional
        A progress bar over epochs (None: when stderr is a terminal).

    Returns
    -------
    TrainingHistory or RecurrentTrainingHistory
        Diverging runs are data: NaN losses are recorded, ``first_nonfinite_step``
        says where they began.

    Examples
    --------
    >>> import pyjac
    >>> data = pyjac.load_digits()
    >>> net = pyjac.Chain(4, [64, 64, 64, 64, 10], activation="relu", init="he")
    >>> h = pyjac.train(net, data.x_train, data.y_train, epochs=3, lr=0.05)
    >>> bool(h.loss[-1] < h.loss[0])
    True
    """
    from ._train_recurrent import RecurrentTrainee, recurrent_history

    if not isinstance(model, (Chain, Recurrent)):
        raise TypeError(f"model: expected a pyjac.Chain or pyjac.Recurrent, got "
                        f"{type(model).__name__}")
    epochs = check_int(epochs, "epochs", minimum=1)
    settings = _optimizer_settings(optimizer, lr, momentum, nesterov, weight_decay, betas, eps)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    clip_value = 0.0 if clip is None else check_real(clip, "clip", positive=True)
    clip_mode = "none" if clip is None else check_choice(clip_mode, CLIP_MODES, "clip_mode")
    loss = check_choice(loss, TRAIN_LOSSES, "loss")
    seed = check_seed(seed, maximum=2**63 - 1)
    loss_scale = check_real(loss_scale, "loss_scale", positive=True)
    shuffle = check_bool(shuffle, "shuffle")
    n_threads = check_threads(n_threads)
    if validation is not None and (not isinstance(validation, (tuple, list))
                                   or len(validation) != 2):
        raise TypeError("validation: expected a pair (x_val, y_val)")
    if weight_bins is not None:
        weight_bins = check_int(weight_bins, "weight_bins", minimum=1, maximum=100_000)
    trainee: Any
    if isinstance(model, Chain):
        model._require_stored("model")
        if predict != "last" or readout is not None:
            raise ValueError("predict, readout: only for a pyjac.Recurrent (a chain's last "
                             "layer is its output)")
        trainee = _ChainTrainee(model, x, y, loss, validation, batch_size,
                                _grad_dtype(grad_dtype, model.dtype), loss_scale)
    else:
        if grad_dtype is not None or loss_scale != 1.0:
            raise ValueError("grad_dtype, loss_scale: mixed-precision emulation is for chains")
        trainee = RecurrentTrainee(model, x, y, loss, predict, readout, validation, batch_size,
                                   seed)
    trainee.start(settings)
    records, first_nonfinite, ranges = _run_epochs(
        trainee, epochs, settings, clip_mode, clip_value, shuffle, seed, weight_bins,
        n_threads, progress)
    config = dict(epochs=epochs, batch_size=batch_size, **settings, weight_bins=weight_bins,
                  clip=clip, clip_mode=clip_mode if clip is not None else None, loss=loss,
                  shuffle=shuffle, seed=seed)
    if isinstance(model, Chain):
        grad_format = trainee.grad_format
        config.update(grad_dtype=None if grad_format == "none" else grad_format,
                      loss_scale=loss_scale)
        return TrainingHistory(**_history_fields(records, trainee.val is not None,
                                                 first_nonfinite, config, ranges))
    config.update(predict=trainee.predict)
    return recurrent_history(trainee, records, first_nonfinite, config, ranges)


def _run_epochs(trainee: Any, epochs: int, settings: dict[str, Any], clip_mode: str,
                clip: float, shuffle: bool, seed: int, weight_bins: int | None, n_threads: int,
                progress: bool | None) -> tuple[dict[str, list], int | None, list[float]]:
    """The loop over epochs: one core call per epoch, the records before training and
    after every epoch (loss, validation, weight histograms)."""
    records: dict[str, list] = {k: [] for k in (
        "loss", "accuracy", "val_loss", "val_accuracy", "weight_grad_norm", "grad_norm",
        "weight_change", "step_loss", "step_grad_norm", "step_clipped", "clipped_fraction",
        "skipped_steps", "weight_histogram", "weight_histogram_outside", "last_grad_norm",
        "last_log_grad_norm", "log_grad_norm", "log_weight_grad_norm",
        "gradient_noise_scale", "gradient_snr")}
    histogram_ranges: list[float] = []  # fixed by the first call: the initial weights'

    def record_histograms() -> None:
        if weight_bins is not None:
            r = _core.weight_histograms(trainee.histogram_arrays(), histogram_ranges,
                                        weight_bins, n_threads)
            histogram_ranges[:] = r["ranges"].tolist()
            records["weight_histogram"].append(r["counts"])
            records["weight_histogram_outside"].append(r["outside"])

    def record_validation() -> None:
        if trainee.val is not None:
            vl, va = trainee.evaluate(trainee.val, n_threads)
            records["val_loss"].append(vl)
            records["val_accuracy"].append(va)

    initial_loss, initial_accuracy = trainee.evaluate((trainee.x, trainee.y), n_threads)
    records["loss"].append(initial_loss)
    records["accuracy"].append(initial_accuracy)
    record_validation()
    record_histograms()
    records["weight_change"].append(np.zeros(trainee.groups))
    rng = np.random.default_rng(seed)
    n = trainee.x.shape[0]
    first_nonfinite, steps_applied = None, 0
    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = Progress(epochs, "train", show, unit="epoch")
    try:
        for _ in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            raw = trainee.epoch(order, settings, steps_applied, clip_mode, clip, n_threads)
            steps_applied += raw["applied_steps"]
            steps_done = sum(len(s) for s in records["step_loss"])
            if first_nonfinite is None and raw["first_nonfinite_step"] is not None:
                first_nonfinite = steps_done + raw["first_nonfinite_step"]
            _record_epoch(records, raw, clipping=clip_mode != "none")
            record_validation()
            record_histograms()
            bar.update()
    finally:
        bar.close()
    return records, first_nonfinite, histogram_ranges


def _record_epoch(records: dict[str, list], raw: dict[str, Any], clipping: bool) -> None:
    """Appends one epoch of the core's records (every step's and the epoch's)."""
    records["step_loss"].append(raw["step_loss"])
    records["step_grad_norm"].append(raw["step_grad_norm"])
    records["step_clipped"].append(raw["step_clipped_norm"])
    records["clipped_fraction"].append(
        float(np.mean(raw["step_clipped_norm"] < raw["step_grad_norm"]))
        if clipping and raw["step_grad_norm"].size else 0.0
    )
    records["skipped_steps"].append(raw["skipped_steps"])
    records["weight_grad_norm"].append(raw["weight_grad_norm"])
    records["grad_norm"].append(raw["grad_norm"])
    records["weight_change"].append(raw["weight_change"])
    records["loss"].append(raw["mean_loss"])
    records["accuracy"].append(raw["accuracy"])
    for key in ("log_grad_norm", "log_weight_grad_norm", "last_grad_norm",
                "last_log_grad_norm", "gradient_noise_scale",
                "gradient_snr"):  # all but the first not for every kind of net
        if key in raw:
            records[key].append(raw[key])


def _stacked_counts(counts: list[np.ndarray]) -> np.ndarray:
    """Histogram counts stacked over epochs, as int32 when every count fits."""
    stacked = np.stack(counts)
    return stacked.astype(np.int32) if stacked.max(initial=0) < 2**31 else stacked


def _history_fields(records: dict[str, list], validated: bool, first_nonfinite: int | None,
                    config: dict[str, Any], histogram_ranges: list[float]) -> dict[str, Any]:
    """The records of every epoch as the fields of a :class:`TrainingHistory`."""
    histograms = {}
    if records["weight_histogram"]:
        bins = records["weight_histogram"][0].shape[1]
        r = np.asarray(histogram_ranges)[:, None]
        histograms = dict(
            weight_histogram=_stacked_counts(records["weight_histogram"]),
            weight_histogram_edges=r * np.linspace(-1.0, 1.0, bins + 1)[None, :],
            weight_histogram_outside=_stacked_counts(records["weight_histogram_outside"]))
    return dict(
        loss=np.asarray(records["loss"]),
        accuracy=np.asarray(records["accuracy"]),
        val_loss=np.asarray(records["val_loss"]) if validated else None,
        val_accuracy=np.asarray(records["val_accuracy"]) if validated else None,
        weight_grad_norm=np.vstack(records["weight_grad_norm"]),
        grad_norm=np.vstack(records["grad_norm"]),
        weight_change=np.vstack(records["weight_change"]),
        step_loss=np.concatenate(records["step_loss"]),
        step_grad_norm=np.concatenate(records["step_grad_norm"]),
        step_clipped_grad_norm=np.concatenate(records["step_clipped"]),
        clipped_fraction=np.asarray(records["clipped_fraction"]),
        skipped_steps=np.asarray(records["skipped_steps"], dtype=np.int64),
        **histograms,
        log_grad_norm=np.vstack(records["log_grad_norm"]),
        log_weight_grad_norm=(np.vstack(records["log_weight_grad_norm"])
                              if records["log_weight_grad_norm"] else None),
        gradient_noise_scale=(np.vstack(records["gradient_noise_scale"])
                              if records["gradient_noise_scale"] else None),
        gradient_snr=(np.vstack(records["gradient_snr"]) if records["gradient_snr"] else None),
        first_nonfinite_step=first_nonfinite,
        steps_per_epoch=len(records["step_loss"][0]),
        config=config,
    )
