"""Figure 8: dead ReLU and saturated sigmoid/tanh fractions vs depth."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import plot as jplot
from ..experiments import Results, sweep
from .common import FigureInfo, _e, _plt, figure_builder, join_words


# --------------------------------------------------------------------------------------
# Figure 8: dead ReLU and saturated sigmoid/tanh fractions vs depth
def _fig8_claims(dead_cases: list, dead_at: dict, sat_at: dict, depth: int) -> str:
    """Figure 8's statements, each from the measured fractions (runs x layers)."""
    def mean_at(Y: np.ndarray, layer: int) -> float:
        return float(np.nanmean(Y[:, layer]))

    out = []
    for w, b, label in dead_cases:
        Y = next(v for (kw, kb), v in dead_at.items()
                 if math.isclose(kw, w, rel_tol=1e-9) and math.isclose(kb, b, abs_tol=1e-12))
        first, last = mean_at(Y, 1), mean_at(Y, depth)
        text = label.replace(r"$\sigma_w^2$", "sigma_w2").replace(r"$\sigma_b^2$",
                                                                   "sigma_b2")
        out.append(f"ReLU, {text}: {100 * first:.0f}% dead at layer 1, {100 * last:.0f}% "
                   f"at layer {depth}")
    zero = [f"{a} at sigma_w2 = {w:g}" for (a, w), Y in sat_at.items()
            if not np.nanmax(Y) > 0]
    def peak(Y: np.ndarray) -> float:  # layer 0 has no units of its own: NaN
        return float(np.nanmax(np.nanmean(Y[:, 1:], axis=0)))

    busy = [f"{a} at sigma_w2 = {w:g} (at most {100 * peak(Y):.2g}%, "
            f"{100 * mean_at(Y, depth):.2g}% at layer {depth})"
            for (a, w), Y in sat_at.items() if np.nanmax(Y) > 0]
    if busy:
        out.append(f"saturated: {join_words(busy)}")
    if zero:
        out.append(f"no unit saturates at any layer for {join_words(zero)}")
    text = "; ".join(out) + "."
    return text[:1].upper() + text[1:]



# --------------------------------------------------------------------------------------
@figure_builder()
def fig8_dead_and_saturated(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                            progress: Any = None,
                            scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 8: dead ReLU and saturated sigmoid/tanh fractions vs depth.
    """
    depth, width, batch, seeds = (50, 64, 16, 2) if quick else (100, 256, 32, 3)
    dead_cases = [(2.0, 0.0, r"he ($\sigma_w^2$ = 2), no bias"),
                  (2.0, 0.5, r"he, biases $\sigma_b^2$ = 0.5"),
                  (0.5, 0.5, r"small weights $\sigma_w^2$ = 0.5, $\sigma_b^2$ = 0.5")]
    dead = Results.concat([
        sweep(activation="relu", sigma_w2=sw, sigma_b2=sb, depth=depth, width=width,
              batch=batch, seeds=seeds, theory=False, cache=cache, n_jobs=n_jobs,
              progress=progress, scheduler=scheduler) for sw, sb, _ in dead_cases])
    sat = sweep(activation=["sigmoid", "tanh"], sigma_w2=[1.0, 4.0, 16.0], depth=depth,
                width=width, batch=batch, seeds=seeds, theory=False, cache=cache,
                n_jobs=n_jobs, progress=progress, scheduler=scheduler)
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    jplot.per_layer(dead, "dead_fraction", ax=ax1, by=["sigma_w2", "sigma_b2"], log=False,
                    labels=[f"ReLU, {label}" for _, _, label in dead_cases])
    ax1.set_ylabel(f"dead ReLU units (zero for all {batch} examples)")
    ax1.set_title("dead ReLUs accumulate with depth as inputs align")
    ax1.set_ylim(bottom=0)
    colors = {1.0: "tab:blue", 4.0: "tab:orange", 16.0: "tab:red"}
    # Lines that are zero at every layer lie on top of each other: they are named in the
    # legend, and drawn with markers so that each one shows.
    groups = list(sat.groupby("activation", "sigma_w2"))
    zero = {key: not np.nanmax(part.curves("saturated_fraction")[1]) > 0
            for key, part in groups}
    marks = iter("os^v")
    jplot.per_layer(sat, "saturated_fraction", ax=ax2, by=["activation", "sigma_w2"],
                    log=False, colors=[colors[w] for (_, w), _ in groups],
                    linestyles=["-" if a == "tanh" else "--" for (a, _), _ in groups],
                    markers=[next(marks) if zero[key] else None for key, _ in groups],
                    labels=[rf"{a}, $\sigma_w^2$ = {w:g}" + (" (0 at every layer)"
                                                             if zero[(a, w)] else "")
                            for (a, w), _ in groups])
    ax2.set_ylabel(r"saturated units ($|\phi'|$ < 5% of its maximum)")
    ax2.set_title("saturation grows with the weight variance")
    ax2.set_ylim(bottom=0)
    rows = []
    for (w, b), part in dead.groupby("sigma_w2", "sigma_b2"):
        _, Y = part.curves("dead_fraction")
        rows.append([f"ReLU, sigma_w2 = {w:g}, sigma_b2 = {b:g}", "dead", *[_e(np.nanmean(Y[:, k]))
                     for k in (10, depth // 2, depth)]])
    for (a, s), part in sat.groupby("activation", "sigma_w2"):
        _, Y = part.curves("saturated_fraction")
        rows.append([f"{a}, sigma_w2 = {s:g}", "saturated", *[_e(np.nanmean(Y[:, k]))
                     for k in (10, depth // 2, depth)]])
    dead_at = {(w, b): part.curves("dead_fraction")[1]
               for (w, b), part in dead.groupby("sigma_w2", "sigma_b2")}
    sat_at = {key: part.curves("saturated_fraction")[1] for key, part in groups}
    info = FigureInfo(
        "fig8_dead_and_saturated", "Dead ReLUs and saturated sigmoid/tanh units vs depth",
        f"Left: fraction of ReLU units whose derivative is zero for every example of a batch "
        f"of {batch}, at initialisation (depth {depth}, width {width}). Right: fraction of "
        f"sigmoid/tanh units with a derivative below 5% of its maximum. "
        + _fig8_claims(dead_cases, dead_at, sat_at, depth),
        ["chain", "fraction", "layer 10", f"layer {depth // 2}", f"layer {depth}"], rows)
    return fig, info
