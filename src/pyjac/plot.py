"""Matplotlib figures from pyjac measurements (needs the ``[plot]`` extra: matplotlib).

Every function draws into ``ax`` (a new figure's axes when None) and returns the axes.
Tables come from :func:`pyjac.sweep` (:class:`pyjac.Results`); gradient norms are shown
on log scales because they span decades.

>>> import pyjac, pyjac.plot
>>> res = pyjac.sweep(activation=["sigmoid", "relu"], depth=30, width=64, cache=False,
...                   progress=False)
>>> ax = pyjac.plot.gradient_vs_depth(res)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .experiments import CONFIG_COLUMNS, Results, growth_rate

__all__ = [
    "activation_derivatives",
    "gradient_flow",
    "gradient_vs_depth",
    "per_layer",
    "phase_diagram",
    "rnn_gradient_vs_time",
    "singular_value_spectra",
    "weight_histograms",
]

#: Colours for successive lines (colour-blind-safe Tableau order).
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
          "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
_NAMES = {
    "grad_norm": r"$\|\partial L/\partial h_l\|$",
    "weight_grad_norm": r"$\|\partial L/\partial W_l\|$",
    "bias_grad_norm": r"$\|\partial L/\partial b_l\|$",
    "activation_norm": r"$\|h_l\|$",
    "derivative_mean": r"mean $\phi'(z_l)$",
    "dead_fraction": "dead units (fraction)",
    "saturated_fraction": "saturated units (fraction)",
}


#: Configuration columns whose values are ordered: lines that differ in one of them get
#: a sequential colour map and a colour bar instead of unrelated colours.
ORDERED = ("sigma_w2", "sigma_b2", "gain", "depth", "width", "residual_scale", "batch",
           "input_scale", "spectral_radius")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))


@dataclass
class _Styles:
    colors: list[Any]
    linestyles: list[Any]
    labels: list[str | None]
    colorbar: tuple[str, Any, Any, list[float]] | None  # column, norm, colormap, ticks


def _sequential_cmap(name: str = "viridis") -> Any:
    """A sequential colour map without its last tenth, whose pale end does not read on
    white: for lines coloured by an ordered parameter, and their colour bar."""
    from matplotlib.colors import ListedColormap

    base = _pyplot().get_cmap(name)
    return ListedColormap([base(v) for v in np.linspace(0, 0.9, 256)])


def _auto_styles(by: Sequence[str], keys: list[tuple[Any, ...]]) -> _Styles:
    """Colours, line styles and legend labels for lines keyed by the ``by`` columns.

    The first ordered column that varies gets the colour (a sequential map, shown by a
    colour bar); the other columns' combinations get line styles, named in the legend.
    Without an ordered column the combinations get distinct colours, and line styles
    once the colours run out.
    """
    # A column that another one determines (gain, from sigma_w2 and the init) would only
    # repeat it: it is left out of the styles.
    used: list[str] = []
    for c in sorted(by, key=lambda c: ORDERED.index(c) if c in ORDERED else -1):
        pairs = {(tuple(k[by.index(u)] for u in used), k[by.index(c)]) for k in keys}
        others = {p[0] for p in pairs}
        if used and len(pairs) == len(others):
            continue
        used.append(c)
    by_all, by = list(by), [c for c in by if c in used]
    keys = [tuple(k[by_all.index(c)] for c in by) for k in keys]
    ordered = [c for c in by if c in ORDERED and len({k[by.index(c)] for k in keys}) > 1]
    if ordered:
        col = ordered[0]
        i = by.index(col)
        values = sorted({float(k[i]) for k in keys})
        from matplotlib.colors import Normalize

        cmap = _sequential_cmap()
        norm = Normalize(vmin=values[0], vmax=values[-1])
        rest = [c for c in by if c != col]
        combos = list(dict.fromkeys(tuple(k[by.index(c)] for c in rest) for k in keys))
        return _Styles(
            colors=[cmap(norm(float(k[i]))) for k in keys],
            linestyles=[LINESTYLES[combos.index(tuple(k[by.index(c)] for c in rest))
                                   % len(LINESTYLES)] for k in keys],
            labels=[label_of(dict(zip(rest, combo)), rest) if rest else None
                    for combo in (tuple(k[by.index(c)] for c in rest) for k in keys)],
            colorbar=(col, norm, cmap, values))
    n = len(COLORS)
    return _Styles(colors=[COLORS[j % n] for j in range(len(keys))],
                   linestyles=[LINESTYLES[(j // n) % len(LINESTYLES)] for j in range(len(keys))],
                   labels=[label_of(dict(zip(by, k)), by) if by else None for k in keys],
                   colorbar=None)


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("pyjac.plot needs matplotlib: pip install 'pyjac[plot]'") from None
    return plt


def _axes(ax: Any) -> Any:
    if ax is None:
        plt = _pyplot()
        _, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    return ax


def _check_results(results: Any, name: str = "results", needs: Sequence[str] = ()) -> Results:
    if not isinstance(results, Results):
        raise TypeError(f"{name}: expected pyjac.Results, got {type(results).__name__}")
    if len(results) == 0:
        raise ValueError(f"{name}: the table is empty")
    missing = [c for c in needs if c not in results]
    if missing:
        raise ValueError(f"{name}: lacks the column(s) {', '.join(missing)}")
    return results


def _fmt_number(v: float) -> str:
    return f"{v:.3g}"


def label_of(config: Mapping[str, Any], columns: Sequence[str]) -> str:
    """A short legend label naming the values of ``columns`` in ``config``."""
    parts = []
    for c in columns:
        v = config[c]
        if c in ("activation", "init", "loss", "dtype", "cell"):
            parts.append(str(v))
        elif c == "norm":
            parts.append("no norm" if v in (None, "none") else str(v))
        elif c == "residual":
            parts.append("residual" if v else "plain")
        elif c == "sigma_w2":
            parts.append(rf"$\sigma_w^2$={_fmt_number(v)}")
        elif c == "sigma_b2":
            parts.append(rf"$\sigma_b^2$={_fmt_number(v)}")
        elif c == "residual_scale":
            parts.append(rf"branch scale {_fmt_number(v)}")
        elif c == "depth":
            parts.append(f"L={v}")
        elif c == "spectral_radius":
            parts.append(rf"$\rho$={_fmt_number(v)}")
        else:
            parts.append(f"{c}={_fmt_number(v) if isinstance(v, float) else v}")
    return ", ".join(parts)


def _positive(y: np.ndarray) -> np.ndarray:
    """NaN where ``y`` cannot go on a log axis (zero, negative, NaN or Inf)."""
    y = np.asarray(y, dtype=np.float64)
    return np.where(np.isfinite(y) & (y > 0), y, np.nan)


def _geomean(Y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(_positive(Y))
    counts = np.sum(np.isfinite(logs), axis=0)
    total = np.nansum(np.where(np.isfinite(logs), logs, 0.0), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.exp(total / np.maximum(counts, 1)), np.nan)


def _band(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    P = _positive(Y)
    ok = np.isfinite(P).any(axis=0)
    lo = np.full(P.shape[1], np.nan)
    hi = np.full(P.shape[1], np.nan)
    lo[ok] = np.nanmin(P[:, ok], axis=0)
    hi[ok] = np.nanmax(P[:, ok], axis=0)
    return lo, hi


def per_layer(results: Results, value: str = "grad_norm", *, ax: Any = None,
              by: Sequence[str] | None = None, normalize: bool = False, log: bool = True,
              theory: bool = False, band: bool = True, labels: Sequence[str] | None = None,
              colors: Sequence[str] | None = None, linestyles: Sequence[str] | None = None,
              markers: Sequence[str | None] | None = None, legend: bool = True,
              x: str = "layer") -> Any:
    """One line per configuration of a per-layer measurement against the layer index.

    The line is the geometric mean over seeds (arithmetic when ``log=False``) and the
    shaded band spans the seeds' minimum to maximum.

    Parameters
    ----------
    results : Results
        A sweep table (columns ``layer``, ``seed``, ``config`` and ``value``).
    value : str, default "grad_norm"
        The column to draw.
    ax : matplotlib Axes, optional
    by : sequence of str, optional
        Columns whose values make one line each; default: the configuration columns that
        vary in ``results``.
    normalize : bool, default False
        Divide each run by its value at the last layer (``l = L``).
    log : bool, default True
        Log y axis.
    theory : bool, default False
        Draw ``exp(theory_log_ratio)`` (mean field), dashed, where it is defined.
    band : bool, default True
        Shade min-max over seeds.
    labels, colors, linestyles, markers : sequence, optional
        One per line, in order (a marker is drawn at about ten points of its line; with
        the line style "none", markers alone show a line that another one hides).
    legend : bool, default True

    Returns
    -------
    matplotlib Axes
    """
    results = _check_results(results, needs=(x, value))
    ax = _axes(ax)
    by = list(results.varying() if by is None else by)
    for c in by:
        results[c]  # noqa: B018  (KeyError naming a missing column)
    groups = list(results.groupby(*by))
    auto = _auto_styles(by, [key for key, _ in groups]) if colors is None and labels is None \
        else None
    theory_drawn = False
    for i, (key, part) in enumerate(groups):
        xs, Y = part.curves(value, x=x)
        if normalize:
            with np.errstate(divide="ignore", invalid="ignore"):
                Y = Y / Y[:, -1:]
        keep = np.isfinite(Y).any(axis=0)  # e.g. layer 0 of the per-layer-weight columns
        xs, Y = xs[keep], Y[:, keep]
        if xs.size == 0:
            continue
        if auto is not None:
            color, style, label = auto.colors[i], auto.linestyles[i], auto.labels[i]
            if linestyles is not None:
                style = linestyles[i]
        else:
            color = colors[i] if colors is not None else COLORS[i % len(COLORS)]
            style = linestyles[i] if linestyles is not None else "-"
            label = labels[i] if labels is not None else (
                label_of(dict(zip(by, key)), by) if by else None)
        center = _geomean(Y) if log else np.nanmean(Y, axis=0)
        marker = markers[i] if markers is not None else None
        ax.plot(xs, center, color=color, ls=style, lw=1.8, label=label, marker=marker,
                markevery=max(1, xs.size // 10), ms=5, mfc="none" if marker else None)
        if band and Y.shape[0] > 1:
            lo, hi = _band(Y) if log else (np.nanmin(Y, axis=0), np.nanmax(Y, axis=0))
            ax.fill_between(xs, lo, hi, color=color, alpha=0.18, lw=0)
        if theory and "theory_log_ratio" in part:
            _, T = part.curves("theory_log_ratio", x=x)
            pred = T[0]
            if np.isfinite(pred).all():
                scale = 1.0 if normalize else _geomean(Y[:, -1:])[0]
                # On top of the measured line it follows, with a white halo, so that it
                # stays visible where the two coincide.
                from matplotlib import patheffects

                with np.errstate(over="ignore"):
                    ax.plot(xs, np.exp(pred) * scale, color=color, ls=(0, (1.2, 1.6)),
                            lw=1.8, zorder=4, path_effects=[
                                patheffects.withStroke(linewidth=3.2, foreground="white")])
                theory_drawn = True
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("layer $l$ (0 = input)" if x == "layer" else x)
    name = _NAMES.get(value, value)
    if normalize:
        name = f"{name} / {_NAMES.get(value, value).replace('_l', '_L')}"
    ax.set_ylabel(name)
    ax.grid(alpha=0.3, which="major")
    if auto is not None and auto.colorbar is not None:
        from matplotlib.cm import ScalarMappable

        col, norm, cmap, ticks = auto.colorbar
        bar = ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
        bar.set_label(label_of({col: ticks[0]}, [col]).split("=")[0].strip() or col)
        if len(ticks) <= 12:
            bar.set_ticks(ticks)
    if legend and (by or theory_drawn):
        handles, texts = ax.get_legend_handles_labels()
        if auto is not None and auto.colorbar is not None:
            # One entry per line style: the colours are on the colour bar.
            from matplotlib.lines import Line2D

            seen: dict[str, Any] = {}
            for style, text in zip(auto.linestyles, auto.labels):
                if text is not None and text not in seen:
                    seen[text] = Line2D([], [], color="0.3", ls=style, lw=1.8)
            handles, texts = list(seen.values()), list(seen)
        if theory_drawn:
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], color="0.3", ls=(0, (1.2, 1.6)), lw=1.8))
            texts.append("mean-field theory")
        if handles:
            if auto is not None:  # outside the axes, where it hides no data
                ax.legend(handles, texts, fontsize="small", loc="upper left",
                          bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
            else:
                ax.legend(handles, texts, fontsize="small", framealpha=0.85)
    return ax


def gradient_vs_depth(results: Results, *, ax: Any = None, by: Sequence[str] | None = None,
                      normalize: bool = True, theory: bool = True, band: bool = True,
                      value: str = "grad_norm", **kwargs: Any) -> Any:
    """Gradient norm against depth, log y, one line per configuration, a band over seeds.

    By default each run is divided by its gradient norm at the output layer, so every
    line starts at 1 on the right and shows how much the gradient shrank (or grew) on
    its way back to layer ``l``; the mean-field prediction is drawn dashed where the
    theory applies (plain chains, random inits). See :func:`per_layer` for the
    parameters.

    Returns
    -------
    matplotlib Axes
    """
    return per_layer(results, value, ax=ax, by=by, normalize=normalize, log=True,
                     theory=theory, band=band, **kwargs)


def gradient_flow(results: Results, *, ax: Any = None, value: str = "weight_grad_norm",
                  by: Sequence[str] | None = None, log: bool = True,
                  labels: Sequence[str] | None = None, max_configs: int = 4) -> Any:
    """Per-layer bars of the exact weight-gradient norm (the classic "plot_grad_flow").

    One bar per layer (grouped side by side for up to ``max_configs`` configurations),
    the height the mean over seeds, the whisker the seeds' range.

    Parameters
    ----------
    results : Results
        A sweep table.
    value : str, default "weight_grad_norm"
        Column to draw (layers 1..L; NaN rows such as layer 0 are left out).
    by : sequence of str, optional
        Columns that tell configurations apart (default: those that vary).
    log : bool, default True
    labels : sequence of str, optional
    max_configs : int, default 4

    Returns
    -------
    matplotlib Axes
    """
    results = _check_results(results, needs=("layer", value))
    ax = _axes(ax)
    by = list(results.varying() if by is None else by)
    groups = list(results.groupby(*by))
    if len(groups) > max_configs:
        raise ValueError(f"results: {len(groups)} configurations; gradient_flow draws at most "
                         f"max_configs={max_configs} (select some first)")
    n = len(groups)
    width = 0.8 / n
    for i, (key, part) in enumerate(groups):
        xs, Y = part.curves(value)
        keep = np.isfinite(Y).any(axis=0)
        xs, Y = xs[keep], Y[:, keep]
        mean = np.nanmean(Y, axis=0)
        lo, hi = np.nanmin(Y, axis=0), np.nanmax(Y, axis=0)
        label = labels[i] if labels is not None else (
            label_of(dict(zip(by, key)), by) if by else None)
        offset = (i - (n - 1) / 2) * width
        ax.bar(xs + offset, mean, width=width, color=COLORS[i % len(COLORS)], label=label,
               alpha=0.85, linewidth=0)
        if Y.shape[0] > 1:
            ax.errorbar(xs + offset, mean, yerr=[mean - lo, hi - mean], fmt="none",
                        ecolor="0.25", elinewidth=0.7, capsize=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("layer $l$ (1 = first hidden layer)")
    ax.set_ylabel(_NAMES.get(value, value))
    ax.grid(alpha=0.3, axis="y")
    if by:
        ax.legend(fontsize="small", framealpha=0.85)
    return ax


def singular_value_spectra(spectra: Results | Mapping[int, Any], *, ax: Any = None,
                           bins: int = 40, density: bool = True, cmap: str = "viridis",
                           floor: float = 1e-12, title: str | None = None) -> Any:
    """Histograms of the singular values of the Jacobian product at several depths.

    Parameters
    ----------
    spectra : Results or mapping of int to array
        A table with columns ``at_depth`` and ``singular_value`` (as made by
        :func:`pyjac.experiments.jacobian_spectra`), or ``{depth: singular values}`` (as in
        ``Chain.jacobian_norms(x, singular_values_at=...).singular_values``).
    ax : matplotlib Axes, optional
    bins : int, default 40
        Log-spaced bins over the range of the values drawn.
    density : bool, default True
        Normalise each histogram (over ``log10`` of the singular values), so that each
        integrates to the fraction of singular values drawn.
    cmap : str, default "viridis"
        Colour map over the depths.
    floor : float, default 1e-12
        Singular values below ``floor`` times the largest one at the same depth are
        numerically zero for gradient flow (ReLU products are rank-deficient): they are
        left out of the histogram and counted in the legend.
    title : str, optional

    Returns
    -------
    matplotlib Axes
    """
    if isinstance(spectra, Results):
        _check_results(spectra, "spectra", needs=("at_depth", "singular_value"))
        data = {int(d): part["singular_value"] for (d,), part in spectra.groupby("at_depth")}
    elif isinstance(spectra, Mapping):
        data = {int(d): np.asarray(v, dtype=np.float64).ravel() for d, v in spectra.items()}
    else:
        raise TypeError(f"spectra: expected Results or a mapping of depth to singular values, "
                        f"got {type(spectra).__name__}")
    if not data:
        raise ValueError("spectra: no depths to draw")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins: expected a positive integer, got {bins!r}")
    if not (isinstance(floor, (int, float)) and 0 <= floor < 1):
        raise ValueError(f"floor: expected a number in [0, 1), got {floor!r}")
    kept = {}
    for d, v in data.items():
        v = v[np.isfinite(v)]
        top = v.max() if v.size else 0.0
        kept[d] = (v[v > max(top * floor, 0.0)], v.size)
    positive = np.concatenate([k for k, _ in kept.values()])
    if positive.size == 0:
        raise ValueError("spectra: no positive finite singular values to draw")
    ax = _axes(ax)
    lo_log, hi_log = np.log10(positive.min()), np.log10(positive.max())
    if hi_log - lo_log < 0.01:
        lo_log, hi_log = lo_log - 0.02, hi_log + 0.02
    edges = np.logspace(lo_log, hi_log, bins + 1)
    colormap = _pyplot().get_cmap(cmap)
    depths = sorted(kept)
    for i, d in enumerate(depths):
        v, n = kept[d]
        color = colormap(0.9 * i / max(1, len(depths) - 1))
        if density:
            counts, _ = np.histogram(np.log10(v), bins=np.log10(edges))
            counts = counts / (n * np.diff(np.log10(edges)))
        else:
            counts, _ = np.histogram(v, bins=edges)
        zero = 1.0 - v.size / n if n else 0.0
        label = f"depth {d}" + (f" ({100 * zero:.0f}% below {floor:g} x max)" if zero else "")
        ax.stairs(counts, edges, color=color, lw=1.6, label=label)
    ax.set_xscale("log")
    ax.set_xlabel(r"singular value of $\partial h_l / \partial h_0$")
    ax.set_ylabel(r"density (per decade)" if density else "count")
    ax.axvline(1.0, color="0.4", lw=0.8, ls=":")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", framealpha=0.85)
    if title:
        ax.set_title(title)
    return ax


def rnn_gradient_vs_time(results: Results, *, ax: Any = None, normalize: bool = True,
                         band: bool = True, cmap: str = "viridis", reference: bool = True,
                         colorbar: bool = True) -> Any:
    """Gradient norm ``||dL/dh_t||`` against the number of steps back-propagated.

    One line per spectral radius (a sequential colour map, with a colour bar) and cell
    (line style), geometric mean over seeds with a min-max band; dotted, in the same
    colour, the reference ``rho^(T-t)`` of a linear recurrence with that spectral radius.

    Parameters
    ----------
    results : Results
        Columns ``step`` (t = 0..T), ``grad_norm``, ``spectral_radius``, and optionally
        ``cell`` and ``seed`` (as made by :func:`pyjac.experiments.rnn_sweep`).
    ax : matplotlib Axes, optional
    normalize : bool, default True
        Divide by ``||dL/dh_T||``.
    band : bool, default True
    cmap : str, default "viridis"
    reference : bool, default True
        Draw ``rho^(T-t)`` (normalised plots only).
    colorbar : bool, default True

    Returns
    -------
    matplotlib Axes
    """
    results = _check_results(results, needs=("step", "grad_norm", "spectral_radius"))
    ax = _axes(ax)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    radii = sorted(results.unique("spectral_radius"))
    cells = results.unique("cell") if "cell" in results else [None]
    lo_r, hi_r = min(radii), max(radii)
    norm = Normalize(vmin=lo_r, vmax=hi_r if hi_r > lo_r else lo_r + 1)
    colormap = _sequential_cmap(cmap)
    styles = ["-", "--", ":", "-."]
    shown_values: list[np.ndarray] = []
    for j, cell in enumerate(cells):
        for radius in radii:
            part = results.select(spectral_radius=radius)
            if cell is not None:
                part = part.select(cell=cell)
            if len(part) == 0:
                continue
            steps, Y = part.curves("grad_norm", x="step", run=("config", "seed"))
            if normalize:
                with np.errstate(divide="ignore", invalid="ignore"):
                    Y = Y / Y[:, -1:]
            order = np.argsort(steps)[::-1]  # x = T - t increasing
            back = (steps.max() - steps)[order]
            Y = Y[:, order]
            color = colormap(norm(radius))
            center = _geomean(Y)
            shown_values.append(center[np.isfinite(center) & (center > 0)])
            ax.plot(back, center, color=color, ls=styles[j % len(styles)], lw=1.6)
            if band and Y.shape[0] > 1:
                lo, hi = _band(Y)
                ax.fill_between(back, lo, hi, color=color, alpha=0.15, lw=0)
            if reference and normalize and j == 0:
                with np.errstate(over="ignore", under="ignore"):
                    ax.plot(back, float(radius) ** back.astype(float), color=color,
                            ls=(0, (1, 2)), lw=1.1)
    ax.set_yscale("log")
    data = np.concatenate(shown_values) if shown_values else np.array([])
    if data.size:  # the references follow the data, not the other way round
        ax.set_ylim(data.min() / 3, data.max() * 3)
    ax.set_xlabel("time steps back-propagated, $T - t$")
    ax.set_ylabel(r"$\|\partial L/\partial h_t\| / \|\partial L/\partial h_T\|$" if normalize
                  else r"$\|\partial L/\partial h_t\|$")
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], color="0.3", ls=styles[j % len(styles)])
               for j in range(len(cells))] if cells != [None] else []
    texts = [str(c) for c in cells] if cells != [None] else []
    if reference and normalize:
        handles.append(Line2D([], [], color="0.3", ls=(0, (1, 2)), lw=1.1))
        texts.append(r"$\rho^{T-t}$")
    if handles:
        ax.legend(handles, texts, fontsize="small", framealpha=0.85)
    if colorbar:
        bar = ax.figure.colorbar(ScalarMappable(norm=norm, cmap=colormap), ax=ax)
        bar.set_label(r"spectral radius $\rho$")
        bar.set_ticks(radii)
    return ax


def phase_diagram(results: Results, *, ax: Any = None, x: str = "sigma_w2",
                  y: str = "sigma_b2", activation: str | None = None,
                  critical_line: bool = True, measured_boundary: bool = True,
                  skip: int = 0, vmax: float | None = None, cmap: str = "RdBu_r",
                  colorbar: bool = True) -> Any:
    """Order-to-chaos phase diagram: measured gradient growth per layer on a grid.

    Colour: minus the slope of ``ln ||dL/dh_l||`` against ``l`` (see
    :func:`pyjac.experiments.growth_rate`), averaged over seeds; red where gradients
    explode on their way to the input, blue where they vanish, white at zero. The
    mean-field critical line ``chi1 = 1`` (:func:`pyjac.theory.critical_sigma_w2`) is
    drawn on top, and the measured zero contour dashed.

    Parameters
    ----------
    results : Results
        A sweep over a grid of ``x`` and ``y`` values (one activation).
    x, y : str, default "sigma_w2", "sigma_b2"
        The grid's columns.
    activation : str, optional
        Which activation to draw when the table holds several.
    critical_line : bool, default True
        Needs ``x == "sigma_w2"`` and ``y == "sigma_b2"``.
    measured_boundary : bool, default True
    skip : int, default 0
        Layers next to the input left out of the slope fit.
    vmax : float, optional
        Colour range ``[-vmax, vmax]``; default: from the smallest to the largest rate,
        white at zero (each side scaled on its own).
    cmap : str, default "RdBu_r"
    colorbar : bool, default True

    Returns
    -------
    matplotlib Axes
    """
    results = _check_results(results, needs=(x, y, "grad_norm", "layer"))
    if activation is not None:
        results = results.select(activation=activation)
        if len(results) == 0:
            raise ValueError(f"activation: no rows with activation={activation!r}")
    acts = results.unique("activation") if "activation" in results else [None]
    if len(acts) > 1:
        raise ValueError(f"results: holds activations {acts}; pick one with activation=")
    act = acts[0]
    # gain follows sigma_w2 (gain = sqrt(sigma_w2)) and is not a separate axis.
    derived = ("gain",) if "sigma_w2" in (x, y) else ()
    others = [c for c in results.varying(CONFIG_COLUMNS) if c not in (x, y, *derived)]
    if others:
        raise ValueError(f"results: besides {x} and {y}, {', '.join(others)} vary; "
                         "select one value of each first")
    ax = _axes(ax)
    rates = growth_rate(results, skip=skip)
    xv = np.array(sorted(rates.unique(x)), dtype=np.float64)
    yv = np.array(sorted(rates.unique(y)), dtype=np.float64)
    Z = np.full((yv.size, xv.size), np.nan)
    for (a, b), part in rates.groupby(x, y):
        Z[np.searchsorted(yv, b), np.searchsorted(xv, a)] = np.nanmean(part["log_growth"])
    from matplotlib.colors import TwoSlopeNorm

    finite = Z[np.isfinite(Z)]
    if vmax is not None:
        lo, hi = -float(vmax), float(vmax)
    else:  # each side of zero spans its own range, so that both phases show in colour
        lo = float(min(finite.min(), -1e-6)) if finite.size else -1.0
        hi = float(max(finite.max(), 1e-6)) if finite.size else 1.0
    mesh = ax.pcolormesh(xv, yv, Z, shading="nearest", cmap=cmap,
                         norm=TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi))
    if colorbar:
        from matplotlib.ticker import MaxNLocator

        cb = ax.figure.colorbar(mesh, ax=ax)
        # ticks on both sides of zero (each side has its own scale)
        side = MaxNLocator(nbins=4)
        ticks = [t for t in side.tick_values(lo, 0.0) if lo <= t <= 0.0]
        ticks += [t for t in side.tick_values(0.0, hi) if 0.0 < t <= hi]
        cb.set_ticks(ticks)
        cb.set_label("measured growth of $\\ln\\|\\partial L/\\partial h_l\\|$ per layer\n"
                     "(> 0: explodes toward the input)")
    from matplotlib.lines import Line2D

    handles, texts = [], []
    if measured_boundary and xv.size > 1 and yv.size > 1 and np.nanmin(Z) < 0 < np.nanmax(Z):
        ax.contour(xv, yv, Z, levels=[0.0], colors="0.15", linestyles="--", linewidths=1.3)
        handles.append(Line2D([], [], color="0.15", ls="--"))
        texts.append("measured zero growth")
    if critical_line and act is not None and x == "sigma_w2" and y == "sigma_b2":
        from . import theory

        # the line is steep near sigma_b2 = 0: sample it geometrically there
        top_y = float(yv.max())
        ys = np.unique(np.concatenate([[float(yv.min())], np.geomspace(
            max(top_y * 1e-4, 1e-8), top_y, 30)])) if top_y > 0 else np.array([0.0])
        ys = ys[ys >= yv.min()]
        xs = np.array([theory.critical_sigma_w2(act, float(b)) for b in ys])
        ax.plot(xs, ys, color="k", lw=2.2)
        handles.append(Line2D([], [], color="k", lw=2.2))
        texts.append(r"mean-field critical line $\chi_1 = 1$")
    dx = (xv[1] - xv[0]) / 2 if xv.size > 1 else 0.5
    dy = (yv[1] - yv[0]) / 2 if yv.size > 1 else 0.5
    ax.set_xlim(xv.min() - dx, xv.max() + dx)
    ax.set_ylim(yv.min() - dy, yv.max() + dy)
    ax.set_xlabel(r"weight variance $\sigma_w^2$" if x == "sigma_w2" else x)
    ax.set_ylabel(r"bias variance $\sigma_b^2$" if y == "sigma_b2" else y)
    if handles:
        ax.legend(handles, texts, loc="upper left", fontsize="small", framealpha=0.9)
    if act is not None:
        ax.set_title(f"{act}: ordered (vanishing) vs chaotic (exploding)")
    return ax


def activation_derivatives(activations: Sequence[str] = ("sigmoid", "tanh", "relu"), *,
                           ax: Any = None, x: Any = None, mark: Sequence[float] = (0.0, 1.0),
                           ) -> Any:
    """The activation derivatives ``phi'(z)``, with their values marked at ``mark``.

    Parameters
    ----------
    activations : sequence of str
        Names from :data:`pyjac.theory.ACTIVATIONS`.
    ax : matplotlib Axes, optional
    x : array_like, optional
        Where to evaluate (default ``linspace(-5, 5, 801)``).
    mark : sequence of float
        Points at which the sigmoid's derivative is marked and annotated.

    Returns
    -------
    matplotlib Axes
    """
    from . import theory

    if isinstance(activations, str):
        activations = [activations]
    ax = _axes(ax)
    z = np.linspace(-5, 5, 801) if x is None else np.asarray(x, dtype=np.float64)
    for i, name in enumerate(activations):
        d = theory.activation_derivative(name)
        ax.plot(z, d(z), color=COLORS[i % len(COLORS)], lw=2, label=f"{name}'(z)")
        if name == "sigmoid":
            for m in mark:
                v = float(d(np.array([m]))[0])
                ax.plot([m], [v], "o", color=COLORS[i % len(COLORS)], ms=5)
                ax.annotate(f"{name}'({m:g}) = {v:.4g}", (m, v), textcoords="offset points",
                            xytext=(8, -14 if m else 6), fontsize="small")
    ax.set_xlabel("pre-activation $z$")
    ax.set_ylabel(r"derivative $\phi'(z)$")
    ax.set_ylim(-0.05, 1.12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", framealpha=0.85)
    return ax


def weight_histograms(history: Any, layer: int = 0, *, ax: Any = None,
                      epochs: Sequence[int] | None = None, difference: bool = False) -> Any:
    """One layer's weight histogram after each epoch, from :func:`pyjac.train`'s record.

    The seed texts' first diagnostic: histograms of an early layer that do not move over
    the epochs mean that the gradient does not reach it.

    Parameters
    ----------
    history : pyjac.TrainingHistory
        From ``pyjac.train(..., weight_bins=...)`` (the default records 32 bins).
    layer : int, default 0
        0 for the first layer; negative counts from the output.
    ax : matplotlib Axes, optional
    epochs : sequence of int, optional
        Rows to draw (0: before training); default all of them, at most 12 spread evenly.
    difference : bool, default False
        Draw each epoch's counts minus the initial ones: small moves that the histogram
        itself hides show as bars away from zero.

    Returns
    -------
    matplotlib Axes
    """
    from .train import TrainingHistory

    if not isinstance(history, TrainingHistory):
        raise TypeError(f"history: expected a pyjac.TrainingHistory, got {type(history).__name__}")
    if history.weight_histogram is None:
        raise ValueError("history: no weight histograms were recorded (weight_bins=None)")
    counts, edges = history.weight_histogram, history.weight_histogram_edges
    depth = counts.shape[1]
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not (
            -depth <= layer < depth):
        raise ValueError(f"layer: must be an integer in [{-depth}, {depth}), got {layer!r}")
    layer = int(layer) % depth
    rows = counts.shape[0]
    if epochs is None:
        epochs = np.unique(np.linspace(0, rows - 1, min(rows, 12)).round().astype(int))
    epochs = [int(e) for e in epochs]
    if any(not 0 <= e < rows for e in epochs):
        raise ValueError(f"epochs: each must lie in [0, {rows - 1}], got {epochs}")
    ax = _axes(ax)
    cmap = _sequential_cmap()
    x = edges[layer]
    base = counts[0, layer].astype(np.float64)
    for e in epochs:
        y = counts[e, layer].astype(np.float64) - (base if difference else 0.0)
        ax.stairs(y, x, color=cmap(e / max(rows - 1, 1)), lw=1.4,
                  label=f"epoch {e}" if len(epochs) <= 6 else None)
    sm = _pyplot().cm.ScalarMappable(cmap=cmap, norm=_pyplot().Normalize(0, rows - 1))
    ax.figure.colorbar(sm, ax=ax, label="epoch")
    outside = history.weight_histogram_outside[epochs[-1], layer]
    note = f" ({outside.sum()} outside the bins)" if outside.sum() else ""
    ax.set_xlabel(f"weight value, layer {layer + 1}{note}")
    ax.set_ylabel("count minus the initial count" if difference else "count")
    if difference:
        ax.axhline(0.0, color="0.5", lw=0.8)
    ax.grid(alpha=0.3)
    if len(epochs) <= 6:
        ax.legend(fontsize="small")
    return ax
