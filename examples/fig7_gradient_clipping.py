"""Figure 7: global-norm gradient clipping on exploding, critical and vanishing tanh chains,
computed from the exact per-layer weight-gradient norms.

Recipe: pyjac.sweep(depth=[...]) and numpy: g * min(1, tau / ||g||). The code is
``pyjac.figures.fig7_gradient_clipping``; ``pyjac reproduce`` draws the same figure. Runs
are cached on disk, so a second run only redraws.

Run: python examples/fig7_gradient_clipping.py [--quick] [--no-cache] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig7_gradient_clipping"))
