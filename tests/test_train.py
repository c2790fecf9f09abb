"""pyjac.train: minibatch SGD in the core, checked against a numpy SGD loop."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from reference import forward_backward

import pyjac


@pytest.fixture(scope="module")
def digits():
    return pyjac.load_digits()


def _numpy_sgd(weights, biases, activations, x, y, *, lr, batch_size, momentum=0.0, clip=None,
               clip_mode="norm", order=None, loss="cross_entropy", residual=False, norm=None):
    """One epoch of PyTorch-style SGD, written from the math in float64."""
    weights = [w.astype(np.float64).copy() for w in weights]
    biases = [b.astype(np.float64).copy() for b in biases]
    vw = [np.zeros_like(w) for w in weights]
    vb = [np.zeros_like(b) for b in biases]
    order = np.arange(len(x)) if order is None else order
    norms_before, norms_after, losses = [], [], []
    for start in range(0, len(x), batch_size):
        rows = order[start:start + batch_size]
        r = forward_backward(weights, biases, activations, x[rows], loss=loss, target=y[rows],
                             residual=residual, norm=norm)
        grads = r["weight_grads"] + r["bias_grads"]
        total = np.sqrt(sum(np.sum(g**2) for g in grads))
        if clip is not None and clip_mode == "norm":
            grads = [g * min(1.0, clip / (total + 1e-6)) for g in grads]
        elif clip is not None:
            grads = [np.clip(g, -clip, clip) for g in grads]
        norms_before.append(total)
        norms_after.append(np.sqrt(sum(np.sum(g**2) for g in grads)))
        losses.append(r["loss"])
        depth = len(weights)
        for i, g in enumerate(grads):
            params, vel = (weights, vw) if i < depth else (biases, vb)
            k = i % depth
            if momentum:
                vel[k] = momentum * vel[k] + g
                params[k] -= lr * vel[k]
            else:
                params[k] -= lr * g
    return weights, biases, np.array(norms_before), np.array(norms_after), np.array(losses)


@pytest.mark.parametrize("momentum, clip, clip_mode", [
    (0.0, None, "norm"), (0.9, None, "norm"), (0.5, 0.5, "norm"), (0.0, 0.01, "value"),
])
def test_one_epoch_matches_numpy_sgd(momentum, clip, clip_mode, rng):
    net = pyjac.Chain(4, [12, 16, 16, 16, 5], activation="tanh", init="xavier", bias_std=0.1,
                      seed=7, dtype="float64")
    x = rng.standard_normal((50, 12))
    y = rng.integers(0, 5, size=50)
    w0, b0 = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    h = pyjac.train(net, x, y, epochs=1, lr=0.3, batch_size=8, momentum=momentum, clip=clip,
                    clip_mode=clip_mode, shuffle=False)
    ref_w, ref_b, before, after, losses = _numpy_sgd(
        w0, b0, net.activations, x, y, lr=0.3, batch_size=8, momentum=momentum, clip=clip,
        clip_mode=clip_mode)
    for got, want in zip(net.weights + net.biases, ref_w + ref_b):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h.step_grad_norm, before, rtol=1e-10)
    np.testing.assert_allclose(h.step_clipped_grad_norm, after, rtol=1e-10)
    np.testing.assert_allclose(h.step_loss, losses, rtol=1e-10)
    assert h.steps_per_epoch == 7  # 50 examples in minibatches of 8
    np.testing.assert_allclose(h.loss[1], np.average(losses, weights=[8] * 6 + [2]), rtol=1e-10)
    change = [np.linalg.norm(w - w_0) / np.linalg.norm(w_0) for w, w_0 in zip(ref_w, w0)]
    np.testing.assert_allclose(h.weight_change[-1], change, rtol=1e-8)
    np.testing.assert_array_equal(h.weight_change[0], 0.0)
    if clip is not None:
        assert h.clipped_fraction[0] > 0
        if clip_mode == "norm":
            assert np.all(h.step_clipped_grad_norm <= clip + 1e-9)


def test_shuffled_epochs_follow_the_seeded_permutation(rng):
    net = pyjac.Chain(3, [6, 8, 8, 3], activation="relu", seed=1, dtype="float64")
    x = rng.standard_normal((20, 6))
    y = rng.integers(0, 3, size=20)
    w0, b0 = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    pyjac.train(net, x, y, epochs=1, lr=0.1, batch_size=5, seed=11)
    order = np.random.default_rng(11).permutation(20)
    ref_w, ref_b, *_ = _numpy_sgd(w0, b0, net.activations, x, y, lr=0.1, batch_size=5,
                                  order=order)
    for got, want in zip(net.weights + net.biases, ref_w + ref_b):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_mse_with_integer_labels_is_one_hot(rng):
    net = pyjac.Chain(2, [4, 6, 3], activation="tanh", seed=2, dtype="float64")
    x = rng.standard_normal((9, 4))
    labels = rng.integers(0, 3, size=9)
    w0, b0 = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    pyjac.train(net, x, labels, epochs=1, lr=0.2, batch_size=4, loss="mse", shuffle=False)
    ref_w, *_ = _numpy_sgd(w0, b0, net.activations, x, np.eye(3)[labels], lr=0.2,
                           batch_size=4, loss="mse")
    for got, want in zip(net.weights, ref_w):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_residual_layernorm_training_matches_numpy(rng):
    net = pyjac.Chain(3, 8, activation="relu", residual=True, norm="layernorm", seed=3,
                      dtype="float64")
    x = rng.standard_normal((12, 8))
    y = rng.integers(0, 8, size=12)
    w0, b0 = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    pyjac.train(net, x, y, epochs=1, lr=0.1, batch_size=4, shuffle=False)
    ref_w, *_ = _numpy_sgd(w0, b0, net.activations, x, y, lr=0.1, batch_size=4, residual=True,
                           norm="layernorm")
    for got, want in zip(net.weights, ref_w):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_loss_decreases_on_digits_with_relu_he(digits):
    # Eight epochs of this narrow ReLU net end anywhere from 0.67 to 0.99 training
    # accuracy depending on the seed (some runs lose units for good), so five seeds:
    # every loss falls, and the typical run learns.
    runs = []
    for seed in range(5):
        net = pyjac.Chain(6, [64, 64, 64, 64, 64, 64, 10], activation="relu", init="he",
                          seed=seed)
        runs.append((net, pyjac.train(net, digits.x_train, digits.y_train, epochs=8, lr=0.05,
                                      validation=(digits.x_test, digits.y_test))))
    assert all(h.loss[-1] < 0.4 * h.loss[0] for _, h in runs)
    assert np.median([h.accuracy[-1] for _, h in runs]) > 0.85
    # digits: ~0.87 typical; the synthetic stand-in: ~0.8
    assert np.median([h.val_accuracy[-1] for _, h in runs]) > 0.75
    net, h = runs[0]
    # The validation records are the chain's own loss on that data.
    r = net.backprop(digits.x_test, loss="cross_entropy", target=digits.y_test)
    np.testing.assert_allclose(h.val_loss[-1], r.loss, rtol=1e-5)
    np.testing.assert_allclose(h.val_accuracy[-1],
                               np.mean(r.output.argmax(axis=1) == digits.y_test))
    # The training records are the epoch's minibatch losses, weighted by batch size.
    last = h.step_loss[-h.steps_per_epoch:]
    sizes = np.diff(np.r_[np.arange(0, len(digits.y_train), 32), len(digits.y_train)])
    np.testing.assert_allclose(h.loss[-1], np.sum(last * sizes) / sizes.sum(), rtol=1e-10)


def test_deep_sigmoid_first_layer_barely_moves(digits):
    net = pyjac.Chain(10, 64, activation="sigmoid", init="xavier", seed=0, dtype="float64")
    h = pyjac.train(net, digits.x_train, digits.y_train, epochs=5, lr=0.1)
    first, last = h.weight_change[-1, 0], h.weight_change[-1, -1]
    assert 0 < first and last > 100 * first
    # ...because its gradient is orders of magnitude smaller, every epoch.
    assert np.all(h.weight_grad_norm[:, 0] < 1e-2 * h.weight_grad_norm[:, -1])


def test_same_history_with_one_and_all_threads(digits):
    runs = []
    for n_threads in (1, None):
        net = pyjac.Chain(5, [64, 256, 256, 256, 256, 10], activation="tanh", init="orthogonal",
                          seed=4)
        h = pyjac.train(net, digits.x_train, digits.y_train, epochs=2, lr=0.05, batch_size=256,
                        momentum=0.9, clip=1.0, n_threads=n_threads)
        runs.append((h, [w.copy() for w in net.weights]))
    (h1, w1), (h2, w2) = runs
    np.testing.assert_array_equal(h1.step_grad_norm, h2.step_grad_norm)
    np.testing.assert_array_equal(h1.loss, h2.loss)
    np.testing.assert_array_equal(h1.weight_change, h2.weight_change)
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def test_diverging_run_is_recorded_not_raised(rng):
    net = pyjac.Chain(6, 32, activation="relu", init="he", gain=4.0, seed=0)
    x = rng.standard_normal((64, 32)).astype(np.float32) * 100
    y = rng.integers(0, 32, size=64)
    h = pyjac.train(net, x, y, epochs=3, lr=10.0, batch_size=16)
    assert h.first_nonfinite_step is not None
    assert not np.isfinite(h.loss[-1])


def test_float16_gradients_freeze_the_first_layers_and_loss_scaling_frees_them(digits):
    changes, skipped = {}, {}
    for label, extra in [("exact", {}), ("fp16", {"grad_dtype": "float16"}),
                         ("scaled", {"grad_dtype": "float16", "loss_scale": 2.0**14}),
                         ("overflow", {"grad_dtype": "float16", "loss_scale": 2.0**24})]:
        net = pyjac.Chain(12, 64, activation="sigmoid", init="xavier", seed=0, dtype="float64")
        h = pyjac.train(net, digits.x_train, digits.y_train, epochs=1, lr=0.1, batch_size=64,
                        **extra)
        changes[label], skipped[label] = h.weight_change[-1], h.skipped_steps.sum()
    assert changes["fp16"][0] == 0.0  # every first-layer gradient underflowed
    np.testing.assert_allclose(changes["scaled"][0], changes["exact"][0], rtol=0.05)
    np.testing.assert_allclose(changes["scaled"][-1], changes["exact"][-1], rtol=0.01)
    # Too large a scale overflows float16: those steps are skipped, never applied.
    assert skipped["overflow"] > 0 and skipped["scaled"] == 0
    assert np.all(np.isfinite(changes["overflow"]))


def test_batchnorm_chain_trains(digits):
    net = pyjac.Chain(4, 64, activation="relu", norm="batchnorm", seed=0)
    # 1348 = 3 * 449 + 1: the lone last example has no batch statistics and is skipped.
    n = len(digits.y_train)
    assert n % 449 == 1
    h = pyjac.train(net, digits.x_train, digits.y_train, epochs=3, lr=0.05, batch_size=449)
    assert h.steps_per_epoch == 3
    assert h.loss[-1] < h.loss[0]


def test_synthetic_fallback_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    data = pyjac.load_digits()
    assert data.source == "synthetic"
    assert data.x_train.shape[1] == 64 and data.n_classes == 10
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0, atol=1e-5)
    with pytest.raises(ImportError, match="scikit-learn"):
        pyjac.load_digits(fallback=False)
    net = pyjac.Chain(3, [64, 64, 64, 10], activation="relu", seed=0)
    h = pyjac.train(net, data.x_train, data.y_train, epochs=5, lr=0.05,
                    validation=(data.x_test, data.y_test))
    assert h.val_accuracy[-1] > 0.5  # chance is 0.1


def test_digits_split_is_seeded_and_disjoint(digits):
    again = pyjac.load_digits()
    np.testing.assert_array_equal(digits.x_train, again.x_train)
    assert len(digits.y_train) + len(digits.y_test) == 1797 or digits.source == "synthetic"
    other = pyjac.load_digits(seed=1)
    assert not np.array_equal(digits.y_train, other.y_train)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs"),
    ({"lr": -1.0}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"momentum": 1.0}, "momentum"),
    ({"clip": 0.0}, "clip"),
    ({"clip": 1.0, "clip_mode": "max"}, "clip_mode"),
    ({"loss": "sum_squares"}, "loss"),
    ({"validation": (np.zeros((3, 4)),)}, "validation"),
    ({"grad_dtype": "int8"}, "grad_dtype"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    net = pyjac.Chain(2, 4)
    x = np.zeros((6, 4), dtype=np.float32)
    y = np.zeros(6, dtype=np.int64)
    with pytest.raises((ValueError, TypeError), match=match):
        pyjac.train(net, x, y, **kwargs)


def test_bad_data_names_the_argument():
    net = pyjac.Chain(2, 4)
    x = np.zeros((6, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="y"):
        pyjac.train(net, x, np.full(6, 9))
    with pytest.raises(ValueError, match="y"):
        pyjac.train(net, x, np.zeros(5, dtype=int))
    with pytest.raises(TypeError, match="y"):
        pyjac.train(net, x, np.zeros(6))
    with pytest.raises(ValueError, match="x"):
        pyjac.train(net, np.zeros((6, 5)), np.zeros(6, dtype=int))
    with pytest.raises(ValueError, match="x"):
        pyjac.train(net, np.full((6, 4), np.nan), np.zeros(6, dtype=int))
    with pytest.raises(TypeError, match="model"):
        pyjac.train("net", x, np.zeros(6, dtype=int))


def test_history_repr_and_shapes(digits):
    net = pyjac.Chain(3, [64, 32, 32, 10], seed=0)
    h = pyjac.train(net, digits.x_train[:200], digits.y_train[:200], epochs=2, batch_size=50)
    assert h.loss.shape == (3,) and h.weight_change.shape == (3, 3)
    assert h.grad_norm.shape == (2, 4) and h.weight_grad_norm.shape == (2, 3)
    assert h.step_loss.shape == (8,) and h.val_loss is None
    assert "TrainingHistory(epochs=2" in repr(h)


def test_log_records_keep_gradients_that_underflow_float64(rng):
    """A 600-layer sigmoid chain's first-layer gradient is far below 1e-308: the plain
    mean reads 0, the mean of the logs keeps it (one step per epoch: the step's own
    backprop, before its update, gives the reference)."""
    net = pyjac.Chain(600, 16, activation="sigmoid", init="xavier", seed=2, dtype="float64")
    x = rng.standard_normal((8, 16))
    y = rng.integers(0, 16, size=8)
    r = net.backprop(x, loss="cross_entropy", target=y)
    assert r.grad_norm[0] == 0 and np.isfinite(r.log_grad_norm[0])
    h = pyjac.train(net, x, y, epochs=1, batch_size=8, shuffle=False)
    assert h.grad_norm[0, 0] == 0
    np.testing.assert_allclose(h.log_grad_norm[0], r.log_grad_norm, rtol=1e-12)
    np.testing.assert_allclose(h.log_weight_grad_norm[0], r.log_weight_grad_norm, rtol=1e-12)
    assert h.log_grad_norm[0, 0] < np.log(1e-308)


def test_recurrent_log_records_match_the_step(rng):
    task = pyjac.adding_problem(16, 400, seed=0, dtype="float64")
    rnn = pyjac.Recurrent(8, 2, cell="tanh", spectral_radius=0.1, dtype="float64")
    h = pyjac.train(rnn, task.x, task.y, epochs=1, batch_size=16, loss="mse", shuffle=False)
    np.testing.assert_allclose(h.log_grad_norm[0], h.last_log_grad_norm[0], rtol=1e-12)
    assert h.grad_norm[0, 0] == 0 and h.log_grad_norm[0, 0] < np.log(1e-308)
    assert h.log_weight_grad_norm is None
