"""Figure 4: RNN gradient norm vs time for spectral radius 0.5 ... 1.5, vanilla tanh vs LSTM
(needs pyjac.Recurrent).

Recipe: pyjac.experiments.rnn_sweep and pyjac.plot.rnn_gradient_vs_time. The code is
``pyjac.figures.fig4_rnn_gradient_vs_time``; ``pyjac reproduce`` draws the same figure. Runs
are cached on disk, so a second run only redraws.

Run: python examples/fig4_rnn_gradient_vs_time.py [--quick] [--no-cache] [--out FILE.png]
"""

import sys

from pyjac.figures import example_main

if __name__ == "__main__":
    sys.exit(example_main("fig4_rnn_gradient_vs_time"))
