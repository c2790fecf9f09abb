"""Running a sweep: one backprop per configuration and seed, on a process pool, with
progress, Ctrl-C and the cache; and the growth rate of its per-layer measurements."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from numbers import Integral
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._progress import Progress
from .._validation import check_bool
from .cache import _cache_dir, _cache_read, _cache_write, config_hash
from .distributed import check_scheduler, run_on_cluster
from .grid import _WEIGHT_COLUMNS, CONFIG_COLUMNS, LAYER_COLUMNS, _configs, _seeds
from .results import Results


def run_inputs(config: Mapping[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The input ``x`` and the ``grad_output`` a sweep run uses (``None`` for a loss).

    Both come from ``numpy.random.default_rng([seed, 1])``: first ``x``, standard normal
    of shape ``(batch, width)`` times ``input_scale``, then (for ``loss="random"``) a
    standard normal ``dL/dh_L`` of the same shape. The weights come from
    ``Chain(..., seed=seed)``.
    """
    data = np.random.default_rng([int(seed), 1])
    shape = (int(config["batch"]), int(config["width"]))
    x = data.standard_normal(shape) * float(config["input_scale"])
    grad_output = data.standard_normal(shape) if config["loss"] == "random" else None
    return x, grad_output


def _build_chain(config: Mapping[str, Any], seed: int):
    from ..chain import Chain

    return Chain(
        int(config["depth"]), int(config["width"]), activation=config["activation"],
        init=config["init"], gain=float(config["gain"]),
        bias_std=math.sqrt(float(config["sigma_b2"])), residual=bool(config["residual"]),
        residual_scale=float(config["residual_scale"]),
        norm=None if config["norm"] == "none" else config["norm"], seed=int(seed),
        dtype=config["dtype"])


def _run_one(config: Mapping[str, Any], seed: int, n_threads: int) -> dict[str, np.ndarray]:
    """One chain, one backprop: the per-layer measurements as float64 arrays (depth+1,)."""
    net = _build_chain(config, seed)
    x, grad_output = run_inputs(config, seed)
    if grad_output is None:
        r = net.backprop(x, n_threads=n_threads)
    else:
        r = net.backprop(x, grad_output=grad_output, n_threads=n_threads)
    nan = np.array([np.nan])
    out = {"grad_norm": r.grad_norm, "log_grad_norm": r.log_grad_norm,
           "activation_norm": r.activation_norm}
    for name in _WEIGHT_COLUMNS:
        out[name] = np.concatenate([nan, getattr(r, name)])
    out["first_nonfinite_layer"] = np.array(
        -1 if r.first_nonfinite_layer is None else r.first_nonfinite_layer)
    out["loss_value"] = np.array(np.nan if r.loss is None else r.loss)
    return {k: np.asarray(v, dtype=np.float64) if k != "first_nonfinite_layer"
            else np.asarray(v, dtype=np.int64) for k, v in out.items()}


def _theory(config: Mapping[str, Any]) -> np.ndarray:
    """Mean-field ``ln(||dL/dh_l|| / ||dL/dh_L||)``, NaN where the theory does not apply."""
    from .. import theory

    depth = int(config["depth"])
    nan = np.full(depth + 1, np.nan)
    if config["norm"] != "none" or config["init"] == "identity":
        return nan
    try:
        with np.errstate(all="ignore"):
            pred = theory.predicted_log_grad_norm(
                config["activation"], float(config["sigma_w2"]), float(config["sigma_b2"]),
                depth, bool(config["residual"]), float(config["residual_scale"]),
                input_second_moment=float(config["input_scale"]) ** 2,
                width=int(config["width"]), loss=str(config["loss"]))
    except (ValueError, ArithmeticError):
        return nan
    return np.asarray(pred, dtype=np.float64)


# --------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------
def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _worker_init() -> None:  # pragma: no cover - runs in the pool's processes
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Ctrl-C reaches the whole process group: the parent alone answers it (and stops
    # the workers), so that workers neither print tracebacks nor half-finish tasks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _worker(fn: Callable[..., Any], args: tuple[Any, ...], n_threads: int) -> Any:
    return fn(*args, n_threads)


def _n_jobs(n_jobs: Any, n_tasks: int) -> int:
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, Integral):
        raise TypeError(f"n_jobs: expected an integer or None, got {type(n_jobs).__name__}")
    n_jobs = int(n_jobs)
    if n_jobs == -1:
        n_jobs = _cpu_count()
    if n_jobs < 1:
        raise ValueError(f"n_jobs: must be a positive count, -1 or None, got {n_jobs}")
    return max(1, min(n_jobs, n_tasks))


