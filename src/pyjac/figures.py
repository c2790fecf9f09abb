"""The depth-vs-gradient figures that ``pyjac reproduce`` draws, one function each.

Every ``figN_*`` function runs its sweep (cached on disk, see :func:`pyjac.sweep`), draws
a matplotlib figure with :mod:`pyjac.plot` and returns ``(figure, info)`` where ``info``
(:class:`FigureInfo`) holds the caption and a table of the numbers it measured. The
scripts in ``examples/`` call these functions; ``quick=True`` shrinks widths, depths,
grids and seeds so that every figure together draws in well under two minutes on two
cores.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import plot as jplot
from . import theory
from ._atomic import save_figure
from ._figure_common import FigureInfo, Spec, _e, _plt, join_words, theory_gap, trend
from .experiments import Results, growth_rate, jacobian_spectra, rnn_sweep, sweep
from .figures_training import fig9_training, fig10_mixed_precision

__all__ = ["FIGURES", "FigureInfo", "Spec", "available"]


def _ratio(part: Results, lo: int = 0) -> float:
    """Geometric mean over seeds of ||dL/dh_lo|| / ||dL/dh_L||."""
    _, Y = part.curves("log_grad_norm")  # exact where the float64 norm underflows
    r = Y[:, lo] - Y[:, -1]
    r = r[np.isfinite(r)]
    return float(np.exp(r.mean())) if r.size else float("nan")


# --------------------------------------------------------------------------------------
# Figure 1: gradient norm vs depth, four activations under four inits
# --------------------------------------------------------------------------------------
ACTS = ("linear", "sigmoid", "tanh", "relu")
INITS = ("gaussian", "xavier", "he", "orthogonal")
INIT_COLORS = {"gaussian": "tab:blue", "xavier": "navy", "he": "tab:red",
               "orthogonal": "tab:green"}


def fig1_gradient_vs_depth(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                           progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 1: gradient norm vs depth, linear/sigmoid/tanh/ReLU under four inits.

    Parameters
    ----------
    quick : bool, default False
        Smaller widths, depths, grids and seeds.
    cache, n_jobs, progress
        Passed to :func:`pyjac.sweep`.

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
    """
    depth, width, batch, seeds = (50, 64, 16, 2) if quick else (100, 256, 32, 3)
    res = sweep(activation=list(ACTS), init=list(INITS), depth=depth, width=width,
                batch=batch, seeds=seeds, cache=cache, n_jobs=n_jobs, progress=progress)
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


# --------------------------------------------------------------------------------------
# Figure 2: plain vs residual vs layernorm at depth 100
# --------------------------------------------------------------------------------------
def fig2_residual_layernorm(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                            progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 2: plain vs residual vs layernorm chains at depth 100.

    Parameters
    ----------
    quick : bool, default False
        Smaller widths, depths, grids and seeds.
    cache, n_jobs, progress
        Passed to :func:`pyjac.sweep`.

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
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
                       seeds=seeds, cache=cache, n_jobs=n_jobs, progress=progress, **kw)
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


