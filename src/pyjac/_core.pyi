# Stubs for pyjac's private C++ extension (pybind11). One section per
# register_<topic>.cpp file, so that topics can be added without touching others.
from collections.abc import Sequence
from typing import Any

import numpy as np

# ---- register_info.cpp -------------------------------------------------------------
openmp_version: int
has_cuda: bool

def max_threads() -> int: ...
def thread_limit() -> int: ...
def blas_num_threads() -> int: ...
def blas_kernel() -> str: ...
def busy_cores_elsewhere() -> int: ...
def gemm_gflops(
    n: int = 2048, repeats: int = 3, n_threads: int = -1, single: bool = True
) -> float: ...
def backprop_blas_seconds(
    depth: int, width: int, batch: int, repeats: int = 5, n_threads: int = -1
) -> float: ...

# ---- register_regenerated.cpp ------------------------------------------------------
class RegeneratedChain:
    """What a chain that does not store its weights draws them from."""

    def __init__(self, widths: Sequence[int], init: str, gain: float, bias_std: float,
                 seed: int, checkpoint_every: int) -> None: ...
    @property
    def depth(self) -> int: ...
    def checkpoint_interval(self, batch: int) -> int: ...
    def layer(self, layer: int, dtype: str, n_threads: int) -> tuple[np.ndarray, np.ndarray]: ...

def regenerated_workspace_bytes(
    widths: Sequence[int], batch: int, dtype_size: int, checkpoint_every: int
) -> int: ...

Parameters = Sequence[np.ndarray] | RegeneratedChain

# ---- register_chain.cpp ------------------------------------------------------------
def init_weights(
    widths: Sequence[int], init: str, gain: float, bias_std: float, seed: int, dtype: str,
    n_threads: int,
) -> list[Any]: ...
def init_sigma_w2(init: str, gain: float, fan_in: int, fan_out: int) -> float: ...
# Every chain function takes the weight and bias lists, or a RegeneratedChain and None
# (a chain built with store_weights=False): ``Parameters`` below.
def chain_backprop(
    weights: Parameters, biases: Sequence[np.ndarray] | None, activations: Sequence[str],
    residual: bool, residual_scale: float, norm: str, x: np.ndarray, loss: str, target: Any,
    keep_grads: bool, n_threads: int, grad_dtype: str = "none", loss_scale: float = 1.0,
    weight_grads: bool = True,
) -> dict[str, Any]: ...
def chain_forward(
    weights: Parameters, biases: Sequence[np.ndarray] | None, activations: Sequence[str],
    residual: bool, residual_scale: float, norm: str, x: np.ndarray, n_threads: int,
) -> np.ndarray: ...
def round_to_format(values: np.ndarray, grad_dtype: str) -> tuple[np.ndarray, int, int]: ...
def backprop_workspace_bytes(
    widths: Sequence[int], batch: int, dtype_size: int, store_preactivations: bool
) -> int: ...
def activation_names() -> list[str]: ...

# ---- register_curvature.cpp --------------------------------------------------------
class ChainCurvature:
    def __init__(
        self, weights: Parameters, biases: Sequence[np.ndarray] | None,
        activations: Sequence[str], residual: bool, residual_scale: float, norm: str,
        x: np.ndarray, loss: str, target: Any, kind: str, n_threads: int,
    ) -> None: ...
    @property
    def size(self) -> int: ...
    @property
    def loss(self) -> float: ...
    @property
    def block_offsets(self) -> list[int]: ...
    def product(self, v: np.ndarray, block: int = -1) -> np.ndarray: ...
    def layer_products(self, v: np.ndarray) -> np.ndarray: ...
    def eigenvalues(
        self, per_layer: bool, k: int, which: str, max_iter: int, tol: float, seed: int,
        vectors: bool, n_threads: int,
    ) -> list[dict[str, Any]]: ...
    def trace(
        self, per_layer: bool, samples: int, hutchpp: bool, seed: int, n_threads: int
    ) -> list[dict[str, Any]]: ...
    def quadrature(
        self, per_layer: bool, n_vectors: int, steps: int, seed: int, n_threads: int
    ) -> list[dict[str, Any]]: ...
def curvature_workspace_bytes(widths: Sequence[int], batch: int, dtype_size: int) -> int: ...

# ---- register_jacobian.cpp ---------------------------------------------------------
def chain_jacobian(
    weights: Parameters, biases: Sequence[np.ndarray] | None, activations: Sequence[str],
    residual: bool, residual_scale: float, norm: str, x: np.ndarray, depth: int, n_threads: int,
) -> np.ndarray: ...
def chain_jacobian_norms(
    weights: Parameters, biases: Sequence[np.ndarray] | None, activations: Sequence[str],
    residual: bool, residual_scale: float, norm: str, x: np.ndarray,
    singular_values_at: Sequence[int], method: str, tol: float, n_threads: int,
) -> dict[str, Any]: ...
def chain_lyapunov_exponents(
    weights: Parameters, biases: Sequence[np.ndarray] | None, activations: Sequence[str],
    residual: bool, residual_scale: float, norm: str, x: np.ndarray, k: int, seed: int,
    n_threads: int,
) -> dict[str, Any]: ...

