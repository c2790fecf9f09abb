"""Sweeps over chain configurations, tidy results and an on-disk cache.

:func:`sweep` runs :meth:`pyjac.Chain.backprop` once for every configuration of a grid
and every seed, and returns a :class:`Results` table with one row per configuration,
seed and layer. Finished runs are cached on disk under a hash of their configuration,
so that redrawing a figure does not recompute anything.

Example
-------
>>> import pyjac
>>> res = pyjac.sweep(activation=["tanh", "relu"], init="orthogonal", depth=20,
...                   width=32, seeds=2, cache=False, progress=False)
>>> len(res)                       # 2 configs x 2 seeds x 21 layers
84
>>> tanh = res.select(activation="tanh", seed=0)
>>> tanh["grad_norm"].shape
(21,)
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import _core
from ._atomic import atomic_write
from ._npz import load_npz
from ._progress import Progress
from ._validation import check_bool, check_choice, check_int, check_real

__all__ = [
    "CONFIG_COLUMNS",
    "Results",
    "default_cache_dir",
    "growth_rate",
    "run_inputs",
    "rnn_sweep",
    "jacobian_spectra",
    "sweep",
]

#: Columns that describe one chain configuration (one line of a figure).
CONFIG_COLUMNS = (
    "activation", "init", "gain", "sigma_w2", "sigma_b2", "depth", "width", "residual",
    "residual_scale", "norm", "batch", "input_scale", "loss", "dtype",
)
#: Per-layer measurements of a sweep, from :class:`pyjac.BackpropResult`.
LAYER_COLUMNS = (
    "grad_norm", "log_grad_norm", "activation_norm", "weight_grad_norm", "bias_grad_norm",
    "derivative_mean", "saturated_fraction", "dead_fraction",
)
# The per-layer columns that exist for layers 1..L only (NaN at layer 0).
_WEIGHT_COLUMNS = LAYER_COLUMNS[3:]
SWEEP_LOSSES = ("random", "sum_squares")
SWEEP_ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu")
SWEEP_INITS = ("gaussian", "xavier", "xavier_uniform", "he", "orthogonal", "identity")
SWEEP_NORMS = ("none", "layernorm", "batchnorm")
RNN_CELLS = ("tanh", "linear", "relu", "sigmoid", "lstm", "gru")
# Bump when the stored measurements or the way inputs are drawn change.
_CACHE_VERSION = 3  # 2: entries carry a checksum; 3: residual theory, log_grad_norm


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


# --------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------
def _as_list(value: Any, name: str) -> list[Any]:
    if isinstance(value, (list, tuple, np.ndarray, range)):
        values = list(value.tolist() if isinstance(value, np.ndarray) else value)
        if not values:
            raise ValueError(f"{name}: the list of values is empty")
        return values
    return [value]


def _grid_values(name: str, value: Any, check: Callable[[Any, str], Any]) -> list[Any]:
    values = _as_list(value, name)
    many = len(values) > 1
    return [check(v, f"{name}[{i}]" if many else name) for i, v in enumerate(values)]


def _real_or_none(v: Any, name: str, **kw: Any) -> float | None:
    return None if v is None else check_real(v, name, **kw)


def _norm_name(v: Any, name: str) -> str:
    return "none" if v is None else check_choice(v, SWEEP_NORMS, name)


def _dtype_name(v: Any, name: str) -> str:
    if not isinstance(v, str):
        try:
            v = np.dtype(v).name
        except TypeError:
            raise TypeError(f"{name}: expected 'float32' or 'float64', got {v!r}") from None
    return check_choice(v, ("float32", "float64"), name)


def _seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, Integral) and not isinstance(seeds, bool):
        n = check_int(seeds, "seeds", minimum=1)
        return list(range(n))
    values = _as_list(seeds, "seeds")
    out = [check_int(s, f"seeds[{i}]", minimum=0, maximum=2**63 - 1)
           for i, s in enumerate(values)]
    if len(set(out)) != len(out):
        raise ValueError(f"seeds: contains repeated seeds {out}")
    return out


def _configs(activation, init, gain, sigma_w2, sigma_b2, depth, width, residual,
             residual_scale, norm, batch, input_scale, loss, dtype) -> list[dict[str, Any]]:
    axes = {
        "activation": _grid_values("activation", activation,
                                   lambda v, n: check_choice(v, SWEEP_ACTIVATIONS, n)),
        "init": _grid_values("init", init,
                             lambda v, n: None if v is None else check_choice(v, SWEEP_INITS, n)),
        "gain": _grid_values("gain", gain, lambda v, n: _real_or_none(v, n)),
        "sigma_w2": _grid_values("sigma_w2", sigma_w2,
                                 lambda v, n: _real_or_none(v, n, nonneg=True)),
        "sigma_b2": _grid_values("sigma_b2", sigma_b2, lambda v, n: check_real(v, n, nonneg=True)),
        "depth": _grid_values("depth", depth, lambda v, n: check_int(v, n, minimum=1)),
        "width": _grid_values("width", width, lambda v, n: check_int(v, n, minimum=1)),
        "residual": _grid_values("residual", residual, check_bool),
        "residual_scale": _grid_values("residual_scale", residual_scale, check_real),
        "norm": _grid_values("norm", norm, _norm_name),
        "batch": _grid_values("batch", batch, lambda v, n: check_int(v, n, minimum=1)),
        "input_scale": _grid_values("input_scale", input_scale,
                                    lambda v, n: check_real(v, n, nonneg=True)),
        "loss": _grid_values("loss", loss, lambda v, n: check_choice(v, SWEEP_LOSSES, n)),
        "dtype": _grid_values("dtype", dtype, _dtype_name),
    }
    if any(g is not None for g in axes["gain"]) and any(s is not None for s in axes["sigma_w2"]):
        raise ValueError("gain, sigma_w2: give one or the other (sigma_w2 sets gain = "
                         "sqrt(sigma_w2))")
    configs = []
    for combo in itertools.product(*axes.values()):
        c = dict(zip(axes, combo))
        if c["sigma_w2"] is not None:
            if c["init"] is None:
                c["init"] = "gaussian"
            elif c["init"] not in ("gaussian", "orthogonal"):
                raise ValueError(
                    f"init: sigma_w2 sets the weight variance of a 'gaussian' or "
                    f"'orthogonal' init, not of {c['init']!r}")
            c["gain"] = math.sqrt(c["sigma_w2"])
        elif c["init"] is None:
            c["init"] = "he"
        if c["gain"] is None:
            c["gain"] = 1.0
        c["sigma_w2"] = float(_core.init_sigma_w2(c["init"], c["gain"], c["width"], c["width"]))
        if c["norm"] == "batchnorm" and c["batch"] < 2:
            raise ValueError("batch: norm='batchnorm' needs a batch of at least 2")
        configs.append({k: c[k] for k in CONFIG_COLUMNS})
    return configs


def run_inputs(config: Mapping[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The input ``x`` and the ``grad_output`` a sweep run uses (``None`` for a loss).

    Both come from ``numpy.random.default_rng([seed, 1])``: first ``x``, standard normal
    of shape ``(batch, width)`` times ``input_scale``, then (for ``loss="random"``) a
    standard normal ``dL/dh_L`` of the same shape. The weights come from
    ``Chain(..., seed=seed)``.
    """
    data = np.random.default_rng([int(seed), 1])
    shape = (int(config["batch"]), int(config["width"]))
    x = data.standard_normal(shape) * float(config["input_scale"])
    grad_output = data.standard_normal(shape) if config["loss"] == "random" else None
    return x, grad_output


