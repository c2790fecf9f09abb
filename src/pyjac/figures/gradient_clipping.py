"""Figure 7: global-norm gradient clipping on exploding and vanishing chains."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import plot as jplot
from ..experiments import sweep
from .common import FigureInfo, _e, _plt, figure_builder


# --------------------------------------------------------------------------------------
# Figure 7: gradient clipping on an exploding chain
# --------------------------------------------------------------------------------------
def _clip(wgn: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Global-norm clipping of per-layer weight-gradient norms (runs x layers):
    ``g <- g * min(1, tau / ||g||)`` is one scalar per run, so it rescales every layer."""
    total = np.sqrt(np.nansum(wgn**2, axis=1))
    factor = np.minimum(1.0, tau / total)
    return total, factor


@figure_builder()
def fig7_gradient_clipping(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                           progress: Any = None,
                           scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 7: global-norm gradient clipping on exploding and vanishing chains.
    """
    tau = 1.0
    depths = [5, 10, 20, 30, 40, 50] if quick else [5, 10, 20, 30, 40, 50, 60, 80, 100]
    width, batch, seeds = (64, 16, 2) if quick else (256, 32, 3)
    phases = [(0.6, "ordered, $\\sigma_w^2$ = 0.6", "tab:blue"),
              (1.0, "critical, $\\sigma_w^2$ = 1", "tab:green"),
              (4.0, "chaotic, $\\sigma_w^2$ = 4", "tab:red")]
    res = sweep(activation="tanh", sigma_w2=[p[0] for p in phases], depth=depths,
                width=width, batch=batch, seeds=seeds, theory=False, cache=cache,
                n_jobs=n_jobs, progress=progress, scheduler=scheduler)
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    rows = []
    for sw, label, color in phases:
        before, after = [], []
        for d in depths:
            _, W = res.select(sigma_w2=sw, depth=d).curves("weight_grad_norm")
            total, factor = _clip(W, tau)
            before.append(total)
            after.append(total * factor)
        before, after = np.array(before), np.array(after)  # (depths, seeds)
        gb, ga = jplot._geomean(before.T), jplot._geomean(after.T)
        ax1.plot(depths, gb, "o-", color=color, lw=1.8, ms=4, label=f"{label}: unclipped")
        ax1.plot(depths, ga, "s--", color=color, lw=1.2, ms=3.5, mfc="none",
                 label=f"{label}: clipped")
        rows.extend([[label.replace("$\\sigma_w^2$", "sigma_w2"), str(d), _e(b), _e(a)]
                     for d, b, a in zip(depths, gb, ga)][-2:])
    ax1.axhline(tau, color="0.3", lw=0.8, ls=":")
    ax1.annotate(f"threshold $\\tau$ = {tau:g}", (depths[0], tau), textcoords="offset points",
                 xytext=(0, 5), fontsize="small", color="0.3")
    ax1.set_yscale("log")
    ax1.set_xlabel("depth $L$ of the tanh chain")
    ax1.set_ylabel(r"global gradient norm $\|g\|$ over all $W_l$")
    ax1.set_title(r"clipping $g \leftarrow g\,\min(1, \tau/\|g\|)$ caps the update size")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize="x-small", ncol=1, framealpha=0.85)

    d = max(depths)
    part = res.select(sigma_w2=4.0, depth=d)
    layers, W = part.curves("weight_grad_norm")
    W = W[:, 1:]
    layers = layers[1:]
    total, factor = _clip(W, tau)
    gm_before = jplot._geomean(W)
    gm_after = jplot._geomean(W * factor[:, None])
    ax2.plot(layers, gm_before, color="tab:red", lw=1.8, label="unclipped")
    ax2.plot(layers, gm_after, color="tab:red", lw=1.8, ls="--",
             label=rf"clipped at $\tau$ = {tau:g} (every layer $\times$ "
             rf"{float(np.exp(np.mean(np.log(factor)))):.2g})")
    ax2.set_yscale("log")
    ax2.set_xlabel("layer $l$ (1 = first hidden layer)")
    ax2.set_ylabel(r"$\|\partial L/\partial W_l\|$")
    share = gm_before[0] / gm_before[-1]
    ax2.set_title(f"chaotic chain, depth {d}: one scale factor for every layer")
    ax2.annotate(f"layer 1 / layer {d}: {share:.3g}x, before and after clipping",
                 xy=(0.5, 0.5), xycoords="axes fraction", ha="center", fontsize="small")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize="small", framealpha=0.85)
    info = FigureInfo(
        "fig7_gradient_clipping", "Gradient clipping on an exploding chain",
        f"Left: global weight-gradient norm against depth for ordered, critical and chaotic "
        f"tanh chains (width {width}, random Gaussian dL/dh_L), before and after global-norm "
        f"clipping at tau = {tau:g}, computed from the exact per-layer norms. Clipping caps "
        f"the exploding update at tau and leaves vanishing ones alone. Right: it is one "
        f"scalar per step, so the imbalance between layers is untouched: clipping is a "
        f"bandage for the exploding side only.",
        ["chain", "depth", "||g|| unclipped", f"||g|| clipped (tau = {tau:g})"], rows)
    return fig, info
