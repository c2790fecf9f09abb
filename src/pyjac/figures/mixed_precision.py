"""Figure 10: gradient entries flushed to zero vs depth in float16 and bfloat16.

It runs in seconds, so it is not cached; ``cache``, ``n_jobs`` and ``progress`` are
accepted for the same call signature as the other figures."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..chain import Chain
from .common import NOT_CACHED, FigureInfo, _e, _plt, figure_builder

# The cases of figure 10: label, backprop keyword arguments, colour, line style.
PRECISION_CASES = (
    ("float32", dict(grad_dtype="float32"), "black", "-"),
    ("float16", dict(grad_dtype="float16"), "tab:red", "-"),
    ("float16, loss scale 2^16", dict(grad_dtype="float16", loss_scale=2.0**16), "tab:orange",
     "--"),
    ("bfloat16", dict(grad_dtype="bfloat16"), "tab:blue", ":"),
)


@figure_builder(quick="A narrower chain and a smaller batch.", rest=NOT_CACHED)
def fig10_mixed_precision(quick: bool = False, cache: Any = True, n_jobs: Any = None,
                          progress: Any = None,
                          scheduler: Any = None) -> tuple[Any, FigureInfo]:
    """Figure 10: gradient entries flushed to zero vs depth in float16 and bfloat16.

    A tanh chain in the ordered phase (``sigma_w^2 = 0.5``), whose gradient decays
    geometrically with depth, backpropagates a cross-entropy gradient with every
    propagated gradient stored in float32, float16, float16 with loss scaling, and
    bfloat16.
    """
    depth, width, batch = (60, 128, 32) if quick else (60, 512, 128)
    net = Chain(depth, width, activation="tanh", init="gaussian", gain=np.sqrt(0.5), seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, width)).astype(np.float32)
    labels = rng.integers(0, width, size=batch)
    results = [net.backprop(x, loss="cross_entropy", target=labels, **kw)
               for _, kw, _, _ in PRECISION_CASES]
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    layers = np.arange(depth + 1)
    for (label, _, color, style), r in zip(PRECISION_CASES, results):
        ax1.plot(layers, r.zero_fraction, style, color=color, label=label, lw=2)
        norms = np.where(r.grad_norm > 0, r.grad_norm, np.nan)
        ax2.semilogy(layers, norms, style, color=color, label=label, lw=2)
    ax1.set_xlabel(f"layer l (0 = input; the gradient flows from l = {depth} down to 0)")
    ax1.set_ylabel(r"fraction of $dL/dh_l$ entries that are zero")
    ax1.set_title("float16 flushes vanishing gradients to zero")
    ax1.legend(fontsize=9)
    ax2.set_xlabel("layer l (0 = input)")
    ax2.set_ylabel(r"$\|dL/dh_l\|$ (unscaled; missing where exactly 0)")
    ax2.set_title("loss scaling shifts the cliff; bfloat16 keeps float32's range")
    ax2.axhline(2.0**-24 * np.sqrt(batch * width), color="gray", lw=0.8, ls=":")
    ax2.legend(fontsize=9)
    rows = []
    reference = results[0].grad_norm  # float32 storage
    for (label, _, _, _), r in zip(PRECISION_CASES, results):
        zero = np.nonzero(r.zero_fraction >= 0.5)[0]
        half = int(zero.max()) if zero.size else None
        rows.append([label, "none" if half is None else str(half),
                     _e(r.zero_fraction[0]), str(int(r.underflow_count.sum())),
                     str(int(r.overflow_count.sum())), _e(r.grad_norm[0]),
                     _e(r.grad_norm[0] / reference[0])])
    info = FigureInfo(
        "fig10_mixed_precision", "Mixed precision: float16 underflow vs depth",
        f"A {depth}-layer, {width}-wide tanh chain in the ordered phase "
        f"(sigma_w^2 = 0.5) backpropagates a cross-entropy gradient over a batch of "
        f"{batch}; every propagated gradient is rounded to the storage format. float16's "
        f"smallest subnormal is 2^-24 = 6e-8 (dotted line: a gradient whose every entry "
        f"sits there). " + _fig10_claims(results, batch * width, depth),
        ["storage", "cliff: max l with >= 50% zeros", "zero fraction at layer 0",
         "entries flushed (all layers)", "overflows", "||dL/dh_0||", "/ float32's"], rows)
    return fig, info


def _fig10_claims(results: list, entries: int, depth: int) -> str:
    """Where each format loses the gradient, and why a norm is off where it is."""
    ref = results[0]
    out = []
    for (label, kw, _, _), r in zip(PRECISION_CASES[1:], results[1:]):
        zero = np.nonzero(r.zero_fraction >= 0.5)[0]
        if zero.size:
            text = (f"{label}: half or more of the entries are zero from layer "
                    f"{int(zero.max())} down to 0")
        else:
            text = f"{label}: fewer than half of the entries are zero at every layer"
        ratio = float(r.grad_norm[0] / ref.grad_norm[0]) if ref.grad_norm[0] > 0 else np.nan
        if r.grad_norm[0] > 0 and np.isfinite(ratio) and abs(np.log(ratio)) > np.log(1.1):
            # The stored entries' typical size, in float16's subnormal steps.
            rms = ref.grad_norm[0] * kw.get("loss_scale", 1.0) / np.sqrt(entries)
            text += (f"; at layer 0 its ||dL/dh_0|| is {ratio:.3g}x float32's: the "
                     f"{'scaled ' if kw.get('loss_scale', 1.0) != 1.0 else ''}entries, "
                     f"{rms / 2.0**-24:.2g} of float16's smallest step 2^-24 on average, "
                     f"round to 0 ({100 * r.zero_fraction[0]:.0f}% of them) or to whole "
                     f"steps, an error as large as the entries themselves: the difference "
                     f"is rounding, not a larger gradient")
        out.append(text)
    return ". ".join(out) + "."