def _build_chain(config: Mapping[str, Any], seed: int):
    from .chain import Chain

    return Chain(
        int(config["depth"]), int(config["width"]), activation=config["activation"],
        init=config["init"], gain=float(config["gain"]),
        bias_std=math.sqrt(float(config["sigma_b2"])), residual=bool(config["residual"]),
        residual_scale=float(config["residual_scale"]),
        norm=None if config["norm"] == "none" else config["norm"], seed=int(seed),
        dtype=config["dtype"])


def _run_one(config: Mapping[str, Any], seed: int, n_threads: int) -> dict[str, np.ndarray]:
    """One chain, one backprop: the per-layer measurements as float64 arrays (depth+1,)."""
    net = _build_chain(config, seed)
    x, grad_output = run_inputs(config, seed)
    if grad_output is None:
        r = net.backprop(x, n_threads=n_threads)
    else:
        r = net.backprop(x, grad_output=grad_output, n_threads=n_threads)
    nan = np.array([np.nan])
    out = {"grad_norm": r.grad_norm, "log_grad_norm": r.log_grad_norm,
           "activation_norm": r.activation_norm}
    for name in _WEIGHT_COLUMNS:
        out[name] = np.concatenate([nan, getattr(r, name)])
    out["first_nonfinite_layer"] = np.array(
        -1 if r.first_nonfinite_layer is None else r.first_nonfinite_layer)
    out["loss_value"] = np.array(np.nan if r.loss is None else r.loss)
    return {k: np.asarray(v, dtype=np.float64) if k != "first_nonfinite_layer"
            else np.asarray(v, dtype=np.int64) for k, v in out.items()}


