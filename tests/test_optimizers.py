"""pyjac.train's optimisers (SGD with Nesterov and weight decay, Adam, AdamW) against
the update rules written out in numpy from Kingma & Ba (2015), Loshchilov & Hutter
(2019) and PyTorch's documentation, and against torch.optim itself, step by step."""

from __future__ import annotations

import numpy as np
import pytest
from reference import forward_backward

import pyjac


def _numpy_step(params, grads, state, t, *, optimizer, lr, momentum=0.0, nesterov=False,
                weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8):
    """One update of every array in ``params`` (in place), from the formulas."""
    b1, b2 = betas
    for i, (p, g) in enumerate(zip(params, grads)):
        if optimizer == "sgd":
            g = g + weight_decay * p
            if momentum:
                v = state.setdefault(("v", i), np.zeros_like(p))
                v[...] = momentum * v + g
                g = g + momentum * v if nesterov else v
            p -= lr * g
            continue
        if optimizer == "adamw":
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
        m = state.setdefault(("m", i), np.zeros_like(p))
        s = state.setdefault(("s", i), np.zeros_like(p))
        m[...] = b1 * m + (1 - b1) * g
        s[...] = b2 * s + (1 - b2) * g * g
        m_hat, s_hat = m / (1 - b1**t), s / (1 - b2**t)
        p -= lr * m_hat / (np.sqrt(s_hat) + eps)


def _numpy_run(weights, biases, activations, x, y, *, epochs, batch_size, clip=None, loss,
               **opt):
    """Minibatches in order, norm clipping as clip_grad_norm_, then the update."""
    params = [w.astype(np.float64).copy() for w in weights] + [
        b.astype(np.float64).copy() for b in biases]
    depth, state, t, losses = len(weights), {}, 0, []
    for _ in range(epochs):
        for start in range(0, len(x), batch_size):
            rows = slice(start, start + batch_size)
            r = forward_backward(params[:depth], params[depth:], activations, x[rows],
                                 loss=loss, target=y[rows])
            grads = r["weight_grads"] + r["bias_grads"]
            if clip is not None:
                total = np.sqrt(sum(np.sum(g**2) for g in grads))
                grads = [g * min(1.0, clip / (total + 1e-6)) for g in grads]
            t += 1
            _numpy_step(params, grads, state, t, **opt)
            losses.append(r["loss"])
    return params, np.array(losses)


CASES = [
    dict(optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=1e-3),
    dict(optimizer="sgd", lr=0.3, weight_decay=0.01),
    dict(optimizer="adam", lr=0.01),
    dict(optimizer="adam", lr=0.02, weight_decay=0.05, betas=(0.8, 0.99), eps=1e-6),
    dict(optimizer="adamw", lr=0.01),
    dict(optimizer="adamw", lr=0.03, weight_decay=0.1, betas=(0.5, 0.9)),
]


def _net(dtype="float64"):
    return pyjac.Chain(3, [10, 14, 12, 4], activation=["tanh", "relu", "linear"],
                       init="xavier", bias_std=0.1, seed=11, dtype=dtype)


@pytest.mark.parametrize("clip", [None, 0.3])
@pytest.mark.parametrize("opt", CASES, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_matches_the_formulas_over_epochs(opt, clip, rng):
    """Three epochs: Adam's step count runs on across them."""
    net = _net()
    x = rng.standard_normal((30, 10))
    y = rng.integers(0, 4, size=30)
    w0, b0 = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    h = pyjac.train(net, x, y, epochs=3, batch_size=8, shuffle=False, clip=clip, **opt)
    torch_defaults = {"weight_decay": 0.01 if opt["optimizer"] == "adamw" else 0.0}
    want, losses = _numpy_run(w0, b0, net.activations, x, y, epochs=3, batch_size=8, clip=clip,
                              loss="cross_entropy", **{**torch_defaults, **opt})
    np.testing.assert_allclose(h.step_loss, losses, rtol=1e-11)
    for got, ref in zip(net.weights + net.biases, want):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-13)
    assert h.config["optimizer"] == opt["optimizer"]


def test_defaults_are_torch_defaults():
    net = _net()
    x = np.random.default_rng(0).standard_normal((8, 10))
    h = pyjac.train(net, x, np.arange(8) % 4, epochs=1, optimizer="adamw", progress=False)
    assert (h.config["lr"], h.config["weight_decay"]) == (1e-3, 1e-2)
    assert (h.config["beta1"], h.config["beta2"], h.config["eps"]) == (0.9, 0.999, 1e-8)
    h = pyjac.train(_net(), x, np.arange(8) % 4, epochs=1, optimizer="Adam")
    assert (h.config["optimizer"], h.config["lr"], h.config["weight_decay"]) == ("adam", 1e-3,
                                                                                  0.0)
    assert pyjac.train(_net(), x, np.arange(8) % 4, epochs=1).config["lr"] == 0.1


