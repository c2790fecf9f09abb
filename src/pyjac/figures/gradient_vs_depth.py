"""Figure 1: gradient norm vs depth, linear/sigmoid/tanh/ReLU under four inits."""

from __future__ import annotations

import math
from typing import Any

from .. import plot as jplot
from ..experiments import sweep
from .common import FigureInfo, _e, _plt, _ratio, figure_builder, join_words, theory_gap, trend

# --------------------------------------------------------------------------------------
# Figure 1: gradient norm vs depth, four activations under four inits
# --------------------------------------------------------------------------------------
ACTS = ("linear", "sigmoid", "tanh", "relu")
INITS = ("gaussian", "xavier", "he", "orthogonal")
INIT_COLORS = {"gaussian": "tab:blue", "xavier": "navy", "he": "tab:red",
               "orthogonal": "tab:green"}


@figure_builder()
def fig1_gradient_vs_depth(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                           progress: Any = None,
                           scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 1: gradient norm vs depth, linear/sigmoid/tanh/ReLU under four inits.
    """
    depth, width, batch, seeds = (50, 64, 16, 2) if quick else (100, 256, 32, 3)
    res = sweep(activation=list(ACTS), init=list(INITS), depth=depth, width=width,
                batch=batch, seeds=seeds, cache=cache, n_jobs=n_jobs, progress=progress,
                scheduler=scheduler)
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.2), layout="constrained")
    rows, sentences, pairs = [], [], []
    for ax, act in zip(axes.flat, ACTS):
        part = res.select(activation=act)
        # On square layers xavier draws exactly gaussian's weights (variance 1/n, same
        # seed): its line would hide under gaussian's, so it is drawn as markers alone.
        labels = []
        for i in INITS:
            sw2 = part.select(init=i)["sigma_w2"][0]
            labels.append(rf"{i} ($\sigma_w^2$ = {sw2:g})" if i != "xavier" else
                          rf"xavier ($\sigma_w^2$ = {sw2:g}: gaussian's draws)")
        order = list(dict.fromkeys(part["init"].tolist()))  # the lines' order
        jplot.gradient_vs_depth(part, ax=ax, by=["init"], theory=True,
                                labels=[labels[INITS.index(i)] for i in order],
                                colors=[INIT_COLORS[i] for i in order],
                                linestyles=["none" if i == "xavier" else "-" for i in order],
                                markers=["o" if i == "xavier" else None for i in order])
        ax.set_title(f"{act}")
        cells, fates = [act], {}
        for init in INITS:
            sub = part.select(init=init)
            pred = math.exp(sub["theory_log_ratio"][sub["layer"] == 0][0])
            measured = _ratio(sub)
            cells.append(f"{_e(measured)} ({_e(pred)})")
            pairs.append((f"{act}, {init}", measured, pred))
            fates.setdefault(trend(measured).split(" (")[0], []).append(
                f"{init} {_e(measured)}")
        rows.append(cells)
        sentences.append(f"{act}: " + "; ".join(f"{fate} under {join_words(inits)}"
                                                 for fate, inits in fates.items()))
    fig.suptitle(f"Exact per-layer gradient norms: depth {depth}, width {width}, {seeds} seeds "
                 "(line: geometric mean, band: min-max; dotted: mean-field theory)",
                 fontsize="medium")
    info = FigureInfo(
        "fig1_gradient_vs_depth", "Gradient norm vs depth",
        f"Gradient norm at layer l relative to the output layer, for linear, sigmoid, tanh "
        f"and ReLU chains (depth {depth}, width {width}, batch {batch}, random Gaussian "
        f"dL/dh_L) under four inits. On square layers gaussian (gain 1), xavier and "
        f"orthogonal share the weight variance 1/n (xavier and gaussian even draw the "
        f"same weights: markers) and he doubles it. Measured ||dL/dh_0|| / ||dL/dh_L|| "
        f"over {depth} layers (vanishes: below 1/10, explodes: above 10): "
        f"{'. '.join(sentences)}. Dotted: mean-field prediction. {theory_gap(pairs)}",
        ["activation", *[f"{i}: measured (theory)" for i in INITS]], rows,
        [r"Entries: $\|\partial L/\partial h_0\| / \|\partial L/\partial h_L\|$, geometric "
         "mean over seeds; theory: `pyjac.theory.predicted_log_grad_norm`."])
    return fig, info