# --------------------------------------------------------------------------------------
# Figure 3: sigmoid vs ReLU derivative products
# --------------------------------------------------------------------------------------
def fig3_sigmoid_vs_relu(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                         progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 3: sigmoid vs ReLU derivative products, and measured chains.

    Parameters
    ----------
    quick : bool, default False
        Smaller widths, depths, grids and seeds.
    cache, n_jobs, progress
        Passed to :func:`pyjac.sweep`.

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
    """
    depth = 30
    width, batch, seeds = (64, 16, 2) if quick else (256, 32, 3)
    res = sweep(activation=["sigmoid", "relu"], init=["xavier", "he"], depth=depth,
                width=width, batch=batch, seeds=seeds, cache=cache, n_jobs=n_jobs,
                progress=progress)
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


# --------------------------------------------------------------------------------------
# Figure 4: RNN gradient vs time
# --------------------------------------------------------------------------------------
RADII = (0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5)


def fig4_rnn_gradient_vs_time(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                              progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 4: RNN gradient vs time, vanilla tanh vs LSTM.

    Parameters
    ----------
    quick : bool, default False
        Smaller widths, depths, grids and seeds.
    cache, n_jobs, progress
        Passed to :func:`pyjac.sweep`.

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
    """
    width, steps, seeds = (64, 100, 2) if quick else (128, 200, 3)
    res = rnn_sweep(cell=["tanh", "lstm"], spectral_radius=list(RADII), width=width,
                    steps=steps, seeds=seeds, cache=cache, progress=progress)
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


# --------------------------------------------------------------------------------------
# Figure 5: Jacobian singular value spectra vs depth
# --------------------------------------------------------------------------------------
def fig5_jacobian_spectra(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                          progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 5: Jacobian singular value spectra vs depth.

    Parameters
    ----------
    quick : bool, default False
        Smaller widths, depths, grids and seeds.
    cache, n_jobs, progress
        Passed to :func:`pyjac.sweep`.

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
    """
    width, at = (128, (1, 4, 16, 64)) if quick else (256, (1, 4, 16, 64, 128))
    # Near sigma_b2 = 0 the critical tanh chain has a small q*, where tanh is nearly
    # linear: the regime of dynamical isometry (Pennington et al. 2017).
    sb2 = 1e-4
    sw_tanh = theory.critical_sigma_w2("tanh", sb2)
    cases = [("tanh", "orthogonal", sw_tanh, sb2, "orthogonal tanh at criticality"),
             ("tanh", "gaussian", sw_tanh, sb2, "Gaussian tanh at criticality"),
             ("relu", "gaussian", 2.0, 0.0, "Gaussian ReLU at criticality (he)")]
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    rows = []
    deepest: dict[str, tuple[float, float, float]] = {}
    for ax, (act, init, sw, sb, title) in zip(axes, cases):
        res = jacobian_spectra(activation=act, init=init, sigma_w2=sw, sigma_b2=sb,
                               depth=max(at), width=width, at=at, cache=cache)
        jplot.singular_value_spectra(res, ax=ax, title=title)
        for d in at:
            sv = res.select(at_depth=d)["singular_value"]
            moments = theory.jacobian_spectrum_moments(act, init, sw, sb, d)
            rows.append([title, str(d), _e(sv.max()), _e(float(np.mean(sv**2))),
                         _e(moments.mean), _e(float(np.var(sv**2))), _e(moments.variance)])
            # How widely the middle 80% of the singular values spread.
            p10, p90 = np.percentile(sv, [10, 90])
            span = float(p90 / p10) if p10 > 0 else float("inf")
            deepest[title] = (float(np.mean(sv**2)), span, moments.mean)
    info = FigureInfo(
        "fig5_jacobian_spectra", "Jacobian singular value spectra vs depth",
        f"Singular values of the input-output Jacobian at depths {', '.join(map(str, at))} "
        f"(width {width}), all three chains at the mean-field critical point. At depth "
        f"{max(at)}: " + "; ".join(
            f"{title}: mean s^2 = {_e(m)} (infinite-width theory {_e(t)}), "
            + (f"the middle 80% of the singular values within a factor {_e(span)}"
               if np.isfinite(span) else "a tenth or more of the singular values "
               "numerically zero")
            for title, (m, span, t) in deepest.items())
        + ". " + _fig5_claims(deepest, max(at), width),
        ["chain", "depth", "largest s", "mean of s^2", "theory", "variance of s^2",
         "theory"], rows,
        ["Theory: `pyjac.theory.jacobian_spectrum_moments` (free probability, infinite "
         "width). Its corrections grow like depth/width, so the Gaussian chains part from "
         "it at depth 64 and beyond; the orthogonal tanh chain follows it."])
    return fig, info


def _fig5_claims(deepest: dict[str, tuple[float, float, float]], depth: int,
                 width: int) -> str:
    """Which chain keeps its spectrum together, and where the theory's mean holds."""
    spans = {t: span for t, (_, span, _) in deepest.items()}
    best = min(spans, key=spans.get)
    others = [t for t in spans if t != best]
    out = []
    if others and all(spans[t] > 3 * spans[best] for t in others):
        out.append(f"{best} keeps its spectrum the most concentrated (dynamical isometry); "
                   f"{join_words(others)} spread it "
                   + (f" {_e(min(spans[t] for t in others) / spans[best])}x or more wider"
                      if all(np.isfinite(spans[t]) for t in others) else
                      " over many decades, down to numerically zero"))
    off = [t for t, (m, _, th) in deepest.items() if abs(math.log(m / th)) > math.log(1.5)]
    if off:
        out.append(f"the mean of s^2 has left the infinite-width theory by more than 1.5x "
                   f"for {join_words(off)}: its finite-width corrections grow like "
                   f"depth/width = {depth / width:.2g}")
    text = "; ".join(out) + ("." if out else "")
    return text[:1].upper() + text[1:]


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


def fig6_phase_diagram(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                       progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 6: order/chaos phase diagram of tanh chains with the critical line.

    Parameters
    ----------
    quick : bool, default False
        Smaller widths, depths, grids and seeds.
    cache, n_jobs, progress
        Passed to :func:`pyjac.sweep`.

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
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
                n_jobs=n_jobs, progress=progress)
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


# --------------------------------------------------------------------------------------
# Figure 7: gradient clipping on an exploding chain
# --------------------------------------------------------------------------------------
def _clip(wgn: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Global-norm clipping of per-layer weight-gradient norms (runs x layers):
    ``g <- g * min(1, tau / ||g||)`` is one scalar per run, so it rescales every layer."""
    total = np.sqrt(np.nansum(wgn**2, axis=1))
    factor = np.minimum(1.0, tau / total)
    return total, factor


def fig7_gradient_clipping(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                           progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 7: global-norm gradient clipping on exploding and vanishing chains.

    Parameters
    ----------
    quick : bool, default False
        Smaller widths, depths, grids and seeds.
    cache, n_jobs, progress
        Passed to :func:`pyjac.sweep`.

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
    """
    tau = 1.0
    depths = [5, 10, 20, 30, 40, 50] if quick else [5, 10, 20, 30, 40, 50, 60, 80, 100]
    width, batch, seeds = (64, 16, 2) if quick else (256, 32, 3)
    phases = [(0.6, "ordered, $\\sigma_w^2$ = 0.6", "tab:blue"),
              (1.0, "critical, $\\sigma_w^2$ = 1", "tab:green"),
              (4.0, "chaotic, $\\sigma_w^2$ = 4", "tab:red")]
    res = sweep(activation="tanh", sigma_w2=[p[0] for p in phases], depth=depths,
                width=width, batch=batch, seeds=seeds, theory=False, cache=cache,
                n_jobs=n_jobs, progress=progress)
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
    busy = [f"{a} at sigma_w2 = {w:g} (at most {100 * np.nanmax(np.nanmean(Y, axis=0)):.2g}%, "
            f"{100 * mean_at(Y, depth):.2g}% at layer {depth})"
            for (a, w), Y in sat_at.items() if np.nanmax(Y) > 0]
    if busy:
        out.append(f"saturated: {join_words(busy)}")
    if zero:
        out.append(f"no unit saturates at any layer for {join_words(zero)}")
    text = "; ".join(out) + "."
    return text[:1].upper() + text[1:]



# --------------------------------------------------------------------------------------
def fig8_dead_and_saturated(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                            progress: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 8: dead ReLU and saturated sigmoid/tanh fractions vs depth.

    Parameters
    ----------
    quick : bool, default False
        Smaller widths, depths, grids and seeds.
    cache, n_jobs, progress
        Passed to :func:`pyjac.sweep`.

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
    """
    depth, width, batch, seeds = (50, 64, 16, 2) if quick else (100, 256, 32, 3)
    dead_cases = [(2.0, 0.0, r"he ($\sigma_w^2$ = 2), no bias"),
                  (2.0, 0.5, r"he, biases $\sigma_b^2$ = 0.5"),
                  (0.5, 0.5, r"small weights $\sigma_w^2$ = 0.5, $\sigma_b^2$ = 0.5")]
    dead = Results.concat([
        sweep(activation="relu", sigma_w2=sw, sigma_b2=sb, depth=depth, width=width,
              batch=batch, seeds=seeds, theory=False, cache=cache, n_jobs=n_jobs,
              progress=progress) for sw, sb, _ in dead_cases])
    sat = sweep(activation=["sigmoid", "tanh"], sigma_w2=[1.0, 4.0, 16.0], depth=depth,
                width=width, batch=batch, seeds=seeds, theory=False, cache=cache,
                n_jobs=n_jobs, progress=progress)
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


FIGURES: tuple[Spec, ...] = (
    Spec("fig1_gradient_vs_depth", "Gradient norm vs depth", fig1_gradient_vs_depth),
    Spec("fig2_residual_layernorm", "Plain vs residual vs layernorm at depth 100",
         fig2_residual_layernorm),
    Spec("fig3_sigmoid_vs_relu", "Sigmoid vs ReLU derivative products", fig3_sigmoid_vs_relu),
    Spec("fig4_rnn_gradient_vs_time", "RNN gradient vs time", fig4_rnn_gradient_vs_time),
    Spec("fig5_jacobian_spectra", "Jacobian singular value spectra vs depth",
         fig5_jacobian_spectra),
    Spec("fig6_phase_diagram", "Order-to-chaos phase diagram", fig6_phase_diagram),
    Spec("fig7_gradient_clipping", "Gradient clipping on an exploding chain",
         fig7_gradient_clipping),
    Spec("fig8_dead_and_saturated", "Dead ReLUs and saturated units vs depth",
         fig8_dead_and_saturated),
    Spec("fig9_training", "Training a deep net: which layers learn", fig9_training),
    Spec("fig10_mixed_precision", "Mixed precision: float16 underflow vs depth",
         fig10_mixed_precision),
)


def available(spec: Spec) -> str | None:
    """None when the figure can be drawn, else the reason it cannot (no matplotlib)."""
    try:
        _plt()
    except ImportError as exc:
        return str(exc)
    return None


def example_main(name: str, argv: list[str] | None = None) -> int:
    """Command line of the ``examples/figN_*.py`` scripts: draw one figure.

    ``python examples/NAME.py [--quick] [--no-cache] [--out FILE]`` writes ``FILE``
    (default ``NAME.png`` in the current directory) and prints the caption and the
    measured numbers.
    """
    import argparse
    import sys

    spec = next((s for s in FIGURES if s.name == name), None)
    if spec is None:
        raise ValueError(f"name: unknown figure {name!r}")
    parser = argparse.ArgumentParser(prog=f"{name}.py", description=spec.title)
    parser.add_argument("--quick", action="store_true", help="smaller, faster version")
    parser.add_argument("--no-cache", action="store_true", help="recompute every run")
    parser.add_argument("--out", default=f"{name}.png", help="image file to write")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    import matplotlib

    matplotlib.use("Agg")
    reason = available(spec)
    if reason is not None:
        print(f"{name}: cannot draw: {reason}", file=sys.stderr)
        return 1
    fig, info = spec.build(quick=args.quick, cache=not args.no_cache)
    save_figure(fig, args.out, dpi=110)
    print(info.caption)
    if info.rows:
        widths = [max(len(str(r[i])) for r in [info.header, *info.rows])
                  for i in range(len(info.header))]
        for row in [info.header, *info.rows]:
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
    print(f"wrote {args.out}")
    return 0
