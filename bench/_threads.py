"""Thread pinning shared by the benchmarks: imported before numpy, on purpose."""

from __future__ import annotations

import os
import sys


def pin_threads_from_argv() -> int | None:
    """Give numpy, PyTorch and pyjac the same thread budget when ``--threads N`` is on
    the command line: numpy's OpenBLAS reads its thread count once, at import, so this
    must run before numpy is imported. Returns N, or None when not given."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else (
            args[i + 1] if arg == "--threads" and i + 1 < len(args) else None)
        if value is not None:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = value
            return int(value)
    return None
