"""Bad input gets a clear error naming the argument; nothing crashes."""

import numpy as np
import pytest

import pyjac


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(depth=0, width=4), ValueError, "depth"),
        (dict(depth=2.5, width=4), TypeError, "depth"),
        (dict(depth=2, width=0), ValueError, "width"),
        (dict(depth=2, width=[4, 4]), ValueError, "width"),
        (dict(depth=2, width=4, activation="swish"), ValueError, "activation"),
        (dict(depth=2, width=4, activation=["relu"]), ValueError, "activation"),
        (dict(depth=2, width=4, init="kaiming"), ValueError, "init"),
        (dict(depth=2, width=4, norm="groupnorm"), ValueError, "norm"),
        (dict(depth=2, width=4, dtype="int32"), TypeError, "dtype"),
        (dict(depth=2, width=4, dtype="float16"), TypeError, "dtype"),
        (dict(depth=2, width=4, gain=float("nan")), ValueError, "gain"),
        (dict(depth=2, width=4, bias_std=-1.0), ValueError, "bias_std"),
        (dict(depth=2, width=4, seed=-1), ValueError, "seed"),
        (dict(depth=2, width=4, residual="yes"), TypeError, "residual"),
        (dict(depth=10**6, width=10**5), MemoryError, "depth"),
    ],
)
def test_constructor_errors(kwargs, exc, match):
    depth = kwargs.pop("depth")
    width = kwargs.pop("width")
    with pytest.raises(exc, match=match):
        pyjac.Chain(depth, width, **kwargs)


def test_from_weights_errors():
    with pytest.raises(ValueError, match="weights"):
        pyjac.Chain.from_weights([])
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        pyjac.Chain.from_weights([np.ones((3, 4)), np.ones((3, 4))])
    with pytest.raises(ValueError, match=r"weights\[0\].*NaN"):
        pyjac.Chain.from_weights([np.full((3, 3), np.nan)])
    with pytest.raises(TypeError, match=r"weights\[0\]"):
        pyjac.Chain.from_weights([np.array([["a", "b"]])])
    with pytest.raises(ValueError, match=r"biases\[0\]"):
        pyjac.Chain.from_weights([np.ones((3, 3))], [np.ones(4)])
    with pytest.raises(ValueError, match="biases"):
        pyjac.Chain.from_weights([np.ones((3, 3))], [np.ones(3), np.ones(3)])
    with pytest.raises(ValueError, match=r"biases\[0\].*NaN"):
        pyjac.Chain.from_weights([np.ones((3, 3))], [np.array([1.0, np.inf, 0.0])])


@pytest.fixture
def net():
    return pyjac.Chain(3, [4, 5, 5, 3], activation="tanh", seed=0)


@pytest.mark.parametrize(
    "x,kwargs,exc,match",
    [
        (np.ones((2, 5)), {}, ValueError, "x"),
        (np.ones((2, 4, 1)), {}, ValueError, "x"),
        (np.ones((0, 4)), {}, ValueError, "x"),
        (np.array([1.0, np.nan, 0, 0]), {}, ValueError, "x.*NaN"),
        (np.array(["a", "b", "c", "d"]), {}, TypeError, "x"),
        (np.ones(4), dict(loss="hinge"), ValueError, "loss"),
        (np.ones(4), dict(loss="mse"), ValueError, "target"),
        (np.ones((2, 4)), dict(loss="mse", target=np.ones((2, 4))), ValueError, "target"),
        (np.ones((2, 4)), dict(loss="mse", target=np.full((2, 3), np.inf)), ValueError, "target"),
        (np.ones((2, 4)), dict(loss="cross_entropy", target=np.array([0.5, 1.0])), TypeError,
         "target"),
        (np.ones((2, 4)), dict(loss="cross_entropy", target=np.array([0, 3])), ValueError,
         "target"),
        (np.ones((2, 4)), dict(loss="cross_entropy", target=np.array([0, -1])), ValueError,
         "target"),
        (np.ones((2, 4)), dict(loss="cross_entropy", target=np.array([0])), ValueError,
         "target"),
        (np.ones((2, 4)), dict(target=np.ones((2, 3))), ValueError, "target"),
        (np.ones((2, 4)), dict(grad_output=np.ones((2, 4))), ValueError, "grad_output"),
        (np.ones((2, 4)), dict(grad_output=np.ones((2, 3)), loss="mse"), ValueError,
         "grad_output"),
        (np.ones((2, 4)), dict(n_threads=0), ValueError, "n_threads"),
        (np.ones((2, 4)), dict(n_threads=-2), ValueError, "n_threads"),
        (np.ones((2, 4)), dict(n_threads=1.5), TypeError, "n_threads"),
    ],
)
def test_backprop_errors(net, x, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        net.backprop(x, **kwargs)


def test_batchnorm_needs_two_examples():
    net = pyjac.Chain(2, 4, norm="batchnorm")
    with pytest.raises(ValueError, match="x.*batchnorm"):
        net.backprop(np.ones(4))


def test_impossible_batch_is_a_memory_error_before_allocation():
    # x itself is 32 MiB; keeping 1000 layers of its activations would need ~31 GiB.
    net = pyjac.Chain(1000, 64, activation="relu", seed=0)
    x = np.zeros((131072, 64), dtype=np.float32)
    with pytest.raises(MemoryError, match="x"):
        net.backprop(x)


def test_integer_and_list_inputs_are_converted(net):
    r1 = net.backprop([[1, 2, 3, 4]])
    r2 = net.backprop(np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32))
    np.testing.assert_array_equal(r1.grad_norm, r2.grad_norm)


def test_repr_and_attributes(net):
    assert "Chain(depth=3" in repr(net) and "tanh" in repr(net)
    r = net.backprop(np.ones(4))
    assert "BackpropResult(depth=3" in repr(r)
    assert net.depth == 3 and net.widths == [4, 5, 5, 3]
    assert [w.shape for w in net.weights] == [(5, 4), (5, 5), (3, 5)]
    assert all(w.dtype == np.float32 for w in net.weights)
    assert r.grad_norm.dtype == np.float64


def test_big_batch_through_narrow_layers_needs_no_batch_squared_memory():
    # Narrow layers form dW instead of batch x batch Gram matrices, so a large batch
    # must not be refused for memory it would never allocate.
    net = pyjac.Chain(3, 2, activation="tanh", seed=0)
    x = np.random.default_rng(0).standard_normal((300_000, 2))
    r = net.backprop(x)
    assert np.isfinite(r.grad_norm).all() and r.weight_grad_norm.shape == (3,)
