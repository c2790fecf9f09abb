"""Figure 5: Jacobian singular value spectra vs depth: orthogonal tanh at criticality
(dynamical isometry) vs Gaussian ReLU (needs Chain.jacobian_norms).

Recipe: pyjac.experiments.jacobian_spectra and pyjac.plot.singular_value_spectra. The code
is ``pyjac.figures.fig5_jacobian_spectra``; ``pyjac reproduce`` draws the same figure. Runs
are cached on disk, so a second run only redraws.

Run: python examples/fig5_jacobian_spectra.py [--quick] [--no-cache] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig5_jacobian_spectra"))
