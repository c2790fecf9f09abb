"""A chain deeper than memory: 10,000 tanh layers of width 2048, whose float32 weights
would take 168 GB, back-propagated on a machine with far less, beside mean-field theory.

Chain(..., store_weights=False) never stores the weights: every layer is drawn again from
the seed when the pass needs it (the same numbers a stored chain of that seed holds), and
the backward pass keeps activations only every sqrt(depth) layers.

Run: python examples/deep_chain_beyond_memory.py [--quick] [--out FILE.png]
(about 80 s on 2 cores; --quick: depth 1000, width 512, a few seconds)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import pyjac
from pyjac import theory


def peak_memory_mib() -> float:
    """This process's peak resident memory (Linux), or NaN elsewhere."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="depth 1000, width 512")
    parser.add_argument("--out", default="deep_chain_beyond_memory.png")
    args = parser.parse_args()
    depth, width, batch = (1000, 512, 8) if args.quick else (10_000, 2048, 8)

    # tanh at sigma_w^2 = 1, sigma_b^2 = 0: the edge of chaos, where mean-field theory
    # predicts the gradient to change slowly (not exponentially) through depth.
    net = pyjac.Chain(depth, width, activation="tanh", init="gaussian", seed=0,
                      store_weights=False)
    draws = np.random.default_rng(0)
    x = draws.standard_normal((batch, width)).astype(np.float32)
    # A random dL/dh_L, independent of the chain: the setting of mean-field theory.
    grad_output = draws.standard_normal((batch, width)).astype(np.float32)
    weights_gb = depth * (width * width + width) * 4 / 1e9
    start = time.perf_counter()
    r = net.backprop(x, grad_output=grad_output)
    seconds = time.perf_counter() - start
    peak_mib = peak_memory_mib()  # read once, before plotting adds its own memory
    measured = r.log_grad_norm - r.log_grad_norm[-1]
    predicted = theory.predicted_log_grad_norm("tanh", 1.0, 0.0, depth, False, 1.0,
                                               input_second_moment=1.0, width=width,
                                               loss="random")
    print(f"{net}: backprop in {seconds:.0f} s ({1e3 * seconds / depth:.1f} ms per layer); "
          f"peak memory {peak_mib:.0f} MiB where the weights alone would take "
          f"{weights_gb:.1f} GB")
    print(f"ln(||dL/dh_0|| / ||dL/dh_L||): measured {measured[0]:.3f}, mean-field "
          f"{predicted[0]:.3f}")
    # Away from both ends the gap to the (infinite-width) prediction grows linearly with
    # depth: its measured rate per layer, beside 1 / width.
    middle = np.arange(depth + 1)[depth // 10: depth - depth // 10]
    rate = np.polyfit(middle, measured[middle] - predicted[middle], 1)[0]
    print(f"the measurement falls below mean field by {rate:.2e} per layer back "
          f"(1 / width = {1 / width:.2e})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    layers = np.arange(depth + 1)
    ax.text(0.35, 0.04, f"below mean field by {rate:.2e} more per layer back "
            f"(1/width = {1 / width:.2e})", transform=ax.transAxes, fontsize=9)
    ax.plot(layers, measured, label="measured (float32, weights never stored)")
    ax.plot(layers, predicted, "--", label="mean-field prediction")
    ax.set_xlabel("layer l")
    ax.set_ylabel(r"$\ln(\|dL/dh_l\| / \|dL/dh_L\|)$")
    ax.set_title(f"tanh chain at the edge of chaos: depth {depth}, width {width} "
                 f"({weights_gb:.0f} GB of weights, peak memory {peak_mib:.0f} MiB)",
                 fontsize=10)
    ax.legend()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