def _theory(config: Mapping[str, Any]) -> np.ndarray:
    """Mean-field ``ln(||dL/dh_l|| / ||dL/dh_L||)``, NaN where the theory does not apply."""
    from . import theory

    depth = int(config["depth"])
    nan = np.full(depth + 1, np.nan)
    if config["norm"] != "none" or config["init"] == "identity":
        return nan
    try:
        with np.errstate(all="ignore"):
            pred = theory.predicted_log_grad_norm(
                config["activation"], float(config["sigma_w2"]), float(config["sigma_b2"]),
                depth, bool(config["residual"]), float(config["residual_scale"]),
                input_second_moment=float(config["input_scale"]) ** 2,
                width=int(config["width"]), loss=str(config["loss"]))
    except (ValueError, ArithmeticError):
        return nan
    return np.asarray(pred, dtype=np.float64)


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
    from . import __version__

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


# --------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------
def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _worker_init() -> None:  # pragma: no cover - runs in the pool's processes
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Ctrl-C reaches the whole process group: the parent alone answers it (and stops
    # the workers), so that workers neither print tracebacks nor half-finish tasks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _worker(task: tuple[dict[str, Any], int, int]) -> dict[str, np.ndarray]:
    config, seed, n_threads = task
    return _run_one(config, seed, n_threads)


def _n_jobs(n_jobs: Any, n_tasks: int) -> int:
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, Integral):
        raise TypeError(f"n_jobs: expected an integer or None, got {type(n_jobs).__name__}")
    n_jobs = int(n_jobs)
    if n_jobs == -1:
        n_jobs = _cpu_count()
    if n_jobs < 1:
        raise ValueError(f"n_jobs: must be a positive count, -1 or None, got {n_jobs}")
    return max(1, min(n_jobs, n_tasks))


def _execute(tasks: list[tuple[dict[str, Any], int]], n_jobs: int, progress: Progress,
             on_result: Callable[[int, dict[str, np.ndarray]], None]) -> None:
    if n_jobs == 1 or len(tasks) < 2:
        for i, (config, seed) in enumerate(tasks):
            on_result(i, _run_one(config, seed, -1))
            progress.update()
        return
    import multiprocessing as mp

    threads = max(1, _cpu_count() // n_jobs)
    # "spawn": a forked child would inherit the parent's OpenMP thread pool in a broken
    # state (libgomp is not fork-safe once its threads have run).
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx, initializer=_worker_init)
    try:
        # The workers start during the submits: SIGINT stays blocked meanwhile, so that
        # they inherit the mask (a worker still importing would otherwise die of Ctrl-C
        # and break the pool); a Ctrl-C then arrives here when it is unblocked.
        with _sigint_blocked():
            futures = {pool.submit(_worker, (config, seed, threads)): i
                       for i, (config, seed) in enumerate(tasks)}
        for fut in as_completed(futures):
            on_result(futures[fut], fut.result())
            progress.update()
    except BaseException:
        # Ctrl-C (or any error): drop what is queued and stop the workers now, rather
        # than wait for every running task as the executor's own exit would.
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not \
            threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=1.0)
        if proc.is_alive():
            proc.kill()


