"""Sweeps of recurrent nets: the gradient norm through time per spectral radius."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_choice, check_int, check_real
from .cache import _cache_dir
from .distributed import check_scheduler
from .grid import RNN_CELLS, _grid_values, _seeds
from .results import Results, append_rows
from .runner import run_cached


# --------------------------------------------------------------------------------------
# Recurrent and Jacobian measurements
# --------------------------------------------------------------------------------------
def _rnn_run(config: dict[str, Any], seed: int, n_threads: int) -> dict[str, np.ndarray]:
    """One recurrent net, one backprop through time: ``||dL/dh_t||`` for t = 0..steps."""
    from ..recurrent import Recurrent

    width, steps, batch = config["width"], config["steps"], config["batch"]
    input_scale = config["input_scale"]
    input_size = width if input_scale > 0 else 0
    rnn = Recurrent(width, input_size, cell=config["cell"], init=config["init"],
                    spectral_radius=config["spectral_radius"], seed=seed,
                    dtype=config["dtype"])
    data = np.random.default_rng([seed, 2])
    h0 = data.standard_normal((batch, width))
    xs = (data.standard_normal((steps, batch, width)) * input_scale if input_size else None)
    go = data.standard_normal((batch, width))
    r = rnn.backprop(xs=xs, steps=None if xs is not None else steps, h0=h0, grad_output=go,
                     weight_grads=False, n_threads=n_threads)
    return {"grad_norm": np.asarray(r.grad_norm, dtype=np.float64)}


def rnn_sweep(*, cell: Any = "tanh", spectral_radius: Any = 1.0, width: int = 64,
              steps: int = 100, seeds: Any = 1, batch: int = 8, input_scale: float = 0.0,
              init: str = "orthogonal", dtype: str = "float64",
              cache: Any = True, progress: bool | None = None, n_jobs: int | None = None,
              scheduler: Any = None) -> Results:
    """Gradient norm ``||dL/dh_t||`` through time for recurrent cells (needs
    ``pyjac.Recurrent``).

    One row per cell, spectral radius, seed and time step ``t = 0..steps``. Each run
    builds ``Recurrent(width, input_size, cell=..., init=..., spectral_radius=...,
    seed=seed)``, starts from a standard normal ``h0`` of shape ``(batch, width)``,
    feeds standard normal inputs times ``input_scale`` (``input_size = width``; none when
    ``input_scale`` is 0) and back-propagates a standard normal ``dL/dh_T``, all drawn
    from ``numpy.random.default_rng([seed, 2])``.

    ``cache``, ``progress``, ``n_jobs`` and ``scheduler`` (a Dask cluster) work as in
    :func:`pyjac.sweep`.

    Returns
    -------
    Results
        Columns ``cell``, ``spectral_radius``, ``width``, ``steps``, ``config``,
        ``seed``, ``step``, ``grad_norm``.
    """
    cells = _grid_values("cell", cell, lambda v, n: check_choice(v, RNN_CELLS, n))
    radii = _grid_values("spectral_radius", spectral_radius,
                         lambda v, n: check_real(v, n, nonneg=True))
    width = check_int(width, "width", minimum=1)
    steps = check_int(steps, "steps", minimum=1)
    batch = check_int(batch, "batch", minimum=1)
    input_scale = check_real(input_scale, "input_scale", nonneg=True)
    seed_list = _seeds(seeds)
    directory = _cache_dir(cache)
    scheduler = check_scheduler(scheduler, n_jobs)
    combos = [(c, r) for c in cells for r in radii]
    configs = [{"cell": c, "spectral_radius": radius, "width": width, "steps": steps,
                "batch": batch, "input_scale": input_scale, "init": init, "dtype": dtype}
               for c, radius in combos]
    runs, _, _ = run_cached(_rnn_run, configs, seed_list, kind="rnn", directory=directory,
                            n_jobs=n_jobs, progress=progress, desc="pyjac rnn sweep",
                            scheduler=scheduler)

    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "cell", "spectral_radius", "width", "steps", "config", "seed", "step", "grad_norm")}
    n = steps + 1
    for c_i, (c, radius) in enumerate(combos):
        for s_i, seed in enumerate(seed_list):
            append_rows(cols, n, cell=c, spectral_radius=radius, width=width, steps=steps,
                        config=c_i, seed=seed, step=np.arange(n),
                        grad_norm=runs[c_i * len(seed_list) + s_i]["grad_norm"])
    return Results({k: np.concatenate(v) for k, v in cols.items()}, {"kind": "rnn_sweep"})
