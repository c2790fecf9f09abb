"""Benchmark: Chain.backprop against the numpy loop (and PyTorch when installed).

Usage: python bench/bench_backprop.py [--repeats N] [--threads N] [--quick]

Float32, ReLU with He init, loss 0.5*||h_L||^2. Every contender computes the same
measurements: ||dL/dh_l|| for every layer and ||dL/dW_l|| for every layer. FLOPs are
counted as the textbook 6*batch*sum(n_in*n_out) of one forward and backward pass (pyjac's
ghost norm performs fewer); % of peak is against this machine's OpenBLAS SGEMM rate
measured in the same run through the library pyjac links. Peak RSS is measured in a
fresh process per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from functools import partial

from _threads import pin_threads_from_argv

pin_threads_from_argv()

import numpy as np  # noqa: E402
from _timing import (  # noqa: E402
    add_busy_argument,
    blas_kernel_note,
    interleaved_medians,
    optional_torch,
    pyjac_threads_note,
    sgemm_peak_gflops,
    start_busy_neighbour,
    torch_linears,
)

import pyjac  # noqa: E402
from pyjac import _core  # noqa: E402

CONFIGS = [(100, 256, 64), (1000, 64, 16), (50, 1024, 256)]
TARGETS = {(100, 256, 64): 2.0, (1000, 64, 16): 3.0, (50, 1024, 256): 1.3}


def pyjac_min_flops(depth: int, width: int, batch: int) -> float:
    """FLOPs of the GEMMs pyjac cannot avoid: W h forward, dz W backward, and the weight
    gradient's norm (two batch Gram SYRKs when that is cheaper than forming dW)."""
    per_layer = 4.0 * batch * width * width
    ghost = 2.0 * batch * batch * width
    per_layer += min(ghost, 2.0 * batch * width * width)
    return depth * per_layer


def numpy_backprop(weights, biases, x):
    """The loop a user would write with numpy: store activations, walk back."""
    hs = [x]
    for w, b in zip(weights, biases):
        hs.append(np.maximum(hs[-1] @ w.T + b, 0))
    g = hs[-1]
    grad_norm = [np.linalg.norm(g)]
    weight_norm = []
    for l in range(len(weights) - 1, -1, -1):
        dz = g * (hs[l + 1] > 0)
        weight_norm.append(np.linalg.norm(dz.T @ hs[l]))
        g = dz @ weights[l]
        grad_norm.append(np.linalg.norm(g))
    return np.array(grad_norm[::-1]), np.array(weight_norm[::-1])


def torch_backprop(torch, layers, x):
    hs = [x.detach().clone().requires_grad_(True)]
    for layer in layers:
        h = torch.relu(layer(hs[-1]))
        h.retain_grad()
        hs.append(h)
    loss = 0.5 * (hs[-1] ** 2).sum()
    for layer in layers:
        layer.weight.grad = None
        layer.bias.grad = None
    loss.backward()
    grad_norm = [h.grad.norm().item() for h in hs]
    weight_norm = [layer.weight.grad.norm().item() for layer in layers]
    return np.array(grad_norm), np.array(weight_norm)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def peak_rss_child(depth, width, batch):
    """Runs in a fresh process: peak RSS growth of one backprop (Linux: VmHWM, reset
    through /proc/self/clear_refs so earlier peaks do not count)."""
    net = pyjac.Chain(depth, width, activation="relu", init="he", seed=0)
    x = np.random.default_rng(0).standard_normal((batch, width)).astype(np.float32)
    net.backprop(x[:2])  # start threads and BLAS buffers before the baseline
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    net.backprop(x)
    peak = _status_kib("VmHWM")
    weights = sum(w.nbytes + b.nbytes for w, b in zip(net.weights, net.biases))
    activations = depth * batch * width * 4
    print(json.dumps({"growth": peak - before, "activations": activations, "weights": weights,
                      "baseline": before}))


