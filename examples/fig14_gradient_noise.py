"""Figure 14: the signal-to-noise ratio of every layer's minibatch gradient during
training, a deep sigmoid net vs ReLU + He.

Recipe: history = pyjac.train(net, x, y, ...); history.gradient_snr and
history.gradient_noise_scale, (epochs, depth) arrays from the per-example gradients of
every step (net.backprop(x).gradient_snr for one batch).
The code is ``pyjac.figures.fig14_gradient_noise``; ``pyjac reproduce`` draws the same
figure.

Run: python examples/fig14_gradient_noise.py [--quick] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig14_gradient_noise"))
