"""Figures 9 and 10: watching a chain train, and float16 gradients vs depth.

Both run in seconds, so they are not cached; ``cache``, ``n_jobs`` and ``progress`` are
accepted for the same call signature as the other figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._figure_common import FigureInfo, _e, _plt
from .chain import Chain
from .datasets import load_digits
from .train import train

# The three nets of the seeds' "how modern nets solve it": the same depth and widths,
# nine hidden layers and a linear 10-unit readout (the logits of the ten classes; a
# squashing output layer would put a floor under the loss that is not the gradient's
# doing). The residual net skips its hidden layers; the readout changes the width and
# is plain.
TRAINING_NETS = (
    ("sigmoid, xavier init", dict(activation="sigmoid", init="xavier"), "tab:red"),
    ("ReLU, He init", dict(activation="relu", init="he"), "tab:blue"),
    ("ReLU, residual (branch x 0.5), He init",
     dict(activation="relu", init="he", residual=True, residual_scale=0.5), "tab:green"),
)
N_CLASSES = 10


def training_net(depth: int, width: int, kwargs: dict, dtype: str = "float64") -> Chain:
    """A figure-9 net: ``depth - 1`` hidden layers of ``width`` and a linear readout."""
    hidden = kwargs["activation"]
    options = {k: v for k, v in kwargs.items() if k != "activation"}
    return Chain(depth, [width] * depth + [N_CLASSES],
                 activation=[hidden] * (depth - 1) + ["linear"], seed=0, dtype=dtype,
                 **options)


def fig9_training(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                  progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 9: which layers learn, for a deep sigmoid net vs ReLU + He vs residual.

    Trains three 10-layer nets (nine 64-wide hidden layers, a linear 10-unit readout) on
    the handwritten digits (synthetic stand-in without scikit-learn) with the same SGD
    settings, in float64 so that the sigmoid net's smallest weight changes are not
    rounded away.

    Parameters
    ----------
    quick : bool, default False
        Fewer epochs.
    cache, n_jobs, progress
        Accepted for the common signature; nothing here is cached.

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
    """
    depth, width, epochs, lr, batch = 10, 64, (8 if quick else 30), 0.1, 32
    data = load_digits(dtype="float64")
    histories = []
    for _, kwargs, _ in TRAINING_NETS:
        net = training_net(depth, width, kwargs)
        histories.append(train(net, data.x_train, data.y_train, epochs=epochs, lr=lr,
                               batch_size=batch, validation=(data.x_test, data.y_test),
                               progress=False))
    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained")
    layers = np.arange(1, depth + 1)
    for (label, _, color), h in zip(TRAINING_NETS, histories):
        ax1.semilogy(layers, h.weight_change[-1], "o-", color=color, label=label)
        ax1.semilogy(layers, h.weight_change[1], ":", color=color)
        ax2.semilogy(np.arange(1, epochs + 1), h.weight_change[1:, 0], "-", color=color,
                     label=f"{label}: layer 1")
        ax2.semilogy(np.arange(1, epochs + 1), h.weight_change[1:, -2], "--", color=color,
                     label=f"{label}: layer {depth - 1}")
        ax3.plot(np.arange(epochs + 1), h.loss, "-", color=color, label=f"{label} (train)")
        if h.val_loss is not None:
            ax3.plot(np.arange(epochs + 1), h.val_loss, ":", color=color)
    chance = float(np.log(N_CLASSES))
    ax3.axhline(chance, color="0.4", lw=0.8, ls="--")
    ax3.annotate(f"chance: ln {N_CLASSES} = {chance:.2f}", (0, chance),
                 textcoords="offset points", xytext=(4, 4), fontsize="small", color="0.3")
    ax1.set_xlabel(f"layer l ({depth} = the linear readout)")
    ax1.set_ylabel(r"$\|W_l(t) - W_l(0)\| \,/\, \|W_l(0)\|$")
    ax1.set_title(f"how far each layer moved (dotted: epoch 1, solid: epoch {epochs})")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("relative weight change")
    ax2.set_title("first vs last hidden layer over training")
    ax2.legend(fontsize=7)
    ax3.set_xlabel("epoch")
    ax3.set_ylabel("cross-entropy loss (dotted: held-out)")
    ax3.set_yscale("log")
    ax3.set_title(f"loss on the {'digits' if 'sklearn' in data.source else 'synthetic digits'}")
    ax3.legend(fontsize=8)
    rows = []
    for (label, _, _), h in zip(TRAINING_NETS, histories):
        first, last = h.weight_change[-1, 0], h.weight_change[-1, -2]
        rows.append([label, _e(first), _e(last), _e(last / first if first > 0 else np.inf),
                     _e(h.weight_grad_norm[0, 0]), _e(h.weight_grad_norm[0, -2]),
                     _e(h.loss[-1]), f"{h.val_accuracy[-1]:.3f}"])
    info = FigureInfo(
        "fig9_training", "Training a deep net: which layers learn",
        f"Three {depth}-layer nets ({depth - 1} hidden layers of {width} units and a linear "
        f"{N_CLASSES}-unit readout) trained by the same SGD (lr {lr}, batch {batch}, "
        f"{epochs} epochs) on {data.source} ({len(data.y_train)} training images). "
        + _fig9_claims([label for label, _, _ in TRAINING_NETS], histories, depth, chance),
        ["net", "layer-1 change", f"layer-{depth - 1} change", "ratio",
         "||dL/dW_1|| (epoch 1)", f"||dL/dW_{depth - 1}|| (epoch 1)", "final train loss",
         "held-out accuracy"], rows)
    return fig, info