def measure_memory(depth, width, batch):
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", f"{depth},{width},{batch}"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    add_busy_argument(parser)
    args = parser.parse_args()
    if args.busy:
        start_busy_neighbour()
    print(pyjac_threads_note(args.threads))
    if args.memory_child:
        peak_rss_child(*map(int, args.memory_child.split(",")))
        return
    repeats = 3 if args.quick else args.repeats
    threads = args.threads or _core.max_threads()
    torch = optional_torch(threads)

    peak = sgemm_peak_gflops(threads)
    print(f"load average {os.getloadavg()[0]:.1f}; timings are medians of {repeats} interleaved "
          "rounds")
    print(f"pyjac {pyjac.__version__}, threads={threads} (every library), numpy {np.__version__}"
          + (f", torch {torch.__version__}" if torch else ", torch not installed"))
    print(f"OpenBLAS SGEMM peak (2048^3, same run): {peak:.1f} GFLOP/s; "
          f"{blas_kernel_note()}\n")
    header = (f"{'depth,width,batch':>18} {'pyjac ms':>9} {'numpy ms':>9} {'vs numpy':>9} "
              f"{'target':>7} {'torch ms':>9} {'vs torch':>9} {'GFLOP/s':>8} {'% peak':>7} "
              f"{'mem ratio':>9} {'ceiling':>8} {'floor':>6}")
    print(header)
    print("-" * len(header))
    for depth, width, batch in CONFIGS:
        net = pyjac.Chain(depth, width, activation="relu", init="he", seed=0)
        x = np.random.default_rng(0).standard_normal((batch, width)).astype(np.float32)
        mine = net.backprop(x, n_threads=args.threads)
        ref_g, ref_w = numpy_backprop(net.weights, net.biases, x)
        # Same numbers before timing anything (float32, different summation orders).
        np.testing.assert_allclose(mine.grad_norm, ref_g, rtol=2e-3)
        np.testing.assert_allclose(mine.weight_grad_norm, ref_w, rtol=2e-3)
        contenders = {
            "pyjac": partial(net.backprop, x, n_threads=args.threads),
            "numpy": partial(numpy_backprop, net.weights, net.biases, x),
        }
        if torch is not None:
            layers = torch_linears(torch, net.weights, net.biases)
            xt = torch.from_numpy(x)
            tg, _ = torch_backprop(torch, layers, xt)
            np.testing.assert_allclose(mine.grad_norm, tg, rtol=2e-3)
            contenders["torch"] = partial(torch_backprop, torch, layers, xt)
        times = interleaved_medians(contenders, repeats)
        t_pyjac, t_numpy = times["pyjac"], times["numpy"]
        t_torch = times.get("torch", float("nan"))
        flops = 6.0 * batch * depth * width * width
        gflops = flops / t_pyjac * 1e-9
        ceiling = t_numpy / (pyjac_min_flops(depth, width, batch) / (peak * 1e9))
        t_floor = _core.backprop_blas_seconds(depth, width, batch, repeats, threads)
        mem = measure_memory(depth, width, batch)
        mem_ratio = (mem["weights"] + mem["growth"]) / (mem["activations"] + mem["weights"])
        print(f"{f'{depth},{width},{batch}':>18} {t_pyjac * 1e3:9.2f} {t_numpy * 1e3:9.2f} "
              f"{t_numpy / t_pyjac:8.2f}x {TARGETS[(depth, width, batch)]:6.1f}x "
              f"{t_torch * 1e3:9.2f} {t_torch / t_pyjac:8.2f}x {gflops:8.1f} "
              f"{100 * gflops / peak:6.1f}% {mem_ratio:9.2f} {ceiling:7.2f}x "
              f"{t_numpy / t_floor:5.2f}x")
    print("\nmem ratio = (weights + peak RSS growth during backprop) / (weights + stored "
          "activations depth*batch*width*4).\nTarget: at most 1.10.\n"
          "ceiling = numpy ms / (pyjac's own GEMM work at the SGEMM peak): the largest "
          "'vs numpy' that the GEMMs alone allow here.\n"
          "floor = numpy ms / (the BLAS calls of pyjac's tiled pass alone, in its schedule, "
          "timed in this run: _core.backprop_blas_seconds): the largest 'vs numpy' that any "
          "pass making these BLAS calls reaches on this machine.")


if __name__ == "__main__":
    main()
