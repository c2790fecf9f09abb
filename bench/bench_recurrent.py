"""Backprop through time: pyjac vs a numpy loop vs PyTorch (when installed), float32.

Run: ``python bench/bench_recurrent.py [--repeats N] [--threads N] [--quick]``. Prints a table of
median wall times, each implementation's GFLOP/s, and this machine's sgemm peak measured
in the same run (numpy's OpenBLAS on a large square product), with % of peak.

Every implementation computes the same thing: the forward pass over T steps, the loss
0.5*||h_T||^2 and the full gradients with respect to W, U and b. pyjac also measures
||dL/dh_t|| at every step and each step's share of ||dL/dW||, which the others do not.
"""

from __future__ import annotations

import argparse
import os
import platform

from _threads import pin_threads_from_argv  # noqa: E402

_THREADS = pin_threads_from_argv()

import numpy as np  # noqa: E402
from _floors import recurrent_blas_floor  # noqa: E402
from _timing import (  # noqa: E402
    add_busy_argument,
    blas_kernel_note,
    interleaved_medians,
    pyjac_threads_note,
    sgemm_peak_gflops,
    start_busy_neighbour,
)

import pyjac  # noqa: E402

CASES = [
    # (cell, width, input_size, batch, steps)
    ("tanh", 256, 256, 32, 1000),
    ("lstm", 256, 256, 32, 200),
]




def bptt_flops(cell: str, n: int, m: int, batch: int, steps: int) -> float:
    """Multiply-adds x 2 of the GEMMs every implementation must do."""
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    per_step = 2.0 * batch * G * n * (n + m)  # forward: W h and U x
    per_step += 2.0 * batch * G * n * n  # backward: dL/dh_{t-1} = dz W
    per_step += 2.0 * batch * G * n * (n + m)  # dL/dW and dL/dU
    return per_step * steps


# ---- numpy loop (the straightforward implementation) --------------------------------


def _sigmoid(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def _cell_forward(cell, a, c, n):
    """One step after its products: the new h (and c), and what the backward step needs."""
    if cell != "lstm":
        h = np.tanh(a)
        return h, c, h
    i, f = _sigmoid(a[:, :n]), _sigmoid(a[:, n:2 * n])
    g, o = np.tanh(a[:, 2 * n:3 * n]), _sigmoid(a[:, 3 * n:])
    c_new = f * c + i * g
    tc = np.tanh(c_new)
    return o * tc, c_new, (i, f, g, o, tc, c)


def _cell_backward(cell, gh, gc, saved):
    """Pre-activation gradients of one step from dL/dh_t (and dL/dc_t); the new dL/dc."""
    if cell != "lstm":
        return gh * (1 - saved * saved), gc
    i, f, g, o, tc, c_prev = saved
    dc = gc + gh * o * (1 - tc * tc)
    dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                         gh * tc * o * (1 - o)], axis=1)
    return dz, dc * f


def numpy_bptt(cell, W, U, b, xs):
    """The loop a user would write: every product per step, the full weight gradients."""
    T, B, _ = xs.shape
    n = W.shape[1]
    h = c = np.zeros((B, n), dtype=W.dtype)
    hs, saved = [h], []
    for t in range(T):
        h, c, keep = _cell_forward(cell, h @ W.T + xs[t] @ U.T + b, c, n)
        hs.append(h)
        saved.append(keep)
    dW, dU, db = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b)
    gh, gc = hs[-1].copy(), np.zeros_like(h)
    for t in range(T, 0, -1):
        dz, gc = _cell_backward(cell, gh, gc, saved[t - 1])
        dW += dz.T @ hs[t - 1]
        dU += dz.T @ xs[t - 1]
        db += dz.sum(0)
        gh = dz @ W
    return dW, dU, db


