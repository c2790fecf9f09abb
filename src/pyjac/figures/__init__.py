"""The depth-vs-gradient figures that ``pyjac reproduce`` draws, one module each.

Every ``figN_*`` function runs its sweep (cached on disk, see :func:`pyjac.sweep`), draws
a matplotlib figure with :mod:`pyjac.plot` and returns ``(figure, info)`` where ``info``
(:class:`FigureInfo`) holds the caption and a table of the numbers it measured. The
scripts in ``examples/`` call these functions; ``quick=True`` shrinks widths, depths,
grids and seeds so that every figure together draws in well under two minutes on two
cores.

Modules: ``common`` (the figure record and caption words), one per figure
(``gradient_vs_depth``, ``residual_layernorm``, ``sigmoid_vs_relu``,
``rnn_gradient_vs_time``, ``singular_values``, ``phase_diagram``, ``gradient_clipping``,
``dead_and_saturated``, ``training``, ``mixed_precision``, ``transformers`` (11 and 12),
``curvature`` (13 and 14),
``recurrent_memory``,
``optimizers``) and ``report`` (the numbers in the seed texts and ``report.md``).
"""

from __future__ import annotations

from .._atomic import save_figure
from .common import FigureInfo, Spec, _plt
from .curvature import fig13_curvature, fig14_gradient_noise
from .dead_and_saturated import fig8_dead_and_saturated
from .gradient_clipping import fig7_gradient_clipping
from .gradient_vs_depth import fig1_gradient_vs_depth
from .mixed_precision import fig10_mixed_precision
from .optimizers import fig16_optimizers
from .phase_diagram import fig6_phase_diagram
from .recurrent_memory import fig15_recurrent_memory
from .residual_layernorm import fig2_residual_layernorm
from .rnn_gradient_vs_time import fig4_rnn_gradient_vs_time
from .sigmoid_vs_relu import fig3_sigmoid_vs_relu
from .singular_values import fig5_jacobian_spectra
from .training import fig9_training
from .transformers import fig11_transformer_gradients, fig12_rank_collapse

__all__ = ["FIGURES", "FigureInfo", "Spec", "available", "example_main",
           "fig1_gradient_vs_depth", "fig2_residual_layernorm", "fig3_sigmoid_vs_relu",
           "fig4_rnn_gradient_vs_time", "fig5_jacobian_spectra", "fig6_phase_diagram",
           "fig7_gradient_clipping", "fig8_dead_and_saturated", "fig9_training",
           "fig10_mixed_precision", "fig11_transformer_gradients", "fig12_rank_collapse",
           "fig13_curvature", "fig14_gradient_noise",
           "fig15_recurrent_memory", "fig16_optimizers"]


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
    Spec("fig9_training", "Training a deep net: which layers learn", fig9_training, sweep=False),
    Spec("fig10_mixed_precision", "Mixed precision: float16 underflow vs depth",
         fig10_mixed_precision, sweep=False),
    Spec("fig11_transformer_gradients", "Transformer gradients: post-LN vs pre-LN",
         fig11_transformer_gradients, sweep=False),
    Spec("fig12_rank_collapse", "Rank collapse in attention stacks", fig12_rank_collapse,
         sweep=False),
    Spec("fig13_curvature", "Curvature across the order/chaos line", fig13_curvature,
         sweep=False),
    Spec("fig14_gradient_noise", "Gradient signal-to-noise per layer during training",
         fig14_gradient_noise, sweep=False),
    Spec("fig15_recurrent_memory", "Recurrent memory: gradient through time vs what is learned",
         fig15_recurrent_memory, sweep=False),
    Spec("fig16_optimizers", "SGD vs Adam: do the early layers of a deep net learn?",
         fig16_optimizers, sweep=False),
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
