"""Chains that do not store their weights: Chain(..., store_weights=False).

Every layer is drawn again from (seed, l) when a pass needs it, and the backward pass
recomputes activations between checkpoints. The checks: the drawn weights are exactly
the stored chain's; every measurement agrees with the independent numpy reference and
with the stored chain bit for bit (the same arithmetic on the same numbers, whatever
the checkpoint interval and thread count); memory stays at one layer's parameters.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import ACTIVATIONS
from reference import assert_matches, forward_backward

import pyjac

INITS = ("gaussian", "xavier", "xavier_uniform", "he", "orthogonal", "identity")
FIELDS = ("grad_norm", "log_grad_norm", "activation_norm", "weight_grad_norm",
          "log_weight_grad_norm", "bias_grad_norm", "per_example_weight_grad_norm",
          "derivative_mean", "saturated_fraction", "dead_fraction", "output")


def _pair(depth, width, **kw):
    kw.setdefault("dtype", "float64")
    return (pyjac.Chain(depth, width, **kw),
            pyjac.Chain(depth, width, store_weights=False, **kw))


def _same(a, b, fields=FIELDS, rtol=0.0):
    """Bit for bit (rtol 0), or to rounding where the stored chain takes its tiled pass
    (chains without norm layers), which sums in another order than the layer-at-a-time
    pass that a chain without stored weights takes."""
    for name in fields:
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        if rtol:
            np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=rtol, atol=0,
                                       err_msg=name)
        else:
            assert np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True), name
    if rtol and a.loss is not None:
        assert b.loss == pytest.approx(a.loss, rel=rtol)
    else:
        assert a.loss == b.loss
    assert a.first_nonfinite_layer == b.first_nonfinite_layer


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_drawn_weights_are_the_stored_chains(init, dtype):
    widths = [7, 13, 13, 5, 9]
    stored, drawn = _pair(4, widths, init=init, bias_std=0.3, seed=11, dtype=dtype)
    assert len(drawn.weights) == 4
    for layer in range(4):
        assert np.array_equal(drawn.weights[layer], stored.weights[layer])
        assert np.array_equal(drawn.biases[layer], stored.biases[layer])
        assert drawn.weights[layer].dtype == np.dtype(dtype)
    assert np.array_equal(drawn.weights[-1], stored.weights[3])
    assert [w.shape for w in drawn.weights[1:3]] == [(13, 13), (5, 13)]
    with pytest.raises(IndexError):
        drawn.weights[4]
    drawn.weights[0][:] = 0  # a fresh array: the chain itself does not change
    assert np.array_equal(drawn.weights[0], stored.weights[0])


def test_large_layers_drawn_by_several_threads_match_the_stored_draw():
    # 300 x 300 = 90,000 entries: several chunks of the counter-based stream
    stored, drawn = _pair(2, 300, init="gaussian", seed=4, dtype="float32")
    assert np.array_equal(drawn.weights[1], stored.weights[1])
    stored, drawn = _pair(1, 300, init="xavier_uniform", seed=4, dtype="float32")
    assert np.array_equal(drawn.weights[0], stored.weights[0])


@pytest.mark.parametrize("init", ["gaussian", "xavier_uniform", "identity"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weight_tiles_drawn_where_used_give_the_stored_bits(init, dtype):
    # Layers big enough for a grid of GEMM tiles (3 x 4 forward, odd widths, a row of W
    # split between tiles mid-pair): the unstored pass draws each tile's block of W on
    # the thread that uses it, and must give the stored layer-at-a-time pass's bits at any
    # thread count, with and without checkpoints.
    widths = [301, 600, 257, 300]
    x = np.random.default_rng(5).standard_normal((200, 301)).astype(dtype)
    kw = dict(activation="tanh", init=init, bias_std=0.1, seed=2, norm="layernorm", dtype=dtype)
    stored = pyjac.Chain(3, widths, **kw).backprop(x, n_threads=2)
    for n_threads in (1, 2):
        for every in (None, 2):
            drawn = pyjac.Chain(3, widths, store_weights=False, checkpoint_every=every,
                                **kw).backprop(x, n_threads=n_threads)
            _same(stored, drawn)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm", [None, "layernorm", "batchnorm"])
@pytest.mark.parametrize("residual", [False, True])
def test_backprop_matches_the_numpy_reference(activation, norm, residual, rng):
    net = pyjac.Chain(9, 6, activation=activation, init="gaussian", gain=1.2, bias_std=0.2,
                      norm=norm, residual=residual, residual_scale=0.7, seed=2,
                      dtype="float64", store_weights=False, checkpoint_every=2)
    x = rng.standard_normal((4, 6))
    r = net.backprop(x)
    ref = forward_backward(list(net.weights), list(net.biases), net.activations, x,
                           residual=residual, scale=0.7, norm=norm)
    assert_matches(r, ref)


@pytest.mark.parametrize("checkpoint_every", [None, 1, 2, 3, 7, 16, 100])
@pytest.mark.parametrize("norm,residual", [(None, False), ("layernorm", True),
                                           ("batchnorm", False)])
def test_any_checkpoint_interval_gives_the_stored_chains_numbers(checkpoint_every, norm,
                                                                 residual, rng):
    stored, drawn = _pair(16, 12, activation="tanh", norm=norm, residual=residual,
                          bias_std=0.1, seed=8)
    drawn = pyjac.Chain(16, 12, activation="tanh", norm=norm, residual=residual,
                        bias_std=0.1, seed=8, dtype="float64", store_weights=False,
                        checkpoint_every=checkpoint_every)
    x = rng.standard_normal((5, 12))
    _same(stored.backprop(x), drawn.backprop(x))
    assert np.array_equal(stored.forward(x), drawn.forward(x))


@pytest.mark.parametrize("options", [
    dict(loss="mse", target="values"), dict(loss="cross_entropy", target="labels"),
    dict(grad_output="values"), dict(weight_grads=False),
    dict(grad_dtype="float16", loss_scale=1024.0), dict(grad_dtype="bfloat16"),
])
def test_losses_and_options_match_the_stored_chain(options, rng):
    stored, drawn = _pair(12, [10] * 12 + [4], activation="relu", seed=3, dtype="float32")
    x = rng.standard_normal((6, 10))
    kw = dict(options)
    for key in ("target", "grad_output"):
        if kw.get(key) == "values":
            kw[key] = rng.standard_normal((6, 4))
        elif kw.get(key) == "labels":
            kw[key] = rng.integers(0, 4, 6)
    a, b = stored.backprop(x, **kw), drawn.backprop(x, **kw)
    _same(a, b, rtol=1e-5)
    for name in ("underflow_count", "overflow_count", "zero_fraction"):
        x1, x2 = getattr(a, name), getattr(b, name)
        assert (x1 is None and x2 is None) or np.array_equal(x1, x2), name


def test_jacobian_measurements_match_the_stored_chain(rng):
    stored, drawn = _pair(20, 16, activation="tanh", init="orthogonal", bias_std=0.05,
                          seed=6, norm="layernorm")
    x = rng.standard_normal(16)
    assert np.array_equal(stored.jacobian(x), drawn.jacobian(x))
    assert np.array_equal(stored.jacobian(x, depth=7), drawn.jacobian(x, depth=7))
    a = stored.jacobian_norms(x, singular_values_at=[5, 20])
    b = drawn.jacobian_norms(x, singular_values_at=[5, 20])
    assert np.array_equal(a.log_spectral_norm, b.log_spectral_norm)
    assert np.array_equal(a.singular_values[20], b.singular_values[20])
    assert np.array_equal(stored.lyapunov_exponents(x, k=4), drawn.lyapunov_exponents(x, k=4))
    for per_layer in (False, True):
        s1 = stored.spectral_norm(x, per_layer=per_layer, tol=1e-10)
        s2 = drawn.spectral_norm(x, per_layer=per_layer, tol=1e-10)
        assert np.array_equal(s1.log_value, s2.log_value)
    plain_stored, plain_drawn = _pair(20, 16, activation="tanh", seed=6)
    # without norm layers the stored chain takes the fused vector pass: a different
    # summation order, so agreement to rounding, not bit for bit
    np.testing.assert_allclose(plain_drawn.spectral_norm(x, tol=1e-12).log_value,
                               plain_stored.spectral_norm(x, tol=1e-12).log_value, rtol=1e-9)


def test_thread_counts_give_identical_numbers(rng):
    net = pyjac.Chain(30, 200, activation="tanh", seed=1, store_weights=False)
    x = rng.standard_normal((16, 200))
    one, every = net.backprop(x, n_threads=1), net.backprop(x, n_threads=-1)
    _same(one, every)


def test_concurrent_calls_give_the_serial_numbers(rng):
    net = pyjac.Chain(40, 64, activation="relu", seed=9, store_weights=False)
    xs = [rng.standard_normal((8, 64)) for _ in range(4)]
    serial = [net.backprop(x) for x in xs]
    results = [None] * 4

    def run(i):
        results[i] = net.backprop(xs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results):
        _same(a, b)


def test_deep_vanishing_chain_keeps_exact_logs():
    # 2000 sigmoid layers: the gradient falls far below float64 (about 1e-1300), and
    # the log norms stay exact, as for the stored chain
    stored, drawn = _pair(2000, 8, activation="sigmoid", init="xavier", seed=0)
    x = np.ones((2, 8))
    a, b = stored.backprop(x), drawn.backprop(x)
    _same(a, b)
    assert b.log_grad_norm[0] < -2000 and np.isfinite(b.log_grad_norm).all()
    assert b.grad_norm[0] == 0.0 and b.first_underflow_layer is not None


def test_exploding_chain_reports_where_it_went_nonfinite():
    stored, drawn = _pair(400, 16, activation="linear", init="gaussian", gain=40.0, seed=0)
    x = np.ones((2, 16))
    a, b = stored.backprop(x), drawn.backprop(x)
    assert a.first_nonfinite_layer is not None
    assert (a.first_nonfinite_layer, a.first_nonfinite_stage) == (
        b.first_nonfinite_layer, b.first_nonfinite_stage)
    np.testing.assert_array_equal(a.activation_norm, b.activation_norm)


def test_errors_name_the_argument(rng):
    net = pyjac.Chain(5, 8, store_weights=False)
    x = rng.standard_normal((3, 8))
    with pytest.raises(ValueError, match="keep_grads"):
        net.backprop(x, keep_grads=True)
    with pytest.raises(ValueError, match="model: needs a chain that stores its weights"):
        pyjac.train(net, x, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="checkpoint_every"):
        pyjac.Chain(5, 8, store_weights=False, checkpoint_every=0)
    with pytest.raises(TypeError, match="store_weights"):
        pyjac.Chain(5, 8, store_weights="no")
    with pytest.raises(ValueError, match="x: expected shape"):
        net.backprop(rng.standard_normal((3, 9)))
    assert "store_weights=False" in repr(net)
    assert net.store_weights is False and net.checkpoint_every is None
    assert pyjac.Chain(5, 8).checkpoint_every is None


def test_memory_is_checked_up_front_and_names_the_mode_that_fits():
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(MemoryError, match="with store_weights=False it would hold one"):
        pyjac.Chain(10**6, 2048)
    net = pyjac.Chain(10**6, 2048, store_weights=False)  # 16 TB of weights, not stored
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 100 * 2**20
    assert net.depth == 10**6 and len(net.weights) == 10**6
    assert net.weights[123_456].shape == (2048, 2048)
    with pytest.raises(MemoryError, match="depth, width"):
        pyjac.Chain(10**9, 8, store_weights=False)  # the per-layer records alone
    with pytest.raises(MemoryError, match="backprop on a batch"):
        pyjac.Chain(10**6, 100, store_weights=False).backprop(
            np.zeros((16_000, 100), dtype=np.float32))


_PEAK_SCRIPT = r"""
import sys
import numpy as np
import pyjac

