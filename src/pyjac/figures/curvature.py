"""Figures 13 and 14: curvature across the order/chaos line, and gradient noise per layer
during training.

Both run in seconds to a minute and are not cached; ``cache``, ``n_jobs`` and
``progress`` are accepted for the same call signature as the other figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..chain import Chain
from ..datasets import load_digits
from ..train import train
from .common import (
    NOT_CACHED,
    FigureInfo,
    _e,
    _plt,
    figure_builder,
    join_words,
    log_axis_ticks,
)
from .training import N_CLASSES, TRAINING_NETS, training_net


# --------------------------------------------------------------------------------------
# Figure 13: Hessian top eigenvalue and trace vs sigma_w^2, beside the gradient
def _curvature_point(sigma_w2: float, seed: int, depth: int, width: int, batch: int,
                     samples: int) -> dict[str, float]:
    """One tanh chain at one sigma_w^2: its Hessian's extremes and trace, and the gradient
    ratio ||dL/dh_0|| / ||dL/dh_L||, on one regression batch (mse to random targets)."""
    net = Chain(depth, width, activation="tanh", init="gaussian", gain=float(np.sqrt(sigma_w2)),
                seed=seed, dtype="float64")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width))
    y = rng.standard_normal((batch, width))
    r = net.backprop(x, loss="mse", target=y, weight_grads=False)
    H = net.hessian(x, loss="mse", target=y)
    ends = H.eigenvalues(k=1, which="both")
    tr = H.trace(samples=samples, seed=seed)
    return dict(sigma_w2=sigma_w2, seed=seed, low=float(ends.values[0]),
                top=float(ends.values[1]), converged=bool(ends.converged),
                trace=tr.value, trace_se=tr.standard_error,
                ratio=float(np.exp(r.log_grad_norm[0] - r.log_grad_norm[-1])), loss=r.loss)


def _geomean(values: list[float]) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.log(v).mean())) if v.size else float("nan")


def _fig13_claims(grid: list[float], top: list[float], ratio: list[float],
                  low: list[float], trace: list[float], trace_se: list[float]) -> str:
    """Figure 13's statements, from the per-sigma_w^2 means."""
    lo, hi = grid[0], grid[-1]
    out = [f"The top Hessian eigenvalue goes from {_e(top[0])} at sigma_w2 = {lo:g} to "
           f"{_e(top[-1])} at {hi:g} ({_e(top[-1] / top[0])}x), while the gradient ratio "
           f"||dL/dh_0|| / ||dL/dh_L|| goes from {_e(ratio[0])} to {_e(ratio[-1])}"]
    log_top, log_ratio = np.log(top), np.log(ratio)
    ok = np.isfinite(log_top) & np.isfinite(log_ratio)
    if ok.sum() >= 3:
        corr = float(np.corrcoef(log_top[ok], log_ratio[ok])[0, 1])
        out.append(f"across the grid, log lambda_max and the log gradient ratio have "
                   f"correlation {corr:.2f}")
    rising = all(b >= a for a, b in zip(top, top[1:]))
    out.append("lambda_max rises at every step of sigma_w2" if rising else
               "lambda_max does not rise at every step of sigma_w2")
    negative = [f"{s:g} ({_e(v)})" for s, v in zip(grid, low) if v < 0]
    if negative:
        out.append(f"negative curvature (lambda_min < 0) at sigma_w2 = {join_words(negative)}")
    unresolved = [f"{s:g}" for s, t, se in zip(grid, trace, trace_se) if abs(t) < 2 * se]
    if unresolved:
        out.append(f"the trace estimate is within two standard errors of 0 at sigma_w2 = "
                   f"{join_words(unresolved)}")
    text = "; ".join(out) + "."
    return text[:1].upper() + text[1:]


@figure_builder(quick="A coarser sigma_w^2 grid, one seed, a shallower and narrower "
                      "chain.", rest=NOT_CACHED)
