"""Argument checks shared by the public API: each error names the argument."""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

FLOAT_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Return float32 or float64 as a numpy dtype, or raise TypeError."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved not in FLOAT_DTYPES.values():
        raise TypeError(f"{name}: expected 'float32' or 'float64', got {dtype!r}")
    return resolved


def check_int(
    value: Any, name: str, minimum: int | None = None, maximum: int = 2**31 - 1
) -> int:
    """An integer (not a bool) no smaller than ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name}: {value} is too large (at most {maximum})")
    return value


def check_bool(value: Any, name: str) -> bool:
    """A bool (numpy's included); strings such as "no" and integers are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def check_seed(value: Any, name: str = "seed", maximum: int = 2**64 - 1) -> int:
    """A seed as numpy takes one: a non-negative integer, None (fresh entropy) or a
    ``numpy.random.Generator`` (one integer drawn from it). The integer is returned, so
    that a result can say which seed made it."""
    if value is None:
        return int(np.random.SeedSequence().entropy) % (maximum + 1)
    if isinstance(value, np.random.Generator):
        return int(value.integers(0, maximum, endpoint=True, dtype=np.uint64))
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}: expected an integer, None or a numpy Generator, got "
                        f"{type(value).__name__}")
    return check_int(value, name, minimum=0, maximum=maximum)


def check_real(value: Any, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    """A finite real number, optionally > 0 or >= 0."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int such as 10**400
        raise ValueError(
            f"{name}: an integer of {len(str(abs(int(value))))} digits is beyond the float64 "
            "range") from None
    if not np.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name}: must be positive, got {value}")
    if nonneg and value < 0:
        raise ValueError(f"{name}: must be non-negative, got {value}")
    return value


def check_choice(value: Any, allowed: Sequence[str], name: str) -> str:
    """One of ``allowed`` (all lower case), matched case-insensitively as the CLI does
    ("ReLU" is "relu"); the canonical spelling is returned."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    folded = value.lower()
    if folded not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}: unknown value {value!r}; expected one of {options}")
    return folded


def check_threads(n_threads: Any) -> int:
    """None or -1: every core (OMP_NUM_THREADS respected); a positive count otherwise."""
    if n_threads is None:
        return -1
    if isinstance(n_threads, bool) or not isinstance(n_threads, Integral):
        raise TypeError(f"n_threads: expected an integer or None, got {type(n_threads).__name__}")
    n_threads = int(n_threads)
    if n_threads == 0 or n_threads < -1:
        raise ValueError(f"n_threads: must be a positive count, -1 or None, got {n_threads}")
    from . import _core

    limit = _core.thread_limit()
    if n_threads > limit:
        raise ValueError(
            f"n_threads: {n_threads} is more than this machine can use (at most {limit})"
        )
    return n_threads


def raw_array(value: Any, name: str) -> np.ndarray:
    """``np.asarray(value)``, with an error naming the argument (ragged lists and the like)."""
    try:
        return np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{name}: cannot be converted to an array ({exc})") from None


def as_float_array(value: Any, name: str, dtype: np.dtype, *, copy: bool = False) -> np.ndarray:
    """Convert to a C-contiguous array of ``dtype``; reject non-numeric and non-finite input.

    With ``copy=True`` the result never shares memory with ``value``, so that the
    caller's array is not changed when the result is.
    """
    arr = raw_array(value, name)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == np.bool_
    ):
        raise TypeError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or Inf")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            arr = np.ascontiguousarray(arr, dtype=dtype)
    except MemoryError:
        raise MemoryError(f"{name}: too large to convert to {dtype}") from None
    if not np.isfinite(arr).all():  # finite values beyond the dtype's range
        raise ValueError(f"{name}: holds values beyond {np.dtype(dtype).name}'s range "
                         f"(+-{np.finfo(dtype).max:.3g})")
    if copy and isinstance(value, np.ndarray) and np.may_share_memory(arr, value):
        arr = arr.copy()
    return arr


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 2**62


def check_allocation(nbytes: int, what: str) -> None:
    """Refuse, before allocating, what could never fit in this machine's memory."""
    limit = physical_memory_bytes()
    if nbytes > limit:
        raise MemoryError(
            f"{what} needs {nbytes / 2**30:.1f} GiB, more than this machine's "
            f"{limit / 2**30:.1f} GiB of memory"
        )


# Bytes of Python and numpy bookkeeping per layer of a chain (two array objects, their
# list slots and the activation name), on top of the parameters themselves.
LAYER_OVERHEAD_BYTES = 256

# |z| of a standard normal draw by the core's generator never exceeds this (draw.cpp:
# Box-Muller with u >= 2^-32, sqrt(-2 ln 2^-32) = 6.6604, in float32 arithmetic).
MAX_NORMAL_DRAW = 6.67


def check_scale_fits(value: float, name: str, dtype: np.dtype, factor: float = 1.0) -> float:
    """Refuse a scale (gain, bias_std) that would make drawn weights overflow ``dtype``."""
    limit = float(np.finfo(dtype).max) / (MAX_NORMAL_DRAW * factor)
    if abs(value) > limit:
        raise ValueError(
            f"{name}: {value:.3g} would give weights beyond {dtype.name}'s range "
            f"(at most {limit:.3g} here)"
        )
    return value
