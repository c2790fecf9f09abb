"""Diagnose a real network: per-layer gradient measurements, a verdict, and the fix.

``pyjac.diagnose(model, x)`` runs one exact forward and backward pass through a
feed-forward network (given as arrays, a :class:`~pyjac.Chain`, an ``.npz`` file or a
PyTorch ``nn.Sequential``), measures every layer, names each layer "vanishing",
"exploding" or "healthy", and suggests fixes whose predicted effect pyjac computes by
rebuilding the network with the fix applied.

The ``.npz`` format
-------------------
One file, arrays named by layer index ``l = 0 .. depth-1``:

``W0, W1, ...`` (or ``weights_0, weights_1, ...``)
    Weight matrices of shape ``(out, in)`` (the PyTorch ``nn.Linear.weight`` layout).
``b0, b1, ...`` (or ``biases_0, ...``), optional
    Bias vectors of shape ``(out,)``; missing biases are zero.
``activations``, optional
    Strings: one name for every layer, or one per layer (``np.array(["relu"] * 3)``).
    ``activation=`` overrides it; one of the two is needed.
``norm``, optional
    ``"layernorm"`` (without affine parameters, before every activation) or ``"none"``.
``residual``, optional
    Boolean: ``h_l = h_{l-1} + phi(norm(z_l))``.

Activation names are pyjac's ("linear", "sigmoid", "tanh", "relu", "leaky_relu" with
slope 0.01, "gelu" exact, "silu"), plus the aliases "identity" (linear) and "swish" (silu).

Thresholds (documented defaults, overridable with ``thresholds=``)
------------------------------------------------------------------
The gradient of layer ``l`` is ``g_l = ||dL/dh_l||`` over the batch; the reference is
the output layer's ``g_L``. With ``ratio_l = g_l / g_L``:

``"vanishing": 1e-3``
    ``ratio_l < 1e-3``: the layer receives less than a thousandth of the output's
    gradient, so with one learning rate it learns >1000x slower: "vanishing".
``"exploding": 1e3``
    ``ratio_l > 1e3``, or a NaN/Inf in the layer's gradients or activations: "exploding".
    Everything else is "healthy" (the output layer is healthy by definition unless
    non-finite, or unless its gradient is exactly zero, which is "vanishing").
``"shrink": 0.5`` and ``"grow": 2.0``
    The layer's own backward factor ``step_l = g_{l-1} / g_l`` (how much the gradient
    changes through this one layer) below 0.5 or above 2 is flagged "shrinks" /
    "grows": a geometric rate that a deeper network of such layers turns into a
    vanishing/exploding gradient, even when this depth is still healthy.
    The report also gives the chain's mean rate ``(g_0/g_L)^(1/depth)`` and the depth
    at which that rate would cross the vanishing/exploding threshold.
``"saturated": 0.5`` and ``"dead": 0.5``
    More than half of a layer's entries saturated (phi' below 5% of its maximum) or
    more than half of its units dead (phi' = 0 for every example) is flagged.

Fixes come from the seed texts' table: He/Kaiming init for ReLU-like layers,
orthogonal or Xavier init for tanh/linear, a non-saturating activation (ReLU + He)
instead of sigmoid, normalisation (LayerNorm), residual connections, and gradient
clipping for exploding gradients. Every fix except clipping is measured: the network is
rebuilt with the fix (same widths; a new init from ``seed=0`` where the fix is an init or
an activation, the same weights where it is LayerNorm or residual connections) and run on
the same inputs and loss; the fix is kept when the rebuilt network stays finite, its
first-to-last gradient ratio ``g_1/g_L`` lies in the healthy band [vanishing, exploding],
and it is closer to 1 (in log terms) than before (or the original pass hit a NaN/Inf).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._npz import load_npz
from ._validation import check_bool, check_choice, check_threads
from .chain import ACTIVATIONS, Chain

VERDICTS = ("vanishing", "exploding", "healthy")

DEFAULT_THRESHOLDS: dict[str, float] = {
    "vanishing": 1e-3,
    "exploding": 1e3,
    "shrink": 0.5,
    "grow": 2.0,
    "saturated": 0.5,
    "dead": 0.5,
}

_ALIASES = {"identity": "linear", "swish": "silu", "leakyrelu": "leaky_relu"}
_RELU_LIKE = ("relu", "leaky_relu", "gelu", "silu")


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fix:
    """One suggested fix and its effect as pyjac measures it.

    Attributes
    ----------
    name : str
        Short name: "he_init", "orthogonal_init", "xavier_init", "relu_activation",
        "layernorm", "residual", "gradient_clipping".
    description : str
        What to change, in words.
    reason : str
        Which finding it answers.
    ratio_before : float
        ``g_1 / g_L`` of the network as given.
    ratio_after : float or None
        ``g_1 / g_L`` of the network rebuilt with the fix (None for gradient clipping,
        which rescales updates and leaves the ratio as it is).
    finite_after : bool or None
        Whether the fixed network's pass stayed finite (None when not measured).
    """

    name: str
    description: str
    reason: str
    ratio_before: float
    ratio_after: float | None = None
    finite_after: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "reason": self.reason,
            "ratio_before": self.ratio_before,
            "ratio_after": self.ratio_after,
            "finite_after": self.finite_after,
        }


def _float_list(a: np.ndarray) -> list[float]:
    """An array as a list of plain floats, for ``to_dict``."""
    return [float(v) for v in np.asarray(a, dtype=np.float64)]


def _num(v: float) -> str:
    if v is None:
        return "-"
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    if 1e-2 <= abs(v) < 1e4:
        return f"{v:.3g}"
    return f"{v:.2e}"


@dataclass(frozen=True)
class DiagnosisReport:
    """What :func:`diagnose` found, layer by layer.

    Per-layer arrays have shape ``(depth,)``; index ``l-1`` is layer ``l`` (1 = the
    first layer, next to the input). ``grad_norm`` keeps the ``(depth+1,)`` convention
    of :class:`~pyjac.BackpropResult` (index 0 is the input).

    Attributes
    ----------
    depth : int
    widths : list of int
    activations : list of str
    norm : str or None
    residual : bool
    loss : str
    batch : int
    grad_norm : ndarray, shape (depth+1,)
        ``||dL/dh_l||`` over the batch, exactly as :meth:`Chain.backprop` returns it.
    weight_grad_norm : ndarray, shape (depth,)
        ``||dL/dW_l||``.
    ratio : ndarray, shape (depth,)
        ``grad_norm[l] / grad_norm[depth]`` for layers ``l = 1..depth``.
    step : ndarray, shape (depth,)
        ``grad_norm[l-1] / grad_norm[l]``: the gradient's change through layer ``l``.
    spectral_norm : ndarray, shape (depth,)
        ``sigma_max(J_l)`` of each layer's Jacobian at the first example, by power
        iteration (:meth:`Chain.spectral_norm`, ``per_layer=True``, at most 300
        iterations, ``tol=1e-4``); NaN for batchnorm chains.
    derivative_mean, saturated_fraction, dead_fraction : ndarray, shape (depth,)
    verdicts : list of str
        "vanishing", "exploding" or "healthy" per layer.
    flags : list of list of str
        Per layer: any of "shrinks", "grows", "saturated", "dead".
    rate : float
        Mean backward factor per layer, ``(g_0 / g_L) ** (1 / depth)``.
    first_nonfinite_layer : int or None
        As in :class:`~pyjac.BackpropResult`.
    first_nonfinite_stage : str or None
    thresholds : dict
    fixes : list of Fix
    """

    depth: int
    widths: list[int]
    activations: list[str]
    norm: str | None
    residual: bool
    loss: str
    batch: int
    grad_norm: np.ndarray
    weight_grad_norm: np.ndarray
    ratio: np.ndarray
    step: np.ndarray
    spectral_norm: np.ndarray
    derivative_mean: np.ndarray
    saturated_fraction: np.ndarray
    dead_fraction: np.ndarray
    verdicts: list[str]
    flags: list[list[str]]
    rate: float
    first_nonfinite_layer: int | None
    first_nonfinite_stage: str | None
    thresholds: dict[str, float]
    fixes: list[Fix] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when every layer's verdict is "healthy"."""
        return all(v == "healthy" for v in self.verdicts)

    @property
    def summary(self) -> str:
        """One line: the overall verdict and the geometric rate."""
        counts = {v: self.verdicts.count(v) for v in VERDICTS}
        parts = [f"{counts[v]} {v}" for v in VERDICTS if counts[v]]
        text = f"{self.depth} layer{'s' if self.depth != 1 else ''}: " + ", ".join(parts)
        if self.first_nonfinite_layer is not None:
            text += (f"; first NaN/Inf at layer {self.first_nonfinite_layer} "
                     f"({self.first_nonfinite_stage} pass)")
        elif np.isfinite(self.rate) and self.rate > 0:
            text += f"; gradient changes x{self.rate:.3g} per layer on average"
            if self.rate < 1:
                n = math.log(self.thresholds["vanishing"]) / math.log(self.rate)
                text += f" (would fall below {self.thresholds['vanishing']:g} after {n:.0f} layers)"
            elif self.rate > 1:
                n = math.log(self.thresholds["exploding"]) / math.log(self.rate)
                text += f" (would exceed {self.thresholds['exploding']:g} after {n:.0f} layers)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types (lists, floats, str, None): ready for ``json.dumps``."""
        return {
            "depth": self.depth,
            "widths": list(self.widths),
            "activations": list(self.activations),
            "norm": self.norm,
            "residual": self.residual,
            "loss": self.loss,
            "batch": self.batch,
            "grad_norm": _float_list(self.grad_norm),
            "weight_grad_norm": _float_list(self.weight_grad_norm),
            "ratio": _float_list(self.ratio),
            "step": _float_list(self.step),
            "spectral_norm": _float_list(self.spectral_norm),
            "derivative_mean": _float_list(self.derivative_mean),
            "saturated_fraction": _float_list(self.saturated_fraction),
            "dead_fraction": _float_list(self.dead_fraction),
            "verdicts": list(self.verdicts),
            "flags": [list(f) for f in self.flags],
            "rate": float(self.rate),
            "first_nonfinite_layer": self.first_nonfinite_layer,
            "first_nonfinite_stage": self.first_nonfinite_stage,
            "thresholds": dict(self.thresholds),
            "fixes": [f.to_dict() for f in self.fixes],
            "summary": self.summary,
        }

    def table(self) -> str:
        """The per-layer table as aligned plain text."""
        header = ["layer", "width", "activation", "grad_norm", "ratio", "step", "weight_grad",
                  "sigma_max", "phi'_mean", "saturated", "dead", "verdict", "flags"]
        rows = [header]
        for i in range(self.depth):
            rows.append([
                str(i + 1), str(self.widths[i + 1]), self.activations[i],
                _num(self.grad_norm[i + 1]), _num(self.ratio[i]), _num(self.step[i]),
                _num(self.weight_grad_norm[i]), _num(self.spectral_norm[i]),
                _num(self.derivative_mean[i]), f"{self.saturated_fraction[i]:.2f}",
                f"{self.dead_fraction[i]:.2f}", self.verdicts[i],
                ",".join(self.flags[i]) or "-",
            ])
        sizes = [max(len(r[c]) for r in rows) for c in range(len(header))]
        left = {2, 11, 12}
        lines = []
        for k, r in enumerate(rows):
            cells = [r[c].ljust(sizes[c]) if c in left else r[c].rjust(sizes[c])
                     for c in range(len(header))]
            lines.append("  ".join(cells).rstrip())
            if k == 0:
                lines.append("  ".join("-" * s for s in sizes))
        return "\n".join(lines)

    def __str__(self) -> str:
        extras = []
        if self.norm:
            extras.append(f"norm={self.norm}")
        if self.residual:
            extras.append("residual")
        head = (f"pyjac diagnosis: depth {self.depth}, widths {self.widths[0]}->"
                f"{self.widths[-1]}, batch {self.batch}, loss {self.loss}"
                + (", " + ", ".join(extras) if extras else ""))
        th = self.thresholds
        lines = [
            head,
            f"input gradient ||dL/dh_0|| = {_num(self.grad_norm[0])}; ratio = "
            f"||dL/dh_l|| / ||dL/dh_L||: vanishing < {th['vanishing']:g}, exploding > "
            f"{th['exploding']:g}; step = ||dL/dh_(l-1)|| / ||dL/dh_l||",
            "",
            self.table(),
            "",
            "verdict: " + self.summary,
        ]
        if self.fixes:
            lines += ["", "suggested fixes (g_1/g_L before -> after, measured by pyjac):"]
            for f in self.fixes:
                after = ("unchanged (caps the update, not the ratio)" if f.ratio_after is None
                         else _num(f.ratio_after)
                         + ("" if f.finite_after in (None, True) else " (NaN/Inf)"))
                lines.append(f"  - {f.description}: {_num(f.ratio_before)} -> {after}"
                             f"  [{f.reason}]")
        elif not self.healthy or any(self.flags):
            lines += ["", "no fix among pyjac's suggestions improved the gradient ratio"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"DiagnosisReport({self.summary!r}, fixes={[f.name for f in self.fixes]})"


# --------------------------------------------------------------------------------------
# Turning the inputs into a Chain
# --------------------------------------------------------------------------------------
def _act_name(value: Any, name: str) -> str:
    if isinstance(value, np.str_):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected an activation name, got {type(value).__name__}")
    key = value.strip().lower()
    key = _ALIASES.get(key, key)
    return check_choice(key, ACTIVATIONS, name)


def _act_list(activation: Any, depth: int, name: str = "activation") -> list[str]:
    if isinstance(activation, (str, np.str_)):
        return [_act_name(activation, name)] * depth
    if isinstance(activation, np.ndarray) and activation.ndim == 0:
        return [_act_name(activation.item(), name)] * depth
    try:
        names = list(activation)
    except TypeError:
        raise TypeError(f"{name}: expected a name or a list of names, got "
                        f"{type(activation).__name__}") from None
    if len(names) == 1:
        return [_act_name(names[0], f"{name}[0]")] * depth
    if len(names) != depth:
        raise ValueError(f"{name}: a list needs one name per layer ({depth}), got {len(names)}")
    return [_act_name(a, f"{name}[{i}]") for i, a in enumerate(names)]


def _from_tuples(layers: Sequence[Any], activation: Any) -> Chain:
    weights, biases, acts = [], [], []
    for i, item in enumerate(layers):
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise TypeError(f"model_or_weights[{i}]: expected a (W, b, activation) tuple, got "
                            f"{type(item).__name__}")
        w, b = item[0], item[1]
        weights.append(np.asarray(w))
        biases.append(None if b is None else np.asarray(b))
        acts.append(item[2] if len(item) == 3 else None)
    if activation is not None:
        names = _act_list(activation, len(weights))
    else:
        if any(a is None for a in acts):
            raise ValueError("activation: (W, b) pairs need activation=, or give "
                             "(W, b, activation) tuples")
        names = [_act_name(a, f"model_or_weights[{i}][2]") for i, a in enumerate(acts)]
    return _chain_from_arrays(weights, biases, names, None, False)


def _chain_from_arrays(weights: list[np.ndarray], biases: list[Any], activations: list[str],
                       norm: str | None, residual: bool) -> Chain:
    f32 = all(np.asarray(w).dtype == np.float32 for w in weights)
    dtype = np.float32 if f32 else np.float64
    bs = []
    for i, (w, b) in enumerate(zip(weights, biases)):
        w = np.asarray(w)
        if w.ndim != 2:
            raise ValueError(f"weights[{i}]: expected a 2-D (out, in) array, got shape {w.shape}")
        if b is None:
            b = np.zeros(w.shape[0], dtype=dtype)
        b = np.asarray(b)
        if b.shape != (w.shape[0],):
            raise ValueError(f"biases[{i}]: expected shape ({w.shape[0]},), got {b.shape}")
        bs.append(b.astype(dtype, copy=False) if b.dtype.kind in "fiub" else b)
    return Chain.from_weights(list(weights), bs, activation=activations, norm=norm,
                              residual=residual)


def _layer_keys(keys: Sequence[str]) -> tuple[str, str]:
    if "W0" in keys:
        return "W", "b"
    if "weights_0" in keys:
        return "weights_", "biases_"
    raise ValueError("model_or_weights: the npz holds no W0 or weights_0 array "
                     f"(found {sorted(keys)[:8]}); name the layers W0, b0, W1, b1, ...")


def _from_mapping(data: Mapping[str, Any], activation: Any) -> Chain:
    keys = list(data.keys())
    wk, bk = _layer_keys(keys)
    depth = 0
    while f"{wk}{depth}" in keys:
        depth += 1
    known = {f"{wk}{i}" for i in range(depth)} | {f"{bk}{i}" for i in range(depth)}
    known |= {"activations", "norm", "residual"}
    extra = sorted(k for k in keys if k not in known)
    if extra:
        raise ValueError(f"model_or_weights: unexpected arrays {extra} in the npz (layers must "
                         f"be numbered 0..{depth - 1} without gaps)")
    weights = [np.asarray(data[f"{wk}{i}"]) for i in range(depth)]
    biases = [np.asarray(data[f"{bk}{i}"]) if f"{bk}{i}" in keys else None
              for i in range(depth)]
    if activation is not None:
        names = _act_list(activation, depth)
    elif "activations" in keys:
        names = _act_list(np.asarray(data["activations"]), depth, "activations")
    else:
        raise ValueError("activation: the npz has no 'activations' array; pass activation=")
    norm = None
    if "norm" in keys:
        value = str(_scalar(data["norm"], "norm")).lower()
        norm = None if value in ("none", "") else check_choice(value, ("layernorm",), "norm")
    residual = False
    if "residual" in keys:
        flag = _scalar(data["residual"], "residual")
        if not isinstance(flag, (bool, np.bool_)) and flag not in (0, 1):
            raise ValueError(f"residual: the npz's 'residual' must be true or false, got {flag!r}")
        residual = bool(flag)
    return _chain_from_arrays(weights, biases, names, norm, residual)


def _scalar(value: Any, name: str) -> Any:
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"{name}: the npz's {name!r} must hold one value, got shape {arr.shape}")
    return arr.item()