def fig13_curvature(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                    progress: Any = None, scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 13: Hessian top eigenvalue and trace vs sigma_w^2 for tanh chains across the
    order/chaos line, beside the gradient ratio: does curvature explode where gradients do?

    Each point is one exact Hessian of the mean squared error of a tanh chain (Gaussian
    weights of variance sigma_w^2 / fan_in, no biases, random inputs and targets) at
    initialisation: its extreme eigenvalues by Lanczos and its trace by Hutch++.
    """
    depth, width, batch, seeds = (10, 32, 32, 1) if quick else (20, 64, 64, 3)
    grid = [0.5, 1.0, 2.0, 4.0] if quick else [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]
    samples = 30 if quick else 99
    points = [_curvature_point(s, seed, depth, width, batch, samples)
              for s in grid for seed in range(seeds)]
    by = {s: [p for p in points if p["sigma_w2"] == s] for s in grid}
    top = [_geomean([p["top"] for p in by[s]]) for s in grid]
    ratio = [_geomean([p["ratio"] for p in by[s]]) for s in grid]
    low = [float(np.mean([p["low"] for p in by[s]])) for s in grid]
    trace = [float(np.mean([p["trace"] for p in by[s]])) for s in grid]
    trace_se = [float(np.sqrt(np.sum([p["trace_se"] ** 2 for p in by[s]]))) / len(by[s])
                for s in grid]

    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained")
    for ax in (ax1, ax2, ax3):
        ax.axvline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel(r"$\sigma_w^2$ (tanh, no bias: the edge of chaos is at 1)")
    ax1.loglog([p["sigma_w2"] for p in points], [p["top"] for p in points], "o",
               color="tab:red", alpha=0.4, ms=4)
    ax1.loglog(grid, top, "-", color="tab:red", label=r"$\lambda_{max}$")
    neg = [(s, -v) for s, v in zip(grid, low) if v < 0]
    if neg:
        ax1.loglog(*zip(*neg), "s--", color="tab:purple",
                   label=r"$-\lambda_{min}$ (where negative)")
    ax1.set_ylabel("Hessian eigenvalue")
    ax1.set_title("extreme eigenvalues (Lanczos)")
    ax1.legend(fontsize=8)
    ax2.errorbar(grid, trace, yerr=2 * np.asarray(trace_se), fmt="o-", color="tab:orange",
                 capsize=3)
    ax2.set_yscale("symlog", linthresh=max(1e-3, min(abs(t) for t in trace if t != 0)))
    ax2.set_ylabel(r"tr$(H)$ (Hutch++, $\pm$ 2 standard errors)")
    ax2.set_title("trace of the Hessian")
    ax3.loglog(grid, ratio, "o-", color="tab:blue")
    ax3.axhline(1.0, color="0.5", lw=0.8)
    ax3.set_ylabel(r"$\|\partial L/\partial h_0\| \,/\, \|\partial L/\partial h_L\|$")
    ax3.set_title(f"gradient through {depth} layers")
    for ax in (ax1, ax2, ax3):
        log_axis_ticks(ax, grid)
    rows = [[f"{s:g}", _e(t), _e(lo), _e(tr), _e(se), _e(r)]
            for s, t, lo, tr, se, r in zip(grid, top, low, trace, trace_se, ratio)]
    converged = sum(p["converged"] for p in points)
    info = FigureInfo(
        "fig13_curvature", "Curvature across the order/chaos line",
        f"Tanh chains of depth {depth} and width {width}, Gaussian weights of variance "
        f"sigma_w2 / fan_in, mean squared error to random targets on a batch of {batch}, "
        f"{seeds} seed(s) per point (lines: geometric means). " +
        _fig13_claims(grid, top, ratio, low, trace, trace_se) +
        f" Lanczos converged for {converged} of {len(points)} Hessians.",
        ["sigma_w2", "lambda_max", "lambda_min", "trace", "trace s.e.",
         "||dL/dh_0|| / ||dL/dh_L||"], rows)
    return fig, info


# --------------------------------------------------------------------------------------
# Figure 14: gradient signal-to-noise per layer during training
def _fig14_claims(labels: list[str], histories: list, depth: int) -> str:
    out = []
    for label, h in zip(labels, histories):
        first, last = h.gradient_snr[0], h.gradient_snr[-1]
        out.append(f"{label}: SNR of layer 1 {_e(first[0])} and of layer {depth - 1} "
                   f"{_e(first[-2])} in epoch 1, {_e(last[0])} and {_e(last[-2])} in the "
                   f"last epoch; noise scale B_simple of layer 1 {_e(h.gradient_noise_scale[0, 0])}"
                   f" -> {_e(h.gradient_noise_scale[-1, 0])}")
    return ". ".join(out) + "."


@figure_builder(quick="Fewer epochs.", rest=NOT_CACHED)
def fig14_gradient_noise(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                         progress: Any = None,
                         scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 14: gradient signal-to-noise per layer vs depth, sigmoid vs ReLU + He,
    during training.

    The two plain nets of figure 9 (nine 64-wide hidden layers, a linear 10-unit readout)
    trained by SGD on the digits; each step's per-example gradients give every layer's
    SNR ``||g_bar||^2 / (tr(S) / B)`` and noise scale, averaged over the epoch.
    """
    depth, width, epochs, lr, batch = 10, 64, (6 if quick else 30), 0.1, 32
    data = load_digits(dtype="float64")
    nets = TRAINING_NETS[:2]
    histories = [train(training_net(depth, width, kwargs), data.x_train, data.y_train,
                       epochs=epochs, lr=lr, batch_size=batch, progress=False)
                 for _, kwargs, _ in nets]
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    layers = np.arange(1, depth + 1)
    for (label, _, color), h in zip(nets, histories):
        ax1.plot(layers, h.gradient_snr[0], ":o", color=color, ms=3,
                     label=f"{label}: epoch 1")
        ax1.plot(layers, h.gradient_snr[-1], "-o", color=color, ms=4,
                     label=f"{label}: epoch {epochs}")
        ax2.plot(np.arange(1, epochs + 1), h.gradient_snr[:, 0], "-", color=color,
                     label=f"{label}: layer 1")
        ax2.plot(np.arange(1, epochs + 1), h.gradient_snr[:, -2], "--", color=color,
                     label=f"{label}: layer {depth - 1}")
    for ax in (ax1, ax2):
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        # below the axes: the lines fill the plot
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    ax1.set_xlabel(f"layer l ({depth} = the linear readout)")
    ax1.set_ylabel(r"gradient SNR $\|\bar g\|^2 / (\mathrm{tr}\,S / B)$")
    ax1.set_title("signal-to-noise of each layer's minibatch gradient")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("gradient SNR (mean over the epoch's steps)")
    ax2.set_title("first vs last hidden layer over training")
    rows = [[label, _e(h.gradient_snr[0, 0]), _e(h.gradient_snr[0, -2]),
             _e(h.gradient_snr[-1, 0]), _e(h.gradient_snr[-1, -2]),
             _e(h.gradient_noise_scale[-1, 0]), _e(h.loss[-1])]
            for (label, _, _), h in zip(nets, histories)]
    info = FigureInfo(
        "fig14_gradient_noise", "Gradient signal-to-noise per layer during training",
        f"Two {depth}-layer nets ({depth - 1} hidden layers of {width}, a linear "
        f"{N_CLASSES}-unit readout) trained by SGD (lr {lr}, batch {batch}, {epochs} "
        f"epochs) on {data.source}; the SNR of a layer's minibatch gradient is "
        f"||g_bar||^2 / (tr(S) / {batch}) from the per-example gradients of every step "
        f"(below 1: noise outweighs the mean). " +
        _fig14_claims([label for label, _, _ in nets], histories, depth),
        ["net", "SNR layer 1 (epoch 1)", f"SNR layer {depth - 1} (epoch 1)",
         f"SNR layer 1 (epoch {epochs})", f"SNR layer {depth - 1} (epoch {epochs})",
         f"B_simple layer 1 (epoch {epochs})", "final train loss"], rows)
    return fig, info
