"""Threading: identical numbers at any thread count, and the GIL released while computing."""

import os
import sys
import threading
import time

import numpy as np
import pytest

import pyjac
from pyjac import _core


@pytest.mark.parametrize(
    "depth,widths,batch",
    [(3, 1024, 3), (3, 128, 512), (4, [300, 700, 50, 700, 300], 40), (2, 2048, 64)],
)
def test_thread_count_does_not_change_any_number(depth, widths, batch):
    net = pyjac.Chain(depth, widths, activation="tanh", bias_std=0.1, seed=2)
    x = np.random.default_rng(0).standard_normal((batch, net.widths[0])).astype(np.float32)
    one = net.backprop(x, n_threads=1)
    two = net.backprop(x, n_threads=2)
    every = net.backprop(x)
    for other in (two, every):
        for name in ("grad_norm", "weight_grad_norm", "bias_grad_norm",
                     "per_example_weight_grad_norm", "activation_norm", "output"):
            np.testing.assert_array_equal(getattr(one, name), getattr(other, name),
                                          err_msg=name)


@pytest.mark.parametrize(
    "kwargs,batch,backprop_kwargs",
    [
        # Two row tiles per layer (small weights), and two column tiles (the smallest
        # split of larger ones).
        (dict(depth=5, width=64, activation="relu"), 16, dict(keep_grads=True)),
        (dict(depth=5, width=128, activation="relu"), 16, dict(keep_grads=True)),
        # Row and column tiles; residual; explicit dW tiles; float16 rounding counts.
        (dict(depth=3, width=320, activation="tanh", residual=True, residual_scale=0.5), 200,
         dict(keep_grads=True, grad_dtype="float16", loss_scale=1024.0)),
        # Widths that change from layer to layer, GELU (pre-activations kept), ghost norm.
        (dict(depth=4, width=[96, 300, 40, 700, 10], activation="gelu"), 48,
         dict(loss="cross_entropy")),
    ],
)
def test_thread_count_does_not_change_tiled_pass(kwargs, batch, backprop_kwargs):
    net = pyjac.Chain(**kwargs, bias_std=0.1, seed=5)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, net.widths[0])).astype(np.float32)
    if backprop_kwargs.get("loss") == "cross_entropy":
        backprop_kwargs = dict(backprop_kwargs, target=rng.integers(0, net.widths[-1], batch))
    one = net.backprop(x, n_threads=1, **backprop_kwargs)
    two = net.backprop(x, n_threads=2, **backprop_kwargs)
    names = ["grad_norm", "weight_grad_norm", "bias_grad_norm", "per_example_weight_grad_norm",
             "activation_norm", "derivative_mean", "dead_fraction", "output"]
    if backprop_kwargs.get("keep_grads"):
        names += ["weight_grads", "bias_grads"]
    if backprop_kwargs.get("grad_dtype"):
        names += ["underflow_count", "overflow_count", "zero_fraction", "dz_underflow_count"]
    for name in names:
        a, b = getattr(one, name), getattr(two, name)
        if isinstance(a, list):
            for ai, bi in zip(a, b):
                np.testing.assert_array_equal(ai, bi, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_gil_is_released_during_backprop():
    net = pyjac.Chain(40, 1024, activation="relu", seed=0)
    x = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)
    t0 = time.perf_counter()
    net.backprop(x, n_threads=1)
    duration = time.perf_counter() - t0

    stamps = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0.001)

    side = threading.Thread(target=ticker)
    side.start()
    time.sleep(0.01)
    start = time.perf_counter()
    net.backprop(x, n_threads=1)
    end = time.perf_counter()
    stop.set()
    side.join()
    inside = [t for t in stamps if start <= t <= end]
    # With the GIL held, the side thread could not tick at all during the call.
    assert len(inside) >= 3, (duration, len(inside))
    gaps = np.diff([start, *inside, end])
    assert gaps.max() < 0.5 * (end - start)


def test_the_short_openmp_spin_is_set_for_pyjac_alone_and_yields_to_the_user():
    # pyjac sets GOMP_SPINCOUNT only while its extension loads libgomp, and never over a
    # user's OMP_WAIT_POLICY or GOMP_SPINCOUNT.
    import subprocess

    code = ("import os, pyjac; print(os.environ.get('GOMP_SPINCOUNT'), "
            "os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["None", "None"]  # restored after loading
    out = subprocess.run([sys.executable, "-c", code], env={**env, "GOMP_SPINCOUNT": "5"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["5", "None"]
    out = subprocess.run([sys.executable, "-c", code],
                         env={**env, "OMP_WAIT_POLICY": "passive"}, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["None", "passive"]


@pytest.mark.skipif(not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
                    reason="reads /proc; needs two cores")
def test_a_core_kept_busy_by_another_process_is_left_to_it(rng):
    # n_threads=None takes the cores other processes leave free. Beside a process that
    # spins on one core, pyjac must see it (from the kernel's count of running tasks) and
    # still give the numbers of one thread and of all threads.
    import subprocess

    net = pyjac.Chain(30, 32, activation="tanh", seed=3)
    x = rng.standard_normal((8, 32))
    one = net.backprop(x, n_threads=1)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        seen = []
        for _ in range(20):
            seen.append(_core.busy_cores_elsewhere())
            time.sleep(0.01)
        r = net.backprop(x)
    finally:
        busy.kill()
        busy.wait()
    assert max(seen) >= 1
    assert 0 <= min(seen) <= os.cpu_count()
    np.testing.assert_array_equal(r.grad_norm, one.grad_norm)
    np.testing.assert_array_equal(r.weight_grad_norm, one.weight_grad_norm)