def _fig9_claims(labels: list[str], histories: list, depth: int, chance: float) -> str:
    """Figure 9's statements, from the measured histories."""
    out = []
    for label, h in zip(labels, histories):
        first, last = float(h.weight_change[-1, 0]), float(h.weight_change[-1, -2])
        g1, g9 = float(h.weight_grad_norm[0, 0]), float(h.weight_grad_norm[0, -2])
        loss, acc = float(h.loss[-1]), float(h.val_accuracy[-1])
        text = (f"{label}: layer 1 moved {_e(first)} of its initial size, layer "
                f"{depth - 1} {_e(last)}")
        if first > 0 and last / first > 10:
            text += (f" ({_e(last / first)}x more: the first layers barely move, their "
                     f"gradient at the start {_e(g9 / g1)}x smaller than layer "
                     f"{depth - 1}'s)")
        if loss > 0.9 * chance:
            text += f"; its training loss {_e(loss)} stays near chance"
        else:
            text += f"; training loss {_e(h.loss[0])} -> {_e(loss)}"
        text += f", held-out accuracy {acc:.3f}"
        out.append(text)
    return ". ".join(out) + "."


# The cases of figure 10: label, backprop keyword arguments, colour, line style.
PRECISION_CASES = (
    ("float32", dict(grad_dtype="float32"), "black", "-"),
    ("float16", dict(grad_dtype="float16"), "tab:red", "-"),
    ("float16, loss scale 2^16", dict(grad_dtype="float16", loss_scale=2.0**16), "tab:orange",
     "--"),
    ("bfloat16", dict(grad_dtype="bfloat16"), "tab:blue", ":"),
)


