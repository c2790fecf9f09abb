"""Benchmark: chains that do not store their weights against chains that do.

Usage: python bench/bench_deep.py [--repeats N] [--threads N] [--quick] [--busy] [--full]

At a size where both fit (depth 100, width 2048, batch 8, float32, tanh, Gaussian init):
the time per layer of backprop for a stored chain and for a chain with store_weights=False
(its automatic checkpoints, which keep every layer here since 100 x 8 x 2048 activations
take less than one layer's weights, and checkpoints every sqrt(depth) = 10 layers), and
of the forward pass alone for both (their difference is one draw of a layer's weights),
with each one's peak memory (VmHWM of a fresh process). ``--full`` then runs backprop on the
depth 10,000 x width 2048 chain whose weights would take 168 GB: its time, time per
layer, peak memory and the measured gradient at both ends.
"""

from __future__ import annotations

from _threads import pin_threads_from_argv

pin_threads_from_argv()

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _timing import (  # noqa: E402
    add_busy_argument,
    blas_kernel_note,
    interleaved_medians,
    pyjac_threads_note,
    sgemm_peak_gflops,
    start_busy_neighbour,
)

import pyjac  # noqa: E402
from pyjac import _core  # noqa: E402

DEPTH, WIDTH, BATCH = 100, 2048, 8
FULL_DEPTH = 10_000

_PEAK = r"""
import sys, time
import numpy as np
import pyjac

def peak_mib():
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith("VmHWM")).split()[1]) / 1024

depth, width, batch, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
x = np.random.default_rng(0).standard_normal((batch, width)).astype(np.float32)
base = peak_mib()
kw = {} if mode == "stored" else dict(store_weights=False,
                                      checkpoint_every=None if mode == "auto" else
                                      round(depth ** 0.5))
t0 = time.perf_counter()
net = pyjac.Chain(depth, width, activation="tanh", init="gaussian", seed=0, **kw)
r = net.backprop(x)
seconds = time.perf_counter() - t0
print(seconds, peak_mib() - base, r.log_grad_norm[0], r.log_grad_norm[-1],
      r.first_nonfinite_layer)
"""


def peak_run(depth, width, batch, mode, threads):
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-c", _PEAK, str(depth), str(width), str(batch), mode],
                         capture_output=True, text=True, check=True, env=env).stdout.split()
    return float(out[0]), float(out[1]), float(out[2]), float(out[3]), out[4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--full", action="store_true",
                        help=f"also backprop through depth {FULL_DEPTH} x width {WIDTH}")
    add_busy_argument(parser)
    args = parser.parse_args()
    if args.busy:
        start_busy_neighbour()
    repeats = 3 if args.quick else args.repeats
    threads = args.threads or _core.max_threads()
    print(pyjac_threads_note(args.threads))
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {repeats} interleaved rounds")
    print(f"pyjac {pyjac.__version__}, numpy {np.__version__}; {blas_kernel_note()}; "
          f"SGEMM peak (same run) {sgemm_peak_gflops(threads):.0f} GFLOP/s")

    x = np.random.default_rng(0).standard_normal((BATCH, WIDTH)).astype(np.float32)
    kw = dict(activation="tanh", init="gaussian", seed=0)
    stored = pyjac.Chain(DEPTH, WIDTH, **kw)
    drawn = pyjac.Chain(DEPTH, WIDTH, store_weights=False, **kw)
    sqrt_k = round(DEPTH ** 0.5)
    drawn_sqrt = pyjac.Chain(DEPTH, WIDTH, store_weights=False, checkpoint_every=sqrt_k, **kw)
    n = args.threads
    t = interleaved_medians({
        "stored backprop": lambda: stored.backprop(x, n_threads=n),
        "unstored backprop (auto: K=1)": lambda: drawn.backprop(x, n_threads=n),
        f"unstored backprop, K={sqrt_k}": lambda: drawn_sqrt.backprop(x, n_threads=n),
        "stored forward": lambda: stored.forward(x, n_threads=n),
        "unstored forward": lambda: drawn.forward(x, n_threads=n),
    }, repeats, inner=1)
    base = t["stored backprop"]
    print(f"\ndepth {DEPTH}, width {WIDTH}, batch {BATCH}, float32 (K: layers between kept "
          f"activations; automatic here: {drawn._spec.checkpoint_interval(BATCH)})")
    print(f"{'':28s} {'ms/layer':>9s} {'x stored':>9s}")
    for name, seconds in t.items():
        ref = base if "backprop" in name else t["stored forward"]
        print(f"{name:28s} {1e3 * seconds / DEPTH:9.2f} {seconds / ref:9.2f}")
    draw_ms = 1e3 * (t["unstored forward"] - t["stored forward"]) / DEPTH
    print(f"one layer's draw ({WIDTH}x{WIDTH} normals): {draw_ms:.2f} ms "
          f"({1e6 * draw_ms / WIDTH**2:.2f} ns per weight)")

    # Per-layer spectral norms: each layer drawn once, then its power iteration.
    few = 10
    x1 = x[0]
    s_stored = pyjac.Chain(few, WIDTH, **kw)
    s_drawn = pyjac.Chain(few, WIDTH, store_weights=False, **kw)
    t = interleaved_medians({
        "stored": lambda: s_stored.spectral_norm(x1, per_layer=True, iters=50, tol=1e-300,
                                                 n_threads=n),
        "unstored": lambda: s_drawn.spectral_norm(x1, per_layer=True, iters=50, tol=1e-300,
                                                  n_threads=n),
    }, repeats, inner=1)
    print(f"per-layer spectral norms (50 power iterations each, depth {few}): stored "
          f"{1e3 * t['stored'] / few:.1f} ms/layer, unstored {1e3 * t['unstored'] / few:.1f} "
          f"ms/layer ({t['unstored'] / t['stored']:.2f}x)")

    print("\npeak memory of a fresh process (VmHWM above its start), backprop included:")
    for mode in ("stored", "auto", "sqrt"):
        seconds, mib, first, last, _ = peak_run(DEPTH, WIDTH, BATCH, mode, args.threads)
        print(f"  {mode:7s} {mib:8.1f} MiB   ln||dL/dh_0|| = {first:.6f}")
    if args.full:
        weights_gb = FULL_DEPTH * (WIDTH * WIDTH + WIDTH) * 4 / 1e9
        print(f"\ndepth {FULL_DEPTH}, width {WIDTH}, batch {BATCH}, float32: the stored weights "
              f"would take {weights_gb:.0f} GB")
        t0 = time.perf_counter()
        seconds, mib, first, last, nonfinite = peak_run(FULL_DEPTH, WIDTH, BATCH, "auto",
                                                        args.threads)
        print(f"  unstored backprop (K = {round(FULL_DEPTH ** 0.5)}): {seconds:.0f} s "
              f"({1e3 * seconds / FULL_DEPTH:.1f} ms per layer), peak {mib:.0f} MiB; "
              f"ln||dL/dh_0|| = {first:.4f}, "
              f"ln||dL/dh_L|| = {last:.4f}, first non-finite layer {nonfinite} "
              f"(wall {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