def peak_kib():
    # VmHWM belongs to this process image (getrusage's ru_maxrss would carry the
    # parent's peak over the fork and exec)
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1])

store = sys.argv[1] == "stored"
x = np.random.default_rng(0).standard_normal((8, 512)).astype(np.float32)
pyjac.Chain(2, 512, store_weights=store).backprop(x)  # the libraries' own buffers
base = peak_kib()
net = pyjac.Chain(300, 512, activation="tanh", seed=0, store_weights=store)
r = net.backprop(x)
print(peak_kib() - base, float(r.log_grad_norm[0]))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM (Linux)")
def test_peak_memory_is_one_layer_not_the_whole_chain(tmp_path):
    script = tmp_path / "peak.py"
    script.write_text(_PEAK_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = {mode: subprocess.run([sys.executable, str(script), mode], capture_output=True,
                                text=True, check=True, env=env, timeout=300).stdout.split()
           for mode in ("stored", "unstored")}
    stored_kib, unstored_kib = int(out["stored"][0]), int(out["unstored"][0])
    weights_kib = 300 * 512 * 512 * 4 // 1024  # 300 MiB of float32 weights
    assert stored_kib > 0.9 * weights_kib, out
    assert unstored_kib < 0.1 * weights_kib, out  # one layer is 1 MiB
    assert float(out["stored"][1]) == pytest.approx(float(out["unstored"][1]), rel=1e-12)


def test_pickled_chains_draw_the_same_weights(rng):
    import pickle

    net = pyjac.Chain(12, 10, activation="tanh", seed=7, store_weights=False,
                      checkpoint_every=3)
    back = pickle.loads(pickle.dumps(net))
    assert back.store_weights is False and back.checkpoint_every == 3
    assert np.array_equal(back.weights[5], net.weights[5])
    x = rng.standard_normal((3, 10))
    _same(net.backprop(x), back.backprop(x))
    stored = pickle.loads(pickle.dumps(pyjac.Chain(3, 4)))
    assert stored.store_weights and len(stored.weights) == 3


def test_automatic_checkpoints_keep_every_layer_when_that_costs_no_more_than_a_layer():
    spec = pyjac.Chain(100, 2048, store_weights=False)._spec
    assert spec.checkpoint_interval(8) == 1  # 100 * 8 * 2048 <= 2048**2: keep them all
    assert spec.checkpoint_interval(64) == 10  # beyond that: about sqrt(depth)
    assert pyjac.Chain(10_000, 2048, store_weights=False)._spec.checkpoint_interval(8) == 100
    given = pyjac.Chain(100, 2048, store_weights=False, checkpoint_every=4)
    assert given._spec.checkpoint_interval(8) == 4 and given.checkpoint_every == 4


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS (Linux)")
def test_a_wide_layer_drawn_whole_is_not_kept_after_the_call():
    # n_out < 256 makes the wide first layer one block of 76 MiB: drawn for the call and
    # released with it, not kept by the thread that drew it.
    def rss_mib():
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) / 1024

    net = pyjac.Chain(2, [200_000, 100, 10], store_weights=False, norm="layernorm")
    x = np.random.default_rng(0).standard_normal((8, 200_000)).astype(np.float32)
    before = rss_mib()
    net.backprop(x, n_threads=1)
    assert rss_mib() - before < 30
