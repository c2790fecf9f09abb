"""Regression tests for the trust issue: no crash, no silent wrong number, nothing of the
caller's overwritten. Each test failed on the code before the fix it guards."""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import pytest
from reference import forward_backward

import pyjac
from pyjac import _core

# ---- training reads only the targets it was given ------------------------------------


def _reference_accuracy(net, x, y, loss):
    ref = forward_backward(net.weights, net.biases, net.activations, x)
    pred = ref["output"].argmax(axis=1)
    truth = y if loss == "cross_entropy" else np.asarray(y).argmax(axis=1)
    return float(np.mean(pred == truth))


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_train_reads_only_its_targets_and_reports_the_true_accuracy(loss):
    # lr so small that no float64 weight moves: every minibatch's accuracy is that of
    # the initial net, which numpy computes independently.
    rng = np.random.default_rng(0)
    n = 6000
    x = rng.standard_normal((n, 4))
    labels = rng.integers(0, 10, n)
    y = labels if loss == "cross_entropy" else np.eye(10)[labels]
    net = pyjac.Chain(1, [4, 10], activation="linear", dtype="float64", seed=3)
    expected = _reference_accuracy(net, x, y, loss)
    for _ in range(2):  # the same numbers every run
        h = pyjac.train(net, x, y, epochs=1, batch_size=256, lr=1e-300, loss=loss)
        assert h.accuracy[0] == pytest.approx(expected, abs=1e-12)
        assert h.accuracy[1] == pytest.approx(expected, abs=1e-12)


def test_train_on_sixty_thousand_examples_does_not_crash():
    rng = np.random.default_rng(1)
    net = pyjac.Chain(1, [4, 10], dtype="float64")
    h = pyjac.train(net, rng.standard_normal((60000, 4)), rng.integers(0, 10, 60000), epochs=1,
                    batch_size=256)
    assert np.isfinite(h.loss).all()


# ---- n_threads -----------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda n: pyjac.Chain(2, 8).backprop(np.ones((2, 8)), n_threads=n),
    lambda n: pyjac.Chain(2, 8).spectral_norm(np.ones(8), n_threads=n),
    lambda n: pyjac.spectral_norm(np.eye(3), n_threads=n),
    lambda n: pyjac.Recurrent(4).lyapunov_exponents(steps=5, n_threads=n),
    lambda n: pyjac.Recurrent(4).backprop(steps=3, n_threads=n),
    lambda n: pyjac.train(pyjac.Chain(1, [2, 2]), np.ones((4, 2)), np.zeros(4, int), n_threads=n),
])
@pytest.mark.parametrize("bad", [100000, 2**31 - 1])
def test_absurd_thread_counts_are_refused(call, bad):
    with pytest.raises(ValueError, match="n_threads"):
        call(bad)


@pytest.mark.parametrize("bad", [2.0, "2", True])
def test_thread_counts_must_be_integers(bad):
    with pytest.raises(TypeError, match="n_threads"):
        pyjac.Chain(2, 8).backprop(np.ones((2, 8)), n_threads=bad)


def test_thread_limit_is_sane():
    cores = os.cpu_count() or 1
    assert 64 <= _core.thread_limit() <= 1024
    assert _core.thread_limit() >= min(1024, 4 * cores)


# ---- nothing of the caller's is modified ---------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_weights_copies_so_training_leaves_the_callers_arrays(dtype):
    rng = np.random.default_rng(2)
    W = [rng.standard_normal((6, 4)).astype(dtype), rng.standard_normal((3, 6)).astype(dtype)]
    B = [np.zeros(6, dtype), np.zeros(3, dtype)]
    before = [w.copy() for w in W + B]
    net = pyjac.Chain.from_weights(W, B, activation="tanh")
    pyjac.train(net, rng.standard_normal((32, 4)), rng.integers(0, 3, 32), epochs=2, lr=0.5)
    for a, b in zip(W + B, before):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(net.weights[0], before[0])  # the chain's own copy trained


