"""Sweeps on a Dask cluster: a real LocalCluster of 2 worker processes, 1 thread each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pyjac
from pyjac.experiments import jacobian_spectra, rnn_sweep

distributed = pytest.importorskip("distributed")

SWEEP = dict(activation=["tanh", "relu"], sigma_w2=[1.0, 2.0], depth=12, width=16, batch=4,
             seeds=2, progress=False)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as c:
        yield c


def _columns_identical(a, b):
    assert a.columns == b.columns
    for name in a.columns:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), name  # bit for bit, NaN included
        else:
            assert (x == y).all(), name


def test_sweep_on_a_cluster_matches_a_local_run_bit_for_bit(client):
    local = pyjac.sweep(**SWEEP, cache=False)
    remote = pyjac.sweep(**SWEEP, cache=False, scheduler=client)
    _columns_identical(local, remote)
    assert remote.meta["computed_runs"] == 8
    assert remote.meta["scheduler"] == client.scheduler.address


def test_sweep_takes_a_scheduler_address(client):
    local = pyjac.sweep(**SWEEP, cache=False)
    remote = pyjac.sweep(**SWEEP, cache=False, scheduler=client.scheduler.address)
    _columns_identical(local, remote)


def test_rnn_sweep_and_spectra_on_a_cluster_match_local_runs(client):
    kw = dict(cell=["tanh", "lstm"], spectral_radius=[0.9, 1.1], width=8, steps=20, seeds=2,
              cache=False, progress=False)
    _columns_identical(rnn_sweep(**kw), rnn_sweep(**kw, scheduler=client))
    kw = dict(depth=16, width=12, at=[1, 4, 16], cache=False)
    _columns_identical(jacobian_spectra(**kw), jacobian_spectra(**kw, scheduler=client))


def test_the_cache_is_shared_between_local_and_cluster_runs(client, tmp_path):
    first = pyjac.sweep(**SWEEP, cache=tmp_path, scheduler=client)
    assert first.meta["computed_runs"] == 8
    again_local = pyjac.sweep(**SWEEP, cache=tmp_path)
    assert again_local.meta["computed_runs"] == 0 and again_local.meta["cached_runs"] == 8
    _columns_identical(first, again_local)
    more = dict(SWEEP, seeds=3)  # only the new seed's 4 runs go to the cluster
    grown = pyjac.sweep(**more, cache=tmp_path, scheduler=client)
    assert grown.meta["computed_runs"] == 4 and grown.meta["cached_runs"] == 8
    _columns_identical(grown, pyjac.sweep(**more, cache=False))


def test_a_worker_killed_mid_sweep_is_survived(client, tmp_path):
    kw = dict(activation="tanh", sigma_w2=[0.8, 1.0, 1.2, 1.5, 2.0, 3.0], depth=200,
              width=192, batch=32, seeds=2, progress=False)
    pids = client.run(os.getpid)
    killed = []

    def kill_one_worker_once_work_is_done():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = len(list(tmp_path.glob("*.npz")))
            if done >= 1:
                if done < 12:  # tasks still to come: the kill is mid-sweep
                    victim = sorted(pids.values())[0]
                    os.kill(victim, signal.SIGKILL)
                    killed.append((victim, done))
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_one_worker_once_work_is_done)
    watcher.start()
    remote = pyjac.sweep(**kw, cache=tmp_path, scheduler=client)
    watcher.join()
    assert killed, "the sweep finished before a worker could be killed"
    assert remote.meta["computed_runs"] == 12
    _columns_identical(remote, pyjac.sweep(**kw, cache=False))
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker


def test_bad_schedulers_are_refused_naming_the_argument(client):
    with pytest.raises(TypeError, match="scheduler: expected a dask.distributed.Client"):
        pyjac.sweep(**SWEEP, cache=False, scheduler=42)
    with pytest.raises(ValueError, match="scheduler: expected a scheduler address"):
        pyjac.sweep(**SWEEP, cache=False, scheduler="localhost")
    with pytest.raises(ValueError, match="n_jobs: not used with scheduler"):
        pyjac.sweep(**SWEEP, cache=False, scheduler=client, n_jobs=2)
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(ConnectionError, match="scheduler: cannot connect"):
        pyjac.sweep(**SWEEP, cache=False, scheduler="tcp://127.0.0.1:1")


def test_the_cli_runs_a_sweep_on_a_scheduler(client, tmp_path):
    from pyjac.cli import main

    out = tmp_path / "res.npz"
    assert main(["sweep", "--activation", "tanh", "--depth", "8", "--width", "8",
                 "--seeds", "2", "--no-cache", "--no-progress", "--scheduler",
                 client.scheduler.address, "--out", str(out)]) == 0
    local = pyjac.sweep(activation="tanh", depth=8, width=8, seeds=2, cache=False,
                        progress=False)
    loaded = pyjac.Results.load(out)
    np.testing.assert_array_equal(loaded["grad_norm"], local["grad_norm"])
    assert main(["sweep", "--depth", "8", "--jobs", "2", "--scheduler",
                 client.scheduler.address, "--out", str(out)]) == 2
    assert main(["sweep", "--depth", "8", "--scheduler", "nowhere", "--out", str(out)]) == 2


_CTRL_C_SCRIPT = r"""
import os, signal, threading, time
import distributed, pyjac

