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

# The three nets of the seeds' "how modern nets solve it": same depth and width.
TRAINING_NETS = (
    ("sigmoid, xavier init", dict(activation="sigmoid", init="xavier"), "tab:red"),
    ("ReLU, He init", dict(activation="relu", init="he"), "tab:blue"),
    ("ReLU, residual + layernorm", dict(activation="relu", init="he", residual=True,
                                        norm="layernorm", residual_scale=0.5), "tab:green"),
)


def fig9_training(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                  progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 9: which layers learn, for a deep sigmoid net vs ReLU + He vs residual.

    Trains three 10-layer, 64-wide chains (64 logits, labels 0..9) on the handwritten
    digits (synthetic stand-in without scikit-learn) with the same SGD settings, in
    float64 so that the sigmoid net's smallest weight changes are not rounded away.

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
        net = Chain(depth, width, seed=0, dtype="float64", **kwargs)
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
        ax2.semilogy(np.arange(1, epochs + 1), h.weight_change[1:, -1], "--", color=color,
                     label=f"{label}: layer {depth}")
        ax3.plot(np.arange(epochs + 1), h.loss, "-", color=color, label=f"{label} (train)")
        if h.val_loss is not None:
            ax3.plot(np.arange(epochs + 1), h.val_loss, ":", color=color)
    ax1.set_xlabel("layer l")
    ax1.set_ylabel(r"$\|W_l(t) - W_l(0)\| \,/\, \|W_l(0)\|$")
    ax1.set_title(f"how far each layer moved (dotted: epoch 1, solid: epoch {epochs})")
    ax1.legend(fontsize=8)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("relative weight change")
    ax2.set_title("first vs last layer over training")
    ax2.legend(fontsize=7)
    ax3.set_xlabel("epoch")
    ax3.set_ylabel("cross-entropy loss (dotted: held-out)")
    ax3.set_yscale("log")
    ax3.set_title(f"loss on the {'digits' if 'sklearn' in data.source else 'synthetic digits'}")
    ax3.legend(fontsize=8)
    rows = []
    for (label, _, _), h in zip(TRAINING_NETS, histories):
        first, last = h.weight_change[-1, 0], h.weight_change[-1, -1]
        rows.append([label, _e(first), _e(last), _e(last / first if first > 0 else np.inf),
                     _e(h.weight_grad_norm[0, 0]), _e(h.weight_grad_norm[0, -1]),
                     _e(h.loss[-1]), f"{h.val_accuracy[-1]:.3f}"])
    info = FigureInfo(
        "fig9_training", "Training a deep net: which layers learn",
        f"Three {depth}-layer, {width}-wide chains trained by the same SGD (lr {lr}, batch "
        f"{batch}, {epochs} epochs) on {data.source} ({len(data.y_train)} training "
        f"images). The sigmoid net's first layers barely move: their gradient is the "
        f"output's times a product of sigmoid derivatives (at most 1/4 each) and weights, "
        f"so they stay at their random initial values while the last layers learn, and "
        f"its loss plateaus. ReLU with He init keeps every layer's gradient at the same "
        f"scale and converges; the residual + layernorm net moves all layers too.",
        ["net", "layer-1 change", f"layer-{depth} change", "ratio last/first",
         "||dL/dW_1|| (epoch 1)", f"||dL/dW_{depth}|| (epoch 1)", "final train loss",
         "held-out accuracy"], rows)
    return fig, info


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
    ax1.set_xlabel(f"layer l (the gradient flows from l = {depth} down to 0)")
    ax1.set_ylabel(r"fraction of $dL/dh_l$ entries that are zero")
    ax1.set_title("float16 flushes vanishing gradients to zero")
    ax1.invert_xaxis()
    ax1.legend(fontsize=9)
    ax2.set_xlabel("layer l")
    ax2.set_ylabel(r"$\|dL/dh_l\|$ (unscaled; missing where exactly 0)")
    ax2.set_title("loss scaling shifts the cliff; bfloat16 keeps float32's range")
    ax2.invert_xaxis()
    ax2.axhline(2.0**-24 * np.sqrt(batch * width), color="gray", lw=0.8, ls=":")
    ax2.legend(fontsize=9)
    rows = []
    for (label, _, _, _), r in zip(PRECISION_CASES, results):
        zero = np.nonzero(r.zero_fraction >= 0.5)[0]
        half = int(zero.max()) if zero.size else None
        rows.append([label, "none" if half is None else str(half),
                     _e(r.zero_fraction[0]), str(int(r.underflow_count.sum())),
                     str(int(r.overflow_count.sum())), _e(r.grad_norm[0])])
    info = FigureInfo(
        "fig10_mixed_precision", "Mixed precision: float16 underflow vs depth",
        f"A {depth}-layer, {width}-wide tanh chain in the ordered phase "
        f"(sigma_w^2 = 0.5) backpropagates a cross-entropy gradient over a batch of "
        f"{batch}; every propagated gradient is rounded to the storage format. float16's "
        f"smallest subnormal is 2^-24 = 6e-8 (dotted line: a gradient whose every entry "
        f"sits there), so once the vanishing gradient falls below it, whole layers "
        f"become exactly zero. Scaling the loss by 2^16 before backpropagation (and the "
        f"gradients back after) moves that cliff 16 binades deeper; bfloat16 has float32's "
        f"exponent range and never underflows here, at the price of 8 bits of mantissa.",
        ["storage", "cliff: max l with >= 50% zeros", "zero fraction at layer 0",
         "entries flushed (all layers)", "overflows", "||dL/dh_0||"], rows)
    return fig, info
