"""Feed-forward chains: build one, then measure its gradients exactly."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from . import _core, _validation
from ._results import BackpropResult
from ._validation import (
    LAYER_OVERHEAD_BYTES,
    as_float_array,
    check_allocation,
    check_bool,
    check_choice,
    check_dtype,
    check_int,
    check_real,
    check_scale_fits,
    check_seed,
    check_threads,
    raw_array,
)
from .curvature import Hessian, make_hessian
from .jacobian import (
    JacobianNorms,
    chain_jacobian,
    chain_jacobian_norms,
    chain_lyapunov_exponents,
)
from .spectral import SpectralNormResult, chain_spectral_norm

ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu")
INITS = ("gaussian", "xavier", "xavier_uniform", "he", "orthogonal", "identity")
NORMS = ("layernorm", "batchnorm")
LOSSES = ("sum_squares", "mse", "cross_entropy")
GRAD_DTYPES = ("float16", "bfloat16")


def _grad_dtype(grad_dtype: Any, chain_dtype: np.dtype) -> str:
    """The core's name for a ``grad_dtype``: "none", "native", "float16" or "bfloat16"."""
    if grad_dtype is None:
        return "none"
    if isinstance(grad_dtype, str) and grad_dtype == "bfloat16":
        return "bfloat16"
    try:
        dt = np.dtype(grad_dtype)
    except TypeError:
        raise ValueError(
            f"grad_dtype: expected None, 'float16', 'bfloat16' or {chain_dtype.name!r}, "
            f"got {grad_dtype!r}"
        ) from None
    if dt == np.float16:
        return "float16"
    if dt == chain_dtype:
        return "native"
    raise ValueError(
        f"grad_dtype: expected None, 'float16', 'bfloat16' or the chain's {chain_dtype.name!r}, "
        f"got {dt.name!r}"
    )


def _activations(activation: str | Sequence[str], depth: int) -> list[str]:
    if isinstance(activation, str):
        return [check_choice(activation, ACTIVATIONS, "activation")] * depth
    if not isinstance(activation, (list, tuple)):
        raise TypeError(
            f"activation: expected a name or a list of names, got {type(activation).__name__}"
        )
    names = list(activation)
    if len(names) != depth:
        raise ValueError(
            f"activation: a list needs one name per layer ({depth}), got {len(names)}"
        )
    return [check_choice(a, ACTIVATIONS, f"activation[{i}]") for i, a in enumerate(names)]


def _norm(norm: str | None) -> str | None:
    return None if norm is None else check_choice(norm, NORMS, "norm")


def _widths(depth: int, width: int | Sequence[int]) -> list[int]:
    if isinstance(width, (list, tuple, np.ndarray)):
        widths = [check_int(w, f"width[{i}]", minimum=1) for i, w in enumerate(width)]
        if len(widths) != depth + 1:
            raise ValueError(
                f"width: a list needs depth + 1 = {depth + 1} entries, got {len(widths)}"
            )
        return widths
    return [check_int(width, "width", minimum=1)] * (depth + 1)


_RELU_LIKE = ("relu", "leaky_relu", "gelu", "silu")


def _default_init(activations: Sequence[str]) -> str:
    # He keeps ReLU-like layers' signal (half the units pass); Xavier keeps tanh's,
    # sigmoid's and linear layers' (slope 1 at 0) at the same scale.
    return "he" if any(a in _RELU_LIKE for a in activations) else "xavier"


def _init_factor(init: str) -> float:
    # The largest multiple of `gain` an initial weight can reach before the draw itself:
    # he's sqrt(2), xavier_uniform's sqrt(6) bound, 1 for the others (orthogonal and
    # identity entries are at most 1 in magnitude).
    return {"he": math.sqrt(2.0), "xavier_uniform": math.sqrt(6.0)}.get(init, 1.0)


# Bytes per layer of a chain without stored weights: list slots for its width and
# activation, and the core's per-layer records (null parameter slots, row norms).
UNSTORED_LAYER_BYTES = 64


def _check_chain_memory(depth: int, shape: str, n_params: int, largest_layer: int,
                        dtype: np.dtype, store_weights: bool) -> None:
    """Refuse a chain that cannot fit before anything depth-long exists; the message
    says whether the other storage mode would."""
    limit = _validation.physical_memory_bytes()
    stored = n_params * dtype.itemsize + depth * LAYER_OVERHEAD_BYTES
    # One layer's parameters and a weight-gradient scratch of the same size.
    unstored = 2 * largest_layer * dtype.itemsize + depth * UNSTORED_LAYER_BYTES
    what = f"depth, width: a chain of depth {depth} and {shape}"
    if store_weights and stored > limit and unstored <= limit:
        raise MemoryError(
            f"{what} stores {stored / 2**30:.1f} GiB of weights, more than this machine's "
            f"{limit / 2**30:.1f} GiB of memory; with store_weights=False it would hold one "
            f"layer's ({unstored / 2**30:.2f} GiB) and draw the others again when needed")
    check_allocation(stored if store_weights else unstored, what)


