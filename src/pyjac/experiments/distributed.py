"""Running a sweep's tasks on a Dask cluster (the optional ``distributed`` extra).

Each (configuration, seed) is one Dask task; the client keeps the cache and the
progress bar, so that a cluster run stores and reuses exactly what a local run does.
The tasks run the same deterministic core calls as a local run, whatever the number of
threads a worker gives them, so the numbers are identical bit for bit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

from .._progress import Progress

_INSTALL_HINT = "pip install 'pyjac[distributed]' (dask.distributed)"


def _import_distributed(argument: str) -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError(f"{argument}: a Dask scheduler needs {_INSTALL_HINT}") from None
    return distributed


def check_scheduler(scheduler: Any, n_jobs: Any = None, argument: str = "scheduler") -> Any:
    """``scheduler`` as given when it is None, a ``dask.distributed.Client`` or an
    address such as ``"tcp://host:8786"``; a clear error otherwise."""
    if scheduler is None:
        return None
    if n_jobs is not None:
        raise ValueError(f"n_jobs: not used with {argument}= (the cluster's workers set "
                         f"the parallelism); give one of them, got n_jobs={n_jobs!r}")
    if isinstance(scheduler, (str, os.PathLike)):
        address = os.fspath(scheduler)
        if "://" not in address or address.split("://", 1)[1] == "":
            raise ValueError(f"{argument}: expected a scheduler address such as "
                             f"'tcp://host:8786', got {address!r}")
        _import_distributed(argument)
        return address
    distributed = _import_distributed(argument)
    if not isinstance(scheduler, distributed.Client):
        raise TypeError(f"{argument}: expected a dask.distributed.Client, an address such as "
                        f"'tcp://host:8786', or None, got {type(scheduler).__name__}")
    return scheduler


def connect(address: str, argument: str = "scheduler") -> Any:
    """A new ``dask.distributed.Client`` connected to ``address``; the caller closes it.

    It waits as long as Dask's ``distributed.comm.timeouts.connect`` setting (30 s unless
    configured) for a scheduler that is still starting."""
    distributed = _import_distributed(argument)
    try:
        return distributed.Client(address, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(f"{argument}: cannot connect to {address!r} ({exc})") from None


@contextlib.contextmanager
def client_for(scheduler: Any, argument: str = "scheduler") -> Iterator[Any]:
    """The Client to submit to: the caller's own, or one connected to an address for the
    ``with`` block only (a refused connection raises ConnectionError naming
    ``argument``)."""
    if not isinstance(scheduler, str):
        yield scheduler
        return
    client = connect(scheduler, argument)
    try:
        yield client
    finally:
        client.close()


def _threads_per_host(client: Any) -> dict[str, int]:
    """How many task slots the cluster's workers have on each host: a task's share of
    its host's cores is the cores divided by these slots."""
    slots: dict[str, int] = {}
    for info in client.scheduler_info().get("workers", {}).values():
        host = str(info.get("host", ""))
        slots[host] = slots.get(host, 0) + int(info.get("nthreads", 1) or 1)
    return slots


def _on_worker(fn: Callable[..., Any], args: Sequence[Any], host_slots: Mapping[str, int]
               ) -> tuple[str, Any]:  # pragma: no cover - runs in a Dask worker
    """One task on a worker, with its share of the worker host's cores; returns the
    worker's pyjac version beside the result so that the client can refuse a mix."""
    from distributed import get_worker

    from .. import __version__
    from .runner import _cpu_count

    worker = get_worker()
    host = worker.address.split("://", 1)[-1].rsplit(":", 1)[0]
    slots = host_slots.get(host) or int(getattr(worker.state, "nthreads", 1) or 1)
    return __version__, fn(*args, max(1, _cpu_count() // slots))


def run_on_cluster(scheduler: Any, fn: Callable[..., Any], tasks: Sequence[Sequence[Any]],
                   progress: Progress, on_result: Callable[[int, Any], None]) -> None:
    """``fn(*task, n_threads)`` for every task on the cluster; ``on_result(i, value)`` on
    the client as each finishes. Ctrl-C (or any error) cancels the futures left."""
    from .. import __version__

    distributed = _import_distributed("scheduler")
    with client_for(scheduler) as client:
        slots = _threads_per_host(client)
        futures = [client.submit(_on_worker, fn, tuple(task), slots, pure=False)
                   for task in tasks]
        index = {future.key: i for i, future in enumerate(futures)}
        try:
            for future in distributed.as_completed(futures, loop=client.loop):
                version, value = future.result()
                if version != __version__:
                    raise RuntimeError(
                        f"scheduler: a worker runs pyjac {version}, this process {__version__}; "
                        "results would not match a local run, so install the same version "
                        "on every worker")
                on_result(index[future.key], value)
                future.release()
                progress.update()
        except BaseException:
            client.cancel(futures)
            raise

