"""Transformer encoder stacks: gradients through the residual stream, attention and rank
collapse, exactly, in one C++ call per measurement.

Blocks as PyTorch's ``nn.TransformerEncoderLayer`` builds them (``batch_first=True``,
dropout 0), with its parameter names and layout, so that a torch encoder's weights load
as they are (:meth:`Transformer.from_torch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core
from ._results import summarize
from ._validation import (
    as_float_array,
    check_allocation,
    check_bool,
    check_choice,
    check_dtype,
    check_int,
    check_real,
    check_seed,
    check_threads,
)
from .spectral import SpectralNormResult
from .spectral import _options as spectral_options
from .spectral import _result as spectral_result

__all__ = ["PARAMETER_NAMES", "Transformer", "TransformerBackpropResult",
           "TransformerJacobianNorms"]

#: A block's parameters, PyTorch's names, in the order the core takes them.
TORCH_NAMES = (
    "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
    "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
    "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
)
#: The columns of ``TransformerBackpropResult.parameter_grad_norm``.
PARAMETER_NAMES = tuple(_core.TRANSFORMER_PARAMETERS)
NORMS = ("pre", "post", None)
MLP_ACTIVATIONS = ("relu", "gelu")
INITS = ("torch", "xavier", "gaussian")
LOSSES = ("sum_squares", "mse")


@dataclass(frozen=True)
class TransformerBackpropResult:
    """What one forward and backward pass through a :class:`Transformer` measured.

    The residual stream is measured at ``2 * depth + 1`` points: index 0 is the input,
    ``2l - 1`` after block ``l``'s attention sublayer and ``2l`` after its MLP sublayer
    (the block's output); for post-LN, after the LayerNorm that follows each sum.

    Attributes
    ----------
    loss : float or None
        None with a ``grad_output``.
    grad_norm, activation_norm : ndarray, shape (2 depth + 1,)
        ``||dL/dx||`` and ``||x||`` at each point of the stream (Frobenius over the batch).
    parameter_grad_norm : ndarray, shape (depth, 14)
        Gradient norm of every parameter of every block, columns as in
        :data:`PARAMETER_NAMES` (``W_Q``, ``W_K``, ``W_V``, ``in_proj_bias``, ``W_O``,
        ``out_proj_bias``, ``W_1``, ``b_1``, ``W_2``, ``b_2`` and the LayerNorm weights and
        biases, NaN without norms).
    query_grad_norm, key_grad_norm : ndarray, shape (depth,)
        ``||dL/dQ||`` and ``||dL/dK||`` of each block's queries and keys: the gradients
        whose vanishing Noci et al. (2022) tie to rank collapse.
    attention_entropy : ndarray, shape (depth, heads)
        Mean over examples and query positions of ``-sum_j p_ij log p_ij`` (natural log;
        ``log(seq_len)`` is uniform attention, 0 attends to one token).
    token_similarity, rank_one_distance : ndarray, shape (depth + 1,)
        Rank collapse at the input and after each block, means over the examples: the
        mean cosine similarity of distinct token pairs, and ``||X - 1 xbar^T||_F /
        ||X||_F`` (Dong et al. 2021); both tend to 1 and 0 as the tokens collapse.
    first_nonfinite_layer : int or None
        The first stream point, in the order computed, where a NaN/Inf appeared.
    first_nonfinite_stage : {"forward", "backward"} or None
    output : ndarray, shape (batch, seq_len, width)
    """

    loss: float | None
    grad_norm: np.ndarray
    activation_norm: np.ndarray
    parameter_grad_norm: np.ndarray
    query_grad_norm: np.ndarray
    key_grad_norm: np.ndarray
    attention_entropy: np.ndarray
    token_similarity: np.ndarray
    rank_one_distance: np.ndarray
    first_nonfinite_layer: int | None
    first_nonfinite_stage: str | None
    output: np.ndarray = field(repr=False)

    @property
    def block_grad_norm(self) -> np.ndarray:
        """Each block's gradient norm over all its parameters together (the norms a block
        without LayerNorm or MLP lacks left out): shape (depth,)."""
        out = []
        for row in self.parameter_grad_norm:
            parts = [float(v) for v in row if not math.isnan(v)]
            out.append(math.hypot(*parts) if parts else float("nan"))
        return np.array(out)

    def parameter(self, name: str) -> np.ndarray:
        """One column of ``parameter_grad_norm`` by name ("W_Q", "norm1.weight", ...)."""
        if name not in PARAMETER_NAMES:
            raise ValueError(f"name: unknown parameter {name!r}; expected one of "
                             f"{', '.join(PARAMETER_NAMES)}")
        return self.parameter_grad_norm[:, PARAMETER_NAMES.index(name)]

    def __repr__(self) -> str:
        loss = "None" if self.loss is None else f"{self.loss:.6g}"
        return (f"TransformerBackpropResult(loss={loss}, grad_norm={summarize(self.grad_norm)}, "
                f"token_similarity={summarize(self.token_similarity)}, "
                f"first_nonfinite_layer={self.first_nonfinite_layer})")


@dataclass(frozen=True)
class TransformerJacobianNorms:
    """Norms of the Jacobian ``J_l = d x_l / d x_0`` of the stream after each block with
    respect to the input sequence, at every depth (index ``l-1`` is after block ``l``).

    Attributes
    ----------
    log_spectral_norm : ndarray, shape (depth,)
        ``log sigma_max(J_l)`` by matrix-free power iteration (log domain: finite at any
        depth).
    iterations : ndarray of int, shape (depth,)
    converged : ndarray of bool, shape (depth,)
    log_frobenius_norm : ndarray, shape (depth,)
        ``log ||J_l||_F``: exact (one tangent pass per input coordinate) or estimated from
        Gaussian probes, ``E ||J z||^2 = ||J||_F^2``.
    frobenius_relative_error : ndarray, shape (depth,)
        The standard error of the estimate of ``||J_l||_F^2`` relative to it; 0 when
        exact.
    exact : bool
    first_nonfinite_layer : int or None
        A stream point of the forward pass holding NaN/Inf (then everything is NaN).
    """

    log_spectral_norm: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    log_frobenius_norm: np.ndarray
    frobenius_relative_error: np.ndarray
    exact: bool
    first_nonfinite_layer: int | None

    def __repr__(self) -> str:
        return (f"TransformerJacobianNorms(log_spectral_norm={summarize(self.log_spectral_norm)}, "
                f"log_frobenius_norm={summarize(self.log_frobenius_norm)}, exact={self.exact})")


#: Inputs (seq_len * width) up to which jacobian_norms computes the Frobenius norms
#: exactly by default.
EXACT_FROBENIUS_LIMIT = 4096


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape)


def _draw(depth: int, width: int, hidden: int, init: str, gain: float,
          rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Every block's parameters, drawn at once per parameter (float64)."""
    d, m, L = width, hidden, depth
    if init == "torch":
        # PyTorch's own: xavier_uniform in_proj, zero attention biases, kaiming_uniform(a=
        # sqrt(5)) Linear weights (bound 1/sqrt(fan_in)) and biases of the same bound.
        stacked = {
            "self_attn.in_proj_weight": _uniform(rng, (L, 3 * d, d), np.sqrt(6 / (4 * d))),
            "self_attn.in_proj_bias": np.zeros((L, 3 * d)),
            "self_attn.out_proj.weight": _uniform(rng, (L, d, d), 1 / np.sqrt(d)),
            "self_attn.out_proj.bias": np.zeros((L, d)),
            "linear1.weight": _uniform(rng, (L, m, d), 1 / np.sqrt(d)),
            "linear1.bias": _uniform(rng, (L, m), 1 / np.sqrt(d)),
            "linear2.weight": _uniform(rng, (L, d, m), 1 / np.sqrt(max(m, 1))),
            "linear2.bias": _uniform(rng, (L, d), 1 / np.sqrt(max(m, 1))),
        }
    else:
        def weight(rows: int, cols: int) -> np.ndarray:
            if init == "xavier":
                return _uniform(rng, (L, rows, cols), gain * np.sqrt(6 / (rows + cols)))
            return rng.standard_normal((L, rows, cols)) * (gain / np.sqrt(max(cols, 1)))

        stacked = {
            "self_attn.in_proj_weight": np.concatenate([weight(d, d) for _ in range(3)], axis=1),
            "self_attn.in_proj_bias": np.zeros((L, 3 * d)),
            "self_attn.out_proj.weight": weight(d, d),
            "self_attn.out_proj.bias": np.zeros((L, d)),
            "linear1.weight": weight(m, d),
            "linear1.bias": np.zeros((L, m)),
            "linear2.weight": weight(d, m),
            "linear2.bias": np.zeros((L, d)),
        }
    stacked.update({"norm1.weight": np.ones((L, d)), "norm1.bias": np.zeros((L, d)),
                    "norm2.weight": np.ones((L, d)), "norm2.bias": np.zeros((L, d))})
    return [{name: stacked[name][l] for name in TORCH_NAMES} for l in range(L)]


