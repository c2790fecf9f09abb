"""The input-output Jacobian's singular values at several depths of one chain."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import check_int, check_real
from .cache import _cache_dir
from .distributed import check_scheduler
from .grid import _as_list
from .results import Results, append_rows
from .runner import run_cached


def _spectra_run(config: dict[str, Any], seed: int, n_threads: int) -> dict[str, np.ndarray]:
    """The chain of ``config`` linearised at its fixed-point input: singular values of
    ``d h_a / d h_0`` for every ``a`` in ``config["at"]``, descending."""
    from .. import theory
    from ..chain import Chain

    activation, sigma_w2, sigma_b2 = config["activation"], config["sigma_w2"], config["sigma_b2"]
    width = config["width"]
    net = Chain(config["depth"], width, activation=activation, init=config["init"],
                gain=math.sqrt(sigma_w2), bias_std=math.sqrt(sigma_b2), seed=seed,
                dtype=config["dtype"])
    # Start on the fixed point: z_1 = W x + b has variance sigma_w2 * E[x^2] + sigma_b2,
    # so x needs the second moment (q* - sigma_b2) / sigma_w2.
    q = theory.q_star(activation, sigma_w2, sigma_b2)
    scale = 1.0
    if math.isfinite(q) and q > sigma_b2 and sigma_w2 > 0:
        scale = math.sqrt((q - sigma_b2) / sigma_w2)
    x = np.random.default_rng([seed, 3]).standard_normal(width) * scale
    j = net.jacobian_norms(x, singular_values_at=config["at"], n_threads=n_threads)
    return {f"sv_{a}": np.sort(np.asarray(j.singular_values[a], dtype=np.float64))[::-1]
            for a in config["at"]}


def jacobian_spectra(*, activation: str = "tanh", init: str = "orthogonal",
                     sigma_w2: float | None = None, sigma_b2: float = 0.0, depth: int = 64,
                     width: int = 128, at: Sequence[int] = (1, 4, 16, 64), seed: int = 0,
                     dtype: str = "float64", cache: Any = True,
                     scheduler: Any = None) -> Results:
    """Singular values of the input-output Jacobian ``d h_l / d h_0`` at several depths
    (needs ``Chain.jacobian_norms``).

    ``sigma_w2=None`` takes the critical weight variance of the activation
    (:func:`pyjac.theory.critical_sigma_w2`); the chain is linearised at a standard
    normal input from ``numpy.random.default_rng([seed, 3])``, scaled so that the
    pre-activations start at the fixed point ``q*`` of the length map. ``cache`` and
    ``scheduler`` (a Dask cluster, which then runs the one task) work as in
    :func:`pyjac.sweep`.

    Returns
    -------
    Results
        Columns ``activation``, ``init``, ``sigma_w2``, ``sigma_b2``, ``width``,
        ``at_depth``, ``index`` and ``singular_value`` (descending within a depth).
    """
    from .. import theory
    if sigma_w2 is None:
        sigma_w2 = theory.critical_sigma_w2(activation, sigma_b2)
    sigma_w2 = check_real(sigma_w2, "sigma_w2", nonneg=True)
    at_list = [check_int(a, f"at[{i}]", minimum=1) for i, a in enumerate(_as_list(at, "at"))]
    depth = check_int(depth, "depth", minimum=max(at_list))
    config = {"activation": activation, "init": init, "sigma_w2": sigma_w2,
              "sigma_b2": sigma_b2, "depth": depth, "width": width, "at": at_list,
              "dtype": dtype}
    directory = _cache_dir(cache)
    scheduler = check_scheduler(scheduler)
    runs, _, _ = run_cached(_spectra_run, [config], [seed], kind="spectra",
                            directory=directory, n_jobs=None, progress=False, desc="",
                            scheduler=scheduler)
    hit = runs[0]
    cols: dict[str, list[Any]] = {k: [] for k in (
        "activation", "init", "sigma_w2", "sigma_b2", "width", "at_depth", "index",
        "singular_value")}
    for a in at_list:
        sv = hit[f"sv_{a}"]
        n = sv.shape[0]
        append_rows(cols, n, activation=activation, init=init, sigma_w2=sigma_w2,
                    sigma_b2=sigma_b2, width=width, at_depth=a, index=np.arange(n),
                    singular_value=sv)
    return Results({k: np.concatenate(v) for k, v in cols.items()}, {"kind": "spectra"})