if __name__ == "__main__":
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        fired = []
        def fire():
            fired.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Timer(2.0, fire).start()
        try:
            pyjac.sweep(activation=["tanh", "relu"], sigma_w2=[0.5, 1, 2, 3], depth=400,
                        width=256, batch=64, seeds=4, cache=False, progress=False,
                        scheduler=client)
            print("finished", flush=True)
        except KeyboardInterrupt:
            print(f"interrupted {time.perf_counter() - fired[0]:.3f}", flush=True)
        deadline = time.monotonic() + 10
        left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        print(f"tasks left {left}", flush=True)
"""


def test_ctrl_c_cancels_the_clusters_tasks(tmp_path):
    script = tmp_path / "ctrl_c.py"
    script.write_text(_CTRL_C_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300).stdout.split("\n")
    kind = [line.split() for line in out if line.startswith(("interrupted", "finished"))]
    assert kind and kind[0][0] == "interrupted", out
    assert float(kind[0][1]) < 0.5, out
    assert "tasks left 0" in out, out


@pytest.mark.parametrize("name", ["fig1_gradient_vs_depth", "fig4_rnn_gradient_vs_time",
                                  "fig5_jacobian_spectra"])
def test_figures_drawn_on_a_cluster_say_what_local_ones_say(client, name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyjac import figures

    build = getattr(figures, name)
    fig_local, local = build(quick=True, cache=False, progress=False)
    fig_remote, remote = build(quick=True, cache=False, progress=False, scheduler=client)
    plt.close(fig_local)
    plt.close(fig_remote)
    assert remote == local  # caption and table come from the measured numbers


def test_reproduce_draws_its_figures_on_a_scheduler(client, tmp_path):
    from pyjac.cli import main

    out = tmp_path / "figures"
    assert main(["reproduce", "--quick", "--only", "fig4", "--formats", "png", "--no-cache",
                 "--no-progress", "--scheduler", client.scheduler.address,
                 "--out", str(out)]) == 0
    assert (out / "fig4_rnn_gradient_vs_time.png").stat().st_size > 0
    assert "fig4_rnn_gradient_vs_time" in (out / "report.md").read_text()


def test_reproduce_says_which_figures_run_here(client, tmp_path, capsys):
    import inspect

    from pyjac import figures
    from pyjac.cli import main

    # Exactly the figures whose builders pass the scheduler on are marked as sweeps.
    for spec in figures.FIGURES:
        passes_it = "scheduler=scheduler" in inspect.getsource(spec.build)
        assert spec.sweep == passes_it, spec.name
    out = tmp_path / "figures"
    assert main(["reproduce", "--quick", "--only", "fig10", "--formats", "png", "--no-cache",
                 "--no-progress", "--scheduler", client.scheduler.address,
                 "--out", str(out)]) == 0
    assert "fig10_mixed_precision: runs on this machine" in capsys.readouterr().out
