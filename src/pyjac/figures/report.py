"""The numbers in the seed texts, checked with pyjac, and the ``report.md`` of
``pyjac reproduce``.

:func:`seed_claims` finds every numeric claim of the texts in ``seeds/`` (the texts whose
figures ``pyjac reproduce`` redraws), computes it exactly (``pyjac.theory``) and measures
it on a real :class:`pyjac.Chain`, and marks the claims that are wrong.

How the measurements are made:

* ``a**n`` claims (0.9^10, 1.1^100, 0.2^19, 2.5^19): a linear chain with orthogonal
  weights times ``a`` (width 32, float64), whose every layer scales a gradient by exactly
  ``a``; the measured number is ``||dL/dh_0|| / ||dL/dh_n||``.
* ``sigmoid'(z)**n`` claims (0.25^10, 0.25^20, sigmoid'(1)^20): a width-1 sigmoid chain with
  weight 1 whose biases put every pre-activation at ``z`` (``b_1 = z``,
  ``b_l = z - sigmoid(z)``, input 0), so that the backward pass multiplies by
  ``sigmoid'(z)`` at every layer.
* Claims about real networks (a 10-layer sigmoid net): random wide chains, geometric
  mean over seeds.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write

__all__ = ["SEEDS", "Claim", "claims_markdown", "seed_claims", "write_report"]

#: The seed texts: file name and title.
SEEDS = {
    "000": ("seeds/000_1ba821b84f35bca2.txt", "Vanishing & Exploding Gradients (notes)"),
    "001": ("seeds/001_43acf97c18058fe5.txt", "Vanishing Gradients (series notes)"),
    "002": ("seeds/002_2d6b21fa2808314f.txt", "Why Can Deep Networks Go Off the Rails?"),
    "003": ("seeds/003_299fc57e7c5dd173.txt", "Vanishing and Exploding Gradients (blog)"),
    "004": ("seeds/004_c50f811e0f673e3c.txt", "Gradient Vanishing and Explosion (AD book)"),
}

RIGHT, BOUND, IMPRECISE, WRONG = "right", "right (as a bound)", "imprecise", "**WRONG**"


@dataclass(frozen=True)
class Claim:
    """One numeric claim of a seed text beside pyjac's numbers.

    Attributes
    ----------
    seed : str
        Which text ("000" ... "004", see :data:`SEEDS`).
    quote : str
        The claim, as the text words it (shortened).
    text_value : str
        The number the text gives.
    exact : float or None
        The exact value (closed form, ``pyjac.theory``); for a wrong claim, the exact
        value of the counter-example that ``measured`` measures.
    measured : float or None
        What pyjac measures on a chain built for the purpose.
    how : str
        How ``measured`` was obtained.
    verdict : str
        "right", "right (as a bound)", "imprecise" or "**WRONG**".
    note : str
        Why, when the claim is not simply right.
    """

    seed: str
    quote: str
    text_value: str
    exact: float | None
    measured: float | None
    how: str
    verdict: str
    note: str = ""

    @property
    def wrong(self) -> bool:
        return self.verdict == WRONG


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------
def _orthogonal_gain_ratio(a: float, n: int, width: int = 32) -> float:
    """||dL/dh_0|| / ||dL/dh_n|| through a linear chain of ``a`` times orthogonal matrices."""
    from ..chain import Chain

    net = Chain(n, width, activation="linear", init="orthogonal", gain=a, seed=0,
                dtype="float64")
    data = np.random.default_rng(0)
    r = net.backprop(data.standard_normal((4, width)),
                     grad_output=data.standard_normal((4, width)))
    return float(r.grad_norm[0] / r.grad_norm[-1])


def _scalar_sigmoid_ratio(z: float, n: int, weight: float = 1.0,
                          activation: str = "sigmoid") -> float:
    """Gradient gain through ``n`` width-1 layers, every pre-activation at ``z``:
    ``(weight * phi'(z))**n``."""
    from .. import theory
    from ..chain import Chain

    s = float(theory.activation_fn(activation)(np.array([z]))[0])
    weights = [np.array([[weight]])] * n
    biases = [np.array([z])] + [np.array([z - weight * s])] * (n - 1)
    net = Chain.from_weights(weights, biases, activation=activation)
    r = net.backprop(np.zeros((1, 1)), grad_output=np.ones((1, 1)))
    return float(r.grad_norm[0] / r.grad_norm[-1])


def _wide_chain_ratio(activation: str, depth: int, *, init: str = "xavier",
                      gain: float = 1.0, width: int = 256, seeds: int = 5,
                      weights: bool = False) -> float:
    """Geometric mean over seeds of ||dL/dh_0||/||dL/dh_L|| (or of
    ||dL/dW_1||/||dL/dW_L|| with ``weights=True``) of a random chain."""
    from ..chain import Chain

    logs = []
    for seed in range(seeds):
        net = Chain(depth, width, activation=activation, init=init, gain=gain, seed=seed,
                    dtype="float64")
        data = np.random.default_rng([seed, 1])
        r = net.backprop(data.standard_normal((16, width)),
                         grad_output=data.standard_normal((16, width)))
        v = r.weight_grad_norm if weights else r.grad_norm
        logs.append(math.log(v[0] / v[-1]))
    return math.exp(float(np.mean(logs)))


def _init_variance_ratio(init: str, n_in: int = 400, n_out: int = 200) -> float:
    """Measured weight variance of ``init`` over the variance the texts give."""
    from ..chain import Chain

    w = Chain(1, [n_in, n_out], init=init, seed=0, dtype="float64").weights[0]
    claimed = 2.0 / (n_in + n_out) if init == "xavier" else 2.0 / n_in
    return float(np.mean(w.astype(np.float64) ** 2) / claimed)


def _orthogonal_sv_error(width: int = 128) -> float:
    from ..chain import Chain

    w = Chain(1, width, init="orthogonal", seed=0, dtype="float64").weights[0]
    return float(np.max(np.abs(np.linalg.svd(w, compute_uv=False) - 1.0)))


def seed_claims(quick: bool = False) -> list[Claim]:
    """Every numeric claim of the seed texts, computed and measured with pyjac.

    Parameters
    ----------
    quick : bool, default False
        Fewer seeds and narrower chains for the measurements on random wide chains.

    Returns
    -------
    list of Claim
    """
    from .. import theory

    seeds = 2 if quick else 5
    width = 128 if quick else 256
    dsig = theory.activation_derivative("sigmoid")
    dtanh = theory.activation_derivative("tanh")
    s1 = float(dsig(np.array([1.0]))[0])
    sig10_real = _wide_chain_ratio("sigmoid", 10, width=width, seeds=seeds)
    sig10_real_w = _wide_chain_ratio("sigmoid", 10, width=width, seeds=seeds, weights=True)
    sig_big = _wide_chain_ratio("sigmoid", 10, init="gaussian", gain=4.0, width=width,
                                seeds=seeds) ** 0.1
    scalar_grow = _scalar_sigmoid_ratio(0.0, 10, weight=8.0) ** 0.1
    c = []
    add = c.append
    add(Claim("000", "The sigmoid derivative peaks at 0.25", "0.25",
              theory.derivative_bound("sigmoid"), float(dsig(np.array([0.0]))[0]),
              "sigmoid'(0) from pyjac.theory.activation_derivative", RIGHT))
    add(Claim("000", "10-layer sigmoid net: derivative product at most 0.25^10; layer 1 gets "
              "'roughly a million times smaller' a gradient", "~1e-6",
              theory.sigmoid_bound(10), _scalar_sigmoid_ratio(0.0, 10),
              "best case: width-1 sigmoid chain with every z_l = 0", BOUND,
              f"A random 10-layer xavier sigmoid chain (width {width}) measures "
              f"||dL/dh_0||/||dL/dh_10|| = {sig10_real:.3g} and ||dL/dW_1||/||dL/dW_10|| = "
              f"{sig10_real_w:.3g}: the bound holds and real chains lose a little more."))
    add(Claim("001", "Telephone, 90% per person: after 10 people only 35% survives", "35%",
              theory.scalar_chain(0.9, 10), _orthogonal_gain_ratio(0.9, 10),
              "linear chain, orthogonal weights x 0.9, 10 layers", RIGHT))
    add(Claim("001", "After 50 people, less than 1%", "< 1%", theory.scalar_chain(0.9, 50),
              _orthogonal_gain_ratio(0.9, 50),
              "linear chain, orthogonal weights x 0.9, 50 layers", RIGHT))
    add(Claim("001", "Sigmoid and tanh derivatives are always less than 1", "< 1",
              theory.derivative_bound("tanh"), float(dtanh(np.array([0.0]))[0]),
              "tanh'(0) from pyjac.theory.activation_derivative", IMPRECISE,
              "tanh'(0) = 1 exactly: the derivatives are at most 1, not always less."))
    add(Claim("001", "Sigmoid: each layer shrinks the gradient by at least 4x regardless of "
              "weights", "factor <= 0.25 per layer", 8.0 * 0.25, scalar_grow,
              "width-1 sigmoid chain, weight 8, every z_l = 0: gain per layer", WRONG,
              f"The 0.25 bounds the derivative only; the layer Jacobian is diag(sigma') W. "
              f"With weight 8 each layer multiplies the gradient by 8 x 0.25 = 2 (measured "
              f"{scalar_grow:.4g}); a random Gaussian sigmoid chain with sigma_w2 = 16 "
              f"(width {width}) shrinks it by {1 / sig_big:.2f}x per layer, not 4x."))
    add(Claim("001", "After 10 sigmoid layers the gradient at the first layer is on the "
              "order of 1e-6", "~1e-6", theory.sigmoid_bound(10), sig10_real,
              f"random 10-layer xavier sigmoid chain, width {width}, {seeds} seeds", BOUND,
              "0.25^10 = 9.5e-7 bounds the derivative product; a real chain is of the "
              "same order."))
    add(Claim("002", "Sigmoid activations, whose derivative is always less than 0.25",
              "< 0.25", theory.derivative_bound("sigmoid"), float(dsig(np.array([0.0]))[0]),
              "sigmoid'(0) from pyjac.theory.activation_derivative", IMPRECISE,
              "sigmoid'(0) = 0.25 exactly: at most 0.25, not always less."))
    add(Claim("002", "20-layer net, x0.2 per layer: vanishing[19] = 0.2^19", "5.24e-14",
              theory.scalar_chain(0.2, 19), _orthogonal_gain_ratio(0.2, 19),
              "linear chain, orthogonal weights x 0.2, 19 layers", RIGHT,
              "The code labels 0.2^1 'Layer 1' and 0.2^19 'Layer 19' while the prose calls "
              "the first layer the one that is 'practically zero': the index counts layers "
              "back from the output."))
    add(Claim("002", "x2.5 per layer: exploding[19] = 2.5^19", "1.42e+08",
              theory.scalar_chain(2.5, 19), _orthogonal_gain_ratio(2.5, 19),
              "linear chain, orthogonal weights x 2.5, 19 layers", WRONG,
              "2.5^19 = 3.64e+07; 1.42e+08 is no integer power of 2.5 (2.5^20 = 9.09e+07, "
              "2.5^21 = 2.27e+08)."))
    add(Claim("002", "After 20 layers (input x = 1.0): sigmoid'(1)^20", "1.07e-14",
              theory.scalar_chain(s1, 20), _scalar_sigmoid_ratio(1.0, 20),
              "width-1 sigmoid chain with every z_l = 1", WRONG,
              f"sigmoid'(1) = {s1:.6f}, and {s1:.6f}^20 = {s1**20:.3e}."))
    relu20 = _wide_chain_ratio("relu", 20, init="he", width=width, seeds=seeds)
    add(Claim("002", "After 20 layers: relu'(1)^20", "1.00e+00", 1.0,
              _scalar_sigmoid_ratio(1.0, 20, activation="relu"),
              "width-1 ReLU chain with every z_l = 1", RIGHT,
              f"A random 20-layer he ReLU chain (width {width}, {seeds} seeds) measures "
              f"||dL/dh_0||/||dL/dh_20|| = {relu20:.3g}: no systematic shrinkage, only "
              f"finite-width fluctuations."))
    add(Claim("004", "Each sigmoid layer multiplies gradients by at most 0.25", "<= 0.25",
              8.0 * 0.25, scalar_grow,
              "width-1 sigmoid chain, weight 8, every z_l = 0: gain per layer", WRONG,
              "Only the derivative is at most 0.25; the weights multiply too (see the "
              "same claim in 001)."))
    add(Claim("004", "After only 20 layers: 0.25^20", "9.1e-13", theory.sigmoid_bound(20),
              _scalar_sigmoid_ratio(0.0, 20), "width-1 sigmoid chain with every z_l = 0",
              BOUND))
    add(Claim("004", "Each Jacobian has norm 1.1: after 100 layers 1.1^100", "13780",
              theory.scalar_chain(1.1, 100), _orthogonal_gain_ratio(1.1, 100),
              "linear chain, orthogonal weights x 1.1, 100 layers", RIGHT))
    add(Claim("004", "Xavier init: Var(W_ij) = 2/(n_in + n_out)", "2/(n_in+n_out)", 1.0,
              _init_variance_ratio("xavier"),
              "measured variance / 2/(n_in+n_out), a 400 -> 200 layer", RIGHT))
    add(Claim("004", "He init: Var(W_ij) = 2/n_in", "2/n_in", 1.0, _init_variance_ratio("he"),
              "measured variance / (2/n_in), a 400 -> 200 layer", RIGHT))
    add(Claim("004", "Orthogonal W (W^T W = I): singular values equal 1", "1", 0.0,
              _orthogonal_sv_error(), "max |s_i - 1| of an orthogonal init, 128 x 128", RIGHT))
    return c


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------
def _num(v: float | None) -> str:
    if v is None:
        return ""
    if not np.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.3e}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def claims_markdown(claims: Sequence[Claim]) -> str:
    """The claims as a markdown table, then the notes on the claims that are not right."""
    # Each claim is cited by the title of its text, so that the report stands alone (the
    # texts themselves are not part of the repository).
    rows = [[i + 1, SEEDS[c.seed][1] if c.seed in SEEDS else f"{c.seed}", c.quote,
             c.text_value, _num(c.exact), _num(c.measured), c.how, c.verdict]
            for i, c in enumerate(claims)]
    out = [_table(["#", "text", "claim", "text says", "exact", "pyjac measures", "how",
                   "verdict"], rows)]
    notes = [f"{i + 1}. ({c.verdict}) {c.note}" for i, c in enumerate(claims) if c.note]
    if notes:
        out += ["", "Notes:", "", *notes]
    return "\n".join(out)


