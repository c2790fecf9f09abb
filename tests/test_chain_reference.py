"""Chain.backprop against an independent numpy implementation and finite differences."""

import numpy as np
import pytest
from conftest import ACTIVATIONS
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import assert_matches, forward_backward

import pyjac

NORMS = (None, "layernorm", "batchnorm")


def _small_chain(activation, norm, residual, seed=3, widths=(5, 5, 5, 5)):
    net = pyjac.Chain(len(widths) - 1, list(widths), activation=activation, init="gaussian",
                      gain=1.3, bias_std=0.2, norm=norm, residual=residual, residual_scale=0.7,
                      seed=seed, dtype="float64")
    return net


def _reference(net, x, **kw):
    return forward_backward(net.weights, net.biases, net.activations, x, residual=net.residual,
                            scale=net.residual_scale, norm=net.norm, **kw)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("residual", [False, True])
def test_matches_numpy_reference(activation, norm, residual, rng):
    net = _small_chain(activation, norm, residual)
    x = rng.standard_normal((4, 5))
    r = net.backprop(x, keep_grads=True)
    ref = _reference(net, x)
    assert_matches(r, ref)
    for mine, theirs in zip(r.weight_grads, ref["weight_grads"]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-13)
    for mine, theirs in zip(r.bias_grads, ref["bias_grads"]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("keep_grads", [False, True])
@pytest.mark.parametrize(
    "plain_widths,residual_width,batch",
    [
        # Layers that split into several column tiles (and row tiles), some partial.
        ([70, 300, 150, 200], 200, 150),
        # Weights of at most 8192 entries: split into row tiles, the last one partial.
        ([40, 64, 48, 64], 64, 37),
    ],
    ids=["column-tiles", "row-tiles"],
)
def test_multi_tile_layers_match_numpy_reference(activation, residual, keep_grads,
                                                 plain_widths, residual_width, batch, rng):
    # Every per-tile partial (row norms, column sums, dead units, explicit dW tiles, Grams)
    # must add up to the whole.
    widths = [residual_width] * 4 if residual else plain_widths
    net = pyjac.Chain(3, widths, activation=activation, init="gaussian", gain=1.2,
                      bias_std=0.3, residual=residual, residual_scale=0.8, seed=3,
                      dtype="float64")
    x = rng.standard_normal((batch, widths[0]))
    r = net.backprop(x, keep_grads=keep_grads)
    ref = _reference(net, x)
    np.testing.assert_allclose(r.output, ref["output"], rtol=1e-12, atol=1e-12)
    for name in ("grad_norm", "activation_norm", "weight_grad_norm", "bias_grad_norm",
                 "per_example_weight_grad_norm", "derivative_mean", "dead_fraction"):
        np.testing.assert_allclose(getattr(r, name), ref[name], rtol=1e-10, atol=1e-13,
                                   err_msg=name)
    if keep_grads:
        for mine, theirs in zip(r.weight_grads, ref["weight_grads"]):
            np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)
        for mine, theirs in zip(r.bias_grads, ref["bias_grads"]):
            np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)


