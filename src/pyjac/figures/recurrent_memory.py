"""Figure 15: what the vanishing gradient through time costs. Recurrent nets trained on
the adding problem at growing sequence lengths, beside each net's gradient through time
at initialisation and the memory horizon it implies.

It trains its nets in the C++ core and is not cached; ``cache``, ``n_jobs`` and
``progress`` are accepted for the same call signature as the other figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..datasets import adding_problem
from ..recurrent import Recurrent
from ..train import train
from .common import NOT_CACHED, FigureInfo, _e, _plt, figure_builder, join_words

# (label, Recurrent keyword arguments, colour, line style)
MEMORY_NETS = (
    ("tanh, spectral radius 0.9", dict(cell="tanh", spectral_radius=0.9), "tab:red", "-"),
    ("tanh, spectral radius 1.0", dict(cell="tanh", spectral_radius=1.0), "tab:orange", "-"),
    ("LSTM, forget bias 1", dict(cell="lstm", forget_bias=1.0), "tab:blue", "-"),
    ("LSTM, forget bias 3", dict(cell="lstm", forget_bias=3.0), "tab:blue", "--"),
    ("GRU", dict(cell="gru"), "tab:green", "-"),
)
# The gradient through time has "fallen below noise" once it is this fraction of the
# gradient at the last step: three decades, about what float32 Adam updates still tell
# apart from rounding in a sum over a minibatch.
HORIZON_FALL = 1e-3
# A run "solved" the task when its held-out loss is below this fraction of chance, and
# "failed" when it stays above the second.
SOLVED, FAILED = 0.1, 0.9


def memory_horizon(grad_norm: np.ndarray, fall: float = HORIZON_FALL) -> int:
    """Steps back from the end before ``||dL/dh_t|| / ||dL/dh_T||`` first falls below
    ``fall`` (the whole length when it never does)."""
    relative = grad_norm[::-1] / grad_norm[-1]
    below = np.flatnonzero(~(relative >= fall))
    return int(below[0]) if below.size else int(len(grad_norm) - 1)


def _gradient_at_init(net: Recurrent, length: int, seed: int) -> np.ndarray:
    """||dL/dh_t||, t = 0..length, for the loss 0.5 ||h_T||^2 on adding-problem inputs."""
    task = adding_problem(64, length, seed=seed, dtype=net.dtype)
    xs = np.ascontiguousarray(task.x.transpose(1, 0, 2))
    r = net.backprop(xs, loss="last")
    return np.exp(r.log_grad_norm)  # exact where the float64 norm underflows


@figure_builder(quick="Shorter sequences, fewer nets, examples and epochs.", rest=NOT_CACHED)
def fig15_recurrent_memory(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                           progress: Any = None,
                           scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 15: success on the adding problem vs sequence length, beside the gradient
    through time.

    Each net (width 32; 16 with ``quick``) is trained with Adam (lr 0.01, batch 50) on
    the adding problem at each length, and judged on held-out sequences: its final
    mean squared error over chance (1/6; 1 is chance, 0 solved). Beside it, the same net
    at initialisation: ``||dL/dh_t|| / ||dL/dh_T||`` over the longest length, and the
    memory horizon where it has fallen by 10^3.
    """
    nets = MEMORY_NETS if not quick else tuple(MEMORY_NETS[i] for i in (1, 3, 4))
    lengths = [10, 25, 50, 100, 200] if not quick else [10, 40]
    width, epochs, n_train = (32, 8, 2000) if not quick else (16, 6, 1000)
    held_out = 500 if not quick else 200
    scores: dict[str, list[float]] = {}
    horizons, decay, last_grads = {}, {}, {}
    for label, kwargs, _, _ in nets:
        net0 = Recurrent(width, 2, seed=0, **kwargs)
        decay[label] = _gradient_at_init(net0, lengths[-1], seed=7)
        horizons[label] = memory_horizon(decay[label])
        scores[label] = []
        for length in lengths:
            task = adding_problem(n_train, length, seed=1)
            val = adding_problem(held_out, length, seed=2)
            net = Recurrent(width, 2, seed=0, **kwargs)
            h = train(net, task.x, task.y, epochs=epochs, lr=0.01, batch_size=50, loss="mse",
                      optimizer="adam", validation=(val.x, val.y), weight_bins=None,
                      progress=False)
            scores[label].append(float(h.val_loss[-1] / task.chance_loss))
            last_grads[label] = h.last_grad_norm[-1]
    fig = _draw(nets, lengths, scores, decay, horizons, last_grads)
    rows = [[label, str(horizons[label])] + [_e(s) for s in scores[label]]
            for label, _, _, _ in nets]
    info = FigureInfo(
        "fig15_recurrent_memory", "Recurrent memory: gradient through time vs what is learned",
        f"Nets of width {width} trained with Adam (lr 0.01, batch 50, {epochs} epochs on "
        f"{n_train} sequences) on the adding problem (Hochreiter & Schmidhuber 1997): two "
        f"marked values among L, their sum read from the last state; scored by held-out "
        f"mean squared error over chance (1/6). "
        + _fig15_claims([label for label, _, _, _ in nets], lengths, scores, horizons),
        ["net", f"horizon at init (steps to fall {1 / HORIZON_FALL:.0f}x)"]
        + [f"loss/chance, L={length}" for length in lengths], rows)
    return fig, info


