"""Figure 9: which layers learn, for a deep sigmoid net vs ReLU + He vs a residual net.

It runs in seconds, so it is not cached; ``cache``, ``n_jobs`` and ``progress`` are
accepted for the same call signature as the other figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..chain import Chain
from ..datasets import load_digits
from ..train import train
from .common import NOT_CACHED, FigureInfo, _e, _plt, figure_builder

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


@figure_builder(quick="Fewer epochs.", rest=NOT_CACHED)
def fig9_training(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                  progress: Any = None,
                  scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 9: which layers learn, for a deep sigmoid net vs ReLU + He vs residual.

    Trains three 10-layer nets (nine 64-wide hidden layers, a linear 10-unit readout) on
    the handwritten digits (synthetic stand-in without scikit-learn) with the same SGD
    settings, in float64 so that the sigmoid net's smallest weight changes are not
    rounded away.
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
