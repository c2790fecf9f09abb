"""Reading .npz files that may be damaged or hostile: sizes are checked before any array
is inflated, and every failure is one ValueError that names the argument."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ._validation import check_allocation


class CheckedNpz(Mapping[str, np.ndarray]):
    """The arrays of an .npz file, read on access, after their declared sizes were checked.

    Damage found while reading an array (a bad CRC, a truncated member, a header that
    does not match its data) is a ValueError naming ``name``.
    """

    def __init__(self, path: str | os.PathLike[str], name: str) -> None:
        self._path = os.fspath(path)
        self._name = name
        try:
            with zipfile.ZipFile(self._path) as archive:
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
                    declared = max(declared, 0)
                check_allocation(declared + sum(i.file_size for i in infos),
                                 f"{name}: {self._path!r}, once inflated,")
        except FileNotFoundError:
            raise ValueError(f"{name}: no such file {self._path!r}") from None
        except MemoryError:
            raise
        except Exception as exc:  # BadZipFile, truncated headers, bad magic, ...
            raise ValueError(f"{name}: cannot read {self._path!r} as .npz "
                             f"({type(exc).__name__}: {exc})") from None
        self._keys = [i.filename[: -len(".npy")] for i in infos]

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._keys:
            raise KeyError(key)
        try:
            with np.load(self._path, allow_pickle=False) as data:
                return data[key]
        except Exception as exc:
            raise ValueError(f"{self._name}: {self._path!r} is damaged: cannot read {key!r} "
                             f"({type(exc).__name__}: {exc})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def files(self) -> list[str]:
        return list(self._keys)


def load_npz(path: Any, name: str) -> dict[str, np.ndarray]:
    """Every array of an .npz file, after a check of their total size."""
    checked = CheckedNpz(path, name)
    return {key: checked[key] for key in checked}