def _load_npz(path: Any, activation: Any) -> Chain:
    name = os.fspath(path)
    if os.path.isfile(name):  # a missing file is load_npz's to report
        with open(name, "rb") as fh:
            if fh.read(6) == b"\x93NUMPY":
                raise ValueError(f"model_or_weights: {name!r} is a single array (.npy), not "
                                 "an .npz of W0, b0, W1, b1, ...")
    return _from_mapping(load_npz(name, "model_or_weights"), activation)


def _is_transformer(obj: Any) -> bool:
    """A pyjac.Transformer or a torch nn.TransformerEncoder(Layer)."""
    from .transformer import Transformer

    return isinstance(obj, Transformer) or type(obj).__name__ in (
        "TransformerEncoder", "TransformerEncoderLayer") and _is_torch_module(obj)


def _is_torch_module(obj: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") for c in type(obj).__mro__)


def _torch_modules(model: Any) -> list[tuple[str, Any]]:
    out = []
    for name, mod in model.named_children():
        if type(mod).__name__ == "Sequential":
            out.extend((f"{name}.{n}", m) for n, m in _torch_modules(mod))
        else:
            out.append((name, mod))
    return out


def _from_torch(model: Any, activation: Any) -> Chain:
    import torch  # noqa: F401  (present: model is a torch module)

    if type(model).__name__ != "Sequential":
        raise ValueError(f"model_or_weights: expected a torch nn.Sequential, got "
                         f"{type(model).__name__}")
    weights: list[np.ndarray] = []
    biases: list[Any] = []
    acts: list[str | None] = []
    norms: list[bool] = []
    for name, mod in _torch_modules(model):
        kind = type(mod).__name__
        where = f"model_or_weights: module {name!r} ({mod!r})"
        if kind == "Linear":
            weights.append(mod.weight.detach().cpu().numpy().copy())
            biases.append(None if mod.bias is None else mod.bias.detach().cpu().numpy().copy())
            acts.append(None)
            norms.append(False)
            continue
        if not weights:
            raise ValueError(f"{where}: the network must start with an nn.Linear")
        if kind == "LayerNorm":
            if acts[-1] is not None or norms[-1]:
                raise ValueError(f"{where}: LayerNorm must come right after a Linear, before "
                                 "its activation")
            if tuple(mod.normalized_shape) != (weights[-1].shape[0],):
                raise ValueError(f"{where}: LayerNorm must normalise over the "
                                 f"{weights[-1].shape[0]} units of the preceding Linear")
            if abs(mod.eps - 1e-5) > 1e-12:
                raise ValueError(f"{where}: pyjac's layernorm uses eps=1e-5")
            if mod.weight is not None:
                w = mod.weight.detach().cpu().numpy()
                b = mod.bias.detach().cpu().numpy() if mod.bias is not None else np.zeros(1)
                if not (np.all(w == 1) and np.all(b == 0)):
                    raise ValueError(f"{where}: a LayerNorm with trained affine parameters "
                                     "is not supported (weight must be 1, bias 0)")
            norms[-1] = True
            continue
        if kind == "LeakyReLU":
            if abs(mod.negative_slope - 0.01) > 1e-12:
                raise ValueError(f"{where}: pyjac's leaky_relu has slope 0.01, got "
                                 f"{mod.negative_slope}")
            act = "leaky_relu"
        elif kind == "GELU":
            if getattr(mod, "approximate", "none") != "none":
                raise ValueError(f"{where}: pyjac's gelu is exact (approximate='none')")
            act = "gelu"
        else:
            act = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "SiLU": "silu",
                   "Identity": "linear"}.get(kind)
            if act is None:
                raise ValueError(f"{where}: unsupported module; supported: Linear, ReLU, "
                                 "Tanh, Sigmoid, LeakyReLU(0.01), GELU, SiLU, Identity, "
                                 "LayerNorm")
        if kind == "Identity":
            continue
        if acts[-1] is not None:
            raise ValueError(f"{where}: two activations in a row")
        acts[-1] = act
    if not weights:
        raise ValueError("model_or_weights: the nn.Sequential holds no nn.Linear")
    if any(norms) and not all(norms):
        raise ValueError("model_or_weights: pyjac needs a LayerNorm after every Linear or "
                         "after none")
    if activation is not None:
        names = _act_list(activation, len(weights))
    else:
        names = [a or "linear" for a in acts]
    return _chain_from_arrays(weights, biases, names, "layernorm" if norms[0] else None,
                              False)


