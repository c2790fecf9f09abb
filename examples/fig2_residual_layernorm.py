"""Figure 2: plain vs residual vs layernorm chains at depth 100 (sigmoid, tanh, ReLU).

Recipe: pyjac.sweep(residual=..., norm=..., residual_scale=...) and
pyjac.plot.gradient_vs_depth. The code is ``pyjac.figures.fig2_residual_layernorm``; ``pyjac
reproduce`` draws the same figure. Runs are cached on disk, so a second run only redraws.

Run: python examples/fig2_residual_layernorm.py [--quick] [--no-cache] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig2_residual_layernorm"))
