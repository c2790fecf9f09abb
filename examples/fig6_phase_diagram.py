"""Figure 6: order/chaos phase diagram of tanh chains: measured gradient growth per layer on a
(sigma_w2, sigma_b2) grid, with the mean-field critical line.

Recipe: pyjac.sweep(sigma_w2=[...], sigma_b2=[...]) and pyjac.plot.phase_diagram. The code
is ``pyjac.figures.fig6_phase_diagram``; ``pyjac reproduce`` draws the same figure. Runs are
cached on disk, so a second run only redraws.

Run: python examples/fig6_phase_diagram.py [--quick] [--no-cache] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig6_phase_diagram"))
