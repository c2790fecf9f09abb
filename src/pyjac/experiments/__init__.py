"""Sweeps over chain configurations, tidy results and an on-disk cache.

Modules: ``grid`` (the configuration columns and their expansion), ``results`` (the
:class:`Results` table), ``cache`` (the on-disk cache), ``runner`` (running a sweep),
``rnn`` (:func:`rnn_sweep`) and ``spectra`` (:func:`jacobian_spectra`).

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

from .cache import config_hash, default_cache_dir
from .grid import (
    CONFIG_COLUMNS,
    LAYER_COLUMNS,
    RNN_CELLS,
    SWEEP_ACTIVATIONS,
    SWEEP_INITS,
    SWEEP_LOSSES,
    SWEEP_NORMS,
)
from .results import Results
from .rnn import rnn_sweep
from .runner import growth_rate, run_inputs, sweep
from .spectra import jacobian_spectra

__all__ = [
    "CONFIG_COLUMNS",
    "LAYER_COLUMNS",
    "RNN_CELLS",
    "SWEEP_ACTIVATIONS",
    "SWEEP_INITS",
    "SWEEP_LOSSES",
    "SWEEP_NORMS",
    "config_hash",
    "Results",
    "default_cache_dir",
    "growth_rate",
    "run_inputs",
    "rnn_sweep",
    "jacobian_spectra",
    "sweep",
]