def numpy_grad_through_time(cell, W, U, b, xs):
    """The minimal loop for ||dL/dh_t|| at every step (the figure-4 job): the input
    projections of all steps in one product, then one product with W per step forward
    and one per step backward; no weight gradients."""
    T, B, _ = xs.shape
    n = W.shape[1]
    pre = (xs.reshape(T * B, -1) @ U.T + b).reshape(T, B, -1)
    h = c = np.zeros((B, n), dtype=W.dtype)
    saved = []
    for t in range(T):
        h, c, keep = _cell_forward(cell, pre[t] + h @ W.T, c, n)
        saved.append(keep)
    gh, gc = h.copy(), np.zeros_like(h)
    norms = [np.linalg.norm(gh)]
    for t in range(T, 0, -1):
        dz, gc = _cell_backward(cell, gh, gc, saved[t - 1])
        gh = dz @ W
        norms.append(np.linalg.norm(gh))
    return np.array(norms[::-1])


# ---- PyTorch ---------------------------------------------------------------------------


def torch_setup(cell, W, U, b, xs, threads):
    import torch

    torch.set_num_threads(threads)
    n, m = W.shape[1], U.shape[1]
    mod = (torch.nn.LSTM if cell == "lstm" else torch.nn.RNN)(m, n)
    with torch.no_grad():
        mod.weight_hh_l0.copy_(torch.from_numpy(W))
        mod.weight_ih_l0.copy_(torch.from_numpy(U))
        mod.bias_ih_l0.copy_(torch.from_numpy(b))
        mod.bias_hh_l0.zero_()
    x = torch.from_numpy(xs)

    def run():
        mod.zero_grad(set_to_none=True)
        out, _ = mod(x)
        loss = 0.5 * (out[-1] ** 2).sum()
        loss.backward()
        return mod

    return run


def benchmark_cases(quick: bool):
    """(cell, width, input size, batch, steps, net, inputs) for each case: spectral
    radius 0.9, standard normal float32 inputs; --quick runs a twentieth of the steps."""
    for cell, n, m, batch, steps in CASES:
        if quick:
            steps = max(10, steps // 20)
        rnn = pyjac.Recurrent(n, m, cell=cell, spectral_radius=0.9, seed=0, dtype="float32")
        xs = np.random.default_rng(0).standard_normal((steps, batch, m), dtype=np.float32)
        yield cell, n, m, batch, steps, rnn, xs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="shorter sequences (smoke test)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every implementation (default: all cores)")
    add_busy_argument(parser)
    args = parser.parse_args()
    if args.busy:
        start_busy_neighbour()
    print(pyjac_threads_note(args.threads))
    threads = args.threads or pyjac._core.max_threads()
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False

    peak = sgemm_peak_gflops(-1 if _THREADS is None else _THREADS)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{threads} threads; SGEMM peak (OpenBLAS via pyjac, 2048^3, this run): "
          f"{peak:.1f} GFLOP/s; {blas_kernel_note()}")
    if have_torch:
        import torch

        print(f"torch {torch.__version__}, {threads} threads")
    else:
        print("torch not installed: PyTorch column skipped")
    header = (f"{'case':<34} {'pyjac s':>9} {'GFLOP/s':>8} {'%peak':>6} {'numpy s':>9} "
              f"{'numpy/pyjac':>11} {'torch s':>9} {'torch/pyjac':>11} {'ceiling':>8} "
              f"{'floor s':>8} {'torch/floor':>11}")
    print(header)
    print("-" * len(header))
    for cell, n, m, batch, steps, rnn, xs in benchmark_cases(args.quick):
        # Same gradients: a check that the three compute the same thing.
        ref = numpy_bptt(cell, rnn.W, rnn.U, rnn.b, xs)
        r = rnn.backprop(xs, keep_grads=True, n_threads=args.threads)
        err = np.abs(r.weight_grads["W"] - ref[0]).max() / np.abs(ref[0]).max()
        runs = {
            "pyjac": lambda rnn=rnn, xs=xs: rnn.backprop(xs, n_threads=args.threads),
            "numpy": lambda rnn=rnn, xs=xs, cell=cell: numpy_bptt(cell, rnn.W, rnn.U, rnn.b, xs),
            "floor": recurrent_blas_floor(rnn.W, rnn.U, xs),
        }
        if have_torch:
            runs["torch"] = torch_setup(cell, rnn.W, rnn.U, rnn.b, xs, threads)
            tw = runs["torch"]().weight_hh_l0.grad.numpy()
            err = max(err, np.abs(r.weight_grads["W"] - tw).max() / np.abs(tw).max())
        # Interleaved: on a shared machine the load drifts, and each round exposes every
        # implementation to about the same conditions.
        times = interleaved_medians(runs, args.repeats)
        t_pyjac, t_numpy = times["pyjac"], times["numpy"]
        t_torch = times.get("torch", float("nan"))
        flops = bptt_flops(cell, n, m, batch, steps)
        gflops = flops / t_pyjac / 1e9
        name = f"{cell} n={n} m={m} B={batch} T={steps}"
        # The most any implementation of these GEMMs could beat torch by on this machine:
        # torch's time over the time of the same FLOPs at the measured SGEMM peak.
        ceiling = t_torch / (flops / (peak * 1e9))
        print(f"{name:<34} {t_pyjac:9.4f} {gflops:8.1f} {100 * gflops / peak:5.1f}% "
              f"{t_numpy:9.4f} {t_numpy / t_pyjac:10.2f}x {t_torch:9.4f} "
              f"{t_torch / t_pyjac:10.2f}x {ceiling:7.2f}x {times['floor']:8.4f} "
              f"{t_torch / times['floor']:10.2f}x   (max rel dW diff {err:.1e})")
    print("\nceiling = torch s / (FLOPs at the SGEMM peak): the largest torch/pyjac ratio that "
          "the GEMM work alone allows here.\nfloor = the GEMM calls a per-step BPTT must make "
          "(recurrent_blas_floor), timed alone: torch/floor is the\nlargest torch/pyjac ratio that "
          "per-step OpenBLAS calls allow.")
    gradient_through_time_table(args)


