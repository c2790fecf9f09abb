"""Figures 11 and 12: gradients through transformer stacks (pre-LN vs post-LN vs no
residual vs no norm), and rank collapse of pure attention.

Both run in seconds and are not cached; ``cache``, ``n_jobs`` and ``progress`` are
accepted for the same call signature as the other figures."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..transformer import Transformer
from .common import (
    NOT_CACHED,
    FigureInfo,
    _e,
    _plt,
    figure_builder,
    join_words,
    log_axis_ticks,
)

# (label, Transformer keywords, colour)
FIG11_VARIANTS = (
    ("post-LN", dict(norm="post"), "tab:red"),
    ("pre-LN", dict(norm="pre"), "tab:blue"),
    ("pre-LN, no residual", dict(norm="pre", residual=False), "tab:purple"),
    ("residual, no norm", dict(norm=None), "tab:green"),
)


def _stack_problem(width: int, seq: int, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, seq, width)), rng.standard_normal((batch, seq, width)))


def _profile(kwargs: dict, depth: int, width: int, heads: int, seq: int, batch: int) -> Any:
    net = Transformer(depth, width, heads, seq, seed=1, dtype="float64", **kwargs)
    x, y = _stack_problem(width, seq, batch)
    return net.backprop(x, loss="mse", target=y)


def _fig11_claims(labels: list[str], at: dict, depths: list[int], seed_depth: int) -> str:
    """Figure 11's statements from the measured per-block gradients (at[label][depth] is
    the BackpropResult)."""
    out = []
    for label in labels:
        g = at[label][seed_depth].block_grad_norm
        ratio = g[-1] / g[0]
        if ratio > 2:
            how = f"grows toward the output ({_e(ratio)}x from block 1 to {seed_depth})"
        elif ratio < 0.5:
            how = f"falls toward the output ({_e(ratio)}x from block 1 to {seed_depth})"
        else:
            how = f"stays within 2x across the blocks ({_e(ratio)}x, block {seed_depth} / 1)"
        deep = at[label][depths[-1]].block_grad_norm
        out.append(f"{label}: the gradient of each block's parameters {how}; at depth "
                   f"{depths[-1]}, {_e(deep[-1] / deep[0])}x")
    through = {label: at[label][seed_depth].grad_norm[0] / at[label][seed_depth].grad_norm[-1]
               for label in labels}
    words = [f"{label} {_e(v)}" for label, v in through.items()]
    text = "; ".join(out) + (f". ||dL/dx|| at the input over that at the output, depth "
                             f"{seed_depth}: {join_words(words)}")
    nores = through["pre-LN, no residual"]
    verdict = ("vanishes (below 1e-2)" if nores < 1e-2 else
               "does not vanish (at least 1e-2)")
    return text + (f". Without residual connections the gradient reaching the input of a "
                   f"{seed_depth}-block stack {verdict}: {_e(nores)}.")


@figure_builder(quick="Depths 6 and 12 only, a narrower model and shorter sequences.",
                rest=NOT_CACHED)
def fig11_transformer_gradients(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                                progress: Any = None,
                                scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 11: gradient norm per block at depth 6, 12, 24, 48 for post-LN, pre-LN,
    pre-LN without residual connections, and residual blocks without norms.

    Each stack is PyTorch-initialised (``init="torch"``), float64, under the mean squared
    error to random targets; a block's gradient is the norm of all its parameters'
    gradients.
    """
    depths = [6, 12] if quick else [6, 12, 24, 48]
    width, heads, seq, batch = (32, 4, 8, 2) if quick else (64, 4, 32, 4)
    labels = [v[0] for v in FIG11_VARIANTS]
    at = {label: {d: _profile(kw, d, width, heads, seq, batch) for d in depths}
          for label, kw, _ in FIG11_VARIANTS}
    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained")
    for ax, depth in ((ax1, 12), (ax2, depths[-1])):
        for label, _, color in FIG11_VARIANTS:
            g = at[label][depth].block_grad_norm
            ax.semilogy(np.arange(1, depth + 1), g, "o-", color=color, ms=3, label=label)
        ax.set_xlabel("block")
        ax.set_ylabel("gradient norm of the block's parameters")
        ax.set_title(f"depth {depth}")
        ax.legend(fontsize=8)
    for label, _, color in FIG11_VARIANTS:
        ratios = [at[label][d].block_grad_norm[-1] / at[label][d].block_grad_norm[0]
                  for d in depths]
        ax3.loglog(depths, ratios, "o-", color=color, label=label)
    ax3.axhline(1.0, color="0.5", lw=0.8, ls="--")
    log_axis_ticks(ax3, depths)
    ax3.set_xlabel("depth (blocks)")
    ax3.set_ylabel("last block's gradient / first block's")
    ax3.set_title("growth toward the output")
    ax3.legend(fontsize=8)
    rows = []
    for label in labels:
        for d in depths:
            g = at[label][d].block_grad_norm
            r = at[label][d]
            rows.append([label, str(d), _e(g[0]), _e(g[-1]), _e(g[-1] / g[0]),
                         _e(r.grad_norm[0] / r.grad_norm[-1])])
    info = FigureInfo(
        "fig11_transformer_gradients", "Transformer gradients: post-LN vs pre-LN",
        f"Stacks of width {width}, {heads} heads, MLP ratio 4, GELU, PyTorch's "
        f"initialisation, {batch} random sequences of {seq} tokens, mean squared error to "
        f"random targets. " + _fig11_claims(labels, at, depths, 12),
        ["stack", "depth", "block 1", "last block", "last / first",
         "||dL/dx_0|| / ||dL/dx_L||"], rows)
    return fig, info


