"""Timing helpers shared by the benchmarks in this folder."""

from __future__ import annotations

import atexit
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

from pyjac import _core


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, after one warm-up call (page faults,
    thread pools and lazy loading land there)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(contenders: dict[str, Callable[[], object]], repeats: int,
                        settle: float = 0.15, inner: int = 3) -> dict[str, float]:
    """Median wall time of each contender, timed round by round (A, B, C, A, B, C, ...)
    so that load drifting on a shared machine hits every contender alike.

    In each round a contender gets a pause of ``settle`` seconds, one untimed call, then
    ``inner`` timed calls back to back: after a call, BLAS and OpenMP worker threads keep
    spinning for a while (OpenBLAS's up to ~0.1 s), and on a machine with few cores they
    would steal the next contender's cores; the untimed call wakes the contender's own
    threads. Each contender is thus timed in its steady state, as if it ran alone.
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            time.sleep(settle)
            fn()
            for _ in range(inner):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def sgemm_peak_gflops(threads: int, n: int = 2048, repeats: int = 3) -> float:
    """This machine's float32 GEMM rate through the same OpenBLAS that pyjac links
    (scipy-openblas32), measured now, in this run."""
    return _core.gemm_gflops(n, repeats, threads, True)


def start_busy_neighbour() -> None:
    """The --busy mode: a separate process that keeps one core busy until this run ends,
    as a user's other work would; every contender is timed beside it."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    atexit.register(lambda: (proc.kill(), proc.wait()))
    time.sleep(0.5)
    print(f"--busy: timed beside process {proc.pid}, which keeps one core busy")


def add_busy_argument(parser) -> None:
    parser.add_argument("--busy", action="store_true",
                        help="time everything beside a process that keeps one core busy")


def pyjac_threads_note(threads: int | None) -> str:
    """How many threads pyjac's calls get: --threads N, or its default (every core that
    other processes leave free, decided at each call)."""
    if threads is not None:
        return f"pyjac n_threads={threads}"
    busy = _core.busy_cores_elsewhere()
    return (f"pyjac n_threads=None (the cores other processes leave free: "
            f"{max(1, _core.max_threads() - busy)} of {_core.max_threads()} now)")


def blas_kernel_note() -> str:
    """Which OpenBLAS kernels this run uses, for the line that reports the peak. The
    environment's OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) would hold OpenBLAS to older
    kernels than the processor's: run the benchmarks with both unset,
    ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...``."""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    how = f"forced by OPENBLAS_CORETYPE={forced}" if forced else "the processor's own"
    return f"OpenBLAS kernel {_core.blas_kernel()} ({how})"


def optional_torch(threads: int):
    """PyTorch with ``threads`` intra-op threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def torch_linears(torch, weights, biases) -> list:
    """``torch.nn.Linear`` layers holding copies of a chain's weights and biases."""
    layers = []
    for w, b in zip(weights, biases):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
    return layers


def standard_run(doc: str, rounds_of: str, default_repeats: int = 5):
    """The arguments (--repeats, --threads, --quick, --busy) and the header lines that
    the training benchmarks share: returns (args, repeats, threads, torch or None, SGEMM
    peak in GFLOP/s)."""
    import argparse

    import numpy as np

    import pyjac

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=default_repeats)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    add_busy_argument(parser)
    args = parser.parse_args()
    if args.busy:
        start_busy_neighbour()
    print(pyjac_threads_note(args.threads))
    repeats = 3 if args.quick else args.repeats
    threads = args.threads or _core.max_threads()
    torch = optional_torch(threads)
    peak = sgemm_peak_gflops(threads)
    print(f"load average {os.getloadavg()[0]:.1f}; timings are medians of {repeats} interleaved "
          f"rounds of {rounds_of}")
    print(f"pyjac {pyjac.__version__}, threads={threads} (every library), numpy {np.__version__}"
          + (f", torch {torch.__version__}" if torch else ", torch not installed"))
    print(f"OpenBLAS SGEMM peak (2048^3, same run): {peak:.1f} GFLOP/s; "
          f"{blas_kernel_note()}\n")
    return args, repeats, threads, torch, peak
