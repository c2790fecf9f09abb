"""Figure 16: the frozen early layers of a deep sigmoid net under SGD and under Adam,
beside ReLU + He, with the first layer's weight histograms over the epochs.

Recipe: pyjac.load_digits, pyjac.Chain, pyjac.train(net, x, y, optimizer="sgd" or
"adam", weight_bins=32) and pyjac.plot.weight_histograms(history, layer=0,
difference=True).
The code is ``pyjac.figures.fig16_optimizers``; ``pyjac reproduce`` draws the same
figure.

Run: python examples/fig16_optimizers.py [--quick] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig16_optimizers"))