class Transformer:
    """A stack of transformer encoder blocks whose gradients pyjac measures exactly.

    Each block is PyTorch's ``nn.TransformerEncoderLayer`` (``batch_first=True``, dropout
    0): multi-head self-attention ``softmax(Q K^T / sqrt(d_head)) V`` and its output
    projection, then an MLP ``W_2 phi(W_1 x + b_1) + b_2``, each sublayer on a residual
    connection with a LayerNorm (affine weight and bias, eps 1e-5) before it (pre-LN,
    ``norm_first=True``) or after the sum (post-LN).

    Parameters
    ----------
    depth : int
        Number of blocks.
    width : int
        The model width ``d_model``.
    heads : int
        Attention heads; must divide ``width``.
    seq_len : int, optional
        Tokens per sequence; when given, inputs of another length are refused.
    mlp_ratio : float, default 4
        The MLP's hidden width over ``width`` (``dim_feedforward = round(mlp_ratio *
        width)``); 0 for blocks of attention alone, without an MLP sublayer (their
        MLP's gradient norms are NaN).
    activation : {"gelu", "relu"}
        The MLP's activation (exact GELU, as PyTorch's default).
    norm : {"pre", "post", None}
        Where the LayerNorms sit; None for none at all.
    residual : bool, default True
        False drops the skip connections: each sublayer's output replaces the stream.
    residual_scale : float, default 1
        Multiplies each sublayer's output before it joins the stream (Noci et al. 2022
        scale it as ``1/sqrt(depth)``).
    attention : {"softmax"}
        The attention kind.
    causal : bool, default False
        Each token attends to itself and earlier tokens only.
    init : {"torch", "xavier", "gaussian"}
        "torch": PyTorch's own initialisation of the layer; "xavier": Glorot-uniform
        weights (times ``gain``) and zero biases; "gaussian": weights of variance
        ``gain**2 / fan_in``, zero biases. LayerNorms start at weight 1, bias 0.
    gain : float, default 1
        Multiplies the "xavier" and "gaussian" weights (not used by "torch").
    seed : int, default 0
        Same seed, same parameters (drawn by numpy's generator from it).
    dtype : {"float32", "float64"}

    Attributes
    ----------
    blocks : list of dict
        Each block's parameters by PyTorch's names (``"self_attn.in_proj_weight"``,
        ``"linear1.weight"``, ``"norm1.weight"``, ...), live arrays in the dtype.
    hidden : int
        The MLP's width.
    """

    def __init__(self, depth: int, width: int, heads: int, seq_len: int | None = None, *,
                 mlp_ratio: float = 4, activation: str = "gelu", norm: str | None = "pre",
                 residual: bool = True, residual_scale: float = 1.0,
                 attention: str = "softmax", causal: bool = False, init: str = "torch",
                 gain: float = 1.0, seed: int = 0, dtype: Any = "float32") -> None:
        depth = check_int(depth, "depth", minimum=1)
        width = check_int(width, "width", minimum=1)
        heads = check_int(heads, "heads", minimum=1)
        if width % heads:
            raise ValueError(f"heads: {heads} heads do not divide width {width}")
        mlp_ratio = check_real(mlp_ratio, "mlp_ratio", nonneg=True)
        hidden = int(round(mlp_ratio * width))
        if hidden < 1 and mlp_ratio > 0:
            raise ValueError(f"mlp_ratio: {mlp_ratio} * width {width} leaves the MLP no units")
        init = check_choice(init, INITS, "init")
        gain = check_real(gain, "gain", positive=True)
        seed = check_seed(seed)
        dtype = check_dtype(dtype)
        check_allocation(8 * depth * (4 * width * width + 2 * width * hidden + 9 * width
                                      + hidden),
                         f"depth: {depth} blocks of width {width}")
        blocks = _draw(depth, width, hidden, init, gain, np.random.default_rng(seed))
        self._setup(blocks, width, heads, hidden, seq_len, activation, norm, residual,
                    residual_scale, attention, causal, dtype)
        self.init, self.gain, self.seed = init, gain, seed

    def _setup(self, blocks: list[dict[str, np.ndarray]], width: int, heads: int, hidden: int,
               seq_len: int | None, activation: str, norm: str | None, residual: bool,
               residual_scale: float, attention: str, causal: bool, dtype: np.dtype) -> None:
        self.width, self.heads, self.hidden = width, heads, hidden
        self.seq_len = None if seq_len is None else check_int(seq_len, "seq_len", minimum=1)
        activation = check_choice(activation, MLP_ACTIVATIONS, "activation")
        if isinstance(norm, str):
            norm = norm.lower()
        if norm not in NORMS:
            raise ValueError(f"norm: expected 'pre', 'post' or None, got {norm!r}")
        check_choice(attention, ("softmax",), "attention")
        self.activation, self.norm, self.attention = activation, norm, "softmax"
        self.residual = check_bool(residual, "residual")
        self.residual_scale = check_real(residual_scale, "residual_scale")
        self.causal = check_bool(causal, "causal")
        self.dtype = dtype
        self.blocks = [{name: np.ascontiguousarray(b[name], dtype=dtype) for name in TORCH_NAMES}
                       for b in blocks]

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def __repr__(self) -> str:
        return (f"Transformer(depth={self.depth}, width={self.width}, heads={self.heads}, "
                f"seq_len={self.seq_len}, hidden={self.hidden}, activation={self.activation!r}, "
                f"norm={self.norm!r}, residual={self.residual}, "
                f"residual_scale={self.residual_scale}, causal={self.causal}, "
                f"dtype={self.dtype.name!r})")

    @classmethod
    def from_torch(cls, module: Any, seq_len: int | None = None, *, causal: bool = False,
                   residual_scale: float = 1.0) -> Transformer:
        """The same stack as a torch ``nn.TransformerEncoder`` or
        ``nn.TransformerEncoderLayer``, its weights copied as they are.

        Refused, naming what: dropout in training mode (call ``module.eval()``), an
        activation other than relu/gelu, attention without biases or with separate
        key/value widths, LayerNorms without affine parameters or with another eps, and
        an encoder's final ``norm``. Inputs are ``(batch, seq_len, width)`` whatever the
        module's ``batch_first``.
        """
        import torch

        if isinstance(module, torch.nn.TransformerEncoderLayer):
            layers = [module]
        elif isinstance(module, torch.nn.TransformerEncoder):
            if module.norm is not None:
                raise ValueError("module: a TransformerEncoder with a final norm is not "
                                 "supported (measure without it)")
            layers = list(module.layers)
        else:
            raise TypeError(f"module: expected an nn.TransformerEncoder or "
                            f"nn.TransformerEncoderLayer, got {type(module).__name__}")
        if not layers:
            raise ValueError("module: the encoder has no layers")
        first = layers[0]
        width = first.self_attn.embed_dim
        heads = first.self_attn.num_heads
        hidden = first.linear1.out_features
        norm_first = bool(first.norm_first)
        kinds = {1: "relu", 2: "gelu"}
        blocks, dtypes = [], set()
        for i, layer in enumerate(layers):
            where = f"module (layer {i})"
            kind = kinds.get(getattr(layer, "activation_relu_or_gelu", 0))
            if kind is None:
                raise ValueError(f"{where}: activation {layer.activation!r} is not relu or gelu")
            if i == 0:
                activation = kind
            elif kind != activation or bool(layer.norm_first) != norm_first:
                raise ValueError(f"{where}: differs from layer 0 in activation or norm_first")
            if layer.training and any(p > 0 for p in (layer.dropout.p, layer.dropout1.p,
                                                       layer.dropout2.p, layer.self_attn.dropout)):
                raise ValueError(f"{where}: dropout > 0 in training mode; call module.eval() "
                                 "or build it with dropout=0")
            attn = layer.self_attn
            if attn.in_proj_weight is None or attn.in_proj_bias is None or \
                    attn.out_proj.bias is None or attn.bias_k is not None:
                raise ValueError(f"{where}: attention without biases, with separate key/value "
                                 "widths or with add_bias_kv is not supported")
            if layer.linear1.bias is None or layer.linear2.bias is None:
                raise ValueError(f"{where}: linear layers without biases are not supported")
            for ln in (layer.norm1, layer.norm2):
                if not ln.elementwise_affine or ln.bias is None or ln.eps != 1e-5:
                    raise ValueError(f"{where}: LayerNorms need affine weight and bias and "
                                     "eps 1e-5")
            state = {k: v.detach().cpu() for k, v in layer.state_dict().items()}
            dtypes.add(state["linear1.weight"].dtype)
            blocks.append({name: state[name].numpy().astype(np.float64) for name in TORCH_NAMES})
        if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
            raise ValueError(f"module: parameters must be float32 or float64, got {dtypes}")
        dtype = np.dtype("float64" if next(iter(dtypes)) == torch.float64 else "float32")
        net = cls.__new__(cls)
        net._setup(blocks, width, heads, hidden, seq_len, activation,
                   "pre" if norm_first else "post", True, residual_scale, "softmax", causal,
                   dtype)
        net.init = net.gain = net.seed = None
        return net

    def _input(self, x: Any, name: str = "x") -> np.ndarray:
        arr = as_float_array(x, name, self.dtype)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[2] != self.width:
            raise ValueError(f"{name}: expected shape (batch, seq_len, {self.width}) or "
                             f"(seq_len, {self.width}), got {np.shape(x)}")
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"{name}: the batch or the sequence is empty (shape {arr.shape})")
        if self.seq_len is not None and arr.shape[1] != self.seq_len:
            raise ValueError(f"{name}: sequences of {arr.shape[1]} tokens, but the stack was "
                             f"built for seq_len={self.seq_len}")
        return arr

    def backprop(self, x: Any, *, loss: str = "sum_squares", target: Any = None,
                 grad_output: Any = None,
                 n_threads: int | None = None) -> TransformerBackpropResult:
        """One exact forward and backward pass, with its measurements.

        Parameters
        ----------
        x : array_like, shape (batch, seq_len, width) or (seq_len, width)
            Converted to the stack's dtype (the caller's array is not changed).
        loss : {"sum_squares", "mse"}
            ``0.5 * sum(y**2)`` of the output, or the mean squared error against
            ``target`` (mean over every entry).
        target : array_like, optional
            For "mse", the shape of the output.
        grad_output : array_like, optional
            A given ``dL/dy`` instead of a loss.
        n_threads : int, optional
            None or -1 for every core, or a positive count; the numbers do not depend on
            it.

        Returns
        -------
        TransformerBackpropResult
        """
        n_threads = check_threads(n_threads)
        xb = self._input(x)
        if grad_output is not None:
            if loss != "sum_squares" or target is not None:
                raise ValueError("grad_output: give either grad_output or a loss/target, not both")
            loss_name, tgt = "grad_output", self._input(grad_output, "grad_output")
            if tgt.shape != xb.shape:
                raise ValueError(f"grad_output: expected shape {xb.shape}, got {tgt.shape}")
        else:
            loss_name = check_choice(loss, LOSSES, "loss")
            tgt = None
            if loss_name == "mse":
                if target is None:
                    raise ValueError("target: loss='mse' needs a target")
                tgt = self._input(target, "target")
                if tgt.shape != xb.shape:
                    raise ValueError(f"target: expected shape {xb.shape}, got {tgt.shape}")
            elif target is not None:
                raise ValueError("target: loss='sum_squares' takes no target")
        batch, seq_len = xb.shape[:2]
        check_allocation(_core.transformer_workspace_bytes(
            self.depth, self.width, self.heads, self.hidden, batch, seq_len,
            self.dtype.itemsize), f"x: backprop on {batch} sequences of {seq_len} tokens")
        raw = _core.transformer_backprop(self._stack(), xb, loss_name, tgt, n_threads)
        single = np.ndim(x) == 2
        return TransformerBackpropResult(
            loss=None if loss_name == "grad_output" else float(raw["loss"]),
            grad_norm=raw["grad_norm"], activation_norm=raw["activation_norm"],
            parameter_grad_norm=raw["parameter_grad_norm"],
            query_grad_norm=raw["query_grad_norm"], key_grad_norm=raw["key_grad_norm"],
            attention_entropy=raw["attention_entropy"],
            token_similarity=raw["token_similarity"],
            rank_one_distance=raw["rank_one_distance"],
            first_nonfinite_layer=raw["first_nonfinite_layer"],
            first_nonfinite_stage=raw["first_nonfinite_stage"],
            output=raw["output"][0] if single else raw["output"])

    def _stack(self) -> tuple[Any, ...]:
        """The stack as every core call takes it."""
        return ([[b[name] for name in TORCH_NAMES] for b in self.blocks], self.width,
                self.heads, self.hidden, self.activation, self.norm or "none", self.residual,
                self.residual_scale, self.causal)

    def _one_sequence(self, x: Any) -> np.ndarray:
        """x as one (seq_len, width) sequence, its pass's memory checked."""
        xb = self._input(x)
        if xb.shape[0] != 1:
            raise ValueError(f"x: expected one sequence, got a batch of {xb.shape[0]}")
        check_allocation(_core.transformer_workspace_bytes(
            self.depth, self.width, self.heads, self.hidden, 1, xb.shape[1],
            self.dtype.itemsize), f"x: a sequence of {xb.shape[1]} tokens")
        return xb[0]

    def spectral_norm(self, x: Any, per_block: bool = False, iters: int = 1000,
                      tol: float = 1e-6, *, seed: int = 0,
                      n_threads: int | None = None) -> SpectralNormResult:
        """Largest singular value of the Jacobian of the output sequence with respect to
        the input sequence, by matrix-free power iteration.

        Iterates ``v <- J^T J v`` with a tangent (forward-mode) pass and a backward pass
        through the blocks, never forming ``J`` (``seq_len * width`` square); each block's
        result is brought to unit norm and the log of its norm kept in float64, so no
        depth overflows.

        Parameters
        ----------
        x : array_like, shape (seq_len, width) or (1, seq_len, width)
            The sequence the stack is linearised at.
        per_block : bool, default False
            False: the whole stack's Jacobian; True: each block's own, at its input.
        iters : int, default 1000
            Most iterations.
        tol : float, default 1e-6
            Relative accuracy asked for (float32 stacks are limited by rounding).
        seed : int, default 0
            Seeds the start vector.

        Returns
        -------
        SpectralNormResult
            value (and log_value), iterations, converged; ``(depth,)`` arrays with
            ``per_block=True``; ``first_nonfinite_layer`` is a stream point of the forward
            pass holding NaN/Inf (nothing is iterated then).
        """
        n_threads = check_threads(n_threads)
        per_block = check_bool(per_block, "per_block")
        iters, tol, seed = spectral_options(iters, tol, seed)
        raw = _core.transformer_spectral_norm(self._stack(), self._one_sequence(x), per_block,
                                              iters, tol, seed, n_threads)
        return spectral_result(raw, not per_block, raw["first_nonfinite_layer"])

    def jacobian_norms(self, x: Any, *, probes: int | None = None, iters: int = 300,
                       tol: float = 1e-6, seed: int = 0,
                       n_threads: int | None = None) -> TransformerJacobianNorms:
        """Spectral and Frobenius norms of the Jacobian of the stream after every block
        with respect to the input sequence, matrix-free.

        Parameters
        ----------
        x : array_like, shape (seq_len, width) or (1, seq_len, width)
        probes : int, optional
            None: the Frobenius norms exactly, one tangent pass through the stack per
            input coordinate (refused above ``EXACT_FROBENIUS_LIMIT`` = 4096 of them);
            an int: estimated from that many Gaussian probes, with a standard error.
        iters, tol : int, float
            The power iteration at each depth (as :meth:`spectral_norm`).
        seed : int, default 0
            Seeds the start vectors and the probes.

        Returns
        -------
        TransformerJacobianNorms
        """
        n_threads = check_threads(n_threads)
        iters, tol, seed = spectral_options(iters, tol, seed)
        x1 = self._one_sequence(x)
        n = x1.size
        if probes is None:
            if n > EXACT_FROBENIUS_LIMIT:
                raise ValueError(f"probes: exact Frobenius norms need {n} tangent passes "
                                 f"(seq_len * width); give probes= for an estimate")
            probes = 0
        else:
            probes = check_int(probes, "probes", minimum=1)
        raw = _core.transformer_jacobian_norms(self._stack(), x1, probes, iters, tol, seed,
                                               n_threads)
        return TransformerJacobianNorms(
            log_spectral_norm=raw["log_value"], iterations=raw["iterations"],
            converged=raw["converged"], log_frobenius_norm=raw["log_frobenius_norm"],
            frobenius_relative_error=raw["frobenius_relative_error"], exact=probes == 0,
            first_nonfinite_layer=raw["first_nonfinite_layer"])