def sweep(
    *,
    activation: Any = "relu",
    init: Any = None,
    gain: Any = None,
    sigma_w2: Any = None,
    sigma_b2: Any = 0.0,
    depth: Any = 50,
    width: Any = 128,
    residual: Any = False,
    residual_scale: Any = 1.0,
    norm: Any = None,
    seeds: Any = 1,
    batch: Any = 16,
    input_scale: Any = 1.0,
    loss: Any = "random",
    dtype: Any = "float64",
    theory: bool = True,
    n_jobs: int | None = None,
    cache: Any = True,
    progress: bool | None = None,
) -> Results:
    """Measure per-layer gradients over a grid of chain configurations and seeds.

    Every argument from ``activation`` to ``dtype`` takes one value or a list of values;
    the grid is their Cartesian product (in argument order, the last varying fastest).
    Each configuration runs once per seed: ``Chain(depth, width, activation=...,
    init=..., gain=..., bias_std=sqrt(sigma_b2), residual=..., residual_scale=...,
    norm=..., seed=seed, dtype=...)`` and one :meth:`~pyjac.Chain.backprop` on the
    inputs of :func:`run_inputs`.

    Parameters
    ----------
    activation : str or list, default "relu"
        Names from :data:`pyjac.ACTIVATIONS`.
    init : str or list, optional
        Weight init (:data:`pyjac.INITS`); default "he", or "gaussian" when ``sigma_w2``
        is given.
    gain : float or list, optional
        Multiplies the initial weights (1 when None).
    sigma_w2 : float or list, optional
        Weight variance times fan-in, the mean-field parameter: sets
        ``init="gaussian"`` (or "orthogonal" when asked for) and ``gain=sqrt(sigma_w2)``.
        Give ``gain`` or ``sigma_w2``, not both.
    sigma_b2 : float or list, default 0
        Bias variance (``bias_std = sqrt(sigma_b2)``).
    depth, width : int or list
        Layers and units per layer.
    residual : bool or list, default False
    residual_scale : float or list, default 1
    norm : {None, "layernorm", "batchnorm"} or list
    seeds : int or list of int, default 1
        A count ``n`` (seeds ``0..n-1``) or the seeds themselves.
    batch : int or list, default 16
        Examples in the input batch.
    input_scale : float or list, default 1
        Standard deviation of the Gaussian input entries.
    loss : {"random", "sum_squares"} or list, default "random"
        "random": ``dL/dh_L`` is a standard normal draw (pure backward propagation, the
        setting of mean-field theory); "sum_squares": ``L = 0.5 * ||h_L||^2``.
    dtype : {"float32", "float64"} or list, default "float64"
        float64 keeps the tiny gradients of deep vanishing chains representable.
    theory : bool, default True
        Fill ``theory_log_ratio`` with :func:`pyjac.theory.predicted_log_grad_norm`
        (NaN for normalised chains and identity init).
    n_jobs : int, optional
        None or 1: run the configurations one after another, each backprop using every
        core (OpenMP/BLAS inside the C++ core). ``k > 1`` (or -1 for one per core):
        a pool of ``k`` processes ("spawn"), each backprop with ``cores // k`` threads.
        Measured on the 2-core development machine (shared, so noisy), figure 1's 48
        runs took a median 19.5 s in-core against 23 s in a pool of 2, and small sweeps
        lose the pool's ~0.7 s start-up: hence the default.
    cache : bool or path, default True
        Where finished runs are kept, one file per configuration and seed, named by a
        hash of both (and of the pyjac version): True for :func:`default_cache_dir`,
        a directory, or False for no cache. Cached runs are not recomputed.
    progress : bool, optional
        Show a progress bar (tqdm when installed, else a line on stderr). None: when
        stderr is a terminal and more than 20 runs are to be computed.

    Returns
    -------
    Results
        One row per configuration, seed and layer ``0..depth``; see :class:`Results`.
        ``meta`` records the arguments, the computed and cached run counts and the time.

    Raises
    ------
    ValueError, TypeError
        For a bad value, naming the argument (``"depth[2]: must be at least 1, got 0"``).
    """
    configs = _configs(activation, init, gain, sigma_w2, sigma_b2, depth, width, residual,
                       residual_scale, norm, batch, input_scale, loss, dtype)
    seed_list = _seeds(seeds)
    theory = check_bool(theory, "theory")
    directory = _cache_dir(cache)
    start = time.perf_counter()

    runs: dict[int, dict[str, np.ndarray]] = {}
    keys = []
    todo: list[tuple[dict[str, Any], int]] = []
    todo_index: list[int] = []
    for config in configs:
        for seed in seed_list:
            i = len(keys)
            key = config_hash(config, seed)
            keys.append(key)
            cached = _cache_read(directory, key)
            if cached is not None:
                runs[i] = cached
            else:
                todo.append((config, seed))
                todo_index.append(i)
    jobs = _n_jobs(n_jobs, len(todo))
    show = (sys.stderr.isatty() and len(todo) > 20) if progress is None else bool(progress)
    bar = Progress(len(todo), "pyjac sweep", show)

    def store(j: int, arrays: dict[str, np.ndarray]) -> None:
        i = todo_index[j]
        runs[i] = arrays
        _cache_write(directory, keys[i], arrays)

    try:
        _execute(todo, jobs, bar, store)
    finally:
        bar.close()

    predictions = [_theory_cached(directory, c) if theory else None for c in configs]
    columns = _assemble(configs, seed_list, runs, predictions)
    meta = {"kind": "chain_sweep", "n_configs": len(configs), "seeds": seed_list,
            "computed_runs": len(todo), "cached_runs": len(keys) - len(todo),
            "n_jobs": jobs, "seconds": round(time.perf_counter() - start, 3)}
    return Results(columns, meta)