def execute(fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], n_jobs: int,
            progress: Progress, on_result: Callable[[int, Any], None],
            scheduler: Any = None) -> None:
    """``fn(*task, n_threads)`` for every task, here, in a process pool of ``n_jobs``, or
    on a Dask ``scheduler``; ``on_result(i, value)`` in this process as each finishes.

    ``fn`` must give the same numbers at any ``n_threads``: that is what makes the three
    ways of running interchangeable.
    """
    if scheduler is not None:
        run_on_cluster(scheduler, fn, tasks, progress, on_result)
        return
    if n_jobs == 1 or len(tasks) < 2:
        for i, task in enumerate(tasks):
            on_result(i, fn(*task, -1))
            progress.update()
        return
    import multiprocessing as mp

    threads = max(1, _cpu_count() // n_jobs)
    # "spawn": a forked child would inherit the parent's OpenMP thread pool in a broken
    # state (libgomp is not fork-safe once its threads have run).
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx, initializer=_worker_init)
    try:
        # The workers start during the submits: SIGINT stays blocked meanwhile, so that
        # they inherit the mask (a worker still importing would otherwise die of Ctrl-C
        # and break the pool); a Ctrl-C then arrives here when it is unblocked.
        with _sigint_blocked():
            futures = {pool.submit(_worker, fn, tuple(task), threads): i
                       for i, task in enumerate(tasks)}
        for fut in as_completed(futures):
            on_result(futures[fut], fut.result())
            progress.update()
    except BaseException:
        # Ctrl-C (or any error): drop what is queued and stop the workers now, rather
        # than wait for every running task as the executor's own exit would.
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def run_cached(fn: Callable[..., Any], configs: Sequence[dict[str, Any]], seeds: Sequence[int],
               *, kind: str, directory: Path | None, n_jobs: Any, progress: bool | None,
               desc: str, scheduler: Any, quiet_up_to: int = 0
               ) -> tuple[list[dict[str, np.ndarray]], int, int]:
    """``fn(config, seed, n_threads)`` for every configuration and seed (seeds varying
    fastest), each read from the cache when it is there, else computed (see
    :func:`execute`) and written to the cache as it finishes.

    ``progress=None`` shows a bar when stderr is a terminal and more than ``quiet_up_to``
    runs are to be computed. Returns the runs in order, how many were computed, and the
    number of local processes used.
    """
    tasks = [(config, seed) for config in configs for seed in seeds]
    keys = [config_hash(config, seed, kind=kind) for config, seed in tasks]
    runs = [_cache_read(directory, key) for key in keys]
    todo = [i for i, run in enumerate(runs) if run is None]
    jobs = _n_jobs(n_jobs, len(todo))
    show = (sys.stderr.isatty() and len(todo) > quiet_up_to) if progress is None \
        else bool(progress)
    bar = Progress(len(todo), desc, show)

    def store(j: int, arrays: dict[str, np.ndarray]) -> None:
        runs[todo[j]] = arrays
        _cache_write(directory, keys[todo[j]], arrays)

    try:
        execute(fn, [tasks[i] for i in todo], jobs, bar, store, scheduler)
    finally:
        bar.close()
    return runs, len(todo), jobs  # type: ignore[return-value]


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not \
            threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=1.0)
        if proc.is_alive():
            proc.kill()


