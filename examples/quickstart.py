"""Quickstart: how the gradient norm changes layer by layer in 1000-layer chains.

Run: python examples/quickstart.py
"""

import time

import numpy as np

import pyjac

x = np.random.default_rng(0).standard_normal((16, 64))
print(f"{'chain (depth 1000, width 64, float64)':<44} {'log10 ||dL/dh_0||/||dL/dh_L||':>30}"
      f" {'ms':>7}")
for label, kwargs in [
    ("sigmoid, xavier init", dict(activation="sigmoid", init="xavier")),
    ("tanh, gaussian init (sigma_w^2 = 1)", dict(activation="tanh", init="gaussian")),
    ("tanh, orthogonal init", dict(activation="tanh", init="orthogonal")),
    ("relu, he init", dict(activation="relu", init="he")),
    ("relu, gaussian gain 1.5 (exploding)", dict(activation="relu", init="gaussian", gain=1.5)),
    ("linear, residual (scale 0.1), he init", dict(activation="linear", init="he",
                                                    residual=True, residual_scale=0.1)),
]:
    net = pyjac.Chain(1000, 64, dtype="float64", **kwargs)
    t0 = time.perf_counter()
    r = net.backprop(x)
    ms = (time.perf_counter() - t0) * 1e3
    # log_grad_norm stays exact where the float64 value underflows.
    log_ratio = (r.log_grad_norm[0] - r.log_grad_norm[-1]) / np.log(10)
    note = ""
    if r.first_underflow_layer is not None:
        note = f"  (||dL/dh_l|| first below float64's range at layer {r.first_underflow_layer})"
    if r.first_nonfinite_layer is not None:
        note = f"  (first non-finite at layer {r.first_nonfinite_layer}, {r.first_nonfinite_stage})"
    print(f"{label:<44} {log_ratio:30.2f} {ms:7.1f}{note}")