def _theory_cached(directory: Path | None, config: Mapping[str, Any]) -> np.ndarray:
    key = config_hash(config, None, kind="theory")
    hit = _cache_read(directory, key)
    if hit is not None and "theory_log_ratio" in hit:
        return hit["theory_log_ratio"]
    pred = _theory(config)
    _cache_write(directory, key, {"theory_log_ratio": pred})
    return pred


def _assemble(configs: list[dict[str, Any]], seeds: list[int],
              runs: Mapping[int, Mapping[str, np.ndarray]],
              predictions: list[np.ndarray | None]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        *CONFIG_COLUMNS, "config", "seed", "layer", *LAYER_COLUMNS, "theory_log_ratio",
        "first_nonfinite_layer", "loss_value")}
    i = 0
    for c_i, config in enumerate(configs):
        n = int(config["depth"]) + 1
        pred = predictions[c_i]
        for seed in seeds:
            run = runs[i]
            i += 1
            for k in CONFIG_COLUMNS:
                parts[k].append(np.full(n, config[k]))
            parts["config"].append(np.full(n, c_i, dtype=np.int64))
            parts["seed"].append(np.full(n, seed, dtype=np.int64))
            parts["layer"].append(np.arange(n, dtype=np.int64))
            for k in LAYER_COLUMNS:
                parts[k].append(np.asarray(run[k], dtype=np.float64))
            parts["theory_log_ratio"].append(np.full(n, np.nan) if pred is None else pred)
            parts["first_nonfinite_layer"].append(
                np.full(n, int(run["first_nonfinite_layer"]), dtype=np.int64))
            parts["loss_value"].append(np.full(n, float(run["loss_value"])))
    return {k: np.concatenate(v) for k, v in parts.items()}