def test_from_weights_copy_false_shares_the_callers_arrays():
    W = [np.ones((3, 3), np.float32)]
    net = pyjac.Chain.from_weights(W, copy=False)
    assert net.weights[0] is W[0]
    with pytest.raises(TypeError, match="copy"):
        pyjac.Chain.from_weights(W, copy="no")


def test_recurrent_from_weights_copies():
    W = np.eye(4) * 0.5
    rnn = pyjac.Recurrent.from_weights(W)
    assert not np.shares_memory(rnn.W, W)
    rnn.W[0, 0] = 7.0
    assert W[0, 0] == 0.5
    shared = pyjac.Recurrent.from_weights(W, copy=False)
    assert np.shares_memory(shared.W, W)


# ---- files: never through a planted symlink ------------------------------------------

def _plant_symlinks(directory, victim, names):
    for name in names:
        os.symlink(victim, directory / name)


def test_results_save_never_follows_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    res = pyjac.sweep(depth=3, width=4, batch=2, cache=False, progress=False)
    out = tmp_path / "r.npz"
    # the names a predictable temporary file would have had
    _plant_symlinks(tmp_path, victim, ["r.npz.tmp", ".r.npz.tmp"])
    res.save(out, format="npz")
    assert victim.read_text() == "precious"
    back = pyjac.Results.load(out)
    np.testing.assert_array_equal(back["grad_norm"], res["grad_norm"])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_save_onto_a_directory_leaves_no_temporary_file(tmp_path):
    res = pyjac.sweep(depth=3, width=4, batch=2, cache=False, progress=False)
    target = tmp_path / "out.npz"
    target.mkdir()
    with pytest.raises(OSError):
        res.save(target, format="npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_cache_never_follows_a_symlink_and_detects_damage(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    cache = tmp_path / "cache"
    cache.mkdir()
    config = dict(activation="tanh", depth=3, width=4, batch=2)
    pyjac.sweep(**config, cache=cache, progress=False)
    keys = [p.stem for p in cache.glob("*.npz")]
    for p in cache.glob("*.npz"):
        p.unlink()
    # the names the cache's temporary files used to have
    _plant_symlinks(cache, victim, [f".{key}.{os.getpid()}.tmp" for key in keys])
    first = pyjac.sweep(**config, cache=cache, progress=False)
    assert victim.read_text() == "precious"
    entries = sorted(cache.glob("*.npz"))
    assert entries
    for entry in entries:  # flip one byte in the middle of each entry
        data = bytearray(entry.read_bytes())
        data[len(data) // 2] ^= 0xFF
        entry.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="damaged"):
        again = pyjac.sweep(**config, cache=cache, progress=False)
    np.testing.assert_array_equal(first["grad_norm"], again["grad_norm"])


# ---- float64 norms over the whole range ----------------------------------------------

def _linear_chain():
    return pyjac.Chain(2, 8, activation="linear", init="orthogonal", dtype="float64", seed=4)


@pytest.mark.parametrize("e", [-540, -300, 300, 520])
def test_gradient_norms_scale_exactly_with_the_gradient(e):
    # Every gradient norm of a linear chain is homogeneous in grad_output: scaling it by
    # 2^e scales each norm by exactly 2^e, which numpy's reference gives at e = 0.
    net = _linear_chain()
    rng = np.random.default_rng(5)
    x, g = rng.standard_normal((3, 8)), rng.standard_normal((3, 8))
    ref = forward_backward(net.weights, net.biases, net.activations, x, loss="grad_output",
                           grad_output=g)
    r = net.backprop(x, grad_output=g * 2.0**e)
    scale = 2.0**e
    for name in ("grad_norm", "weight_grad_norm", "bias_grad_norm",
                 "per_example_weight_grad_norm"):
        np.testing.assert_allclose(getattr(r, name) / scale, ref[name], rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("e", [-540, 520])
def test_activation_scale_does_not_break_per_example_norms(e):
    # ||dz_i|| ||h_i|| with h_i of size 2^520: the squares of h overflow, the norm does not.
    net = _linear_chain()
    x = np.ones((2, 8)) * 2.0**e
    r = net.backprop(x, grad_output=np.ones((2, 8)))
    # orthogonal layers keep ||h_i|| = sqrt(8) 2^e; dz_i = ones, ||dz_i|| = sqrt(8)
    np.testing.assert_allclose(r.per_example_weight_grad_norm, 8.0 * 2.0**e, rtol=1e-12)
    assert np.isfinite(r.weight_grad_norm).all()


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
def test_subnormal_inputs_give_finite_norms(activation):
    net = pyjac.Chain(2, 4, activation=activation, dtype="float64", seed=0)
    x = np.full((2, 4), 1e-310)
    r = net.backprop(x)
    ref = forward_backward(net.weights, net.biases, net.activations, x * 2.0**600)
    assert r.first_nonfinite_layer is None
    for name in ("weight_grad_norm", "bias_grad_norm", "grad_norm"):
        assert np.isfinite(getattr(r, name)).all(), name
    # The linear chain is homogeneous: dL/dh = h_L-like terms scale as |x| (subnormal
    # inputs keep ~44 bits, hence the tolerance); compare with the reference at a
    # representable scale.
    if activation == "linear":
        np.testing.assert_allclose(r.grad_norm * 2.0**600, ref["grad_norm"], rtol=1e-9)
        np.testing.assert_allclose(r.bias_grad_norm * 2.0**600, ref["bias_grad_norm"],
                                   rtol=1e-9)


@pytest.mark.parametrize("dtype,bad", [("float64", 1e-320), ("float32", 1e-46),
                                       ("float32", 1e39), ("float64", 1e308)])
def test_loss_scale_outside_the_dtypes_range_is_refused(dtype, bad):
    # 1e308 itself is finite, but its inverse, by which every norm is multiplied, is not
    # a normal float64.
    net = pyjac.Chain(2, 4, dtype=dtype)
    with pytest.raises(ValueError, match="loss_scale"):
        net.backprop(np.ones((2, 4)), loss_scale=bad)
    with pytest.raises(ValueError, match="loss_scale"):
        pyjac.train(net, np.ones((4, 4)), np.zeros(4, int), loss_scale=bad)


def test_spectral_norm_of_a_huge_matrix_is_exact_in_log():
    r = pyjac.spectral_norm(np.full((2, 4), 1e308))
    # sigma_max of a rank-one constant matrix: 1e308 * sqrt(2 * 4)
    assert r.log_value == pytest.approx(math.log(1e308) + 0.5 * math.log(8.0), rel=1e-12)
    tiny = pyjac.spectral_norm(np.full((3, 3), 1e-310))
    assert tiny.log_value == pytest.approx(math.log(1e-310) + math.log(3.0), rel=1e-10)


def test_chi1_of_tanh_at_huge_weight_variance():
    # q* ~ sigma_w2 (tanh^2 -> 1), and E[sech^4(sqrt(q) z)] -> (4/3) / sqrt(2 pi q)
    sw = 1e20
    q = pyjac.theory.q_star("tanh", sw, 0.0)
    assert q == pytest.approx(sw, rel=1e-8)
    expected = sw * (4.0 / 3.0) / math.sqrt(2 * math.pi * q)
    assert pyjac.theory.chi1("tanh", sw, 0.0) == pytest.approx(expected, rel=1e-6)


# ---- recurrent norms ---------------------------------------------------------------

def test_chaotic_rnn_norms_stay_finite_and_match_the_kept_gradient():
    rnn = pyjac.Recurrent(32, spectral_radius=3.0, dtype="float64", seed=1)
    h0 = np.random.default_rng(0).standard_normal((4, 32)) * 0.5
    rr = rnn.backprop(steps=2000, h0=h0, keep_grads=True)
    assert rr.first_nonfinite_step is None
    assert np.isfinite(rr.grad_norm).all() and rr.grad_norm[0] > 1e200
    W = rr.weight_grads["W"]
    expected = np.linalg.norm(W / 2.0**700) * 2.0**700
    assert rr.weight_grad_norm["W"] == pytest.approx(expected, rel=1e-12)
    assert rr.grad_norm[0] == pytest.approx(np.linalg.norm(rr.h0_grad / 2.0**700) * 2.0**700,
                                            rel=1e-12)
    clipped = rnn.backprop(steps=2000, h0=h0, clip=("norm", 1.0), keep_grads=True)
    assert clipped.clipped_grad_norm == pytest.approx(1.0, rel=1e-9)
    got = np.sqrt(sum(np.sum(a.astype(np.float64) ** 2) for a in clipped.weight_grads.values()
                      if a is not None))
    assert got == pytest.approx(1.0, rel=1e-9)


# ---- concurrency -------------------------------------------------------------------

def test_concurrent_calls_match_serial_and_leave_blas_settings():
    # 8 threads x 500 calls of each function (the recurrent ones used to differ from the
    # serial numbers when another call reset OpenBLAS's thread count under them).
    before = _core.blas_num_threads()
    rnn = pyjac.Recurrent(48, dtype="float32", seed=3)
    net = pyjac.Chain(6, 48, activation="tanh", seed=2)
    x = np.random.default_rng(4).standard_normal((8, 48))
    stack = pyjac.Transformer(2, 16, 2, seed=5)
    xt = np.random.default_rng(6).standard_normal((2, 6, 16))
    hessian = pyjac.Chain(3, 12, activation="tanh", seed=7).hessian(x[:4, :12])
    v = np.random.default_rng(8).standard_normal(hessian.size)
    calls = [
        lambda: rnn.jacobian_norms(steps=20).log_spectral_norm,
        lambda: rnn.backprop(steps=20, h0=np.ones((4, 48))).grad_norm,
        lambda: rnn.lyapunov_exponents(steps=5),
        lambda: net.backprop(x).grad_norm,
        lambda: net.jacobian_norms(x[0]).log_frobenius_norm,
        lambda: np.array([net.spectral_norm(x[0], iters=20).value]),
        lambda: stack.backprop(xt).parameter_grad_norm,
        lambda: np.array([stack.spectral_norm(xt[0], iters=5).value]),
        lambda: hessian.hvp(v),
    ]
    serial = [c() for c in calls]
    mismatches = []

    def worker():
        for _ in range(500):
            for j, call in enumerate(calls):
                if not np.array_equal(call(), serial[j]):
                    mismatches.append(j)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []
    assert _core.blas_num_threads() == before


# ---- Ctrl-C ------------------------------------------------------------------------

_INTERRUPT_SCRIPT = r"""
import os, signal, sys, threading, time
import numpy as np
import pyjac

def run(call):
    fired = []
    def fire():
        fired.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)
    timer = threading.Timer(0.3, fire)
    timer.start()
    start = time.perf_counter()
    try:
        call()
    except KeyboardInterrupt:
        print(f"interrupted {time.perf_counter() - fired[0]:.3f}", flush=True)
    else:
        print(f"finished {time.perf_counter() - start:.3f}", flush=True)
    timer.cancel()

x = np.random.default_rng(0).standard_normal((128, 512)).astype(np.float32)
net = pyjac.Chain(2000, 512, activation="tanh")
before = [w.copy() for w in net.weights[:2]]
run(lambda: net.backprop(x))
run(lambda: pyjac.Chain(2000, 512, norm="layernorm").backprop(x))
run(lambda: pyjac.Chain(20000, 64, activation="tanh", init="orthogonal").jacobian_norms(
    np.ones(64), singular_values_at=[20000]))
run(lambda: pyjac.Recurrent(256).backprop(steps=20000, h0=np.ones((64, 256))))
run(lambda: pyjac.Recurrent(256).backprop(steps=40000, h0=np.ones((8, 256))))
run(lambda: net.spectral_norm(x[0], iters=10**6, tol=1e-300))
run(lambda: pyjac.Chain(3000, 512, activation="tanh", store_weights=False).backprop(x))
run(lambda: pyjac.train(pyjac.Chain(20, 256), np.ones((20000, 256)), np.zeros(20000, int),
                        epochs=100))
task = pyjac.adding_problem(4000, 200)
run(lambda: pyjac.train(pyjac.Recurrent(256, 2, cell="lstm"), task.x, task.y, loss="mse",
                        batch_size=512, optimizer="adam"))
run(lambda: pyjac.Chain(50, 256, activation="tanh").hessian(x[:64, :256]).trace(
    samples=10**6, method="hutchinson"))
run(lambda: pyjac.Transformer(600, 64, 4, mlp_ratio=2).backprop(np.ones((4, 32, 64))))
print("unchanged", all(np.array_equal(a, b) for a, b in zip(before, net.weights[:2])))
"""


def test_long_calls_answer_ctrl_c_within_half_a_second(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "interrupt.py"
    script.write_text(_INTERRUPT_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=600, check=True).stdout.split("\n")
    results = [line.split() for line in out if line.startswith(("interrupted", "finished"))]
    assert len(results) == 11, out
    for kind, seconds in results:
        # a call that ends before the signal is no failure of the interrupt; one that
        # ran on must have stopped within 0.5 s of it
        assert kind == "interrupted" or float(seconds) < 0.3, out
        if kind == "interrupted":
            assert float(seconds) < 0.5, out
    assert "unchanged True" in out


_SWEEP_SCRIPT = r"""
import pyjac
if __name__ == "__main__":
    print("go", flush=True)
    pyjac.sweep(activation=["tanh", "relu", "sigmoid", "linear"], sigma_w2=[0.5, 1, 2, 3],
                depth=400, width=256, batch=64, seeds=3, n_jobs=2, cache=False,
                progress=False)
    print("finished", flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs process groups")
def test_parallel_sweep_stops_its_workers_on_ctrl_c(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "sweep_interrupt.py"
    script.write_text(_SWEEP_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "go"
    time.sleep(2.0)
    start = time.perf_counter()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=60)
    assert time.perf_counter() - start < 2.0
    assert err.strip().splitlines()[-1] == "KeyboardInterrupt", err[-2000:]


# ---- memory checked before it is used ----------------------------------------------

@pytest.mark.parametrize("depth,width", [(10**9, 8), (10**8, 1), (10, 10**6)])
def test_impossible_chains_are_refused_before_any_allocation(depth, width):
    import time
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(MemoryError, match="depth, width"):
        pyjac.Chain(depth, width)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 * 2**20  # nothing depth-long was built
    assert time.perf_counter() - start < 1.0


def test_workspace_estimates_saturate_instead_of_wrapping():
    # Recurrent(1, cell="lstm").backprop(steps=2**29) read a negative estimate (int overflow)
    big = _core.recurrent_workspace_bytes("lstm", 1, 0, 2**29, 1, 4)
    assert big >= 4 * 7 * 2**29  # the tape: h, c, tanh(c) and 4 gates per step, 4 bytes each
    huge = _core.recurrent_workspace_bytes("lstm", 2**31 - 1, 0, 2**31 - 1, 2**31 - 1, 8)
    assert huge == 2**63 - 1
    assert _core.backprop_workspace_bytes([2**31 - 1] * 4, 2**31 - 1, 8, True) == 2**63 - 1
    with pytest.raises(MemoryError):
        pyjac.Recurrent(64, cell="lstm").backprop(steps=2**29)


def _write(path, data):
    path.write_bytes(data)
    return path


def _bomb(path):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("W0.npy", header.getvalue() + b"\0" * 2**20)
    return path


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "pyjac.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_damaged_and_hostile_npz_files_give_one_line(tmp_path):
    ok = tmp_path / "ok.npz"
    np.savez(ok, W0=np.eye(4), b0=np.zeros(4), activations=np.array(["relu"]))
    raw = ok.read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF
    cases = {
        "truncated": _write(tmp_path / "t.npz", raw[: len(raw) // 2]),
        "corrupted": _write(tmp_path / "c.npz", bytes(flipped)),
        "bomb": _bomb(tmp_path / "bomb.npz"),
    }
    bad_norm = tmp_path / "norm.npz"
    np.savez(bad_norm, W0=np.eye(4), b0=np.zeros(4), activations=np.array(["relu"]),
             norm=np.array(["layernorm", "none"]))
    cases["norm of size 2"] = bad_norm
    for what, path in cases.items():
        for run in (lambda p: _cli("diagnose", p),
                    lambda p: _cli("plot", p, "--kind", "gradient_vs_depth")):
            r = run(path)
            assert r.returncode == 2, (what, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in r.stderr, (what, r.stderr)
        with pytest.raises((ValueError, MemoryError)):
            pyjac.diagnose(str(path), np.ones((2, 4)))
    assert "norm" in _cli("diagnose", bad_norm).stderr


def test_cli_refuses_absurd_sizes_before_allocating():
    r = _cli("sweep", "--depth", "1:2000000000:1", "--out", "never.npz")
    assert r.returncode == 2 and "--depth" in r.stderr and "values" in r.stderr
    assert not os.path.exists("never.npz")


def test_cli_diagnose_batch_is_checked(tmp_path):
    ok = tmp_path / "ok.npz"
    np.savez(ok, W0=np.eye(4), b0=np.zeros(4), activations=np.array(["relu"]))
    r = _cli("diagnose", ok, "--batch", 10**10)
    assert r.returncode == 2 and "--batch" in r.stderr and "Traceback" not in r.stderr


def test_out_naming_a_directory_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out.npz"
    target.mkdir()
    r = _cli("sweep", "--depth", "3", "--width", "4", "--out", target, "--no-cache")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]
    assert list(target.iterdir()) == []


# ---- errors name the argument --------------------------------------------------------

@pytest.mark.parametrize("call,name", [
    (lambda: pyjac.Chain(3, 4, gain=10**400), "gain"),
    (lambda: pyjac.Chain(3, 4, bias_std=1e308, dtype="float64"), "bias_std"),
    (lambda: pyjac.Chain(3, 4, gain=1e39), "gain"),
    (lambda: pyjac.Chain(3, 4, activation=3), "activation"),
    (lambda: pyjac.Chain.from_weights([[[1.0, 2.0], [3.0]]]), "weights"),
    (lambda: pyjac.Chain.from_weights([np.eye(2)], 3), "biases"),
    (lambda: pyjac.Chain(3, 4).backprop(np.ones((2, 4)), keep_grads="no"), "keep_grads"),
    (lambda: pyjac.train(pyjac.Chain(1, [2, 2]), np.ones((4, 2)), np.zeros(4, int),
                         shuffle="no"), "shuffle"),
    (lambda: pyjac.Recurrent(4).backprop(steps=2, keep_grads="no"), "keep_grads"),
    (lambda: pyjac.Chain(2, 4).spectral_norm(np.ones(4), per_layer="yes"), "per_layer"),
    (lambda: pyjac.Recurrent(8, spectral_radius=1e308), "spectral_radius"),
    (lambda: pyjac.Recurrent(8, gain=1e39), "gain"),
    (lambda: pyjac.theory.chi1("tanh", 10**400, 0.0), "sigma_w2"),
    (lambda: pyjac.spectral_norm(np.eye(3), tol=10**400), "tol"),
])
def test_errors_name_the_argument(call, name):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value).startswith(name), str(info.value)


def test_bias_std_is_refused_before_building():
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match="bias_std"):
        pyjac.Chain(2000, 512, bias_std=1e39)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
@pytest.mark.parametrize("e", [-1000, -600, 600, 1000])
def test_recurrent_norms_scale_exactly_with_the_gradient(cell, e):
    # Every gradient of a given dL/dh_T is linear in it: scaling it by 2^e scales every
    # reported norm by exactly 2^e (the reference is the call at e = 0, whose numbers
    # test_recurrent.py checks against finite differences and torch).
    rnn = pyjac.Recurrent(8, 3, cell=cell, dtype="float64", seed=1)
    rng = np.random.default_rng(0)
    xs, h0, g = rng.standard_normal((6, 3, 3)), rng.standard_normal((3, 8)), \
        rng.standard_normal((3, 8))
    base = rnn.backprop(xs, h0=h0, grad_output=g)
    r = rnn.backprop(xs, h0=h0, grad_output=g * 2.0**e)
    scale = 2.0**e
    assert r.first_nonfinite_step is None
    np.testing.assert_allclose(r.grad_norm / scale, base.grad_norm, rtol=1e-13)
    np.testing.assert_allclose(r.step_weight_grad_norm / scale, base.step_weight_grad_norm,
                               rtol=1e-12)
    for name in ("W", "U", "b"):
        assert r.weight_grad_norm[name] / scale == pytest.approx(base.weight_grad_norm[name],
                                                                 rel=1e-13)
    assert r.total_grad_norm / scale == pytest.approx(base.total_grad_norm, rel=1e-13)
    if cell == "lstm":
        np.testing.assert_allclose(r.cell_grad_norm[1:] / scale, base.cell_grad_norm[1:],
                                   rtol=1e-13)
    clipped = rnn.backprop(xs, h0=h0, grad_output=g * 2.0**e, clip=("norm", 3.0 * scale))
    assert clipped.clipped_grad_norm / scale == pytest.approx(
        min(3.0, base.total_grad_norm), rel=1e-9)
    assert clipped.clip_cosine == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("call,name", [
    (lambda: pyjac.Chain(2, 4).backprop(np.ones((0, 4))), "x"),
    (lambda: pyjac.Chain(2, 4).jacobian_norms(np.ones((0, 4))), "x"),
    (lambda: pyjac.Recurrent(4, 2).backprop(np.ones((3, 0, 2))), "xs"),
    (lambda: pyjac.Recurrent(4, 2).backprop(np.ones((0, 2, 2))), "xs"),
    (lambda: pyjac.Recurrent(4).backprop(steps=3, h0=np.ones((0, 4))), "h0"),
])
def test_empty_batches_are_named_as_such(call, name):
    with pytest.raises(ValueError, match=rf"^{name}: .*(empty|no steps)"):
        call()


def test_names_are_case_insensitive_and_seeds_are_taken_as_numpy_takes_them():
    net = pyjac.Chain(2, 4, activation="ReLU", init="He", norm="LayerNorm", seed=3)
    assert net.activations == ["relu", "relu"] and net.norm == "layernorm"
    assert pyjac.Recurrent(4, cell="LSTM").cell == "lstm"
    a = pyjac.Chain(2, 4, seed=np.random.default_rng(7))
    b = pyjac.Chain(2, 4, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    c = pyjac.Chain(2, 4, seed=a.seed)  # the integer used is kept, and reproduces
    np.testing.assert_array_equal(a.weights[0], c.weights[0])
    assert isinstance(pyjac.Chain(2, 4, seed=None).seed, int)
    with pytest.raises(TypeError, match="^seed"):
        pyjac.Chain(2, 4, seed=1.5)


@pytest.mark.parametrize("scale,depth,dtype", [(1e300, 2, "float64"), (1e-300, 3, "float64"),
                                               (1e30, 5, "float32"), (1e-30, 4, "float32")])
def test_end_to_end_spectral_norm_of_huge_and_tiny_weights(scale, depth, dtype):
    # sigma_max of (s Q)^depth for an orthogonal Q is s^depth: the log is exact although
    # the product itself leaves the range.
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))[0]
    net = pyjac.Chain.from_weights([(q * scale).astype(dtype)] * depth, activation="linear")
    r = net.spectral_norm(np.ones(4))
    expected = depth * math.log(float(np.asarray(scale, dtype=dtype)))
    assert r.log_value == pytest.approx(expected, rel=1e-6)


def test_reprs_summarise_arrays_and_pandas_shows_finite_runs_as_missing():
    net = pyjac.Chain(300, 8, seed=0)
    text = repr(net.spectral_norm(np.ones(8), per_layer=True, iters=5))
    assert "..." in text and len(text) < 600
    data = pyjac.load_digits()
    assert len(repr(data)) < 300 and "x_train" in repr(data)
    pd = pytest.importorskip("pandas")
    frame = pyjac.sweep(depth=3, width=4, batch=2, cache=False, progress=False).to_pandas()
    assert frame["first_nonfinite_layer"].isna().all()
    assert frame["first_nonfinite_layer"].dtype == pd.Int64Dtype()
    assert isinstance(pyjac.diagnose.DEFAULT_THRESHOLDS, dict)


def test_reproduce_with_a_bad_only_creates_nothing(tmp_path):
    out = tmp_path / "figs"
    r = _cli("reproduce", "--out", out, "--only", "fig99")
    assert r.returncode == 2 and "fig10" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("activation,init", [("tanh", "xavier"), ("sigmoid", "xavier"),
                                             ("linear", "xavier"), ("relu", "he"),
                                             ("gelu", "he"), (["relu", "linear"], "he")])
def test_default_init_fits_the_activation(activation, init):
    net = pyjac.Chain(2, 300, activation=activation, seed=0, dtype="float64")
    assert net.init == init
    # the drawn variance is the init's: 1/300 for xavier on square layers, 2/300 for he
    variance = np.mean([np.var(w) for w in net.weights]) * 300
    assert variance == pytest.approx(1.0 if init == "xavier" else 2.0, rel=0.02)


def test_report_cites_texts_by_title_not_by_missing_files(tmp_path):
    from pyjac.figures import report

    claims = report.seed_claims(quick=True)
    path = report.write_report(tmp_path / "report.md", [], [], claims, quick=True)
    text = path.read_text()
    assert "seeds/" not in text and ".txt" not in text
    for _, title in report.SEEDS.values():
        assert title in text


def test_memory_refusals_name_their_argument_first():
    with pytest.raises(MemoryError, match=r"^width: a recurrent cell of width"):
        pyjac.Recurrent(10**6)
    with pytest.raises(MemoryError, match=r"^depth: "):
        pyjac.Transformer(10**6, 1024, 8)
    with pytest.raises(MemoryError, match=r"^steps: backprop through"):
        pyjac.Recurrent(1024).backprop(steps=2**31 - 1, h0=np.ones((1, 1024)))


@pytest.mark.parametrize("call", ["backprop", "forward"])
@pytest.mark.parametrize("store_weights", [True, False])
def test_a_huge_broadcast_batch_is_refused_before_it_is_converted(call, store_weights):
    # 10^9 examples as a zero-stride float64 view (no memory of its own): converting it to
    # the chain's float32 would write 256 GB, so the refusal must come from the declared
    # shape, before the conversion, and at once.
    import tracemalloc

    net = pyjac.Chain(3, 64, store_weights=store_weights)
    x = np.broadcast_to(np.zeros(64), (10**9, 64))
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"^x: "):
            getattr(net, call)(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # numpy reports its allocations to tracemalloc: nothing was copied
