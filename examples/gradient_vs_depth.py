"""Gradient norm vs depth for linear, sigmoid, tanh and ReLU chains under four inits.

Run: python examples/gradient_vs_depth.py [OUT.png]
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pyjac  # noqa: E402

DEPTH, WIDTH, BATCH, SEEDS = 100, 256, 32, 3
out = sys.argv[1] if len(sys.argv) > 1 else "gradient_vs_depth.png"
fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
for ax, activation in zip(axes, ["linear", "sigmoid", "tanh", "relu"]):
    for init, colour, style in zip(["gaussian", "xavier", "he", "orthogonal"],
                                   ["tab:blue", "tab:orange", "tab:green", "tab:red"],
                                   ["-", "--", "-", ":"]):
        curves = []
        for seed in range(SEEDS):
            net = pyjac.Chain(DEPTH, WIDTH, activation=activation, init=init, seed=seed,
                              dtype="float64")
            data = np.random.default_rng(seed)
            r = net.backprop(data.standard_normal((BATCH, WIDTH)),
                             grad_output=data.standard_normal((BATCH, WIDTH)))
            curves.append(r.grad_norm / r.grad_norm[-1])
        curves = np.array(curves)
        layers = np.arange(DEPTH + 1)
        ax.plot(layers, np.exp(np.log(curves).mean(0)), color=colour, ls=style, lw=2,
                label=init)
        ax.fill_between(layers, curves.min(0), curves.max(0), color=colour, alpha=0.2)
    if activation == "sigmoid":
        ax.plot(layers, 0.25 ** (DEPTH - layers), "k:", label="0.25$^{L-l}$ (derivatives only)")
    ax.set_yscale("log")
    ax.set_title(f"{activation} (width {WIDTH})")
    ax.set_xlabel("layer l")
    ax.grid(alpha=0.3)
axes[0].set_ylabel(r"$\|\partial L/\partial h_l\| \,/\, \|\partial L/\partial h_L\|$")
axes[1].legend(loc="lower right", fontsize=8)
fig.suptitle(f"Exact per-layer gradient norms, depth {DEPTH}, {SEEDS} seeds (band: min-max); "
             "on square layers gaussian, xavier and orthogonal share the variance 1/n")
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"wrote {out}")
