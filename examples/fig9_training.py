"""Figure 9: which layers of a deep net learn: sigmoid vs ReLU + He vs residual +
layernorm, trained by SGD on the handwritten digits.

Recipe: pyjac.load_digits, pyjac.Chain, pyjac.train(net, x, y, validation=...) and the
history's weight_change / loss arrays.
The code is ``pyjac.figures.fig9_training``; ``pyjac reproduce`` draws the same
figure.

Run: python examples/fig9_training.py [--quick] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig9_training"))
