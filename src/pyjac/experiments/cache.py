"""The on-disk cache: one checksummed file per configuration and seed, named by a hash."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write
from .results import _py

# Bump when the stored measurements or the way inputs are drawn change.
_CACHE_VERSION = 5  # 2: checksums; 3: residual theory, log_grad_norm; 4: draw.cpp's normals;
#                     5: float32 Box-Muller, one raw output per pair


# --------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$PYJAC_CACHE_DIR``, else ``$XDG_CACHE_HOME/pyjac``, else ``~/.cache/pyjac``."""
    env = os.environ.get("PYJAC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyjac"


def _cache_dir(cache: Any) -> Path | None:
    if cache is False or cache is None:
        return None
    if cache is True:
        return default_cache_dir()
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache)
    raise TypeError(f"cache: expected True, False or a directory, got {type(cache).__name__}")


def config_hash(config: Mapping[str, Any], seed: int | None = None, kind: str = "chain") -> str:
    """Stable hash of a configuration (and seed): the name of its cache file."""
    from .. import __version__

    payload = json.dumps({"kind": kind, "config": {k: _py(v) for k, v in config.items()},
                          "seed": seed, "cache_version": _CACHE_VERSION,
                          "pyjac": __version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


_CHECKSUM_KEY = "__sha256__"


def _arrays_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _cache_read(directory: Path | None, key: str) -> dict[str, np.ndarray] | None:
    """A cache entry's arrays, or None when it is missing; a damaged entry (truncated,
    corrupted, or not matching its stored checksum) is reported and recomputed."""
    if directory is None:
        return None
    path = directory / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        stored = str(arrays.pop(_CHECKSUM_KEY))
        if stored != _arrays_checksum(arrays):
            raise ValueError("checksum mismatch")
        return arrays
    except Exception as exc:  # BadZipFile, zlib.error, KeyError, ValueError, OSError, ...
        warnings.warn(f"pyjac: the cache entry {str(path)!r} is damaged ({type(exc).__name__}: "
                      f"{exc}); recomputing it", RuntimeWarning, stacklevel=2)
        return None


def _cache_write(directory: Path | None, key: str, arrays: Mapping[str, np.ndarray]) -> None:
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_write(directory / f"{key}.npz") as fh:
            np.savez(fh, **arrays, **{_CHECKSUM_KEY: np.array(_arrays_checksum(arrays))})
    except OSError as exc:  # a read-only cache must not stop a sweep
        print(f"pyjac: cannot write to the cache {str(directory)!r} ({exc}); "
              "continuing without it", file=sys.stderr)