class _DrawnParameters(Sequence):
    """``weights`` or ``biases`` of a chain built with ``store_weights=False``: item ``l``
    is layer ``l``'s array, drawn from the seed when asked for (exactly the stored chain's
    numbers), a new array each time; changing it changes nothing in the chain."""

    def __init__(self, spec: Any, dtype: np.dtype, part: int) -> None:
        self._spec, self._dtype, self._part = spec, np.dtype(dtype), part

    def __len__(self) -> int:
        return int(self._spec.depth)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        layer = check_int(index, "index")
        if layer < 0:
            layer += len(self)
        if not 0 <= layer < len(self):
            raise IndexError(f"layer {index} out of range for depth {len(self)}")
        return self._spec.layer(layer, self._dtype.name, -1)[self._part]

    def __repr__(self) -> str:
        kind = "weights" if self._part == 0 else "biases"
        return f"<{len(self)} {kind}, drawn from the seed on access>"


class Chain:
    """A deep feed-forward chain whose gradients pyjac measures exactly.

    ``h_0 = x``, ``z_l = W_l h_{l-1} + b_l``, ``h_l = phi(norm(z_l))``; with
    ``residual=True``, ``h_l = h_{l-1} + residual_scale * phi(norm(z_l))`` on every layer
    whose input and output widths match (a layer that changes the width, such as a
    readout, stays ``h_l = phi(norm(z_l))``).
    ``W_l`` has shape ``(widths[l], widths[l-1])``; a batch is rows.

    Parameters
    ----------
    depth : int
        Number of layers (at least 1).
    width : int or sequence of int
        Units per layer: one int for all, or ``depth + 1`` ints (input first).
    activation : str or sequence of str, default "relu"
        "linear", "sigmoid", "tanh", "relu", "leaky_relu" (slope 0.01), "gelu" (exact),
        "silu"; or one name per layer. Names (here and for ``init`` and ``norm``) are
        case-insensitive: "ReLU" is "relu".
    init : str, optional
        "gaussian" (std gain/sqrt(fan_in)), "xavier" (var 2/(fan_in+fan_out)),
        "xavier_uniform", "he" (var 2/fan_in), "orthogonal" (Haar), "identity".
        By default the one that fits the activations: "he" when any layer is ReLU-like
        (relu, leaky_relu, gelu, silu), "xavier" for chains of tanh, sigmoid and linear
        layers. The choice is kept as ``.init``.
    gain : float, optional
        Multiplies the initial weights (1 when None).
    bias_std : float, default 0
        Standard deviation of the Gaussian biases.
    residual : bool, default False
        Skip connections, on every layer whose input and output widths match.
    residual_scale : float, default 1
        Scale of the residual branch.
    norm : {None, "layernorm", "batchnorm"}
        Normalisation before the activation, without affine parameters.
    seed : int, None or numpy.random.Generator, default 0
        Same seed, same weights, whatever the thread count. None draws fresh entropy and
        a Generator one integer; the integer used is kept as ``.seed``. Gaussian draws are
        standard normals to float32 precision (a polynomial Box-Muller, the same bits on
        every machine) scaled in double, so a float32 chain's weights are its float64
        twin's rounded once.
    dtype : {"float32", "float64"}
        Compute dtype. Results are float64 whatever it is.
    store_weights : bool, default True
        False: the weights are never stored. Every pass draws layer ``l``'s parameters
        again from ``(seed, l)`` when it needs them (the same numbers as the stored
        chain of that seed, so every measurement agrees), holding one layer at a time,
        and the backward pass keeps activations only every ``checkpoint_every`` layers
        (see below), recomputing the segment between: memory ``O(sqrt(depth) * batch * width +
        width**2)`` instead of ``depth * width**2``, for chains deeper than memory.
        Drawing costs time: each layer is drawn about three times per backprop (a
        2048 x 2048 Gaussian layer takes ~5 ms on two cores; an orthogonal one needs a
        QR factorisation each time, ~0.5 s).
        ``forward``, ``backprop`` (not ``keep_grads``), ``jacobian``,
        ``jacobian_norms``, ``lyapunov_exponents`` and ``spectral_norm`` work as for
        stored chains; :func:`pyjac.train` needs stored weights.
    checkpoint_every : int, optional
        Layers between kept activations when ``store_weights=False``. By default, chosen
        per call: every layer (no recomputation: one draw fewer per layer) when all the
        activations take no more memory than one layer's weights (``depth * batch *
        width <= width**2``), else about ``sqrt(depth)`` (which minimises the memory).

    Attributes
    ----------
    depth : int
        Number of layers.
    widths : list of int
        ``depth + 1`` widths, the input's first.
    weights, biases : list of ndarray
        ``W_l`` of shape ``(widths[l], widths[l-1])`` and ``b_l``, in the chain's dtype.
        These are the live parameters, not copies: :func:`pyjac.train` updates them in
        place, and changing them changes every later measurement. With
        ``store_weights=False`` they are read-only sequences that draw each layer on
        access.
    activations : list of str
        One canonical name per layer.
    residual, residual_scale, norm, dtype, init, gain, seed
        As given (``seed`` as the integer used; ``init``, ``gain`` and ``seed`` are None
        for :meth:`from_weights`).

    Examples
    --------
    >>> import numpy as np, pyjac
    >>> net = pyjac.Chain(50, 64, activation="sigmoid", init="xavier")
    >>> r = net.backprop(np.ones(64))
    >>> bool(r.grad_norm[0] < r.grad_norm[-1] * 0.25**10)
    True
    """

    def __init__(
        self,
        depth: int,
        width: int | Sequence[int],
        *,
        activation: str | Sequence[str] = "relu",
        init: str | None = None,
        gain: float | None = None,
        bias_std: float = 0.0,
        residual: bool = False,
        residual_scale: float = 1.0,
        norm: str | None = None,
        seed: int = 0,
        dtype: Any = "float32",
        store_weights: bool = True,
        checkpoint_every: int | None = None,
    ) -> None:
        depth = check_int(depth, "depth", minimum=1)
        np_dtype = check_dtype(dtype)
        store_weights = check_bool(store_weights, "store_weights")
        if checkpoint_every is not None:
            checkpoint_every = check_int(checkpoint_every, "checkpoint_every", minimum=1)
        # Sizes first, before any depth-long list is built: Chain(10**9, 8) fails here.
        if isinstance(width, (list, tuple, np.ndarray)):
            widths = _widths(depth, width)
            n_params = sum(widths[i] * widths[i + 1] + widths[i + 1] for i in range(depth))
            largest = max(widths[i] * widths[i + 1] + widths[i + 1] for i in range(depth))
            shape = f"widths {widths[0]}..{widths[-1]}"
        else:
            w = check_int(width, "width", minimum=1)
            n_params, shape, widths = depth * (w * w + w), f"width {w}", None
            largest = w * w + w
        _check_chain_memory(depth, shape, n_params, largest, np_dtype, store_weights)
        if widths is None:
            widths = _widths(depth, width)
        activations = _activations(activation, depth)
        init = _default_init(activations) if init is None else check_choice(init, INITS, "init")
        gain_value = 1.0 if gain is None else check_real(gain, "gain")
        check_scale_fits(gain_value, "gain", np_dtype, factor=_init_factor(init))
        bias_std = check_real(bias_std, "bias_std", nonneg=True)
        check_scale_fits(bias_std, "bias_std", np_dtype)
        seed = check_seed(seed)
        if store_weights:
            weights, biases = _core.init_weights(
                widths, init, gain_value, bias_std, seed, np_dtype.name, -1
            )
            self._setup(weights, biases, activations, residual, residual_scale, _norm(norm))
        else:
            self._setup(None, None, activations, residual, residual_scale, _norm(norm),
                        widths=widths, dtype=np_dtype)
            self._draw_from((widths, init, gain_value, bias_std, seed, checkpoint_every or 0))
        self.init = init
        self.gain = gain_value
        self.seed = int(seed)
        self.sigma_w2 = _core.init_sigma_w2(init, gain_value, widths[0], widths[1])
        self.sigma_b2 = bias_std * bias_std  # inf past float64's range (** would raise)

    @classmethod
    def from_weights(
        cls,
        weights: Sequence[Any],
        biases: Sequence[Any] | None = None,
        *,
        activation: str | Sequence[str] = "relu",
        residual: bool = False,
        residual_scale: float = 1.0,
        norm: str | None = None,
        copy: bool = True,
    ) -> Chain:
        """Build a chain from given weight matrices ``W_l`` of shape (out, in).

        The dtype is float32 when every weight is float32, float64 otherwise.
        ``biases=None`` means zero biases.

        With ``copy=True`` (the default) the chain holds copies, so that training it
        never changes the caller's arrays. ``copy=False`` keeps the caller's arrays
        themselves where they are already C-contiguous arrays of the chain's dtype:
        :func:`pyjac.train` then updates them in place.
        """
        check_bool(copy, "copy")
        if isinstance(weights, np.ndarray) and weights.ndim == 2:
            weights = [weights]
        if not isinstance(weights, (list, tuple)) or len(weights) == 0:
            raise ValueError("weights: expected a non-empty list of 2-D arrays")
        if biases is not None and not isinstance(biases, (list, tuple)):
            raise TypeError(
                f"biases: expected a list of 1-D arrays or None, got {type(biases).__name__}"
            )
        raw = [raw_array(w, f"weights[{i}]") for i, w in enumerate(weights)]
        all_f32 = all(w.dtype == np.float32 for w in raw)
        dtype = np.dtype(np.float32 if all_f32 else np.float64)
        converted = []
        for i, w in enumerate(raw):
            arr = as_float_array(w, f"weights[{i}]", dtype, copy=copy)
            if arr.ndim != 2 or 0 in arr.shape:
                raise ValueError(f"weights[{i}]: expected a non-empty 2-D array, got {arr.shape}")
            if i and arr.shape[1] != converted[-1].shape[0]:
                raise ValueError(
                    f"weights[{i}]: has {arr.shape[1]} columns but weights[{i - 1}] has "
                    f"{converted[-1].shape[0]} rows"
                )
            converted.append(arr)
        depth = len(converted)
        if biases is None:
            bias_list = [np.zeros(w.shape[0], dtype=dtype) for w in converted]
        else:
            if len(biases) != depth:
                raise ValueError(f"biases: expected {depth} vectors, got {len(biases)}")
            bias_list = []
            for i, (b, w) in enumerate(zip(biases, converted)):
                arr = as_float_array(b, f"biases[{i}]", dtype, copy=copy)
                if arr.shape != (w.shape[0],):
                    raise ValueError(
                        f"biases[{i}]: expected shape ({w.shape[0]},), got {arr.shape}"
                    )
                bias_list.append(arr)
        net = cls.__new__(cls)
        net._setup(converted, bias_list, _activations(activation, depth), residual,
                   residual_scale, _norm(norm))
        net.init = None
        net.gain = None
        net.seed = None
        # Weights past 1e154 have variances beyond float64: inf is the honest value.
        with np.errstate(over="ignore"):
            net.sigma_w2 = float(np.mean([np.mean(w.astype(np.float64) ** 2) * w.shape[1]
                                          for w in converted]))
            net.sigma_b2 = float(np.mean([np.mean(b.astype(np.float64) ** 2)
                                          for b in bias_list]))
        return net

    def _setup(self, weights, biases, activations, residual, residual_scale, norm,
               widths=None, dtype=None) -> None:
        check_bool(residual, "residual")
        self._spec = None
        if weights is None or isinstance(weights, _DrawnParameters):
            self.weights, self.biases = weights, biases
            self.widths: list[int] = list(widths)
            self.dtype = np.dtype(dtype)
        else:
            self.weights = list(weights)
            self.biases = list(biases)
            self.widths = [int(self.weights[0].shape[1])] + [int(w.shape[0])
                                                              for w in self.weights]
            self.dtype = self.weights[0].dtype
        self.activations: list[str] = list(activations)
        self.residual = bool(residual)
        self.residual_scale = check_real(residual_scale, "residual_scale")
        self.norm = norm

    def _draw_from(self, spec_args: tuple[Any, ...]) -> None:
        """Make this a chain that draws its parameters: ``spec_args`` are
        ``_core.RegeneratedChain``'s (widths, init, gain, bias_std, seed, checkpoint_every)."""
        self._spec_args = tuple(spec_args)
        self._spec = _core.RegeneratedChain(*self._spec_args)
        self.weights = _DrawnParameters(self._spec, self.dtype, 0)
        self.biases = _DrawnParameters(self._spec, self.dtype, 1)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._spec is not None:  # the description pickles; the core's object does not
            for name in ("_spec", "weights", "biases"):
                state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # The canonical dtype object: an unpickled one is equal but not the same, and the
        # core dispatches on identity.
        self.dtype = np.dtype(self.dtype.name)
        if "_spec_args" in state:
            self._draw_from(state["_spec_args"])
        else:
            self._spec = None

    @property
    def store_weights(self) -> bool:
        """False for a chain that draws each layer's parameters again whenever a pass
        needs them (``Chain(..., store_weights=False)``)."""
        return self._spec is None

    @property
    def checkpoint_every(self) -> int | None:
        """Layers between the activations that the backward pass of a chain without
        stored weights keeps (it recomputes those between), as given; None when it is
        chosen per call (see the class docs) and for chains that store their weights."""
        if self._spec is None or self._spec_args[5] == 0:
            return None
        return int(self._spec_args[5])

    @property
    def _core_parameters(self) -> tuple[Any, Any]:
        """What the core's chain functions take: the weight and bias lists, or the
        description a chain without stored weights draws them from."""
        if self._spec is None:
            return self.weights, self.biases
        return self._spec, None

    def _same_weights(self, **structure: Any) -> Chain:
        """A chain with these weights and biases (shared for a chain that stores them,
        the same draws for one that does not) and ``structure`` changed: ``activations``,
        ``residual``, ``residual_scale`` or ``norm``."""
        settings = dict(activations=self.activations, residual=self.residual,
                        residual_scale=self.residual_scale, norm=self.norm)
        settings.update(structure)
        net = Chain.__new__(Chain)
        net._setup(self.weights, self.biases, settings["activations"], settings["residual"],
                   settings["residual_scale"], _norm(settings["norm"]), widths=self.widths,
                   dtype=self.dtype)
        net._spec = self._spec
        if self._spec is not None:
            net._spec_args = self._spec_args
        for name in ("init", "gain", "seed", "sigma_w2", "sigma_b2"):
            setattr(net, name, getattr(self, name))
        return net

    def _require_stored(self, what: str) -> None:
        if self._spec is not None:
            raise ValueError(
                f"{what}: needs a chain that stores its weights; this one was built with "
                "store_weights=False (build it with store_weights=True where they fit)")

    @property
    def depth(self) -> int:
        """Number of layers."""
        return len(self.widths) - 1

    @property
    def activation(self) -> str | list[str]:
        """The activation name, or the per-layer list when layers differ."""
        return self.activations[0] if len(set(self.activations)) == 1 else list(self.activations)

    def __repr__(self) -> str:
        width = self.widths[0] if len(set(self.widths)) == 1 else self.widths
        extras = []
        if self.init is not None:
            extras.append(f"init={self.init!r}")
        if self.residual:
            extras.append(f"residual=True, residual_scale={self.residual_scale:g}")
        if self.norm:
            extras.append(f"norm={self.norm!r}")
        if self._spec is not None:
            extras.append("store_weights=False")
        extra = ", " + ", ".join(extras) if extras else ""
        return (
            f"Chain(depth={self.depth}, width={width}, activation={self.activation!r}"
            f"{extra}, dtype={self.dtype.name!r})"
        )

    # -- input preparation shared by every measurement ---------------------------------
    def _batch(self, x: Any, name: str = "x",
               check_memory: Callable[[int], None] | None = None) -> tuple[np.ndarray, bool]:
        """x as a (batch, widths[0]) array of the chain's dtype, and whether it was one
        example. ``check_memory(batch)`` runs before anything is converted when x's shape
        declares its batch (a zero-stride view of a huge batch is refused, not copied
        first), else right after the conversion."""
        declared = self._declared_batch(x)
        if check_memory is not None and declared is not None:
            check_memory(declared)
        arr = as_float_array(x, name, self.dtype)
        single = arr.ndim == 1
        if single:
            arr = arr[None, :]
        if arr.ndim == 2 and arr.shape[1] == self.widths[0] and arr.shape[0] == 0:
            raise ValueError(f"{name}: the batch is empty (shape {arr.shape}): give at least "
                             "one input")
        if arr.ndim != 2 or arr.shape[1] != self.widths[0] or arr.shape[0] < 1:
            raise ValueError(
                f"{name}: expected shape (batch, {self.widths[0]}) or ({self.widths[0]},), "
                f"got {np.shape(x)}"
            )
        if check_memory is not None and declared is None:
            check_memory(arr.shape[0])
        return arr, single

    def _declared_batch(self, x: Any) -> int | None:
        """The batch an array-like ``x`` declares by its shape, read without converting
        it; None where only the conversion can tell."""
        shape = getattr(x, "shape", None)
        if not isinstance(shape, tuple) or not all(isinstance(d, int) for d in shape):
            return None
        if len(shape) == 2 and shape[0] >= 1 and shape[1] == self.widths[0]:
            return shape[0]
        return None

    def forward(self, x: Any, *, n_threads: int | None = None) -> np.ndarray:
        """The chain's output ``h_L`` for ``x``: the forward pass alone, in one C++ call.

        Parameters
        ----------
        x : array_like, shape (batch, widths[0]) or (widths[0],)
            Converted to the chain's dtype (the caller's array is not changed).
        n_threads : int, optional
            None or -1 for every core, or a positive count.

        Returns
        -------
        ndarray, shape (batch, widths[-1]) or (widths[-1],)
            In the chain's dtype; the same numbers as ``backprop(x).output``.
        """
        n_threads = check_threads(n_threads)
        xb, single = self._batch(x, check_memory=self._check_forward_memory)
        if self.norm == "batchnorm" and xb.shape[0] < 2:
            raise ValueError("x: norm='batchnorm' needs a batch of at least 2 examples")
        out = _core.chain_forward(*self._core_parameters, self.activations, self.residual,
                                  self.residual_scale, self.norm or "none", xb, n_threads)
        return out[0] if single else out

    def __call__(self, x: Any, *, n_threads: int | None = None) -> np.ndarray:
        """``net(x)`` is :meth:`forward`, as in PyTorch."""
        return self.forward(x, n_threads=n_threads)

    def _check_forward_memory(self, batch: int) -> None:
        # Three slabs of the widest layer, and the output.
        check_allocation(4 * batch * max(self.widths) * self.dtype.itemsize,
                         f"x: forward on a batch of {batch}")

    def _check_workspace(self, batch: int, keep_grads: bool) -> None:
        if self._spec is not None:
            if keep_grads:
                raise ValueError("keep_grads: a chain built with store_weights=False does not "
                                 "keep its weight gradients either (depth weight-sized arrays)")
            # The activations at checkpoints and one segment, plus per-layer records:
            # row norms and per-example weight-gradient norms (float64, per example),
            # the statistics and the tape's slots (about 256 bytes a layer).
            nbytes = _core.regenerated_workspace_bytes(
                self.widths, batch, self.dtype.itemsize, self._spec_args[5])
            nbytes += (16 * batch + LAYER_OVERHEAD_BYTES) * (self.depth + 1)
            check_allocation(nbytes, f"x: backprop on a batch of {batch}")
            return
        store_u = self.residual or self.norm is not None or any(
            a in ("gelu", "silu") for a in self.activations
        )
        nbytes = _core.backprop_workspace_bytes(self.widths, batch, self.dtype.itemsize, store_u)
        if keep_grads:
            nbytes += sum(w.nbytes + b.nbytes for w, b in zip(self.weights, self.biases))
        check_allocation(nbytes, f"x: backprop on a batch of {batch}")

    def backprop(
        self,
        x: Any,
        *,
        loss: str = "sum_squares",
        target: Any = None,
        grad_output: Any = None,
        keep_grads: bool = False,
        grad_dtype: Any = None,
        loss_scale: float = 1.0,
        weight_grads: bool = True,
        n_threads: int | None = None,
    ) -> BackpropResult:
        """One exact forward and backward pass; per-layer gradient measurements.

        Parameters
        ----------
        x : array_like, shape (batch, widths[0]) or (widths[0],)
            Input; a 1-D ``x`` is a batch of one.
        loss : {"sum_squares", "mse", "cross_entropy"}
            ``0.5 * sum(h_L**2)``; mean squared error against ``target`` (mean over
            every entry); or softmax cross-entropy against integer labels ``target``
            (mean over the batch).
        target : array_like, optional
            Values for "mse" (shape of the output), labels for "cross_entropy".
        grad_output : array_like, optional
            A given ``dL/dh_L`` instead of a loss: pure backward propagation.
        keep_grads : bool
            Also return the full weight and bias gradients and the output.
        grad_dtype : {None, "float16", "bfloat16"} or the chain's dtype
            Mixed-precision emulation of the backward pass: every propagated gradient
            (``dL/dh_l`` and ``dL/dz_l``) is rounded to this format (nearest, ties to
            even, subnormals kept, overflow to inf) while the arithmetic stays in the
            chain's dtype; weights and activations are not rounded. The result then
            counts, per layer, the entries flushed to zero, turned into inf, and zero.
            The chain's own dtype counts without rounding (the baseline); None neither
            rounds nor counts.
        loss_scale : float, default 1
            Multiplies ``dL/dh_L`` before it is propagated (and rounded); every reported
            gradient norm and kept gradient is divided by it again, as an optimiser
            unscales. Scaling by a power of two lifts small gradients out of float16's
            underflow range without changing any value that stays representable.
        weight_grads : bool
            False when only the gradient through depth is wanted (``grad_norm``,
            ``log_grad_norm`` and the forward measurements): no weight or bias gradients,
            their norms or per-example norms are formed (None in the result), so the
            backward pass is one product with each ``W_l``. Not with ``keep_grads``.
        n_threads : int, optional
            None or -1 for every core, or a positive count (OpenMP and BLAS share it).

        Returns
        -------
        BackpropResult
            Exploding chains are data: a NaN/Inf arising inside the pass is reported
            in ``first_nonfinite_layer`` and the pass finishes.
        """
        n_threads = check_threads(n_threads)
        grad_format = _grad_dtype(grad_dtype, self.dtype)
        loss_scale = check_real(loss_scale, "loss_scale", positive=True)
        keep_grads = check_bool(keep_grads, "keep_grads")
        weight_grads = check_bool(weight_grads, "weight_grads")
        if keep_grads and not weight_grads:
            raise ValueError("keep_grads: keeps the weight gradients, which weight_grads=False "
                             "skips")
        xb, single = self._batch(
            x, check_memory=lambda batch: self._check_workspace(batch, keep_grads))
        batch = xb.shape[0]
        loss_name, tgt = self._loss_and_target(loss, target, grad_output, batch, single)
        raw = _core.chain_backprop(
            *self._core_parameters, self.activations, self.residual, self.residual_scale,
            self.norm or "none", xb, loss_name, tgt, keep_grads, n_threads,
            grad_format, loss_scale, weight_grads,
        )
        loss_value = None if loss_name == "grad_output" else float(raw["loss"])
        return BackpropResult(
            loss=loss_value,
            grad_norm=raw["grad_norm"],
            activation_norm=raw["activation_norm"],
            weight_grad_norm=raw["weight_grad_norm"],
            bias_grad_norm=raw["bias_grad_norm"],
            per_example_weight_grad_norm=raw["per_example_weight_grad_norm"],
            gradient_noise_scale=raw["gradient_noise_scale"],
            gradient_snr=raw["gradient_snr"],
            derivative_mean=raw["derivative_mean"],
            saturated_fraction=raw["saturated_fraction"],
            dead_fraction=raw["dead_fraction"],
            log_grad_norm=raw["log_grad_norm"],
            log_weight_grad_norm=raw["log_weight_grad_norm"],
            log_bias_grad_norm=raw["log_bias_grad_norm"],
            first_underflow_layer=raw["first_underflow_layer"],
            first_nonfinite_layer=raw["first_nonfinite_layer"],
            first_nonfinite_stage=raw["first_nonfinite_stage"],
            loss_scale=loss_scale,
            **self._rounding_fields(grad_format, raw, batch),
            output=raw["output"][0] if single else raw["output"],
            weight_grads=raw.get("weight_grads"),
            bias_grads=raw.get("bias_grads"),
        )

    def _rounding_fields(self, grad_format: str, raw: dict, batch: int) -> dict[str, Any]:
        names = ("underflow_count", "overflow_count", "zero_fraction", "underflow_fraction",
                 "dz_underflow_count", "dz_overflow_count")
        if grad_format == "none":
            return dict.fromkeys(("grad_dtype", *names))
        entries = batch * np.asarray(self.widths, dtype=np.float64)
        return {
            "grad_dtype": self.dtype.name if grad_format == "native" else grad_format,
            "underflow_count": raw["underflow_count"],
            "overflow_count": raw["overflow_count"],
            "zero_fraction": raw["zero_count"] / entries,
            "underflow_fraction": raw["underflow_count"] / entries,
            "dz_underflow_count": raw["dz_underflow_count"],
            "dz_overflow_count": raw["dz_overflow_count"],
        }

    def _loss_and_target(self, loss: str, target: Any, grad_output: Any, batch: int,
                         single: bool) -> tuple[str, np.ndarray | None]:
        """The loss's name and its converted target (or the given grad_output)."""
        n_out = self.widths[-1]
        if grad_output is not None:
            if loss != "sum_squares" or target is not None:
                raise ValueError("grad_output: give either grad_output or a loss/target, not both")
            tgt = as_float_array(grad_output, "grad_output", self.dtype)
            if single and tgt.ndim == 1:
                tgt = tgt[None, :]
            if tgt.shape != (batch, n_out):
                raise ValueError(
                    f"grad_output: expected shape ({batch}, {n_out}), got {np.shape(grad_output)}"
                )
            loss_name = "grad_output"
        else:
            loss_name = check_choice(loss, LOSSES, "loss")
            tgt = self._target(loss_name, target, batch, single)
        if self.norm == "batchnorm" and batch < 2:
            raise ValueError("x: norm='batchnorm' needs a batch of at least 2 examples")
        return loss_name, tgt

    def _target(self, loss: str, target: Any, batch: int, single: bool) -> np.ndarray | None:
        n_out = self.widths[-1]
        if loss == "sum_squares":
            if target is not None:
                raise ValueError("target: loss='sum_squares' takes no target")
            return None
        if target is None:
            raise ValueError(f"target: loss={loss!r} needs a target")
        if loss == "mse":
            tgt = as_float_array(target, "target", self.dtype)
            if single and tgt.ndim == 1:
                tgt = tgt[None, :]
            if tgt.shape != (batch, n_out):
                raise ValueError(
                    f"target: expected shape ({batch}, {n_out}), got {np.shape(target)}"
                )
            return tgt
        labels = np.asarray(target)
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"target: cross_entropy needs integer class labels, got {labels.dtype}")
        labels = np.ascontiguousarray(labels.reshape(-1) if single else labels, dtype=np.int64)
        if labels.shape != (batch,):
            raise ValueError(f"target: expected {batch} labels, got shape {np.shape(target)}")
        if labels.size and (labels.min() < 0 or labels.max() >= n_out):
            raise ValueError(
                f"target: labels must lie in [0, {n_out}), got {labels.min()}..{labels.max()}"
            )
        return labels

    # -- Jacobian products and spectral norms (pyjac.jacobian, pyjac.spectral) ---------
    def jacobian(self, x: Any, depth: int | None = None, *,
                 n_threads: int | None = None) -> np.ndarray:
        """The explicit input-output Jacobian ``d h_depth / d h_0`` at one input.

        Parameters
        ----------
        x : array_like, shape (widths[0],) or (1, widths[0])
            The input the chain is linearised at.
        depth : int, optional
            Layers to go through, 0..depth (the whole chain when None; 0 gives the
            identity).
        n_threads : int, optional
            None or -1 for every core.

        Returns
        -------
        ndarray, shape (widths[depth], widths[0])
            In the chain's dtype. Entries overflow to inf for exploding chains: use
            :meth:`jacobian_norms` for their logs. Batchnorm chains are refused.
        """

        return chain_jacobian(self, x, depth, n_threads)

    def jacobian_norms(self, x: Any, singular_values_at: Any = None, *, method: str = "auto",
                       n_threads: int | None = None) -> JacobianNorms:
        """Log spectral and Frobenius norms of ``P_l = J_l ... J_1`` at every depth.

        Parameters
        ----------
        x : array_like, shape (widths[0],) or (1, widths[0])
            The input the chain is linearised at.
        singular_values_at : int or sequence of int, optional
            Depths (1..depth) at which to return every singular value of ``P_l``.
        method : {"auto", "product", "qr"}
            "product" carries ``P_l`` itself, rescaled by an exact power of two at every
            layer (one GEMM per layer; largest singular value and Frobenius norm are as
            exact as the product, singular values below ~eps * sigma_max are lost).
            "qr" carries Benettin's orthonormalised form ``P_l = Q_l R_l ... R_1``
            (one QR per layer, slower; small singular values keep their relative
            accuracy). "auto" is "qr" when singular values are asked for.
        n_threads : int, optional
            None or -1 for every core.

        Returns
        -------
        JacobianNorms
            Never overflows: a linear chain of ``1.1 * Q`` gives ``l * ln 1.1`` at any
            depth, in float32 too.
        """

        return chain_jacobian_norms(self, x, singular_values_at, method, n_threads)

    def lyapunov_exponents(self, x: Any, k: int | None = None, *, seed: int = 0,
                           n_threads: int | None = None) -> np.ndarray:
        """The ``k`` largest Lyapunov exponents of the chain's Jacobian product.

        Benettin's QR method: ``J_l Q_{l-1} = Q_l R_l`` from a seeded Haar-random
        k-frame ``Q_0``; exponent ``i`` is the mean over layers of ``log |R_l[i, i]|``
        (natural log per layer).

        Parameters
        ----------
        x : array_like, shape (widths[0],) or (1, widths[0])
            The input the chain is linearised at.
        k : int, optional
            How many (all, i.e. the narrowest width, when None).
        seed : int, default 0
            Seeds the start frame; the first ``k`` columns of one fixed frame, so
            ``k=3`` gives the first three exponents of ``k=None``.

        Returns
        -------
        ndarray, shape (k,)
            In Benettin order: the partial sums are the exact growth rates of the
            leading volumes; for long chains the order is descending. ``-inf`` where a
            direction is annihilated (dead ReLUs).
        """

        return chain_lyapunov_exponents(self, x, k, seed, n_threads)

    def spectral_norm(self, x: Any, per_layer: bool = False, iters: int = 1000,
                      tol: float = 1e-6, *, seed: int = 0,
                      n_threads: int | None = None) -> SpectralNormResult:
        """Largest singular value of the Jacobian by matrix-free power iteration.

        Iterates ``v <- J^T J v`` with forward (JVP) and backward (VJP) passes through
        the chain, never forming ``J``; vectors are rescaled at every layer and the
        log-scale is kept in float64, so deep chains neither overflow nor underflow.

        Parameters
        ----------
        x : array_like, shape (widths[0],) or (1, widths[0])
            The input the chain is linearised at.
        per_layer : bool, default False
            False: ``sigma_max(d h_L / d h_0)``. True: ``sigma_max(J_l)`` of every
            layer (in parallel over layers).
        iters : int, default 1000
            Most iterations.
        tol : float, default 1e-6
            Relative accuracy asked for. Float32 chains are limited by rounding to
            about 1e-7 * sqrt(depth).
        seed : int, default 0
            Seeds the start vector(s).

        Returns
        -------
        SpectralNormResult
            value (and log_value), iterations, converged; arrays with per_layer=True.
        """

        return chain_spectral_norm(self, x, per_layer, iters, tol, seed, n_threads)

    # -- curvature (pyjac.curvature) ----------------------------------------------------
    def hessian(self, x: Any, *, loss: str = "sum_squares", target: Any = None,
                grad_output: Any = None, kind: str = "hessian", per_layer: bool = False,
                n_threads: int | None = None) -> Hessian:
        """The curvature of the loss at the batch ``x``, with respect to every parameter.

        The forward and backward pass run once here; each product afterwards is exact
        (forward-over-reverse differentiation in C++, as ``torch.autograd``'s double
        backward computes it, without forming the matrix).

        Parameters
        ----------
        x : array_like, shape (batch, widths[0]) or (widths[0],)
        loss, target, grad_output
            As for :meth:`backprop`: "sum_squares", "mse" (mean over every entry) or
            "cross_entropy" (mean over the batch); a ``grad_output`` makes the loss
            linear in the output, ``<grad_output, h_L>``.
        kind : {"hessian", "gauss_newton"}
            The Hessian, or the generalised Gauss-Newton matrix ``J^T H_L J`` (positive
            semi-definite for these losses; zero for a ``grad_output``).
        per_layer : bool, default False
            Work on each layer's own diagonal block ``(W_l, b_l)``: ``hvp`` applies the
            block-diagonal part, and ``eigenvalues``, ``trace`` and ``density`` return
            one result per layer.
        n_threads : int, optional
            None or -1 for every core, or a positive count; the numbers do not depend
            on it.

        Returns
        -------
        pyjac.curvature.Hessian
            ``hvp(v)``, ``eigenvalues(k, which)``, ``trace()``, ``density()``. It holds
            copies of the parameters and the batch, and the tapes of both passes
            (about eight activation-sized arrays a layer).

        Examples
        --------
        >>> import numpy as np, pyjac
        >>> net = pyjac.Chain(4, 16, activation="tanh", dtype="float64")
        >>> H = net.hessian(np.ones((8, 16)) * 0.1)
        >>> top = H.eigenvalues(k=2)
        >>> bool(top.converged and top.values[0] >= top.values[1])
        True
        """
        xb, single = self._batch(x)
        loss_name, tgt = self._loss_and_target(loss, target, grad_output, xb.shape[0], single)
        return make_hessian(self, self._core_parameters, xb, loss_name, tgt, kind, per_layer,
                            n_threads)