def gradient_through_time_table(args) -> None:
    """||dL/dh_t|| at every step and nothing else: Recurrent.backprop(weight_grads=False)
    against the minimal numpy loop."""
    print("\nGradient through time only (||dL/dh_t||, t = 0..T; no weight gradients):")
    header = (f"{'case':<34} {'pyjac s':>9} {'numpy s':>9} {'numpy/pyjac':>11} {'floor s':>8} "
              f"{'numpy/floor':>11}")
    print(header)
    print("-" * len(header))
    for cell, n, m, batch, steps, rnn, xs in benchmark_cases(args.quick):
        ref = numpy_grad_through_time(cell, rnn.W, rnn.U, rnn.b, xs)
        got = rnn.backprop(xs, weight_grads=False, n_threads=args.threads).grad_norm
        # Where numpy's float32 loop still holds them: once its entries turn subnormal
        # (norms below ~1e-30 here) it loses digits and then underflows to 0; pyjac's
        # pass carries a power-of-two scale and keeps them.
        held = ref > 1e-20
        err = float(np.max(np.abs(got[held] / ref[held] - 1)))
        times = interleaved_medians({
            "pyjac": lambda rnn=rnn, xs=xs: rnn.backprop(xs, weight_grads=False,
                                                         n_threads=args.threads),
            "numpy": lambda rnn=rnn, xs=xs, cell=cell: numpy_grad_through_time(
                cell, rnn.W, rnn.U, rnn.b, xs),
            "floor": recurrent_blas_floor(rnn.W, rnn.U, xs, weight_grads=False),
        }, args.repeats)
        name = f"{cell} n={n} m={m} B={batch} T={steps}"
        print(f"{name:<34} {times['pyjac']:9.4f} {times['numpy']:9.4f} "
              f"{times['numpy'] / times['pyjac']:10.2f}x {times['floor']:8.4f} "
              f"{times['numpy'] / times['floor']:10.2f}x   (max rel diff {err:.1e})")
    print("floor = the loop's GEMM calls alone; numpy/floor is the largest numpy/pyjac ratio "
          "they allow.")


if __name__ == "__main__":
    main()
