"""Figure 4: RNN gradient vs time, vanilla tanh vs LSTM, with rho^(T-t) references."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import plot as jplot
from ..experiments import rnn_sweep
from .common import FigureInfo, _e, _plt, figure_builder, join_words

# --------------------------------------------------------------------------------------
# Figure 4: RNN gradient vs time
# --------------------------------------------------------------------------------------
RADII = (0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5)


@figure_builder()
def fig4_rnn_gradient_vs_time(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                              progress: Any = None,
                              scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 4: RNN gradient vs time, vanilla tanh vs LSTM.
    """
    width, steps, seeds = (64, 100, 2) if quick else (128, 200, 3)
    res = rnn_sweep(cell=["tanh", "lstm"], spectral_radius=list(RADII), width=width,
                    steps=steps, seeds=seeds, cache=cache, progress=progress, n_jobs=n_jobs,
                    scheduler=scheduler)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    rows = []
    gains: dict[str, dict[float, float]] = {}
    for ax, cell in zip(axes, ("tanh", "lstm")):
        part = res.select(cell=cell)
        jplot.rnn_gradient_vs_time(part, ax=ax, colorbar=cell == "lstm")
        ax.set_title(f"{'vanilla tanh RNN' if cell == 'tanh' else 'LSTM'} (width {width})")
        for radius in RADII:
            sub = part.select(spectral_radius=radius)
            _, Y = sub.curves("grad_norm", x="step")
            with np.errstate(divide="ignore", invalid="ignore"):
                r = float(np.exp(np.nanmean(np.log(Y[:, 0] / Y[:, -1]))))
            gains.setdefault(cell, {})[radius] = r
            rows.append([cell, f"{radius:g}", _e(r), _e(radius**steps)])
    info = FigureInfo(
        "fig4_rnn_gradient_vs_time", "RNN gradient vs time",
        f"Gradient norm through {steps} time steps for spectral radii {RADII[0]} to "
        f"{RADII[-1]} (orthogonal W scaled to radius rho; dotted: rho^(T-t), a linear "
        f"recurrence's gain). " + _fig4_claims(gains, steps),
        ["cell", "spectral radius", f"measured ratio over {steps} steps", "rho^T"], rows)
    return fig, info


def _fig4_claims(gains: dict[str, dict[float, float]], steps: int) -> str:
    """What the measured gains of figure 4 show, in words."""
    tanh, lstm = gains.get("tanh", {}), gains.get("lstm", {})
    out = []
    for cell, name in ((tanh, "the vanilla tanh RNN's gradient"), (lstm, "the LSTM's")):
        if not cell:
            continue
        down = [f"{r:g}" for r, g in cell.items() if g < 1]
        up = [f"{r:g}" for r, g in cell.items() if g >= 1]
        parts = []
        if down:
            parts.append(f"shrinks over the {steps} steps at rho = {join_words(down)}")
        if up:
            parts.append(f"grows at rho = {join_words(up)}")
        out.append(f"{name} {' and '.join(parts)}")
    below = [r for r in tanh if r < 1 and r in lstm]
    if below:
        slower = [r for r in below if lstm[r] > tanh[r]]
        if len(slower) == len(below):
            out.append("at every radius below 1 the LSTM keeps more of it than the tanh RNN "
                       f"(at rho = {below[0]:g}: {_e(lstm[below[0]])} against "
                       f"{_e(tanh[below[0]])})")
        else:
            out.append("the LSTM keeps more of it than the tanh RNN at rho = "
                       f"{join_words([f'{r:g}' for r in slower]) or 'none of the radii'}")
    above = [r for r in tanh if r > 1]
    if above:
        less = [r for r in above if tanh[r] < r**steps]
        if less:
            out.append(f"tanh's saturation keeps the gain below rho^{steps} at rho = "
                       f"{join_words([f'{r:g}' for r in less])}")
    text = "; ".join(out) + "."
    return text[:1].upper() + text[1:]
