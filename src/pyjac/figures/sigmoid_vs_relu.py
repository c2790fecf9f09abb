"""Figure 3: sigmoid vs ReLU derivative products, against measured chains."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import plot as jplot
from .. import theory
from ..experiments import sweep
from .common import FigureInfo, _e, _plt, figure_builder, trend


# --------------------------------------------------------------------------------------
# Figure 3: sigmoid vs ReLU derivative products
# --------------------------------------------------------------------------------------
@figure_builder()
def fig3_sigmoid_vs_relu(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                         progress: Any = None,
                         scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 3: sigmoid vs ReLU derivative products, and measured chains.
    """
    depth = 30
    width, batch, seeds = (64, 16, 2) if quick else (256, 32, 3)
    res = sweep(activation=["sigmoid", "relu"], init=["xavier", "he"], depth=depth,
                width=width, batch=batch, seeds=seeds, cache=cache, n_jobs=n_jobs,
                progress=progress, scheduler=scheduler)
    sig = res.select(activation="sigmoid", init="xavier")
    relu = res.select(activation="relu", init="he")
    dsig = theory.activation_derivative("sigmoid")
    s0, s1 = float(dsig(np.array([0.0]))[0]), float(dsig(np.array([1.0]))[0])
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    jplot.activation_derivatives(("sigmoid", "tanh", "relu"), ax=ax1)
    ax1.set_title("activation derivatives: sigmoid' never exceeds 1/4")
    n = np.arange(depth + 1)
    ax2.plot(n, theory.scalar_chain(s0, n), color="k", lw=2,
             label=r"sigmoid'(0)$^n$ = 0.25$^n$ (best case)")
    ax2.plot(n, theory.scalar_chain(s1, n), color="0.45", lw=1.6, ls="--",
             label=rf"sigmoid'(1)$^n$ = {s1:.4f}$^n$")
    ax2.plot(n, np.ones_like(n, dtype=float), color="tab:green", lw=2.2, ls=":", zorder=4,
             label="relu'$^n$ = 1 on active units")
    curves = {}
    for part, label, color in ((sig, "measured: sigmoid chain (xavier)", "tab:blue"),
                               (relu, "measured: ReLU chain (he)", "tab:red")):
        _, Y = part.curves("grad_norm")
        ratio = (Y / Y[:, -1:])[:, ::-1]  # column n: n layers back from the output
        curves[label] = ratio
        ax2.plot(n, jplot._geomean(ratio), color=color, lw=1.8, label=label)
        lo, hi = jplot._band(ratio)
        ax2.fill_between(n, lo, hi, color=color, alpha=0.18, lw=0)
    arrow = dict(arrowstyle="->", color="0.3", lw=0.8)
    ax2.plot([10, 20], [0.25**10, 0.25**20], "ko", ms=5, zorder=5)
    ax2.annotate(r"0.25$^{10}$ = 9.5e-7" + "\n(\"a million times smaller\")",
                 (10, 0.25**10), xytext=(11.5, 1e-2), fontsize="small", arrowprops=arrow)
    ax2.annotate(r"0.25$^{20}$ = 9.1e-13", (20, 0.25**20), xytext=(21, 1e-6),
                 fontsize="small", arrowprops=arrow)
    ax2.plot([20], [s1**20], "o", color="0.45", ms=5, zorder=5)
    ax2.annotate(f"sigmoid'(1)$^{{20}}$ = {s1**20:.3g}\n(a text says 1.07e-14: wrong)",
                 (20, s1**20), xytext=(21, 1e-10), fontsize="small", arrowprops=arrow)
    ax2.set_yscale("log")
    ax2.set_xlabel("layers back-propagated through, $n$")
    ax2.set_ylabel("gradient gain after $n$ layers")
    ax2.set_title("products of derivatives vs measured chains")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize="small", loc="lower left", framealpha=0.85)
    msig = jplot._geomean(curves["measured: sigmoid chain (xavier)"])
    mrelu = jplot._geomean(curves["measured: ReLU chain (he)"])
    rows = [[str(k), _e(0.25**k), _e(s1**k), _e(msig[k]), "1", _e(mrelu[k])]
            for k in (10, 20, 30)]
    per_layer_sig = float(msig[depth]) ** (1 / depth)
    info = FigureInfo(
        "fig3_sigmoid_vs_relu", "Sigmoid vs ReLU derivative products",
        f"Left: the derivatives. Right: the gain of a gradient after n layers: the sigmoid's "
        f"best case 0.25^n, sigmoid'(1)^n, and measured {depth}-layer chains (width "
        f"{width}). The xavier sigmoid chain keeps a factor {per_layer_sig:.3g} per layer, "
        + ("less than the derivative's best case 0.25 (its weights, of variance 1/n, "
           "shrink the gradient too)" if per_layer_sig < 0.25 else
           "more than the derivative's best case 0.25 alone would allow")
        + f"; over {depth} layers the he ReLU chain's gradient {trend(float(mrelu[depth]))}.",
        ["n", "0.25^n", "sigmoid'(1)^n", "measured sigmoid chain", "relu'^n",
         "measured ReLU chain"], rows,
        ["The texts: 0.25^10 'about a million times smaller' (right: 9.54e-7), 0.25^20 "
         "'9.1e-13' (right), sigmoid'(1)^20 '1.07e-14' (wrong: 7.45e-15)."])
    return fig, info
