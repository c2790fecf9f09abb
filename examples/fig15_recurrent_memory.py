"""Figure 15: what the vanishing gradient through time costs: tanh RNNs, LSTMs and a GRU
trained on the adding problem at growing sequence lengths, beside each net's gradient
through time at initialisation and its memory horizon.

Recipe: pyjac.adding_problem, pyjac.Recurrent, pyjac.train(rnn, x, y, loss="mse",
optimizer="adam", validation=...), Recurrent.backprop for the gradient through time.
The code is ``pyjac.figures.fig15_recurrent_memory``; ``pyjac reproduce`` draws the same
figure.

Run: python examples/fig15_recurrent_memory.py [--quick] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig15_recurrent_memory"))
