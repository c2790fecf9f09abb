"""The grid of a sweep: configuration columns, allowed values, and the expansion of
the arguments into one configuration per point."""

from __future__ import annotations

import itertools
import math
from numbers import Integral
from typing import Any, Callable

import numpy as np

from .. import _core
from .._validation import check_bool, check_choice, check_int, check_real

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
