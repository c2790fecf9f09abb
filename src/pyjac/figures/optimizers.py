"""Figure 16: the frozen early layers of a deep sigmoid net under SGD and under Adam
(which rescales each weight's step by its own gradient history), beside ReLU + He, with
the first layer's weight histograms over the epochs.

It runs in seconds, so it is not cached; ``cache``, ``n_jobs`` and ``progress`` are
accepted for the same call signature as the other figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import plot as jplot
from ..datasets import load_digits
from ..train import train
from .common import NOT_CACHED, FigureInfo, _e, _plt, figure_builder
from .training import N_CLASSES, TRAINING_NETS, training_net

# (net label, chain keyword arguments, colour) from figure 9: sigmoid and ReLU + He.
OPTIMIZER_NETS = TRAINING_NETS[:2]
# (optimizer, its learning rate, line style): SGD as in figure 9, Adam at PyTorch's.
OPTIMIZERS = (("sgd", 0.1, "-"), ("adam", 1e-3, "--"))


def bins_crossed(history: Any, layer: int) -> int:
    """Weights of ``layer`` that ended the run in another histogram bin than they
    started in, at least: each one that moves changes two counts by one."""
    change = history.weight_histogram[-1, layer].astype(np.int64) - history.weight_histogram[
        0, layer]
    outside = (history.weight_histogram_outside[-1, layer].astype(np.int64)
               - history.weight_histogram_outside[0, layer])
    return int((np.abs(change).sum() + np.abs(outside).sum()) // 2)


@figure_builder(quick="Fewer epochs.", rest=NOT_CACHED)
def fig16_optimizers(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                     progress: Any = None,
                     scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 16: which layers learn under SGD and under Adam, sigmoid vs ReLU + He.

    The nets of figure 9 (nine 64-wide hidden layers, a linear 10-unit readout), in
    float64, trained on the handwritten digits by SGD (lr 0.1) and by Adam (lr 1e-3),
    recording 32-bin weight histograms of every layer after every epoch.
    """
    depth, width, epochs, batch = 10, 64, (8 if quick else 30), 32
    data = load_digits(dtype="float64")
    runs = {}
    for label, kwargs, _ in OPTIMIZER_NETS:
        for name, lr, _ in OPTIMIZERS:
            net = training_net(depth, width, kwargs)
            runs[label, name] = train(net, data.x_train, data.y_train, epochs=epochs, lr=lr,
                                      batch_size=batch, optimizer=name, weight_bins=32,
                                      validation=(data.x_test, data.y_test), progress=False)
    fig = _draw(runs, depth, epochs)
    rows = []
    for (label, name), h in runs.items():
        rows.append([label, name, _e(h.weight_change[-1, 0]), _e(h.weight_change[-1, -2]),
                     str(bins_crossed(h, 0)), _e(h.loss[-1]), f"{h.val_accuracy[-1]:.3f}"])
    info = FigureInfo(
        "fig16_optimizers", "SGD vs Adam: do the early layers of a deep net learn?",
        f"The nets of figure 9 ({depth - 1} hidden layers of {width} units, a linear "
        f"{N_CLASSES}-unit readout) trained for {epochs} epochs (batch {batch}) on "
        f"{data.source} by SGD (lr 0.1) and by Adam (lr 1e-3, PyTorch's defaults "
        f"otherwise). " + _fig16_claims(runs, depth),
        ["net", "optimizer", "layer-1 change", f"layer-{depth - 1} change",
         "layer-1 weights that changed bin", "final train loss", "held-out accuracy"], rows)
    return fig, info


def _draw(runs: dict, depth: int, epochs: int) -> Any:
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), layout="constrained")
    (ax1, ax2), (ax3, ax4) = axes
    layers = np.arange(1, depth + 1)
    colors = {label: color for label, _, color in OPTIMIZER_NETS}
    styles = {name: style for name, _, style in OPTIMIZERS}
    for (label, name), h in runs.items():
        ax1.semilogy(layers, h.weight_change[-1], "o" + styles[name], color=colors[label],
                     label=f"{label}, {name}")
        ax2.plot(np.arange(epochs + 1), h.loss, styles[name], color=colors[label],
                 label=f"{label}, {name}")
    chance = float(np.log(N_CLASSES))
    ax2.axhline(chance, color="0.4", lw=0.8, ls=":")
    ax2.annotate(f"chance: ln {N_CLASSES}", (0, chance), textcoords="offset points",
                 xytext=(4, 4), fontsize="small", color="0.3")
    ax1.set_xlabel(f"layer l ({depth} = the linear readout)")
    ax1.set_ylabel(r"$\|W_l(T) - W_l(0)\| \,/\, \|W_l(0)\|$")
    ax1.set_title(f"how far each layer moved in {epochs} epochs")
    ax1.legend(fontsize=8)
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("training loss (cross-entropy)")
    ax2.set_title("loss")
    ax2.legend(fontsize=8)
    sigmoid = OPTIMIZER_NETS[0][0]
    for ax, (name, _, _) in zip((ax3, ax4), OPTIMIZERS):
        h = runs[sigmoid, name]
        jplot.weight_histograms(h, 0, ax=ax, difference=True)
        ax.set_title(f"{sigmoid}, {name}: layer 1's histogram minus its initial one "
                     f"({bins_crossed(h, 0)} weights changed bin)", fontsize=9)
    low = min(ax3.get_ylim()[0], ax4.get_ylim()[0])
    high = max(ax3.get_ylim()[1], ax4.get_ylim()[1])
    for ax in (ax3, ax4):
        ax.set_ylim(low, high)
    return fig


def _fig16_claims(runs: dict, depth: int) -> str:
    """Figure 16's statements, from the measured histories."""
    out = []
    for label, _, _ in OPTIMIZER_NETS:
        sgd, adam = runs[label, "sgd"], runs[label, "adam"]
        first_sgd, first_adam = float(sgd.weight_change[-1, 0]), float(adam.weight_change[-1, 0])
        text = (f"{label}: layer 1 moved {_e(first_sgd)} of its initial size under SGD "
                f"({bins_crossed(sgd, 0)} of its weights changed histogram bin) and "
                f"{_e(first_adam)} under Adam ({bins_crossed(adam, 0)})")
        if first_sgd > 0 and first_adam / first_sgd > 10:
            text += (f", {_e(first_adam / first_sgd)}x more: Adam divides each step by the "
                     f"gradient's own running size, so a vanished gradient still moves its "
                     f"weights")
        text += (f"; training loss {_e(sgd.loss[-1])} (SGD) and {_e(adam.loss[-1])} (Adam), "
                 f"held-out accuracy {sgd.val_accuracy[-1]:.3f} and "
                 f"{adam.val_accuracy[-1]:.3f}")
        out.append(text)
    return ". ".join(out) + "."
