"""Timing helpers shared by the benchmarks in this folder."""

from __future__ import annotations

import statistics
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


def sgemm_peak_gflops(threads: int, n: int = 2048, repeats: int = 3) -> float:
    """This machine's float32 GEMM rate through the same OpenBLAS that pyjac links
    (scipy-openblas32), measured now, in this run."""
    return _core.gemm_gflops(n, repeats, threads, True)