# --------------------------------------------------------------------------------------
# Figure 12: rank collapse
def fig12_variants(depth: int) -> tuple:
    return (
        ("pure attention (no skip, MLP or norm)",
         dict(mlp_ratio=0, residual=False, norm=None), "tab:red", "-"),
        ("attention + skip", dict(mlp_ratio=0, norm=None), "tab:orange", "-"),
        ("post-LN blocks", dict(norm="post"), "tab:blue", "-"),
        ("no-norm blocks, skip scale 1", dict(norm=None), "tab:green", "--"),
        (f"no-norm blocks, skip scale 1/sqrt({depth})",
         dict(norm=None, residual_scale=1 / math.sqrt(depth)), "tab:green", "-"),
    )


FLOOR = 1e-16


def _fig12_claims(labels: list[str], results: list, depth: int) -> str:
    pure = results[0].rank_one_distance
    steps = ", ".join(_e(v) for v in pure[:4])
    zero = next((i for i, v in enumerate(pure) if v < 1e-12), None)
    out = [f"Pure attention: distance from rank one {steps} at the input and after blocks "
           f"1-3" + (f", below 1e-12 from block {zero} on" if zero is not None else "")]
    for label, r in zip(labels[1:], results[1:]):
        out.append(f"{label}: {_e(r.rank_one_distance[-1])} after block {depth} (token "
                   f"similarity {r.token_similarity[-1]:.3f})")
    q = {label: r.query_grad_norm for label, r in zip(labels, results)}
    scaled, unit = labels[4], labels[3]
    out.append(f"query gradient of block 1, {unit}: {_e(q[unit][0])}; {scaled}: "
               f"{_e(q[scaled][0])}; smallest over the blocks {_e(np.min(q[unit]))} and "
               f"{_e(np.min(q[scaled]))}")
    return "; ".join(out) + "."


@figure_builder(quick="A shallower, narrower stack on shorter sequences.", rest=NOT_CACHED)
def fig12_rank_collapse(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                        progress: Any = None,
                        scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 12: token similarity vs depth. Pure attention collapses to rank one doubly
    exponentially (Dong et al. 2021); skip connections prevent it; and the query
    gradients per block of stacks whose residual branches are scaled by 1/sqrt(depth)
    (Noci et al. 2022) or not. The caption states what each measured.
    """
    depth, width, heads, seq, batch = (8, 32, 4, 8, 2) if quick else (24, 64, 4, 32, 4)
    variants = fig12_variants(depth)
    x, y = _stack_problem(width, seq, batch, seed=3)
    results = [Transformer(depth, width, heads, seq, seed=2, dtype="float64", **kw)
               .backprop(x, loss="mse", target=y) for _, kw, _, _ in variants]
    labels = [v[0] for v in variants]
    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained")
    points = np.arange(depth + 1)
    for (label, _, color, style), r in zip(variants, results):
        ax1.semilogy(points, np.maximum(r.rank_one_distance, FLOOR), style, color=color,
                     label=label)
        ax2.plot(points, r.token_similarity, style, color=color, label=label)
        ax3.semilogy(np.arange(1, depth + 1), r.query_grad_norm, style, color=color,
                     label=label)
    ax1.axhline(FLOOR, color="0.6", lw=0.8, ls=":")
    ax1.set_ylabel(r"$\|X - 1\bar x^T\|_F / \|X\|_F$ (floor: $10^{-16}$)")
    ax1.set_title("distance from rank one")
    ax2.set_ylabel("mean cosine similarity of token pairs")
    ax2.set_title("token similarity")
    ax3.set_ylabel(r"$\|\partial L/\partial Q\|$")
    ax3.set_title("query gradient per block")
    for ax in (ax1, ax2):
        ax.set_xlabel("after block (0: the input)")
        ax.legend(fontsize=7)
    ax3.set_xlabel("block")
    ax3.legend(fontsize=7)
    rows = [[label, _e(r.rank_one_distance[1]), _e(r.rank_one_distance[-1]),
             f"{r.token_similarity[-1]:.3f}", _e(r.query_grad_norm[0]),
             _e(np.min(r.query_grad_norm))] for label, r in zip(labels, results)]
    info = FigureInfo(
        "fig12_rank_collapse", "Rank collapse in attention stacks",
        f"Stacks of depth {depth}, width {width}, {heads} heads, PyTorch's initialisation, "
        f"{batch} random sequences of {seq} tokens (mean squared error to random targets "
        f"for the gradients). " + _fig12_claims(labels, results, depth),
        ["stack", "distance after block 1", f"after block {depth}",
         f"similarity after block {depth}", "||dL/dQ|| block 1", "smallest ||dL/dQ||"], rows)
    return fig, info
