"""Threading: identical numbers at any thread count, and the GIL released while computing."""

import threading
import time

import numpy as np
import pytest

import pyjac


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