def _number(name: str, index: int) -> str:
    """The figure number from a name like "fig6_phase_diagram"."""
    head = name.split("_", 1)[0]
    return head[3:] if head.startswith("fig") and head[3:].isdigit() else str(index + 1)


def write_report(path: str | Path, figures: Sequence[tuple[Any, list[str]]],
                 skipped: Sequence[tuple[str, str, str]], claims: Sequence[Claim], *,
                 quick: bool, seconds: float | None = None) -> Path:
    """Write ``report.md``.

    Parameters
    ----------
    path : path-like
        The report file.
    figures : sequence of (FigureInfo, list of file names)
        The figures drawn, in order.
    skipped : sequence of (name, title, reason)
        Figures not drawn.
    claims : sequence of Claim
    quick : bool
        Whether this was a ``--quick`` run.
    seconds : float, optional
        Total run time.
    """
    from .. import __version__

    path = Path(path)
    wrong = [c for c in claims if c.wrong]
    lines = [
        "# pyjac reproduce: depth-vs-gradient figures",
        "",
        f"pyjac {__version__}, {'quick' if quick else 'full'} run, "
        f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}"
        + (f", {seconds:.0f} s" if seconds is not None else "") + ".",
        "Every number below was measured by pyjac (exact per-layer gradients from one C++ "
        "backward pass per chain) or computed by `pyjac.theory`.",
        "",
        "## The numbers in the texts",
        "",
        f"{len(claims)} numeric claims found in the seed texts; {len(wrong)} of them are "
        f"wrong" + (" (rows " + ", ".join(str(i + 1) for i, c in enumerate(claims) if c.wrong)
                    + "; see the notes under the table)" if wrong else "") + ". "
        "'exact' is the closed form; 'pyjac measures' is the same quantity measured on a "
        "chain built for it (for a wrong claim: on a counter-example).",
        "",
        "Texts: " + "; ".join(f"\"{title}\"" for _, title in SEEDS.values()) + ".",
        "",
        claims_markdown(claims),
        "",
    ]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"- Figure {_number(info.name, i)}: {info.title} (`{files[0]}`)"
                  for i, (info, files) in enumerate(figures) if files]
        lines += [f"- {name}: not drawn ({reason})" for name, _, reason in skipped]
        lines += [""]
    for i, (info, files) in enumerate(figures):
        png = next((f for f in files if f.endswith(".png")), files[0] if files else "")
        lines += [f"## Figure {_number(info.name, i)}: {info.title}", "",
                  f"![{info.title}]({png})", "", info.caption, ""]
        if info.rows:
            lines += [_table(info.header, info.rows), ""]
        lines += [*info.notes, ""] if info.notes else []
        if len(files) > 1:
            lines += ["Files: " + ", ".join(f"`{f}`" for f in files), ""]
    if skipped:
        lines += ["## Figures not drawn", ""]
        lines += [f"- {name} ({title}): {reason}" for name, title, reason in skipped]
        lines += [""]
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    return path