def _fd_grad(f, arr, eps=1e-4):
    """Five-point central differences (error O(eps^4)) of the scalar f() with respect to
    every entry of arr, perturbed in place."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        values = []
        for step in (2, 1, -1, -2):
            arr[idx] = old + step * eps
            values.append(f())
        arr[idx] = old
        grad[idx] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * eps)
    return grad


def _rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("residual", [False, True])
def test_gradients_match_finite_differences(activation, norm, residual, rng):
    net = _small_chain(activation, norm, residual, widths=(4, 4, 4, 4))
    x = rng.standard_normal((3, 4))
    target = rng.standard_normal((3, 4))
    r = net.backprop(x, loss="mse", target=target, keep_grads=True)
    loss = lambda: net.backprop(x, loss="mse", target=target).loss  # noqa: E731
    for layer in range(net.depth):
        fd_w = _fd_grad(loss, net.weights[layer])
        assert _rel_err(r.weight_grads[layer], fd_w) < 1e-6, f"weights[{layer}]"
        fd_b = _fd_grad(loss, net.biases[layer])
        if np.linalg.norm(fd_b) > 1e-8:  # batchnorm cancels the bias exactly
            assert _rel_err(r.bias_grads[layer], fd_b) < 1e-6, f"biases[{layer}]"
        else:
            assert np.linalg.norm(r.bias_grads[layer]) < 1e-8
    fd_x = _fd_grad(loss, x)
    assert r.grad_norm[0] == pytest.approx(np.linalg.norm(fd_x), rel=1e-6)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_losses_match_reference_and_finite_differences(loss, rng):
    net = pyjac.Chain(3, [6, 5, 5, 4], activation="tanh", init="xavier", seed=1,
                      dtype="float64")
    x = rng.standard_normal((5, 6))
    target = rng.standard_normal((5, 4)) if loss == "mse" else rng.integers(0, 4, size=5)
    r = net.backprop(x, loss=loss, target=target, keep_grads=True)
    ref = _reference(net, x, loss=loss, target=target)
    assert r.loss == pytest.approx(ref["loss"], rel=1e-12)
    np.testing.assert_allclose(r.grad_norm, ref["grad_norm"], rtol=1e-10)
    fd = _fd_grad(lambda: net.backprop(x, loss=loss, target=target).loss, net.weights[0])
    assert _rel_err(r.weight_grads[0], fd) < 1e-6


def test_grad_output_is_pure_backward_propagation(rng):
    net = pyjac.Chain(4, 6, activation="gelu", seed=2, dtype="float64")
    x = rng.standard_normal((3, 6))
    g = rng.standard_normal((3, 6))
    r = net.backprop(x, grad_output=g)
    assert r.loss is None
    ref = _reference(net, x, grad_output=g)
    np.testing.assert_allclose(r.grad_norm, ref["grad_norm"], rtol=1e-12)
    assert r.grad_norm[-1] == pytest.approx(np.linalg.norm(g), rel=1e-14)


def test_per_layer_activation_list_and_varying_widths(rng):
    acts = ["relu", "tanh", "sigmoid", "gelu", "linear"]
    net = pyjac.Chain(5, [7, 9, 3, 8, 2, 5], activation=acts, init="xavier_uniform",
                      bias_std=0.1, seed=4, dtype="float64")
    assert net.widths == [7, 9, 3, 8, 2, 5]
    assert net.activation == acts
    x = rng.standard_normal((6, 7))
    r = net.backprop(x, keep_grads=True)
    ref = _reference(net, x)
    np.testing.assert_allclose(r.grad_norm, ref["grad_norm"], rtol=1e-10)
    np.testing.assert_allclose(r.weight_grad_norm, ref["weight_grad_norm"], rtol=1e-10)
    assert [w.shape for w in r.weight_grads] == [w.shape for w in net.weights]


def test_one_dimensional_input_is_a_batch_of_one(rng):
    net = pyjac.Chain(3, 5, activation="silu", seed=5, dtype="float64")
    x = rng.standard_normal(5)
    r1 = net.backprop(x)
    r2 = net.backprop(x[None, :])
    np.testing.assert_array_equal(r1.grad_norm, r2.grad_norm)
    assert r1.output.shape == (5,)
    assert r1.per_example_weight_grad_norm.shape == (3, 1)


def test_ghost_norm_equals_explicit_weight_gradient_norm(rng):
    # batch 8 < width 64: the core takes the Gram-matrix route unless keep_grads is set.
    net = pyjac.Chain(6, 64, activation="tanh", init="orthogonal", seed=6, dtype="float64")
    x = rng.standard_normal((8, 64))
    ghost = net.backprop(x)
    explicit = net.backprop(x, keep_grads=True)
    np.testing.assert_allclose(ghost.weight_grad_norm, explicit.weight_grad_norm, rtol=1e-12)
    direct = [np.linalg.norm(g) for g in explicit.weight_grads]
    np.testing.assert_allclose(ghost.weight_grad_norm, direct, rtol=1e-12)
    # Per-example norms square-sum to at least the batch norm's square (triangle inequality).
    per = ghost.per_example_weight_grad_norm
    assert np.all(per.sum(axis=1) >= ghost.weight_grad_norm * (1 - 1e-12))


@settings(max_examples=40, deadline=None)
@given(
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    batch=st.integers(2, 5),
    activation=st.sampled_from(ACTIVATIONS),
    norm=st.sampled_from([None, "layernorm"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_random_chains_match_reference(widths, batch, activation, norm, seed):
    if norm == "layernorm" and min(widths[1:]) < 2:
        norm = None  # a one-unit layernorm is constant: a valid but degenerate case
    net = pyjac.Chain(len(widths) - 1, widths, activation=activation, init="gaussian",
                      bias_std=0.3, norm=norm, seed=seed, dtype="float64")
    x = np.random.default_rng(seed).standard_normal((batch, widths[0]))
    r = net.backprop(x)
    ref = _reference(net, x)
    np.testing.assert_allclose(r.grad_norm, ref["grad_norm"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.weight_grad_norm, ref["weight_grad_norm"], rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_float32_activations_within_a_few_ulp(activation):
    # float32 chains evaluate tanh and the logistic through a vectorised exp: within
    # 4 ulp of the float64 function over the whole range, subnormal tail included.
    u = np.concatenate([np.linspace(-110, 30, 200001), np.linspace(-1e-3, 1e-3, 1001)])
    u = u.astype(np.float32)
    net = pyjac.Chain.from_weights([np.eye(1, dtype=np.float32)], activation=activation)
    out = net.backprop(u[:, None]).output[:, 0].astype(np.float64)
    x = u.astype(np.float64)
    e = np.exp(-np.abs(x))  # the logistic without cancellation in either tail
    ref = np.tanh(x) if activation == "tanh" else np.where(x >= 0, 1.0, e) / (1.0 + e)
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(out - ref) <= 4 * ulp)


@pytest.mark.parametrize("norm", [None, "layernorm"])
@pytest.mark.parametrize("widths", [[12, 12, 12, 12, 5], [7, 12, 12, 12, 12], [300, 200, 200, 10]])
def test_residual_chain_skips_only_the_layers_that_keep_their_width(norm, widths, rng):
    # A readout (or an embedding) that changes the width has no skip connection; every
    # other layer of a residual chain does. Backprop, the Jacobian and J^T u all follow.
    depth = len(widths) - 1
    net = pyjac.Chain(depth, widths, activation="tanh", init="gaussian", gain=1.1,
                      bias_std=0.2, residual=True, residual_scale=0.7, norm=norm, seed=5,
                      dtype="float64")
    x = rng.standard_normal((6, widths[0]))
    target = rng.standard_normal((6, widths[-1]))
    r = net.backprop(x, loss="mse", target=target, keep_grads=True)
    ref = _reference(net, x, loss="mse", target=target)
    np.testing.assert_allclose(r.output, ref["output"], rtol=1e-12, atol=1e-12)
    for name in ("grad_norm", "weight_grad_norm", "bias_grad_norm"):
        np.testing.assert_allclose(getattr(r, name), ref[name], rtol=1e-10, err_msg=name)
    if max(widths) <= 12:
        loss = lambda: net.backprop(x, loss="mse", target=target).loss  # noqa: E731
        for l in (0, depth - 1):
            fd = _fd_grad(loss, net.weights[l])
            assert _rel_err(r.weight_grads[l], fd) < 1e-7
        J = net.jacobian(x[0])
        def out(v):
            return net.backprop(v, grad_output=np.zeros(widths[-1])).output

        fd_j = np.stack([(out(x[0] + 1e-6 * e) - out(x[0] - 1e-6 * e)) / 2e-6
                         for e in np.eye(widths[0])], axis=1)
        np.testing.assert_allclose(J, fd_j, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("norm", [None, "layernorm", "batchnorm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_is_the_reference_output(norm, dtype, rng):
    net = pyjac.Chain(4, [12, 20, 20, 20, 7], activation=["tanh", "relu", "gelu", "linear"],
                      bias_std=0.1, norm=norm, seed=2, dtype=dtype)
    x = rng.standard_normal((9, 12))
    kept = x.copy()
    out = net.forward(x)
    assert out.dtype == np.dtype(dtype) and out.shape == (9, 7)
    ref = _reference(net, x)["output"]
    np.testing.assert_allclose(out, ref, rtol=1e-4 if dtype == "float32" else 1e-12,
                               atol=1e-5 if dtype == "float32" else 1e-12)
    np.testing.assert_array_equal(out, net.backprop(x).output)  # the same pass
    np.testing.assert_array_equal(net(x), out)
    np.testing.assert_array_equal(x, kept)
    if norm != "batchnorm":
        np.testing.assert_array_equal(net.forward(x[0]), out[0])
    np.testing.assert_array_equal(net.forward(x, n_threads=1), net.forward(x, n_threads=2))
    with pytest.raises(ValueError, match="x: expected shape"):
        net.forward(np.ones((3, 5)))


def _ulps(got, want):
    """|got - want| in units of float64's spacing at want (want in long double)."""
    spacing = np.spacing(np.abs(want.astype(np.float64)))
    spacing = np.where(spacing == 0, np.finfo(np.float64).smallest_subnormal, spacing)
    return np.abs((got.astype(np.longdouble) - want) / spacing.astype(np.longdouble))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_float64_activations_are_within_a_few_ulp_everywhere(activation):
    # tanh and sigmoid are evaluated by a vectorised exp of pyjac's own; a one-layer
    # identity chain shows them as they are. Reference: the C library's long double
    # functions (x86's 80-bit tanhl/expl), over every binade from 2^-1074 to 2^10 and
    # both signs, the switch at |u| = 0.625, and the ends of float64's exp.
    rng = np.random.default_rng(21)
    binades = np.ldexp(rng.uniform(1, 2, 4096), rng.integers(-1074, 10, 4096))
    x = np.concatenate([binades, -binades, rng.uniform(-40, 40, 4096),
                        np.linspace(0.62, 0.63, 257), [0.625, -0.625, 0.0, -0.0],
                        [-708.4, -709.8, -745.0, -745.2, 709.0, 710.0, 745.2, 800.0]])
    net = pyjac.Chain.from_weights([np.ones((1, 1))], activation=activation)
    got = net.forward(x[:, None])[:, 0]  # one unit, one example per value
    xl = x.astype(np.longdouble)
    want = np.tanh(xl) if activation == "tanh" else 1 / (1 + np.exp(-xl))
    worst = _ulps(got, want)
    assert np.max(worst) <= 3.0, x[np.argmax(worst)]


