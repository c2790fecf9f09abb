"""Figure 13: the Hessian's top eigenvalue and trace vs sigma_w^2 for tanh chains across
the order/chaos line, beside the gradient through depth.

Recipe: H = pyjac.Chain(...).hessian(x, loss="mse", target=y);
H.eigenvalues(k=1, which="both") (Lanczos) and H.trace() (Hutch++), next to
net.backprop(x, ...).log_grad_norm.
The code is ``pyjac.figures.fig13_curvature``; ``pyjac reproduce`` draws the same figure.

Run: python examples/fig13_curvature.py [--quick] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig13_curvature"))