def fig10_mixed_precision(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                          progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 10: gradient entries flushed to zero vs depth in float16 and bfloat16.

    A tanh chain in the ordered phase (``sigma_w^2 = 0.5``), whose gradient decays
    geometrically with depth, backpropagates a cross-entropy gradient with every
    propagated gradient stored in float32, float16, float16 with loss scaling, and
    bfloat16.

    Parameters
    ----------
    quick : bool, default False
        A narrower chain and a smaller batch.
    cache, n_jobs, progress
        Accepted for the common signature; nothing here is cached.

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
    """
    depth, width, batch = (60, 128, 32) if quick else (60, 512, 128)
    net = Chain(depth, width, activation="tanh", init="gaussian", gain=np.sqrt(0.5), seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, width)).astype(np.float32)
    labels = rng.integers(0, width, size=batch)
    results = [net.backprop(x, loss="cross_entropy", target=labels, **kw)
               for _, kw, _, _ in PRECISION_CASES]
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    layers = np.arange(depth + 1)
    for (label, _, color, style), r in zip(PRECISION_CASES, results):
        ax1.plot(layers, r.zero_fraction, style, color=color, label=label, lw=2)
        norms = np.where(r.grad_norm > 0, r.grad_norm, np.nan)
        ax2.semilogy(layers, norms, style, color=color, label=label, lw=2)
    ax1.set_xlabel(f"layer l (0 = input; the gradient flows from l = {depth} down to 0)")
    ax1.set_ylabel(r"fraction of $dL/dh_l$ entries that are zero")
    ax1.set_title("float16 flushes vanishing gradients to zero")
    ax1.legend(fontsize=9)
    ax2.set_xlabel("layer l (0 = input)")
    ax2.set_ylabel(r"$\|dL/dh_l\|$ (unscaled; missing where exactly 0)")
    ax2.set_title("loss scaling shifts the cliff; bfloat16 keeps float32's range")
    ax2.axhline(2.0**-24 * np.sqrt(batch * width), color="gray", lw=0.8, ls=":")
    ax2.legend(fontsize=9)
    rows = []
    reference = results[0].grad_norm  # float32 storage
    for (label, _, _, _), r in zip(PRECISION_CASES, results):
        zero = np.nonzero(r.zero_fraction >= 0.5)[0]
        half = int(zero.max()) if zero.size else None
        rows.append([label, "none" if half is None else str(half),
                     _e(r.zero_fraction[0]), str(int(r.underflow_count.sum())),
                     str(int(r.overflow_count.sum())), _e(r.grad_norm[0]),
                     _e(r.grad_norm[0] / reference[0])])
    info = FigureInfo(
        "fig10_mixed_precision", "Mixed precision: float16 underflow vs depth",
        f"A {depth}-layer, {width}-wide tanh chain in the ordered phase "
        f"(sigma_w^2 = 0.5) backpropagates a cross-entropy gradient over a batch of "
        f"{batch}; every propagated gradient is rounded to the storage format. float16's "
        f"smallest subnormal is 2^-24 = 6e-8 (dotted line: a gradient whose every entry "
        f"sits there). " + _fig10_claims(results, batch * width, depth),
        ["storage", "cliff: max l with >= 50% zeros", "zero fraction at layer 0",
         "entries flushed (all layers)", "overflows", "||dL/dh_0||", "/ float32's"], rows)
    return fig, info


def _fig10_claims(results: list, entries: int, depth: int) -> str:
    """Where each format loses the gradient, and why a norm is off where it is."""
    ref = results[0]
    out = []
    for (label, kw, _, _), r in zip(PRECISION_CASES[1:], results[1:]):
        zero = np.nonzero(r.zero_fraction >= 0.5)[0]
        if zero.size:
            text = (f"{label}: half or more of the entries are zero from layer "
                    f"{int(zero.max())} down to 0")
        else:
            text = f"{label}: fewer than half of the entries are zero at every layer"
        ratio = float(r.grad_norm[0] / ref.grad_norm[0]) if ref.grad_norm[0] > 0 else np.nan
        if r.grad_norm[0] > 0 and np.isfinite(ratio) and abs(np.log(ratio)) > np.log(1.1):
            # The stored entries' typical size, in float16's subnormal steps.
            rms = ref.grad_norm[0] * kw.get("loss_scale", 1.0) / np.sqrt(entries)
            text += (f"; at layer 0 its ||dL/dh_0|| is {ratio:.3g}x float32's: the "
                     f"{'scaled ' if kw.get('loss_scale', 1.0) != 1.0 else ''}entries, "
                     f"{rms / 2.0**-24:.2g} of float16's smallest step 2^-24 on average, "
                     f"round to 0 ({100 * r.zero_fraction[0]:.0f}% of them) or to whole "
                     f"steps, an error as large as the entries themselves: the difference "
                     f"is rounding, not a larger gradient")
        out.append(text)
    return ". ".join(out) + "."
