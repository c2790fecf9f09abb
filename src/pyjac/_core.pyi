"""Type stubs for pyjac's private C++ extension module."""

from typing import Any

import numpy as np
import numpy.typing as npt

openmp_version: int
has_cuda: bool

def max_threads() -> int: ...
def blas_num_threads() -> int: ...
def gemm_gflops(
    n: int = 2048, repeats: int = 3, n_threads: int = -1, single: bool = True
) -> float: ...

# -- chain -------------------------------------------------------------------------------
def init_weights(
    widths: list[int], init: str, gain: float, bias_std: float, seed: int, dtype: str,
    n_threads: int,
) -> list[Any]: ...
def init_sigma_w2(init: str, gain: float, fan_in: int, fan_out: int) -> float: ...
def chain_backprop(
    weights: list[npt.NDArray[np.floating]], biases: list[npt.NDArray[np.floating]],
    activations: list[str], residual: bool, residual_scale: float, norm: str,
    x: npt.NDArray[np.floating], loss: str, target: Any, keep_grads: bool, n_threads: int,
) -> dict[str, Any]: ...
def backprop_workspace_bytes(
    widths: list[int], batch: int, dtype_size: int, store_preactivations: bool
) -> int: ...
def activation_names() -> list[str]: ...
