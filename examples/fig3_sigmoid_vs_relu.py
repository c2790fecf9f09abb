"""Figure 3: sigmoid vs ReLU derivative products: 0.25^n, sigmoid'(1)^n and measured chains.

Recipe: pyjac.plot.activation_derivatives, pyjac.theory.scalar_chain and pyjac.sweep. The
code is ``pyjac.figures.fig3_sigmoid_vs_relu``; ``pyjac reproduce`` draws the same figure.
Runs are cached on disk, so a second run only redraws.

Run: python examples/fig3_sigmoid_vs_relu.py [--quick] [--no-cache] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig3_sigmoid_vs_relu"))
