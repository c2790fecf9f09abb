"""Figure 10: gradient entries flushed to zero vs depth with float16, float16 + loss
scaling and bfloat16 storage of the backward pass.

Recipe: net.backprop(x, loss="cross_entropy", target=y, grad_dtype="float16",
loss_scale=2**16) and the result's zero_fraction / grad_norm.
The code is ``pyjac.figures.fig10_mixed_precision``; ``pyjac reproduce`` draws the same
figure.

Run: python examples/fig10_mixed_precision.py [--quick] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig10_mixed_precision"))
