"""Results: a small columnar table of measurements, saved as parquet or npz."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write
from .._npz import load_npz
from .._validation import check_choice
from .grid import CONFIG_COLUMNS


# --------------------------------------------------------------------------------------
# Results: a small columnar table
# --------------------------------------------------------------------------------------
def _as_column(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"columns[{name!r}]: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype == object:
        if all(isinstance(v, str) for v in arr):
            arr = arr.astype(str)
        else:
            raise TypeError(f"columns[{name!r}]: expected numbers, bools or strings")
    return arr


def _matches(column: np.ndarray, wanted: Any) -> np.ndarray:
    """Boolean mask of the rows of ``column`` equal to ``wanted`` (or to any of a list)."""
    options = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
    mask = np.zeros(column.shape, dtype=bool)
    for option in options:
        if column.dtype.kind == "f" and isinstance(option, Real) and not isinstance(option, bool):
            mask |= np.isclose(column, float(option), rtol=1e-9, atol=1e-12)
        elif column.dtype.kind == "U" and option is None:
            mask |= column == "none"
        else:
            mask |= column == option
    return mask


def _py(value: Any) -> Any:
    """A numpy scalar as the plain Python value (for keys, labels and JSON)."""
    return value.item() if isinstance(value, np.generic) else value


class Results:
    """A tidy table of measurements: one row per configuration, seed and layer (or step).

    Columns are 1-D numpy arrays of equal length (numbers, bools or strings). A sweep's
    table holds the configuration columns (:data:`CONFIG_COLUMNS`), ``config`` (the
    index of the configuration in its sweep), ``seed``, ``layer`` and the measurements:
    ``grad_norm`` (``||dL/dh_l||``), ``log_grad_norm`` (its natural log, exact where
    the float64 value underflows), ``activation_norm``, ``weight_grad_norm`` and
    ``bias_grad_norm`` (NaN at layer 0), ``derivative_mean``, ``saturated_fraction``,
    ``dead_fraction`` (NaN at layer 0), ``theory_log_ratio`` (mean-field prediction of
    ``ln(||dL/dh_l|| / ||dL/dh_L||)`` where defined, NaN otherwise),
    ``first_nonfinite_layer`` (-1 when the run stayed finite) and ``loss_value``.

    Parameters
    ----------
    columns : mapping of str to array_like
        The columns, all of the same length.
    meta : mapping, optional
        JSON-serialisable information kept with the table (saved and loaded with it).

    Examples
    --------
    >>> r = Results({"seed": [0, 0, 1], "layer": [0, 1, 0], "grad_norm": [2.0, 1.0, 3.0]})
    >>> len(r), r.columns
    (3, ['seed', 'layer', 'grad_norm'])
    >>> r.select(seed=0)["grad_norm"]
    array([2., 1.])
    """

    def __init__(self, columns: Mapping[str, Any], meta: Mapping[str, Any] | None = None):
        if not isinstance(columns, Mapping):
            raise TypeError(f"columns: expected a mapping of name to array, got "
                            f"{type(columns).__name__}")
        self._columns: dict[str, np.ndarray] = {}
        length = None
        for name, values in columns.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"columns: names must be non-empty strings, got {name!r}")
            arr = _as_column(name, values)
            if length is None:
                length = arr.shape[0]
            elif arr.shape[0] != length:
                raise ValueError(f"columns[{name!r}]: has {arr.shape[0]} rows, expected {length}")
            self._columns[name] = arr
        self.meta: dict[str, Any] = dict(meta or {})
        try:
            json.dumps(self.meta)
        except TypeError as exc:
            raise TypeError(f"meta: must be JSON-serialisable ({exc})") from None

    # -- access ------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """Column names, in order."""
        return list(self._columns)

    def __len__(self) -> int:
        return 0 if not self._columns else next(iter(self._columns.values())).shape[0]

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._columns[name]
        except KeyError:
            raise KeyError(f"no column {name!r}; columns are {', '.join(self.columns)}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Results):
            return NotImplemented
        if self.columns != other.columns or self.meta != other.meta:
            return False
        return all(
            np.array_equal(self[c], other[c], equal_nan=self[c].dtype.kind == "f")
            for c in self.columns
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"{len(self)} rows"]
        if "config" in self:
            parts.append(f"{len(np.unique(self['config']))} configs")
        if "seed" in self:
            parts.append(f"{len(np.unique(self['seed']))} seeds")
        return f"Results({', '.join(parts)}; columns: {', '.join(self.columns)})"

    def unique(self, name: str) -> list[Any]:
        """Distinct values of a column, in order of first appearance."""
        col = self[name]
        _, first = np.unique(col, return_index=True)
        return [_py(col[i]) for i in sorted(first)]

    def varying(self, names: Iterable[str] = CONFIG_COLUMNS) -> list[str]:
        """Those of ``names`` that are columns and hold more than one distinct value."""
        return [n for n in names if n in self and len(np.unique(self[n])) > 1]

    def take(self, rows: Any) -> Results:
        """A new table of the given rows (a boolean mask or indices)."""
        return Results({k: v[rows] for k, v in self._columns.items()}, self.meta)

    def select(self, **conditions: Any) -> Results:
        """Rows where every named column equals the value (or one of a list of values).

        Floats compare with a relative tolerance of 1e-9; ``norm=None`` matches "none".
        """
        mask = np.ones(len(self), dtype=bool)
        for name, wanted in conditions.items():
            if name not in self:
                raise KeyError(f"{name}: no such column; columns are {', '.join(self.columns)}")
            mask &= _matches(self[name], wanted)
        return self.take(mask)

    def groupby(self, *names: str) -> Iterator[tuple[tuple[Any, ...], Results]]:
        """Yield ``(key, sub_table)`` for each distinct combination of the named columns,
        in order of first appearance."""
        for name in names:
            self[name]  # noqa: B018  (raises a KeyError naming a missing column)
        if not names:
            yield (), self
            return
        keys = list(zip(*(self[n].tolist() for n in names)))
        order: dict[tuple[Any, ...], list[int]] = {}
        for i, key in enumerate(keys):
            order.setdefault(key, []).append(i)
        for key, rows in order.items():
            yield key, self.take(np.asarray(rows))

    def curves(self, value: str, x: str = "layer",
               run: Sequence[str] = ("config", "seed")) -> tuple[np.ndarray, np.ndarray]:
        """One curve per run: ``(x_values, Y)`` with ``Y`` of shape ``(runs, len(x_values))``.

        Every run (a distinct combination of the ``run`` columns present) must cover the
        same ``x`` values.
        """
        run_cols = [c for c in run if c in self]
        rows = []
        xs = None
        for _, part in self.groupby(*run_cols):
            order = np.argsort(part[x], kind="stable")
            xv = part[x][order]
            if xs is None:
                xs = xv
            elif xv.shape != xs.shape or not np.array_equal(xv, xs):
                raise ValueError(f"{x}: runs cover different {x} values; select one "
                                 f"configuration (or depth) first")
            rows.append(np.asarray(part[value], dtype=np.float64)[order])
        if xs is None:
            return np.empty(0), np.empty((0, 0))
        return xs, np.vstack(rows)

    def configs(self) -> list[dict[str, Any]]:
        """The distinct configurations (values of the configuration columns present)."""
        cols = [c for c in CONFIG_COLUMNS if c in self]
        return [dict(zip(cols, map(_py, key))) for key, _ in self.groupby(*cols)]

    # -- conversion --------------------------------------------------------------------
    def to_dict(self) -> dict[str, np.ndarray]:
        """The columns as a dict of numpy arrays (copies)."""
        return {k: v.copy() for k, v in self._columns.items()}

    def to_numpy(self) -> np.ndarray:
        """The table as a numpy structured array (one field per column)."""
        dtype = [(k, v.dtype) for k, v in self._columns.items()]
        out = np.empty(len(self), dtype=dtype)
        for k, v in self._columns.items():
            out[k] = v
        return out

    def to_pandas(self) -> Any:
        """The table as a :class:`pandas.DataFrame` (needs pandas).

        Raises
        ------
        ImportError
            When pandas is not installed (use :meth:`to_numpy` instead).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Results.to_pandas needs pandas (pip install pandas); "
                              "Results.to_numpy() works without it") from None
        frame = pd.DataFrame(self.to_dict())
        if "first_nonfinite_layer" in frame:
            # -1 is the table's code for "stayed finite"; pandas shows it as <NA>, as the
            # Python API's None.
            column = frame["first_nonfinite_layer"].astype("Int64")
            frame["first_nonfinite_layer"] = column.mask(column < 0)
        frame.attrs.update(self.meta)
        return frame

    @classmethod
    def concat(cls, tables: Sequence[Results]) -> Results:
        """Stack tables with the same columns; the first table's ``meta`` is kept."""
        tables = list(tables)
        if not tables:
            raise ValueError("tables: expected at least one Results")
        cols = tables[0].columns
        for i, t in enumerate(tables):
            if not isinstance(t, Results):
                raise TypeError(f"tables[{i}]: expected Results, got {type(t).__name__}")
            if t.columns != cols:
                raise ValueError(f"tables[{i}]: columns differ from tables[0]'s")
        return cls({c: np.concatenate([t[c] for t in tables]) for c in cols}, tables[0].meta)

    # -- files ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write the table to ``path`` and return the path written.

        Parameters
        ----------
        path : str or path-like
            Destination. A path without a ``.parquet`` or ``.npz`` suffix gets one.
        format : {None, "parquet", "npz"}
            None chooses from the suffix, else Parquet when pyarrow is installed and
            npz (numpy's portable zip of arrays) otherwise.

        Raises
        ------
        ImportError
            For "parquet" without pyarrow.
        OSError
            When the file cannot be written (the message names ``path``).
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if format is None:
            if suffix in (".parquet", ".npz"):
                format = suffix[1:]
            else:
                format = "parquet" if _have_pyarrow() else "npz"
        format = check_choice(format, ("parquet", "npz"), "format")
        if suffix != "." + format:
            path = path.with_name(path.name + "." + format)
        try:
            if format == "parquet":
                _save_parquet(self, path)
            else:
                _save_npz(self, path)
        except OSError as exc:
            raise OSError(f"path: cannot write {str(path)!r} ({exc.strerror or exc})") from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Results:
        """Read a table written by :meth:`save` (Parquet or npz, told apart by content)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: no such file {str(path)!r}")
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic == b"PAR1":
            return _load_parquet(path)
        if magic[:2] == b"PK":
            return _load_npz(path)
        raise ValueError(f"path: {str(path)!r} is neither a Parquet nor an npz Results file")


def append_rows(columns: dict[str, list[np.ndarray]], n: int, **values: Any) -> None:
    """Append ``n`` rows to a table being built column by column: a scalar value repeats
    on every row, an array gives the rows' values."""
    for name, value in values.items():
        columns[name].append(np.full(n, value) if np.ndim(value) == 0 else np.asarray(value))


def _have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _save_npz(results: Results, path: Path) -> None:
    arrays = {f"col_{i}": results[c] for i, c in enumerate(results.columns)}
    header = json.dumps({"columns": results.columns, "meta": results.meta,
                         "format": "pyjac.Results", "version": 1})
    with atomic_write(path) as fh:
        np.savez_compressed(fh, __header__=np.array(header), **arrays)


def _load_npz(path: Path) -> Results:
    data = load_npz(path, "path")
    if "__header__" not in data:
        raise ValueError(f"path: {str(path)!r} is an npz file but not a pyjac Results file")
    try:
        header = json.loads(str(data["__header__"]))
        cols = {c: data[f"col_{i}"] for i, c in enumerate(header["columns"])}
        meta = header.get("meta")
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"path: {str(path)!r} is a damaged pyjac Results file "
                         f"({type(exc).__name__}: {exc})") from None
    lengths = {len(np.atleast_1d(v)) for v in cols.values()}
    if len(lengths) > 1:
        raise ValueError(f"path: {str(path)!r} is a damaged pyjac Results file (columns of "
                         f"lengths {sorted(lengths)})")
    return Results(cols, meta)


def _save_parquet(results: Results, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: results[c] for c in results.columns})
    table = table.replace_schema_metadata({b"pyjac.meta": json.dumps(results.meta).encode()})
    with atomic_write(path) as fh:
        pq.write_table(table, fh)


def _load_parquet(path: Path) -> Results:
    if not _have_pyarrow():
        raise ImportError(f"path: {str(path)!r} is a Parquet file; reading it needs pyarrow "
                          "(pip install pyarrow)")
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(b"pyjac.meta", b"{}")
        cols = {}
        for name in table.column_names:
            arr = table.column(name).to_numpy()
            cols[name] = arr.astype(str) if arr.dtype == object else arr
        meta = json.loads(raw.decode())
    except Exception as exc:  # pyarrow's ArrowInvalid, OSError, bad metadata
        raise ValueError(f"path: {str(path)!r} is a damaged Parquet file "
                         f"({type(exc).__name__}: {exc})") from None
    return Results(cols, meta)
