"""Figure 8: dead ReLU and saturated sigmoid/tanh fractions vs depth at initialisation.

Recipe: pyjac.sweep and pyjac.plot.per_layer(res, "dead_fraction" / "saturated_fraction").
The code is ``pyjac.figures.fig8_dead_and_saturated``; ``pyjac reproduce`` draws the same
figure. Runs are cached on disk, so a second run only redraws.

Run: python examples/fig8_dead_and_saturated.py [--quick] [--no-cache] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig8_dead_and_saturated"))
