"""What every figure module shares: the figure record, the spec, number formatting and
the words a caption uses for a measured number."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import plot as jplot
from ..experiments import Results


@dataclass
class FigureInfo:
    """What a figure shows: caption, measured numbers and notes for the report."""

    name: str
    title: str
    caption: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Spec:
    """One figure of ``pyjac reproduce``: file name, title and builder; ``sweep``: whether
    its runs are sweep tasks, which a ``scheduler`` sends to a Dask cluster (the others, a
    few training runs or passes each, run where they are called)."""

    name: str
    title: str
    build: Callable[..., tuple[Any, FigureInfo]]
    sweep: bool = True


def _plt():
    return jplot._pyplot()


def log_axis_ticks(ax: Any, values: list[float]) -> None:
    """Ticks of a logarithmic x axis at exactly ``values``, labelled plainly ("0.25",
    "48"), without the minor ticks' "2 x 10^1" labels. Call it after the last log-log
    plot call, which resets the ticks."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    ax.set_xticks(values)
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _e(v: float) -> str:
    """A number for a table: 3 significant digits, scientific when far from 1."""
    if v is None or not np.isfinite(v):
        return "n/a"
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.3e}"


# Captions are written from the measured numbers, so that they cannot contradict the
# tables beside them: these helpers turn numbers into the words a caption uses.
def trend(gain: float, band: float = 10.0) -> str:
    """What a gradient did over a chain whose end-to-end gain is ``gain``."""
    if gain is None or not np.isfinite(gain) or gain <= 0:
        return "is lost (no finite measurement)"
    if gain < 1 / band:
        return f"vanishes ({_e(gain)})"
    if gain > band:
        return f"explodes ({_e(gain)})"
    return f"stays within a decade ({_e(gain)})"


def join_words(words: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    words = [w for w in words if w]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def theory_gap(pairs: list[tuple[str, float, float]]) -> str:
    """A sentence stating the largest gap between measured and predicted gains.

    ``pairs`` holds (what, measured, predicted); pairs without a finite positive
    prediction are left out.
    """
    gaps = [(abs(np.log(m) - np.log(p)), what, m, p) for what, m, p in pairs
            if m is not None and p is not None and np.isfinite(m) and np.isfinite(p)
            and m > 0 and p > 0]
    if not gaps:
        return "No case here has a mean-field prediction."
    worst = max(gaps)
    factor = float(np.exp(worst[0]))
    return (f"Largest gap between measurement and mean-field prediction: a factor "
            f"{factor:.3g} ({worst[1]}: measured {_e(worst[2])}, predicted {_e(worst[3])}).")


def _ratio(part: Results, lo: int = 0) -> float:
    """Geometric mean over seeds of ||dL/dh_lo|| / ||dL/dh_L||."""
    _, Y = part.curves("log_grad_norm")  # exact where the float64 norm underflows
    r = Y[:, lo] - Y[:, -1]
    r = r[np.isfinite(r)]
    return float(np.exp(r.mean())) if r.size else float("nan")


NOT_CACHED = "Accepted for the common signature; nothing here is cached."

_BUILDER_SECTIONS = """
    Parameters
    ----------
    quick : bool, default False
        {quick}
    cache, n_jobs, progress, scheduler
        {rest}

    Returns
    -------
    (matplotlib.figure.Figure, FigureInfo)
"""


def figure_builder(quick: str = "Smaller widths, depths, grids and seeds.",
                   rest: str = "Passed to :func:`pyjac.sweep`.") -> Callable[[Any], Any]:
    """Appends the Parameters and Returns that every ``figN_*`` function shares."""
    def add_sections(fn: Any) -> Any:
        fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n" + _BUILDER_SECTIONS.format(
            quick=quick, rest=rest)
        return fn
    return add_sections
