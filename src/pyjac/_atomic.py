"""Atomic file writes: a temporary file created exclusively beside the target, then renamed.

``mkstemp`` creates a new file with ``O_EXCL``, so a symlink planted where a temporary
file would go is never followed or overwritten; ``os.replace`` then swaps the finished
file in, so a reader sees the old content or the new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success.

    On any error the temporary file is removed and ``path`` is left as it was. A ``path``
    that names a directory raises IsADirectoryError before anything is written.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{str(target)!r} is a directory")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    # mkstemp creates files readable by the owner alone; give the finished file the
    # permissions a plain open() would have.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_figure(fig: Any, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """``fig.savefig(path)`` through :func:`atomic_write` (the format from the suffix)."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_write(path) as fh:
        fig.savefig(fh, format=fmt, **kwargs)
