"""What the functions behind :class:`pyjac.Chain`'s methods need of a chain.

``jacobian.py`` and ``spectral.py`` take any object with these attributes, so that they
never import :mod:`pyjac.chain` back (``Chain`` imports them to delegate its methods).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np


class ChainLike(Protocol):
    """The parameters and shapes of a feed-forward chain (a :class:`pyjac.Chain`)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activations: list[str]
    residual: bool
    residual_scale: float
    norm: str | None
    widths: list[int]
    dtype: np.dtype

    @property
    def depth(self) -> int: ...

    @property
    def _core_parameters(self) -> tuple[Any, Any]: ...

    def _batch(self, x: Any, name: str = "x",
               check_memory: Callable[[int], None] | None = None) -> tuple[np.ndarray, bool]: ...
