"""Figure 6: the order/chaos phase diagram of tanh chains with the critical line."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import plot as jplot
from .. import theory
from ..experiments import growth_rate, sweep
from .common import FigureInfo, _e, _plt, figure_builder


# --------------------------------------------------------------------------------------
# Figure 6: order/chaos phase diagram
# --------------------------------------------------------------------------------------
def _zero_crossing(x: np.ndarray, y: np.ndarray) -> float:
    """First x where y changes sign from negative to positive (linear interpolation)."""
    s = np.sign(y)
    idx = np.nonzero((s[:-1] < 0) & (s[1:] >= 0))[0]
    if idx.size == 0:
        return float("nan")
    i = idx[0]
    return float(x[i] - y[i] * (x[i + 1] - x[i]) / (y[i + 1] - y[i]))


@figure_builder()
def fig6_phase_diagram(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                       progress: Any = None,
                       scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 6: order/chaos phase diagram of tanh chains with the critical line.
    """
    if quick:
        sw = np.linspace(0.5, 4.0, 8)
        sb = np.linspace(0.0, 0.5, 6)
        depth, width, seeds = 30, 128, 1
    else:
        sw = np.linspace(0.25, 4.0, 16)
        sb = np.linspace(0.0, 0.5, 11)
        depth, width, seeds = 50, 256, 2
    res = sweep(activation="tanh", sigma_w2=list(sw), sigma_b2=list(sb), depth=depth,
                width=width, batch=16, seeds=seeds, theory=False, cache=cache,
                n_jobs=n_jobs, progress=progress, scheduler=scheduler)
    plt = _plt()
    fig, (ax, ax_scatter) = plt.subplots(1, 2, figsize=(13.5, 5.4), layout="constrained",
                                         width_ratios=[1.3, 1])
    jplot.phase_diagram(res, ax=ax)
    box = dict(boxstyle="round,pad=0.3", facecolor="white", alpha=0.85, edgecolor="none")
    ax.text(0.03, 0.05, "ordered:\ngradients vanish", transform=ax.transAxes, fontsize="small",
            color="navy", va="bottom", bbox=box)
    ax.text(0.97, 0.05, "chaotic:\ngradients explode", transform=ax.transAxes,
            fontsize="small", color="darkred", ha="right", va="bottom", bbox=box)
    rates = growth_rate(res)
    rows = []
    measured, predicted, bias, weights = [], [], [], []
    for b in sb:
        part = rates.select(sigma_b2=float(b))
        xs = np.array(part.unique("sigma_w2"), dtype=float)
        ys = np.array([np.nanmean(part.select(sigma_w2=v)["log_growth"]) for v in xs])
        rows.append([f"{b:.2g}", _e(theory.critical_sigma_w2("tanh", float(b))),
                     _e(_zero_crossing(xs, ys))])
        measured.extend(ys)
        # Toward the input ||dL/dh_l|| changes by sqrt(chi1) per layer.
        predicted.extend(0.5 * np.log(theory.chi1("tanh", float(v), float(b))) for v in xs)
        bias.extend([float(b)] * len(xs))
        weights.extend(float(v) for v in xs)
    points = ax_scatter.scatter(predicted, measured, c=bias, cmap="viridis", s=22)
    lo = float(min(np.nanmin(predicted), np.nanmin(measured)))
    hi = float(max(np.nanmax(predicted), np.nanmax(measured)))
    ax_scatter.plot([lo, hi], [lo, hi], "k--", lw=1, label="measured = predicted")
    ax_scatter.set_xlabel(r"predicted growth per layer, $\ln\chi_1 / 2$")
    ax_scatter.set_ylabel(r"measured growth of $\ln\|\partial L/\partial h_l\|$ per layer")
    ax_scatter.set_title("measured vs mean-field prediction, every grid point")
    ax_scatter.grid(alpha=0.3)
    ax_scatter.legend(loc="upper left", fontsize="small")
    fig.colorbar(points, ax=ax_scatter, label=r"bias variance $\sigma_b^2$")
    info = FigureInfo(
        "fig6_phase_diagram", "Order-to-chaos phase diagram (tanh)",
        f"Measured growth of ln||dL/dh_l|| per layer toward the input for tanh chains "
        f"(depth {depth}, width {width}) on a {len(sw)} x {len(sb)} grid of weight and bias "
        f"variances. Black: the mean-field critical line chi1 = 1 "
        f"(`pyjac.theory.critical_sigma_w2`); dashed: where the measured growth crosses "
        f"zero. Right: the measured growth at every grid point against the mean-field "
        f"prediction ln(chi1)/2. " + _fig6_gap(measured, predicted, bias, weights),
        ["sigma_b2", "critical sigma_w2 (theory)", "measured zero crossing"], rows)
    return fig, info


def _fig6_gap(measured: list[float], predicted: list[float], bias: list[float],
              weights: list[float]) -> str:
    """The remaining gap between the measured and predicted growth per layer."""
    m, p = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    ok = np.isfinite(m) & np.isfinite(p)
    if not ok.any():
        return "No grid point has both a measurement and a prediction."
    gap = np.abs(m - p)
    worst = int(np.nanargmax(np.where(ok, gap, -np.inf)))
    where = f" (sigma_w2 = {weights[worst]:.3g}, sigma_b2 = {bias[worst]:.2g})"
    return (f"Gap between measured and predicted growth per layer: median "
            f"{float(np.median(gap[ok])):.2g}, largest {float(gap[worst]):.2g} nats"
            f"{where}.")