def sweep(
    *,
    activation: Any = "relu",
    init: Any = None,
    gain: Any = None,
    sigma_w2: Any = None,
    sigma_b2: Any = 0.0,
    depth: Any = 50,
    width: Any = 128,
    residual: Any = False,
    residual_scale: Any = 1.0,
    norm: Any = None,
    seeds: Any = 1,
    batch: Any = 16,
    input_scale: Any = 1.0,
    loss: Any = "random",
    dtype: Any = "float64",
    theory: bool = True,
    n_jobs: int | None = None,
    cache: Any = True,
    progress: bool | None = None,
    scheduler: Any = None,
) -> Results:
    """Measure per-layer gradients over a grid of chain configurations and seeds.

    Every argument from ``activation`` to ``dtype`` takes one value or a list of values;
    the grid is their Cartesian product (in argument order, the last varying fastest).
    Each configuration runs once per seed: ``Chain(depth, width, activation=...,
    init=..., gain=..., bias_std=sqrt(sigma_b2), residual=..., residual_scale=...,
    norm=..., seed=seed, dtype=...)`` and one :meth:`~pyjac.Chain.backprop` on the
    inputs of :func:`run_inputs`.

    Parameters
    ----------
    activation : str or list, default "relu"
        Names from :data:`pyjac.ACTIVATIONS`.
    init : str or list, optional
        Weight init (:data:`pyjac.INITS`); default "he", or "gaussian" when ``sigma_w2``
        is given.
    gain : float or list, optional
        Multiplies the initial weights (1 when None).
    sigma_w2 : float or list, optional
        Weight variance times fan-in, the mean-field parameter: sets
        ``init="gaussian"`` (or "orthogonal" when asked for) and ``gain=sqrt(sigma_w2)``.
        Give ``gain`` or ``sigma_w2``, not both.
    sigma_b2 : float or list, default 0
        Bias variance (``bias_std = sqrt(sigma_b2)``).
    depth, width : int or list
        Layers and units per layer.
    residual : bool or list, default False
    residual_scale : float or list, default 1
    norm : {None, "layernorm", "batchnorm"} or list
    seeds : int or list of int, default 1
        A count ``n`` (seeds ``0..n-1``) or the seeds themselves.
    batch : int or list, default 16
        Examples in the input batch.
    input_scale : float or list, default 1
        Standard deviation of the Gaussian input entries.
    loss : {"random", "sum_squares"} or list, default "random"
        "random": ``dL/dh_L`` is a standard normal draw (pure backward propagation, the
        setting of mean-field theory); "sum_squares": ``L = 0.5 * ||h_L||^2``.
    dtype : {"float32", "float64"} or list, default "float64"
        float64 keeps the tiny gradients of deep vanishing chains representable.
    theory : bool, default True
        Fill ``theory_log_ratio`` with :func:`pyjac.theory.predicted_log_grad_norm`
        (NaN for normalised chains and identity init).
    n_jobs : int, optional
        None or 1: run the configurations one after another, each backprop using every
        core (OpenMP/BLAS inside the C++ core). ``k > 1`` (or -1 for one per core):
        a pool of ``k`` processes ("spawn"), each backprop with ``cores // k`` threads.
        Measured on the 2-core development machine (shared, so noisy), figure 1's 48
        runs took a median 19.5 s in-core against 23 s in a pool of 2, and small sweeps
        lose the pool's ~0.7 s start-up: hence the default.
    cache : bool or path, default True
        Where finished runs are kept, one file per configuration and seed, named by a
        hash of both (and of the pyjac version): True for :func:`default_cache_dir`,
        a directory, or False for no cache. Cached runs are not recomputed.
    progress : bool, optional
        Show a progress bar (tqdm when installed, else a line on stderr). None: when
        stderr is a terminal and more than 20 runs are to be computed.
    scheduler : dask.distributed.Client or str, optional
        Run on a Dask cluster (``pip install 'pyjac[distributed]'``): a ``Client``, or
        a scheduler address such as ``"tcp://host:8786"`` (connected for this call).
        Each configuration and seed is one task; each task uses its share of its
        worker host's cores (the cores divided by the worker threads on that host).
        The results are identical, bit for bit, to a local run; the cache stays on this
        machine, read before anything is submitted and written as tasks finish; Ctrl-C
        cancels the tasks left. Not combined with ``n_jobs``.

    Returns
    -------
    Results
        One row per configuration, seed and layer ``0..depth``; see :class:`Results`.
        ``meta`` records the arguments, the computed and cached run counts and the time.

    Raises
    ------
    ValueError, TypeError
        For a bad value, naming the argument (``"depth[2]: must be at least 1, got 0"``).
    """
    configs = _configs(activation, init, gain, sigma_w2, sigma_b2, depth, width, residual,
                       residual_scale, norm, batch, input_scale, loss, dtype)
    seed_list = _seeds(seeds)
    theory = check_bool(theory, "theory")
    directory = _cache_dir(cache)
    scheduler = check_scheduler(scheduler, n_jobs)
    start = time.perf_counter()

    runs, computed, jobs = run_cached(
        _run_one, configs, seed_list, kind="chain", directory=directory, n_jobs=n_jobs,
        progress=progress, desc="pyjac sweep", scheduler=scheduler, quiet_up_to=20)

    predictions = [_theory_cached(directory, c) if theory else None for c in configs]
    columns = _assemble(configs, seed_list, runs, predictions)
    meta = {"kind": "chain_sweep", "n_configs": len(configs), "seeds": seed_list,
            "computed_runs": computed, "cached_runs": len(runs) - computed,
            "n_jobs": jobs, "scheduler": _scheduler_name(scheduler),
            "seconds": round(time.perf_counter() - start, 3)}
    return Results(columns, meta)


