"""Figure 5: singular value spectra of the input-output Jacobian vs depth."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import plot as jplot
from .. import theory
from ..experiments import jacobian_spectra
from .common import FigureInfo, _e, _plt, figure_builder, join_words


# --------------------------------------------------------------------------------------
# Figure 5: Jacobian singular value spectra vs depth
# --------------------------------------------------------------------------------------
@figure_builder()
def fig5_jacobian_spectra(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                          progress: Any = None,
                          scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 5: Jacobian singular value spectra vs depth.
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
                               depth=max(at), width=width, at=at, cache=cache, scheduler=scheduler)
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
                   f"{join_words(others)} spread{'s' if len(others) == 1 else ''} it"
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