# --------------------------------------------------------------------------------------
# Derived quantities
# --------------------------------------------------------------------------------------
def growth_rate(results: Results, value: str = "grad_norm", skip: int = 0) -> Results:
    """Per-layer log growth of a per-layer measurement, one row per configuration and seed.

    The rate is minus the least-squares slope of ``ln(value)`` against the layer index,
    over layers ``skip..depth``: positive when the gradient grows on its way back to the
    input (exploding, ``0.5 * ln(chi1) > 0`` in mean-field theory), negative when it
    vanishes. Runs with a non-finite or zero value get NaN.

    Returns
    -------
    Results
        The configuration columns, ``config``, ``seed`` and ``log_growth``.
    """
    cols = [c for c in (*CONFIG_COLUMNS, "config") if c in results]
    out: dict[str, list[Any]] = {c: [] for c in (*cols, "seed", "log_growth")}
    for _, part in results.groupby(*[c for c in ("config", "seed") if c in results]):
        keep = part["layer"] >= skip
        x = part["layer"][keep].astype(np.float64)
        log_column = f"log_{value}"
        if log_column in part:  # exact where the plain value underflows
            y = np.asarray(part[log_column][keep], dtype=np.float64)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.log(part[value][keep])
        if x.size < 2 or not np.isfinite(y).all():
            rate = np.nan
        else:
            xc = x - x.mean()
            rate = -float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))
        for c in cols:
            out[c].append(part[c][0])
        out["seed"].append(part["seed"][0] if "seed" in part else 0)
        out["log_growth"].append(rate)
    return Results({k: np.asarray(v) for k, v in out.items()}, results.meta)


# --------------------------------------------------------------------------------------
# Recurrent and Jacobian measurements
# --------------------------------------------------------------------------------------
def rnn_sweep(*, cell: Any = "tanh", spectral_radius: Any = 1.0, width: int = 64,
              steps: int = 100, seeds: Any = 1, batch: int = 8, input_scale: float = 0.0,
              init: str = "orthogonal", dtype: str = "float64",
              cache: Any = True, progress: bool | None = None) -> Results:
    """Gradient norm ``||dL/dh_t||`` through time for recurrent cells (needs
    ``pyjac.Recurrent``).

    One row per cell, spectral radius, seed and time step ``t = 0..steps``. Each run
    builds ``Recurrent(width, input_size, cell=..., init=..., spectral_radius=...,
    seed=seed)``, starts from a standard normal ``h0`` of shape ``(batch, width)``,
    feeds standard normal inputs times ``input_scale`` (``input_size = width``; none when
    ``input_scale`` is 0) and back-propagates a standard normal ``dL/dh_T``, all drawn
    from ``numpy.random.default_rng([seed, 2])``.

    Returns
    -------
    Results
        Columns ``cell``, ``spectral_radius``, ``width``, ``steps``, ``config``,
        ``seed``, ``step``, ``grad_norm``.
    """
    from .recurrent import Recurrent as recurrent
    cells = _grid_values("cell", cell, lambda v, n: check_choice(v, RNN_CELLS, n))
    radii = _grid_values("spectral_radius", spectral_radius,
                         lambda v, n: check_real(v, n, nonneg=True))
    width = check_int(width, "width", minimum=1)
    steps = check_int(steps, "steps", minimum=1)
    batch = check_int(batch, "batch", minimum=1)
    input_scale = check_real(input_scale, "input_scale", nonneg=True)
    seed_list = _seeds(seeds)
    directory = _cache_dir(cache)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "cell", "spectral_radius", "width", "steps", "config", "seed", "step", "grad_norm")}
    combos = [(c, r) for c in cells for r in radii]
    bar = Progress(len(combos) * len(seed_list), "pyjac rnn sweep",
                    sys.stderr.isatty() if progress is None else bool(progress))
    try:
        for c_i, (c, radius) in enumerate(combos):
            config = {"cell": c, "spectral_radius": radius, "width": width, "steps": steps,
                      "batch": batch, "input_scale": input_scale, "init": init, "dtype": dtype}
            for seed in seed_list:
                key = config_hash(config, seed, kind="rnn")
                hit = _cache_read(directory, key)
                if hit is None:
                    input_size = width if input_scale > 0 else 0
                    rnn = recurrent(width, input_size, cell=c, init=init,
                                    spectral_radius=radius, seed=seed, dtype=dtype)
                    data = np.random.default_rng([seed, 2])
                    h0 = data.standard_normal((batch, width))
                    xs = (data.standard_normal((steps, batch, width)) * input_scale
                          if input_size else None)
                    go = data.standard_normal((batch, width))
                    r = rnn.backprop(xs=xs, steps=None if xs is not None else steps, h0=h0,
                                     grad_output=go)
                    hit = {"grad_norm": np.asarray(r.grad_norm, dtype=np.float64)}
                    _cache_write(directory, key, hit)
                bar.update()
                n = steps + 1
                cols["cell"].append(np.full(n, c))
                cols["spectral_radius"].append(np.full(n, radius))
                cols["width"].append(np.full(n, width))
                cols["steps"].append(np.full(n, steps))
                cols["config"].append(np.full(n, c_i))
                cols["seed"].append(np.full(n, seed))
                cols["step"].append(np.arange(n))
                cols["grad_norm"].append(hit["grad_norm"])
    finally:
        bar.close()
    return Results({k: np.concatenate(v) for k, v in cols.items()}, {"kind": "rnn_sweep"})