def _scheduler_name(scheduler: Any) -> str | None:
    if scheduler is None or isinstance(scheduler, str):
        return scheduler
    return str(getattr(scheduler, "scheduler_info", lambda: {})().get("address", "dask"))


def _theory_cached(directory: Path | None, config: Mapping[str, Any]) -> np.ndarray:
    key = config_hash(config, None, kind="theory")
    hit = _cache_read(directory, key)
    if hit is not None and "theory_log_ratio" in hit:
        return hit["theory_log_ratio"]
    pred = _theory(config)
    _cache_write(directory, key, {"theory_log_ratio": pred})
    return pred


def _assemble(configs: list[dict[str, Any]], seeds: list[int],
              runs: Sequence[Mapping[str, np.ndarray]],
              predictions: list[np.ndarray | None]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (
        *CONFIG_COLUMNS, "config", "seed", "layer", *LAYER_COLUMNS, "theory_log_ratio",
        "first_nonfinite_layer", "loss_value")}
    i = 0
    for c_i, config in enumerate(configs):
        n = int(config["depth"]) + 1
        pred = predictions[c_i]
        for seed in seeds:
            run = runs[i]
            i += 1
            for k in CONFIG_COLUMNS:
                parts[k].append(np.full(n, config[k]))
            parts["config"].append(np.full(n, c_i, dtype=np.int64))
            parts["seed"].append(np.full(n, seed, dtype=np.int64))
            parts["layer"].append(np.arange(n, dtype=np.int64))
            for k in LAYER_COLUMNS:
                parts[k].append(np.asarray(run[k], dtype=np.float64))
            parts["theory_log_ratio"].append(np.full(n, np.nan) if pred is None else pred)
            parts["first_nonfinite_layer"].append(
                np.full(n, int(run["first_nonfinite_layer"]), dtype=np.int64))
            parts["loss_value"].append(np.full(n, float(run["loss_value"])))
    return {k: np.concatenate(v) for k, v in parts.items()}


# --------------------------------------------------------------------------------------
# Derived quantities
# --------------------------------------------------------------------------------------
def growth_rate(results: Results, value: str = "grad_norm", skip: int = 0) -> Results:
    """Per-layer log growth of a per-layer measurement, one row per configuration and seed.

    The rate is minus the least-squares slope of ``ln(value)`` against the layer index,
    over layers ``skip..depth``: positive when the gradient grows on its way back to the
    input (exploding, ``0.5 * ln(chi1) > 0`` in mean-field theory), negative when it
    vanishes. Runs with a non-finite or zero value get NaN.

    Returns
    -------
    Results
        The configuration columns, ``config``, ``seed`` and ``log_growth``.
    """
    cols = [c for c in (*CONFIG_COLUMNS, "config") if c in results]
    out: dict[str, list[Any]] = {c: [] for c in (*cols, "seed", "log_growth")}
    for _, part in results.groupby(*[c for c in ("config", "seed") if c in results]):
        keep = part["layer"] >= skip
        x = part["layer"][keep].astype(np.float64)
        log_column = f"log_{value}"
        if log_column in part:  # exact where the plain value underflows
            y = np.asarray(part[log_column][keep], dtype=np.float64)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.log(part[value][keep])
        if x.size < 2 or not np.isfinite(y).all():
            rate = np.nan
        else:
            xc = x - x.mean()
            rate = -float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))
        for c in cols:
            out[c].append(part[c][0])
        out["seed"].append(part["seed"][0] if "seed" in part else 0)
        out["log_growth"].append(rate)
    return Results({k: np.asarray(v) for k, v in out.items()}, results.meta)
