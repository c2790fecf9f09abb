"""Figure 1: gradient norm vs depth for linear, sigmoid, tanh and ReLU chains under
gaussian, xavier, he and orthogonal init, with the mean-field prediction.

Recipe: pyjac.sweep(activation=[...], init=[...]) and pyjac.plot.gradient_vs_depth. The code
is ``pyjac.figures.fig1_gradient_vs_depth``; ``pyjac reproduce`` draws the same figure. Runs
are cached on disk, so a second run only redraws.

Run: python examples/fig1_gradient_vs_depth.py [--quick] [--no-cache] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig1_gradient_vs_depth"))
