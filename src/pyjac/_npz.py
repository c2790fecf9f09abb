"""Reading .npz files that may be damaged or hostile: sizes are checked before any array
is inflated, and every failure is one ValueError that names the argument."""

from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np

from ._validation import check_allocation


def load_npz(path: Any, name: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read once its declared sizes have been checked.

    A missing file, one that is not an .npz, a header or member that is damaged (a bad
    CRC, a truncated member), or Python objects in it: one ValueError naming ``name``.
    Arrays whose declared sizes exceed the machine's memory: MemoryError, before any of
    them is inflated.
    """
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if i.filename.endswith(".npy")]
            declared = 0
            for info in infos:
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(member)
                if dtype.hasobject:
                    raise ValueError(f"{info.filename} holds Python objects")
                declared += int(np.prod(shape, dtype=object)) * dtype.itemsize
        check_allocation(declared + sum(i.file_size for i in infos),
                         f"{name}: {path!r}, once inflated,")
        keys = [i.filename[: -len(".npy")] for i in infos]
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in keys}
    except FileNotFoundError:
        raise ValueError(f"{name}: no such file {path!r}") from None
    except MemoryError:
        raise
    except Exception as exc:  # BadZipFile, zlib.error, truncated headers, bad magic, ...
        raise ValueError(f"{name}: cannot read {path!r} as .npz "
                         f"({type(exc).__name__}: {exc})") from None