def jacobian_spectra(*, activation: str = "tanh", init: str = "orthogonal",
                     sigma_w2: float | None = None, sigma_b2: float = 0.0, depth: int = 64,
                     width: int = 128, at: Sequence[int] = (1, 4, 16, 64), seed: int = 0,
                     dtype: str = "float64", cache: Any = True) -> Results:
    """Singular values of the input-output Jacobian ``d h_l / d h_0`` at several depths
    (needs ``Chain.jacobian_norms``).

    ``sigma_w2=None`` takes the critical weight variance of the activation
    (:func:`pyjac.theory.critical_sigma_w2`); the chain is linearised at a standard
    normal input from ``numpy.random.default_rng([seed, 3])``, scaled so that the
    pre-activations start at the fixed point ``q*`` of the length map.

    Returns
    -------
    Results
        Columns ``activation``, ``init``, ``sigma_w2``, ``sigma_b2``, ``width``,
        ``at_depth``, ``index`` and ``singular_value`` (descending within a depth).
    """
    from . import theory
    from .chain import Chain
    if sigma_w2 is None:
        sigma_w2 = theory.critical_sigma_w2(activation, sigma_b2)
    sigma_w2 = check_real(sigma_w2, "sigma_w2", nonneg=True)
    at_list = [check_int(a, f"at[{i}]", minimum=1) for i, a in enumerate(_as_list(at, "at"))]
    depth = check_int(depth, "depth", minimum=max(at_list))
    config = {"activation": activation, "init": init, "sigma_w2": sigma_w2,
              "sigma_b2": sigma_b2, "depth": depth, "width": width, "at": at_list,
              "dtype": dtype}
    directory = _cache_dir(cache)
    key = config_hash(config, seed, kind="spectra")
    hit = _cache_read(directory, key)
    if hit is None:
        net = Chain(depth, width, activation=activation, init=init, gain=math.sqrt(sigma_w2),
                    bias_std=math.sqrt(sigma_b2), seed=seed, dtype=dtype)
        # Start on the fixed point: z_1 = W x + b has variance sigma_w2 * E[x^2] + sigma_b2,
        # so x needs the second moment (q* - sigma_b2) / sigma_w2.
        q = theory.q_star(activation, sigma_w2, sigma_b2)
        scale = 1.0
        if math.isfinite(q) and q > sigma_b2 and sigma_w2 > 0:
            scale = math.sqrt((q - sigma_b2) / sigma_w2)
        x = np.random.default_rng([seed, 3]).standard_normal(width) * scale
        j = net.jacobian_norms(x, singular_values_at=at_list)
        hit = {f"sv_{a}": np.sort(np.asarray(j.singular_values[a], dtype=np.float64))[::-1]
               for a in at_list}
        _cache_write(directory, key, hit)
    cols: dict[str, list[Any]] = {k: [] for k in (
        "activation", "init", "sigma_w2", "sigma_b2", "width", "at_depth", "index",
        "singular_value")}
    for a in at_list:
        sv = hit[f"sv_{a}"]
        n = sv.shape[0]
        cols["activation"].append(np.full(n, activation))
        cols["init"].append(np.full(n, init))
        cols["sigma_w2"].append(np.full(n, sigma_w2))
        cols["sigma_b2"].append(np.full(n, sigma_b2))
        cols["width"].append(np.full(n, width))
        cols["at_depth"].append(np.full(n, a))
        cols["index"].append(np.arange(n))
        cols["singular_value"].append(sv)
    return Results({k: np.concatenate(v) for k, v in cols.items()}, {"kind": "spectra"})
