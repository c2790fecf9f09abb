"""Figure 2: plain vs residual vs layernorm chains at depth 100."""

from __future__ import annotations

import math
from typing import Any

from .. import plot as jplot
from .. import theory
from ..experiments import Results, sweep
from .common import FigureInfo, _e, _plt, _ratio, figure_builder, trend


# --------------------------------------------------------------------------------------
# Figure 2: plain vs residual vs layernorm at depth 100
# --------------------------------------------------------------------------------------
@figure_builder()
def fig2_residual_layernorm(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                            progress: Any = None,
                            scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 2: plain vs residual vs layernorm chains at depth 100.
    """
    depth = 100
    width, batch, seeds = (64, 16, 2) if quick else (256, 32, 3)
    scale = 1 / math.sqrt(depth)
    panels = [("sigmoid", "xavier"), ("tanh", "xavier"), ("relu", "he")]
    variants = [("plain", dict(residual=False, norm=None)),
                ("layernorm", dict(residual=False, norm="layernorm")),
                ("residual", dict(residual=True, norm=None)),
                (f"residual, branch x 1/sqrt(L) = {scale:.2g}",
                 dict(residual=True, norm=None, residual_scale=scale))]
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    rows = []
    measured: dict[str, dict[str, float]] = {}
    for ax, (act, init) in zip(axes, panels):
        parts = [sweep(activation=act, init=init, depth=depth, width=width, batch=batch,
                       seeds=seeds, cache=cache, n_jobs=n_jobs, progress=progress,
                       scheduler=scheduler, **kw)
                 for _, kw in variants]
        labels = [v for v, _ in variants]
        jplot.gradient_vs_depth(Results.concat(parts), ax=ax, by=["residual", "norm",
                                "residual_scale"], labels=labels, theory=False,
                                linestyles=["-", "-", "-", (0, (5, 2))])
        ax.set_title(f"{act} ({init} init)")
        gains = [_ratio(p) for p in parts]
        rows.append([f"{act} ({init})", *[_e(g) for g in gains]])
        measured[act] = dict(zip([v for v, _ in variants], gains))
    fig.suptitle(f"Plain vs residual vs layernorm chains at depth {depth} (width {width}, "
                 f"{seeds} seeds)", fontsize="medium")
    info = FigureInfo(
        "fig2_residual_layernorm", "Plain vs residual vs layernorm at depth 100",
        f"Gradient norm relative to the output layer through {depth}-layer chains "
        f"(layernorm before the activation, no affine). Measured ||dL/dh_0|| / ||dL/dh_L|| "
        f"(vanishes: below 1/10, explodes: above 10): "
        + ". ".join(f"{act}: " + ", ".join(f"{v} {trend(g)}" for v, g in m.items())
                    for act, m in measured.items())
        + ". " + _fig2_mechanism(measured, variants[3][0], depth, width),
        ["chain", *[v for v, _ in variants]], rows,
        [r"Entries: $\|\partial L/\partial h_0\| / \|\partial L/\partial h_L\|$ (geometric "
         "mean over seeds)."])
    return fig, info


def _fig2_mechanism(measured: dict[str, dict[str, float]], scaled: str, depth: int,
                    width: int) -> str:
    """The explanations of figure 2, each only where the measurement shows it."""
    out = []
    relu = measured.get("relu", {})
    gain = relu.get("residual", float("nan"))
    if "explodes" in trend(gain):
        per_block = gain ** (1 / depth)
        naive = math.sqrt(2.0)  # sqrt(1 + sigma_w2 E[phi'^2]) with sigma_w2 = 2
        tracked = math.exp(theory.predicted_log_grad_norm(
            "relu", 2.0, 0.0, depth, True, 1.0, input_second_moment=1.0, width=width)[0]
            / depth)
        if abs(per_block / naive - 1) > 0.02:
            out.append(f"The unscaled ReLU residual chain's gradient grows by a factor "
                       f"{per_block:.3g} per block, not the {naive:.3g} of the independent "
                       f"per-layer factor sqrt(1 + sigma_w2 E[phi'^2]): it grows a "
                       f"component along the residual stream, and the recursion that "
                       f"tracks it (`pyjac.theory.predicted_log_grad_norm`) predicts "
                       f"{tracked:.3g}")
        else:
            out.append(f"The unscaled ReLU residual chain's gradient grows by a factor "
                       f"{per_block:.3g} per block (the theory predicts {tracked:.3g})")
        scaled_gain = relu.get(scaled, float("nan"))
        if scaled_gain < gain:
            out[-1] += (f"; scaling the branch by 1/sqrt(L) brings the gain from {_e(gain)} "
                        f"to {_e(scaled_gain)}")
    sig = measured.get("sigmoid", {})
    if "vanishes" in trend(sig.get("plain", float("nan"))) and \
            "vanishes" not in trend(sig.get("residual", float("nan"))):
        out.append("A residual path stops the sigmoid's vanishing gradient")
    return ". ".join(out) + ("." if out else "")