def as_chain(model_or_weights: Any, activation: Any = None) -> Chain:
    """Turn any input :func:`diagnose` accepts into a :class:`~pyjac.Chain`.

    See :func:`diagnose` for the forms accepted.
    """
    obj = model_or_weights
    if isinstance(obj, Chain):
        if activation is not None:
            raise ValueError("activation: a Chain carries its activations; leave activation=None")
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return _load_npz(obj, activation)
    if isinstance(obj, Mapping) or type(obj).__name__ == "NpzFile":
        return _from_mapping(obj, activation)
    if _is_torch_module(obj):
        return _from_torch(obj, activation)
    if isinstance(obj, (list, tuple)):
        if len(obj) == 0:
            raise ValueError("model_or_weights: expected at least one layer, got an empty list")
        return _from_tuples(obj, activation)
    raise TypeError("model_or_weights: expected a list of (W, b, activation) tuples, a Chain, "
                    "an .npz path or loaded npz, or a torch nn.Sequential; got "
                    f"{type(obj).__name__}")


def _thresholds(thresholds: Any, extra: Mapping[str, float] | None = None) -> dict[str, float]:
    th = dict(DEFAULT_THRESHOLDS)
    th.update(extra or {})
    if thresholds is None:
        return th
    if not isinstance(thresholds, Mapping):
        raise TypeError(f"thresholds: expected a dict, got {type(thresholds).__name__}")
    for key, value in thresholds.items():
        if key not in th:
            raise ValueError(f"thresholds: unknown key {key!r}; expected some of "
                             f"{', '.join(th)}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or \
                not np.isfinite(value) or value <= 0:
            raise ValueError(f"thresholds[{key!r}]: expected a positive number, got {value!r}")
        th[key] = float(value)
    if not th["vanishing"] < 1 < th["exploding"]:
        raise ValueError("thresholds: need vanishing < 1 < exploding, got "
                         f"{th['vanishing']} and {th['exploding']}")
    if not th["shrink"] < 1 < th["grow"]:
        raise ValueError(f"thresholds: need shrink < 1 < grow, got {th['shrink']} and "
                         f"{th['grow']}")
    if th["saturated"] > 1 or th["dead"] > 1:
        raise ValueError("thresholds: 'saturated' and 'dead' are fractions in (0, 1]")
    return th


# --------------------------------------------------------------------------------------
# The diagnosis
# --------------------------------------------------------------------------------------
def _ratio(log_grad_norm: np.ndarray) -> np.ndarray:
    """||dL/dh_l|| / ||dL/dh_L|| for l = 1..L, from the logs: exact where the norms
    themselves leave float64's range (0 only where the ratio does)."""
    lg = np.asarray(log_grad_norm, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return np.exp(lg[1:] - lg[-1])


def _first_ratio(r: Any) -> float:
    return float(_ratio(r.log_grad_norm)[0])


def _verdicts(grad_norm: np.ndarray, ratio: np.ndarray, wgn: np.ndarray,
              th: dict[str, float]) -> list[str]:
    g = np.asarray(grad_norm, dtype=np.float64)
    out = []
    for i in range(len(ratio)):
        if not (np.isfinite(g[i + 1]) and np.isfinite(wgn[i]) and np.isfinite(g[-1])):
            out.append("exploding")
        elif g[-1] == 0 or ratio[i] < th["vanishing"]:
            out.append("vanishing")
        elif ratio[i] > th["exploding"]:
            out.append("exploding")
        else:
            out.append("healthy")
    return out


def _better(before: float, after: float) -> bool:
    """True when ``after`` is closer to 1 than ``before`` in log terms (or newly finite)."""
    if not (np.isfinite(after) and after > 0):
        return False
    if not (np.isfinite(before) and before > 0):
        return True
    return abs(math.log(after)) < abs(math.log(before)) - 1e-12


def _suggest(net: Chain, x: np.ndarray, loss: str, target: Any, verdicts: list[str],
             flags: list[list[str]], ratio_before: float, nonfinite: bool,
             th: dict[str, float], n_threads: int | None) -> list[Fix]:
    vanishing = "vanishing" in verdicts
    exploding = "exploding" in verdicts or nonfinite
    shrinks = any("shrinks" in f for f in flags)
    grows = any("grows" in f for f in flags)
    saturated = any("saturated" in f for f in flags)
    dead = any("dead" in f for f in flags)
    if not (vanishing or exploding or shrinks or grows or saturated or dead):
        return []
    problem = ("exploding" if exploding else "vanishing" if vanishing else
               "saturated units" if saturated else "dead units" if dead else
               "geometric shrink per layer" if shrinks else "geometric growth per layer")
    acts = list(net.activations)
    depth, widths = net.depth, list(net.widths)
    candidates: list[tuple[str, str, str, Any]] = []

    def rebuilt(activation: Any, init: str) -> Any:
        return lambda: Chain(depth, widths, activation=activation, init=init,
                             residual=net.residual, norm=net.norm, seed=0, dtype=net.dtype,
                             store_weights=net.store_weights)

    if "sigmoid" in acts:
        new = ["relu" if a == "sigmoid" else a for a in acts]
        candidates.append(("relu_activation",
                           "non-saturating activation: ReLU instead of sigmoid, with He init",
                           "sigmoid saturates: phi' <= 0.25", rebuilt(new, "he")))
    if any(a in _RELU_LIKE for a in acts):
        candidates.append(("he_init", "He/Kaiming init (var 2/fan_in) for ReLU-like layers",
                           problem, rebuilt(acts, "he")))
    if any(a in ("tanh", "linear") for a in acts):
        candidates.append(("orthogonal_init", "orthogonal init (gain 1) for tanh/linear layers",
                           problem, rebuilt(acts, "orthogonal")))
        candidates.append(("xavier_init", "Xavier/Glorot init (var 2/(fan_in+fan_out))",
                           problem, rebuilt(acts, "xavier")))
    if net.norm is None:
        candidates.append(("layernorm", "normalisation: LayerNorm before each activation "
                           "(same weights)", problem,
                           lambda: net._same_weights(activations=acts, norm="layernorm")))
    if not net.residual and len(set(widths)) == 1:
        candidates.append(("residual", "residual connections h_l = h_(l-1) + phi(z_l) "
                           "(same weights)", problem,
                           lambda: net._same_weights(activations=acts, residual=True,
                                                     residual_scale=1.0)))
    fixes = []
    for name, desc, reason, build in candidates:
        try:
            r = build().backprop(x, loss=loss, target=target, n_threads=n_threads)
        except (ValueError, TypeError, MemoryError):  # pragma: no cover - defensive
            continue
        after = _first_ratio(r)
        finite = r.first_nonfinite_layer is None
        in_band = th["vanishing"] <= after <= th["exploding"] if np.isfinite(after) else False
        if finite and in_band and (nonfinite or _better(ratio_before, after)):
            fixes.append(Fix(name, desc, reason, ratio_before, after, finite))
    fixes.sort(key=lambda f: abs(math.log(f.ratio_after)) if f.ratio_after and
               np.isfinite(f.ratio_after) and f.ratio_after > 0 else math.inf)
    if exploding or grows:
        fixes.append(Fix("gradient_clipping",
                         "gradient clipping (rescale the update when its norm exceeds a "
                         "threshold)", "exploding: a bandage, it does not help vanishing",
                         ratio_before))
    return fixes


def diagnose(
    model_or_weights: Any,
    x: Any,
    *,
    activation: str | Sequence[str] | None = None,
    loss: str = "sum_squares",
    target: Any = None,
    thresholds: Mapping[str, float] | None = None,
    suggest: bool = True,
    n_threads: int | None = None,
) -> DiagnosisReport | Any:
    """Measure a feed-forward network layer by layer and say what is wrong with it.

    Parameters
    ----------
    model_or_weights : list, Chain, str, path, npz or torch.nn.Sequential
        The network, as one of:

        - a list of ``(W, b, activation)`` tuples, ``W`` of shape (out, in), ``b`` of
          shape (out,) or None;
        - a :class:`~pyjac.Chain`;
        - a path to an ``.npz`` file or a loaded one (``np.load(path)``, or any dict of
          arrays) in the format of this module's docstring (``W0, b0, W1, b1, ...``);
        - a :class:`~pyjac.Transformer`, or a torch ``nn.TransformerEncoder`` /
          ``nn.TransformerEncoderLayer`` (read by :meth:`Transformer.from_torch`): the
          report is then a ``TransformerDiagnosisReport``, a verdict per block and the
          fixes that fit (pre-LN, residual connections, residual scaling), measured on
          the same weights; ``x`` is ``(batch, seq_len, width)`` and the loss
          "sum_squares" or "mse" (see ``pyjac._diagnose_transformer``);
        - a PyTorch ``nn.Sequential`` of ``Linear`` layers, each optionally followed by
          ``LayerNorm`` (no affine, or the default affine: weight 1, bias 0, eps 1e-5)
          and one of ``ReLU``, ``Tanh``, ``Sigmoid``, ``LeakyReLU(0.01)``, ``GELU()``,
          ``SiLU``, ``Identity``. torch is imported only when such a model is given.
    x : array_like or torch.Tensor, shape (batch, widths[0]) or (widths[0],)
        The inputs the network is measured at.
    activation : str or sequence of str, optional
        Overrides the activations of an npz, (W, b) list or torch model; needed for an
        npz without an ``activations`` array. Not allowed with a Chain.
    loss : {"sum_squares", "mse", "cross_entropy"}
        As in :meth:`Chain.backprop`.
    target : array_like, optional
        For "mse" and "cross_entropy".
    thresholds : dict, optional
        Overrides of :data:`DEFAULT_THRESHOLDS` (keys "vanishing", "exploding", "shrink",
        "grow", "saturated", "dead"; see the module docstring).
    suggest : bool, default True
        Measure and list fixes.
    n_threads : int, optional
        None or -1 for every core.

    Returns
    -------
    DiagnosisReport or TransformerDiagnosisReport
        ``rep.verdicts``, ``rep.fixes``, ``print(rep)``, ``rep.to_dict()``.

    Examples
    --------
    >>> import numpy as np, pyjac
    >>> net = pyjac.Chain(20, 64, activation="sigmoid", init="xavier")
    >>> rep = pyjac.diagnose(net, np.random.default_rng(0).standard_normal((8, 64)))
    >>> rep.verdicts[0], "relu_activation" in [f.name for f in rep.fixes]
    ('vanishing', True)
    """
    if _is_transformer(model_or_weights):
        from ._diagnose_transformer import TRANSFORMER_THRESHOLDS, diagnose_transformer

        if activation is not None:
            raise ValueError("activation: a transformer carries its own; leave activation=None")
        check_threads(n_threads)
        return diagnose_transformer(
            model_or_weights, x, loss=check_choice(loss, ("sum_squares", "mse"), "loss"),
            target=target, thresholds=_thresholds(thresholds, TRANSFORMER_THRESHOLDS),
            suggest=check_bool(suggest, "suggest"), n_threads=n_threads)
    net = as_chain(model_or_weights, activation)
    th = _thresholds(thresholds)
    suggest = check_bool(suggest, "suggest")
    check_threads(n_threads)
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu().numpy()
    xb, _ = net._batch(x)
    r = net.backprop(xb, loss=loss, target=target, n_threads=n_threads)
    try:
        sn = net.spectral_norm(xb[0], per_layer=True, iters=300, tol=1e-4,
                               n_threads=n_threads).value
        sn = np.asarray(sn, dtype=np.float64)
    except ValueError:  # batchnorm chains have no single-example Jacobian
        sn = np.full(net.depth, np.nan)
    g = np.asarray(r.grad_norm, dtype=np.float64)
    lg = np.asarray(r.log_grad_norm, dtype=np.float64)
    ratio = _ratio(lg)
    # Per-layer factors and the mean rate from the logs, exact at any depth.
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        step = np.exp(lg[:-1] - lg[1:])
        rate = float(np.exp((lg[0] - lg[-1]) / net.depth))
    wgn = np.asarray(r.weight_grad_norm, dtype=np.float64)
    verdicts = _verdicts(g, ratio, wgn, th)
    flags: list[list[str]] = []
    for i in range(net.depth):
        f = []
        if np.isfinite(step[i]) and step[i] < th["shrink"]:
            f.append("shrinks")
        if np.isfinite(step[i]) and step[i] > th["grow"]:
            f.append("grows")
        if r.saturated_fraction[i] > th["saturated"]:
            f.append("saturated")
        if r.dead_fraction[i] > th["dead"]:
            f.append("dead")
        flags.append(f)
    nonfinite = r.first_nonfinite_layer is not None
    fixes = (_suggest(net, xb, loss, target, verdicts, flags, float(ratio[0]), nonfinite,
                      th, n_threads) if suggest else [])
    return DiagnosisReport(
        depth=net.depth,
        widths=list(net.widths),
        activations=list(net.activations),
        norm=net.norm,
        residual=net.residual,
        loss=loss,
        batch=int(xb.shape[0]),
        grad_norm=g,
        weight_grad_norm=wgn,
        ratio=ratio,
        step=step,
        spectral_norm=sn,
        derivative_mean=np.asarray(r.derivative_mean, dtype=np.float64),
        saturated_fraction=np.asarray(r.saturated_fraction, dtype=np.float64),
        dead_fraction=np.asarray(r.dead_fraction, dtype=np.float64),
        verdicts=verdicts,
        flags=flags,
        rate=rate,
        first_nonfinite_layer=r.first_nonfinite_layer,
        first_nonfinite_stage=r.first_nonfinite_stage,
        thresholds=th,
        fixes=fixes,
    )


# The function shadows this module in the package namespace (pyjac.diagnose is the
# function): what the module documents is reachable from it too.
diagnose.DEFAULT_THRESHOLDS = DEFAULT_THRESHOLDS  # type: ignore[attr-defined]
