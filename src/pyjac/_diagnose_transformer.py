"""pyjac.diagnose for transformer stacks: a verdict per block and the fix that fits,
measured on the same weights.

Per block ``l`` (1 = next to the input), with ``g`` the gradient norm at the residual
stream and ``p_l`` the gradient norm of all the block's parameters together:

- ``ratio_l = g(input of block l) / g(output of the stack)``: "vanishing" below the
  "vanishing" threshold (1e-3), "exploding" above "exploding" (1e3) or where a NaN/Inf
  appeared, else "healthy" (the thresholds of :func:`pyjac.diagnose`);
- flags: "grows" / "shrinks" when ``p_l`` is more than ``"spread"`` (10) times larger /
  smaller than the median block's (post-LN's gradients grow toward the output, Xiong et
  al. 2020), and "collapsed" when the tokens after the block are within
  ``"collapse"`` (0.05) of rank one in relative distance (Dong et al. 2021).

Fixes, each measured by rebuilding the stack with the same weights: pre-LN instead of
post-LN, residual connections where there are none, LayerNorm (pre-LN) where there is
none, and residual branches scaled by ``1/sqrt(depth)`` (Noci et al. 2022). A fix is kept
when the rebuilt stack stays finite and brings the spread of the block gradients
``max p_l / min p_l`` closer to 1, or undoes a collapse, without making the input's
gradient ratio vanish or explode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .transformer import Transformer

TRANSFORMER_THRESHOLDS = {"spread": 10.0, "collapse": 0.05}


def _spread(p: np.ndarray) -> float:
    p = p[np.isfinite(p) & (p > 0)]
    return float(p.max() / p.min()) if p.size else float("nan")


@dataclass(frozen=True)
class TransformerFix:
    """One fix and its measured effect on the spread of the block gradients
    (``max p_l / min p_l``) and on the distance from rank one at the output."""

    name: str
    description: str
    reason: str
    spread_before: float
    spread_after: float
    rank_distance_before: float
    rank_distance_after: float

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class TransformerDiagnosisReport:
    """What :func:`pyjac.diagnose` found in a transformer stack, block by block.

    Attributes
    ----------
    depth, width, heads, seq_len, batch : int
    norm : {"pre", "post"} or None
    residual : bool
    residual_scale : float
    loss : str
    grad_norm : ndarray, shape (2 depth + 1,)
        ``||dL/dx||`` along the residual stream (:class:`pyjac.TransformerBackpropResult`).
    block_grad_norm : ndarray, shape (depth,)
        ``p_l``: the gradient norm of all of block ``l``'s parameters.
    ratio : ndarray, shape (depth,)
        ``||dL/dx||`` at block ``l``'s input over the stack's output.
    rank_one_distance, token_similarity : ndarray, shape (depth + 1,)
    verdicts : list of str
        "vanishing", "exploding" or "healthy" per block.
    flags : list of list of str
        Per block: any of "grows", "shrinks", "collapsed".
    spread : float
        ``max p_l / min p_l``.
    first_nonfinite_layer, first_nonfinite_stage
        As in :class:`pyjac.TransformerBackpropResult`.
    thresholds : dict
    fixes : list of TransformerFix
    """

    depth: int
    width: int
    heads: int
    seq_len: int
    batch: int
    norm: str | None
    residual: bool
    residual_scale: float
    loss: str
    grad_norm: np.ndarray
    block_grad_norm: np.ndarray
    ratio: np.ndarray
    rank_one_distance: np.ndarray
    token_similarity: np.ndarray
    verdicts: list[str]
    flags: list[list[str]]
    spread: float
    first_nonfinite_layer: int | None
    first_nonfinite_stage: str | None
    thresholds: dict[str, float]
    fixes: list[TransformerFix] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(v == "healthy" for v in self.verdicts) and not any(self.flags)

    @property
    def summary(self) -> str:
        counts = {v: self.verdicts.count(v) for v in ("vanishing", "exploding", "healthy")}
        parts = [f"{n} {v}" for v, n in counts.items() if n]
        text = (f"{self.depth} block{'s' if self.depth != 1 else ''}: " + ", ".join(parts)
                + f"; block gradients spread {self.spread:.3g}x")
        collapsed = [str(i + 1) for i, f in enumerate(self.flags) if "collapsed" in f]
        if collapsed:
            text += f"; tokens collapse to rank one after block {collapsed[0]}"
        if self.first_nonfinite_layer is not None:
            text += (f"; first NaN/Inf at stream point {self.first_nonfinite_layer} "
                     f"({self.first_nonfinite_stage} pass)")
        return text

    def to_dict(self) -> dict[str, Any]:
        from .diagnose import _float_list

        out = {k: v for k, v in vars(self).items() if not isinstance(v, np.ndarray)}
        out.update({k: _float_list(v) for k, v in vars(self).items()
                    if isinstance(v, np.ndarray)})
        out["fixes"] = [f.to_dict() for f in self.fixes]
        out["flags"] = [list(f) for f in self.flags]
        out["summary"] = self.summary
        return out

    def __str__(self) -> str:
        from .diagnose import _num

        head = (f"pyjac diagnosis: transformer, {self.depth} blocks, width {self.width}, "
                f"{self.heads} heads, norm {self.norm}, residual {self.residual} (scale "
                f"{self.residual_scale:g}), batch {self.batch} x {self.seq_len} tokens, "
                f"loss {self.loss}")
        rows = [["block", "grad at input", "ratio", "params' grad", "rank-1 dist after",
                 "verdict", "flags"]]
        for i in range(self.depth):
            rows.append([str(i + 1), _num(self.grad_norm[2 * i]), _num(self.ratio[i]),
                         _num(self.block_grad_norm[i]), _num(self.rank_one_distance[i + 1]),
                         self.verdicts[i], ",".join(self.flags[i]) or "-"])
        sizes = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        table = ["  ".join(cell.rjust(s) for cell, s in zip(r, sizes)).rstrip() for r in rows]
        lines = [head, "", *table, "", "verdict: " + self.summary]
        if self.fixes:
            lines += ["", "suggested fixes (block-gradient spread before -> after, "
                          "measured by pyjac on the same weights):"]
            for f in self.fixes:
                lines.append(f"  - {f.description}: {_num(f.spread_before)} -> "
                             f"{_num(f.spread_after)}  [{f.reason}]")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"TransformerDiagnosisReport({self.summary!r}, "
                f"fixes={[f.name for f in self.fixes]})")


def _same_weights(net: Transformer, **changes: Any) -> Transformer:
    new = Transformer.__new__(Transformer)
    settings = dict(width=net.width, heads=net.heads, hidden=net.hidden, seq_len=net.seq_len,
                    activation=net.activation, norm=net.norm, residual=net.residual,
                    residual_scale=net.residual_scale, attention=net.attention,
                    causal=net.causal, dtype=net.dtype)
    settings.update(changes)
    new._setup(net.blocks, **settings)
    new.init = new.gain = new.seed = None
    return new


def _measure(net: Transformer, x: np.ndarray, loss: str, target: Any, n_threads: Any):
    r = net.backprop(x, loss=loss, target=target, n_threads=n_threads)
    return r, r.block_grad_norm


def diagnose_transformer(model: Any, x: Any, *, loss: str, target: Any,
                         thresholds: dict[str, float], suggest: bool,
                         n_threads: Any) -> TransformerDiagnosisReport:
    """:func:`pyjac.diagnose` for a :class:`~pyjac.Transformer` or a torch encoder."""
    net = model if isinstance(model, Transformer) else Transformer.from_torch(model)
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    xb = net._input(x)
    th = dict(TRANSFORMER_THRESHOLDS)
    th.update(thresholds)
    r, p = _measure(net, xb, loss, target, n_threads)
    g = np.asarray(r.grad_norm, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g[0:-1:2] / g[-1]
    verdicts = []
    for i in range(net.depth):
        if not (np.isfinite(ratio[i]) and np.isfinite(p[i])):
            verdicts.append("exploding")
        elif g[-1] == 0 or ratio[i] < th["vanishing"]:
            verdicts.append("vanishing")
        elif ratio[i] > th["exploding"]:
            verdicts.append("exploding")
        else:
            verdicts.append("healthy")
    finite = p[np.isfinite(p) & (p > 0)]
    median = float(np.median(finite)) if finite.size else float("nan")
    flags = []
    for i in range(net.depth):
        f = []
        if p[i] > th["spread"] * median:
            f.append("grows")
        if p[i] < median / th["spread"]:
            f.append("shrinks")
        if r.rank_one_distance[i + 1] < th["collapse"]:
            f.append("collapsed")
        flags.append(f)
    spread = _spread(p)
    fixes = (_fixes(net, xb, loss, target, r, spread, verdicts, flags, th, n_threads)
             if suggest else [])
    return TransformerDiagnosisReport(
        depth=net.depth, width=net.width, heads=net.heads, seq_len=int(xb.shape[1]),
        batch=int(xb.shape[0]), norm=net.norm, residual=net.residual,
        residual_scale=net.residual_scale, loss=loss, grad_norm=g, block_grad_norm=p,
        ratio=ratio, rank_one_distance=np.asarray(r.rank_one_distance),
        token_similarity=np.asarray(r.token_similarity), verdicts=verdicts, flags=flags,
        spread=spread, first_nonfinite_layer=r.first_nonfinite_layer,
        first_nonfinite_stage=r.first_nonfinite_stage, thresholds=th, fixes=fixes)


def _fixes(net: Transformer, xb: np.ndarray, loss: str, target: Any, r: Any, spread: float,
           verdicts: list[str], flags: list[list[str]], th: dict[str, float],
           n_threads: Any) -> list[TransformerFix]:
    uneven = spread > th["spread"]
    collapsed = any("collapsed" in f for f in flags)
    bad = any(v != "healthy" for v in verdicts) or r.first_nonfinite_layer is not None
    if not (uneven or collapsed or bad):
        return []
    problem = ("NaN/Inf" if r.first_nonfinite_layer is not None else
               "rank collapse" if collapsed else
               "uneven block gradients" if uneven else "vanishing/exploding gradient")
    candidates = []
    if net.norm == "post":
        candidates.append(("pre_ln", "pre-LN: LayerNorm before each sublayer "
                           "(norm_first=True)", dict(norm="pre")))
    if net.norm is None:
        candidates.append(("layernorm", "LayerNorm before each sublayer (pre-LN)",
                           dict(norm="pre")))
    if not net.residual:
        candidates.append(("residual", "residual connections around each sublayer",
                           dict(residual=True, residual_scale=1.0)))
    scaled = 1 / math.sqrt(net.depth)
    if net.residual and abs(net.residual_scale - scaled) > 1e-12 and net.depth > 1:
        candidates.append(("residual_scaling", f"residual branches scaled by 1/sqrt(depth) "
                           f"= {scaled:.3g} (Noci et al. 2022)", dict(residual_scale=scaled)))
    before_rank = float(r.rank_one_distance[-1])
    out = []
    for name, description, changes in candidates:
        r2, p2 = _measure(_same_weights(net, **changes), xb, loss, target, n_threads)
        if r2.first_nonfinite_layer is not None:
            continue
        g2 = np.asarray(r2.grad_norm)
        in_band = th["vanishing"] <= g2[0] / g2[-1] <= th["exploding"]
        after = _spread(p2)
        better_spread = np.isfinite(after) and (not np.isfinite(spread) or after < spread)
        undoes_collapse = collapsed and r2.rank_one_distance[-1] >= th["collapse"]
        if in_band and (better_spread or undoes_collapse):
            out.append(TransformerFix(name, description, problem, spread, after,
                                      before_rank, float(r2.rank_one_distance[-1])))
    out.sort(key=lambda f: f.spread_after)
    return out