@pytest.mark.parametrize("norm", [None, "layernorm"])  # tile at a time, layer at a time
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_through_depth_alone_is_the_same_gradient(norm, residual, dtype):
    # weight_grads=False skips the weight and bias gradients (and the ghost norm's
    # Grams): the gradient through depth must not change by a bit, at any thread count,
    # including a pass that rescales (an output gradient below the dtype's range).
    rng = np.random.default_rng(22)
    net = pyjac.Chain(12, 48, activation="tanh", residual=residual, norm=norm, seed=5,
                      dtype=dtype)
    x = rng.standard_normal((40, 48))
    tiny = 2.0 ** (-140 if dtype == "float32" else -1040)
    for kw in ({}, {"grad_output": rng.standard_normal((40, 48)) * tiny}):
        full = net.backprop(x, **kw)
        for n_threads in (1, 2):
            lean = net.backprop(x, weight_grads=False, n_threads=n_threads, **kw)
            for name in ("grad_norm", "log_grad_norm", "activation_norm", "derivative_mean",
                         "saturated_fraction", "dead_fraction"):
                np.testing.assert_array_equal(getattr(lean, name), getattr(full, name), name)
            assert lean.first_underflow_layer == full.first_underflow_layer
            assert lean.loss == full.loss and lean.depth == 12
            for name in ("weight_grad_norm", "bias_grad_norm", "log_weight_grad_norm",
                         "log_bias_grad_norm", "per_example_weight_grad_norm"):
                assert getattr(lean, name) is None, name


def test_gradient_through_depth_alone_refuses_to_keep_weight_gradients():
    net = pyjac.Chain(3, 8, seed=0)
    with pytest.raises(ValueError, match="keep_grads"):
        net.backprop(np.ones((2, 8)), keep_grads=True, weight_grads=False)
    with pytest.raises(TypeError, match="weight_grads"):
        net.backprop(np.ones((2, 8)), weight_grads=1)