def test_adam_moves_a_layer_whose_gradient_vanished(rng):
    """Adam's step is about lr whatever the gradient's size: a deep sigmoid chain's first
    layer, whose gradient is 1e-4 of the last hidden layer's, moves by an amount of the
    same order as the last hidden layer under Adam and far less under SGD."""
    x = rng.standard_normal((64, 16))
    y = rng.integers(0, 4, size=64)
    moved = {}
    for name, lr in (("sgd", 0.1), ("adam", 1e-3)):
        net = pyjac.Chain(12, [16] * 12 + [4], activation=["sigmoid"] * 11 + ["linear"],
                          init="xavier", seed=3, dtype="float64")
        h = pyjac.train(net, x, y, epochs=2, lr=lr, batch_size=16, optimizer=name)
        moved[name] = h.weight_change[-1, 0] / h.weight_change[-1, -2]
        grads = h.weight_grad_norm[0]
        assert grads[0] < 1e-3 * grads[-2]
    assert moved["sgd"] < 1e-2
    assert moved["adam"] > 0.1


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer="rmsprop"), "optimizer: unknown value 'rmsprop'"),
    (dict(optimizer="adam", momentum=0.9), "momentum: only for optimizer='sgd'"),
    (dict(nesterov=True), "nesterov: needs a momentum"),
    (dict(optimizer="adam", betas=(1.0, 0.999)), r"betas\[0\]: must lie in \[0, 1\)"),
    (dict(optimizer="adamw", betas=(0.9, -0.1)), r"betas\[1\]: must lie in \[0, 1\)"),
    (dict(optimizer="adam", eps=-1e-8), "eps: must be non-negative"),
    (dict(weight_decay=-0.1), "weight_decay: must be non-negative"),
    (dict(optimizer="adam", lr=0.0), "lr: must be positive"),
    (dict(optimizer="adam", lr=float("nan")), "lr: must be finite"),
])
def test_bad_settings_name_the_argument(kwargs, match):
    net = _net()
    before = [w.copy() for w in net.weights]
    with pytest.raises(ValueError, match=match):
        pyjac.train(net, np.zeros((4, 10)), np.zeros(4, dtype=int), **kwargs)
    for w, w0 in zip(net.weights, before):
        np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("kwargs", [dict(betas=0.9), dict(betas=(0.9,)), dict(betas="ab")])
def test_betas_must_be_a_pair(kwargs):
    with pytest.raises(TypeError, match="betas: expected a pair"):
        pyjac.train(_net(), np.zeros((4, 10)), np.zeros(4, dtype=int), optimizer="adam",
                    **kwargs)


def test_same_numbers_at_any_thread_count(rng):
    x = rng.standard_normal((600, 10)).astype(np.float32)
    y = rng.integers(0, 4, size=600)
    results = []
    for threads in (1, 2):
        net = pyjac.Chain(3, [10, 256, 256, 4], activation="relu", init="he", seed=2)
        pyjac.train(net, x, y, epochs=2, optimizer="adamw", batch_size=64, n_threads=threads)
        results.append(net.weights + net.biases)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


class TestAgainstTorch:
    """The same net, minibatches and clipping in PyTorch, its optimiser stepping after
    each backward pass: every minibatch loss (each depends on every earlier update)
    and the final weights agree in float64."""

    torch = None

    @pytest.fixture(autouse=True)
    def _torch(self):
        type(self).torch = pytest.importorskip("torch")

    def _torch_run(self, net, x, y, *, epochs, batch_size, clip, opt, loss):
        torch = self.torch
        layers = []
        for w, b in zip(net.weights, net.biases):
            lin = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
            layers.append(lin)
        acts = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda z: z,
                "sigmoid": torch.sigmoid}
        params = [p for lin in layers for p in (lin.weight, lin.bias)]
        kw = {k: v for k, v in opt.items() if k != "optimizer"}
        cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
               "adamw": torch.optim.AdamW}[opt["optimizer"]]
        optim = cls(params, foreach=False, **kw)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        losses = []
        for _ in range(epochs):
            for start in range(0, len(x), batch_size):
                h = xt[start:start + batch_size]
                for lin, act in zip(layers, net.activations):
                    h = acts[act](lin(h))
                target = yt[start:start + batch_size]
                value = (torch.nn.functional.cross_entropy(h, target) if loss == "cross_entropy"
                         else torch.nn.functional.mse_loss(h, target))
                optim.zero_grad()
                value.backward()
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                optim.step()
                losses.append(value.item())
        weights = [lin.weight.detach().numpy() for lin in layers]
        biases = [lin.bias.detach().numpy() for lin in layers]
        return weights + biases, np.array(losses)

    @pytest.mark.parametrize("clip", [None, 0.5])
    @pytest.mark.parametrize("opt", CASES + [dict(optimizer="sgd", lr=0.1, momentum=0.5)],
                             ids=lambda o: "-".join(f"{v}" for v in o.values()))
    def test_step_by_step(self, opt, clip, rng):
        net = _net()
        x = rng.standard_normal((40, 10))
        y = rng.integers(0, 4, size=40)
        want, losses = self._torch_run(net, x, y, epochs=3, batch_size=8, clip=clip, opt=opt,
                                       loss="cross_entropy")
        h = pyjac.train(net, x, y, epochs=3, batch_size=8, shuffle=False, clip=clip, **opt)
        np.testing.assert_allclose(h.step_loss, losses, rtol=1e-12)
        for got, ref in zip(net.weights + net.biases, want):
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)

    def test_adamw_mse_float32(self, rng):
        net32 = pyjac.Chain(3, [10, 14, 12, 4], activation=["tanh", "relu", "linear"],
                            init="xavier", bias_std=0.1, seed=11, dtype="float32")
        net = _net()
        x = rng.standard_normal((40, 10))
        y = rng.standard_normal((40, 4))
        opt = dict(optimizer="adamw", lr=0.01, weight_decay=0.1)
        want, losses = self._torch_run(net, x, y, epochs=2, batch_size=8, clip=None, opt=opt,
                                       loss="mse")
        h = pyjac.train(net32, x, y, epochs=2, batch_size=8, shuffle=False, loss="mse", **opt)
        np.testing.assert_allclose(h.step_loss, losses, rtol=1e-5)
        for got, ref in zip(net32.weights + net32.biases, want):
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