# ---- register_spectral.cpp ---------------------------------------------------------
def matrix_spectral_norm(
    matrix: np.ndarray, iters: int, tol: float, seed: int, n_threads: int
) -> dict[str, np.ndarray]: ...
def chain_spectral_norm(
    weights: Parameters, biases: Sequence[np.ndarray] | None, activations: Sequence[str],
    residual: bool, residual_scale: float, norm: str, x: np.ndarray, per_layer: bool,
    iters: int, tol: float, seed: int, n_threads: int,
) -> dict[str, Any]: ...
def spectral_radius(matrix: np.ndarray) -> float: ...

# ---- register_recurrent.cpp --------------------------------------------------------
def recurrent_init(
    cell: str, width: int, input_size: int, init: str, gain: float, forget_bias: float,
    spectral_radius: float, seed: int, dtype: str,
) -> list[Any]: ...
def recurrent_backprop(
    cell: str, W: np.ndarray, U: np.ndarray | None, b: np.ndarray, xs: np.ndarray | None,
    steps: int, h0: np.ndarray | None, c0: np.ndarray | None, loss: str,
    grad_output: np.ndarray | None, clip_kind: str, clip_threshold: float, keep_grads: bool,
    weight_grads: bool, n_threads: int,
) -> dict[str, Any]: ...
def recurrent_jacobian_norms(
    cell: str, W: np.ndarray, U: np.ndarray | None, b: np.ndarray, xs: np.ndarray | None,
    steps: int, h0: np.ndarray | None, c0: np.ndarray | None, n_threads: int,
) -> dict[str, Any]: ...
def recurrent_lyapunov(
    cell: str, W: np.ndarray, U: np.ndarray | None, b: np.ndarray, xs: np.ndarray | None,
    steps: int, h0: np.ndarray | None, c0: np.ndarray | None, k: int, seed: int,
    n_threads: int,
) -> dict[str, Any]: ...
def recurrent_workspace_bytes(
    cell: str, width: int, input_size: int, steps: int, batch: int, dtype_size: int
) -> int: ...

# ---- register_train.cpp ------------------------------------------------------------
def train_epoch(
    weights: Sequence[np.ndarray], biases: Sequence[np.ndarray],
    state: Sequence[Sequence[np.ndarray]], initial_weights: Sequence[np.ndarray],
    activations: Sequence[str], residual: bool, residual_scale: float, norm: str,
    x: np.ndarray, y: np.ndarray, order: np.ndarray, loss: str, batch_size: int,
    optimizer: dict[str, Any], steps_before: int, clip_mode: str, clip: float,
    grad_dtype: str, loss_scale: float, n_threads: int,
) -> dict[str, Any]: ...
def weight_histograms(
    weights: Sequence[np.ndarray], ranges: Sequence[float], bins: int, n_threads: int,
) -> dict[str, np.ndarray]: ...
def evaluate(
    weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], activations: Sequence[str],
    residual: bool, residual_scale: float, norm: str, x: np.ndarray, y: np.ndarray, loss: str,
    n_threads: int,
) -> tuple[float, float]: ...

# ---- register_train_recurrent.cpp ---------------------------------------------------
def train_recurrent_epoch(
    cell: str, params: list[np.ndarray], state1: list[np.ndarray], state2: list[np.ndarray],
    initial: list[np.ndarray], x: np.ndarray, y: np.ndarray, order: np.ndarray, loss: str,
    every_step: bool, batch_size: int, optimizer: dict[str, Any], steps_before: int,
    clip_mode: str, clip: float, n_threads: int,
) -> dict[str, Any]: ...
def evaluate_recurrent(
    cell: str, params: list[np.ndarray], x: np.ndarray, y: np.ndarray, loss: str,
    every_step: bool, n_threads: int,
) -> tuple[float, float]: ...

# ---- register_transformer.cpp ------------------------------------------------------
TRANSFORMER_PARAMETERS: list[str]
# ``stack``: (blocks, width, heads, hidden, activation, norm, residual, residual_scale,
# causal), blocks a list of each block's 12 arrays in PyTorch's order.
def transformer_backprop(
    stack: tuple[Any, ...], x: np.ndarray, loss: str, target: Any, n_threads: int
) -> dict[str, Any]: ...
def transformer_workspace_bytes(
    depth: int, width: int, heads: int, hidden: int, batch: int, seq_len: int, dtype_size: int
) -> int: ...
def transformer_spectral_norm(
    stack: tuple[Any, ...], x: np.ndarray, per_block: bool, iters: int, tol: float, seed: int,
    n_threads: int,
) -> dict[str, Any]: ...
def transformer_jacobian_norms(
    stack: tuple[Any, ...], x: np.ndarray, probes: int, iters: int, tol: float, seed: int,
    n_threads: int,
) -> dict[str, Any]: ...