def _draw(nets, lengths, scores, decay, horizons, last_grads) -> Any:
    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.8), layout="constrained")
    for label, _, color, style in nets:
        ax1.plot(lengths, scores[label], "o" + style, color=color, label=label)
        back = np.arange(len(decay[label]))
        ax2.semilogy(back, (decay[label] / decay[label][-1])[::-1], style, color=color,
                     label=f"{label}: horizon {horizons[label]}")
        ax2.axvline(horizons[label], color=color, ls=":", lw=0.8)
        g = last_grads[label]
        ax3.semilogy(np.arange(len(g)), (g / g[-1])[::-1], style, color=color, label=label)
    ax1.axhline(1.0, color="0.4", lw=0.8, ls="--")
    ax1.annotate("chance", (lengths[0], 1.0), textcoords="offset points", xytext=(2, 4),
                 fontsize="small", color="0.3")
    ax1.set_xscale("log")
    ax1.set_xlabel("sequence length L")
    ax1.set_ylabel("held-out loss / chance")
    ax1.set_title("adding problem: what each net learned")
    ax1.legend(fontsize=8)
    ax2.axhline(HORIZON_FALL, color="0.4", lw=0.8, ls="--")
    ax2.set_xlabel("steps back from the last")
    ax2.set_ylabel(r"$\|\partial L/\partial h_{T-k}\| \,/\, \|\partial L/\partial h_T\|$")
    ax2.set_title(f"gradient through time at initialisation (L = {lengths[-1]})")
    ax2.legend(fontsize=7)
    ax3.set_xlabel("steps back from the last")
    ax3.set_ylabel("relative gradient norm")
    ax3.set_title(f"after training (last minibatch, L = {lengths[-1]})")
    ax3.legend(fontsize=7)
    return fig


def _fig15_claims(labels: list[str], lengths: list[int], scores: dict[str, list[float]],
                  horizons: dict[str, int]) -> str:
    """Figure 15's statements, from the measured scores and horizons."""
    out = []
    for label in labels:
        s = scores[label]
        solved = [L for L, v in zip(lengths, s) if v < SOLVED]
        failed = [L for L, v in zip(lengths, s) if v > FAILED]
        fall = f"{1 / HORIZON_FALL:.0f}x"
        text = (f"{label}: the gradient at initialisation falls {fall} within "
                f"{horizons[label]} steps")
        if horizons[label] >= lengths[-1]:
            text = (f"{label}: the gradient at initialisation falls less than {fall} over all "
                    f"{lengths[-1]} steps")
        parts = []
        if solved:
            parts.append(f"solves L = {join_words([str(L) for L in solved])}")
        if failed:
            parts.append(f"stays at chance at L = {join_words([str(L) for L in failed])}")
        middle = [L for L in lengths if L not in solved and L not in failed]
        if middle:
            parts.append(f"learns part of L = {join_words([str(L) for L in middle])}")
        out.append(text + "; it " + join_words(parts))
    return ". ".join(out) + "."
