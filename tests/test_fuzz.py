"""Property-based fuzzing of the public API (hypothesis).

Random valid and invalid arguments: shapes, dtypes (int, bool, complex, object,
float16, float32, float64), Fortran-order, non-contiguous and read-only arrays, lists,
NaN/inf scalars, extreme values and sizes. Whatever comes in:
- nothing crashes; an error is a ValueError, TypeError or MemoryError whose message
  starts with the name of an argument;
- the caller's arrays are never modified;
- a result equals the one computed from C-contiguous copies of the same inputs.
The number of calls tried is printed at the end of the run (conftest.py).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyjac

FUZZ_CALLS = {"n": 0}

# PYJAC_FUZZ_EXAMPLES=5000 PYJAC_FUZZ_RANDOM=1 for a longer, non-repeating hunt.
FUZZ = settings(max_examples=int(os.environ.get("PYJAC_FUZZ_EXAMPLES", "250")), deadline=None,
                derandomize=not os.environ.get("PYJAC_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ARGUMENT_NAMES = (
    "x", "xs", "h0", "c0", "y", "target", "grad_output", "matrix", "weights", "biases",
    "W", "U", "b", "k", "depth", "width", "steps", "iters", "tol", "n_threads", "loss",
    "loss_scale", "keep_grads", "activation", "per_layer", "singular_values_at", "gain",
    "bias_std", "sigma_w2", "sigma_b2", "q", "q0", "lr", "epochs", "batch_size", "seed",
    "clip", "model_or_weights", "method", "input_size", "cell", "spectral_radius", "dtype",
    "norm", "init", "residual", "residual_scale", "grad_dtype", "momentum", "shuffle",
    "copy", "validation", "chain", "forget_bias", "steps", "optimizer", "betas", "eps",
    "weight_decay", "nesterov", "predict", "readout", "weight_bins", "model", "clip_mode",
    "n", "length", "delay", "symbols", "kind", "v", "which", "max_iter", "samples",
    "n_vectors", "n_grid", "sigma", "return_eigenvectors", "heads", "mlp_ratio",
    "attention", "causal", "name", "parameters", "probes", "per_block",
)

DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int8, np.bool_, np.complex128,
          object]


@st.composite
def arrays(draw, shape_options):
    """An array whose shape is one of ``shape_options`` (or a random wrong one), of any
    dtype and memory layout, or the same data as a nested list or a scalar."""
    shape = draw(st.one_of(st.sampled_from(shape_options),
                           st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)))
    dtype = draw(st.sampled_from(DTYPES))
    special = draw(st.sampled_from([None, None, None, np.nan, np.inf, 1e300, 1e-310, 0.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    base = rng.standard_normal(shape) if shape else np.asarray(rng.standard_normal())
    if special is not None and base.size:
        base.flat[draw(st.integers(0, base.size - 1))] = special
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = base.astype(dtype) if dtype is not object else base.astype(object)
    layout = draw(st.sampled_from(["c", "f", "strided", "readonly", "list", "scalar"]))
    if layout == "f":
        arr = np.asfortranarray(arr)
    elif layout == "strided" and arr.ndim >= 1:
        arr = np.repeat(arr, 2, axis=-1)[..., ::2]
    elif layout == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
    elif layout == "list":
        return arr.tolist()
    elif layout == "scalar":
        return arr.flat[0] if arr.size else 0.0
    return arr


def _snapshot(values):
    return [np.array(v, copy=True) if isinstance(v, np.ndarray) else v for v in values]


def _unchanged(before, after):
    for a, b in zip(before, after):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.dtype != object:
                assert np.array_equal(a, b, equal_nan=True), "an input was modified"


def _contiguous(v):
    if isinstance(v, np.ndarray):
        out = np.ascontiguousarray(v).copy()
        return out
    return v


def _values(result):
    """The numbers of a result object, for comparing two calls."""
    if isinstance(result, np.ndarray):
        return [result]
    out = []
    for name in sorted(vars(result)) if hasattr(result, "__dict__") else []:
        value = getattr(result, name)
        if isinstance(value, np.ndarray) and value.dtype != object:
            out.append(value)
        elif isinstance(value, float):
            out.append(np.asarray(value))
    return out


def call_checked(fn, *args, **kwargs):
    """fn(*args, **kwargs) under the fuzz contract; returns the result or None."""
    FUZZ_CALLS["n"] += 1
    before = _snapshot(list(args) + list(kwargs.values()))
    try:
        result = fn(*args, **kwargs)
    except (ValueError, TypeError, MemoryError) as exc:
        message = str(exc)
        assert message.startswith(ARGUMENT_NAMES), f"{type(exc).__name__}: {message}"
        _unchanged(before, list(args) + list(kwargs.values()))
        return None
    _unchanged(before, list(args) + list(kwargs.values()))
    again = fn(*[_contiguous(a) for a in args], **{k: _contiguous(v) for k, v in kwargs.items()})
    for a, b in zip(_values(result), _values(again)):
        np.testing.assert_array_equal(a, b)
    return result


NET = pyjac.Chain(3, [4, 5, 5, 3], activation="tanh", seed=1)
NET64 = pyjac.Chain(2, 4, activation="relu", dtype="float64", seed=2)
RNN = pyjac.Recurrent(4, 2, cell="lstm", seed=3)


@FUZZ
@given(x=arrays([(4,), (2, 4), (0, 4), (3, 4)]),
       loss=st.sampled_from(["sum_squares", "mse", "cross_entropy", "nope", 3]),
       target=st.one_of(st.none(), arrays([(2, 3), (3, 3), (2,), (3,)])),
       keep=st.sampled_from([True, False, "no", 1]),
       threads=st.sampled_from([None, 1, 2, -1, 0, 10**6, 2.5]))
def test_fuzz_backprop(x, loss, target, keep, threads):
    call_checked(NET.backprop, x, loss=loss, target=target, keep_grads=keep, n_threads=threads)


@FUZZ
@given(x=arrays([(4,), (2, 4), (0, 4), (3, 4)]),
       loss=st.sampled_from(["sum_squares", "mse", "cross_entropy", "nope"]),
       target=st.one_of(st.none(), arrays([(2, 3), (3, 3), (2,), (3,)])),
       kind=st.sampled_from(["hessian", "gauss_newton", "fisher", 1]),
       per_layer=st.sampled_from([False, True, "yes"]),
       v=arrays([(73,), (72,), (0,)]),
       k=st.sampled_from([1, 2, 0, -1, 1.5, 10**6]),
       which=st.sampled_from(["largest", "smallest", "both", "middle"]),
       tol=st.sampled_from([None, 1e-6, 0.0, -1.0, float("nan")]),
       samples=st.sampled_from([1, 2, 9, 0, -3, 2.5]))
def test_fuzz_hessian(x, loss, target, kind, per_layer, v, k, which, tol, samples):
    H = call_checked(NET.hessian, x, loss=loss, target=target, kind=kind, per_layer=per_layer)
    if H is None:
        return
    call_checked(H.hvp, v)
    call_checked(H.eigenvalues, k, which, tol=tol, max_iter=20)
    call_checked(H.trace, samples)
    call_checked(H.density, n_vectors=2, steps=samples)


HESSIANS = [NET.hessian(np.ones((2, 4)) * 0.3),
            NET64.hessian(np.eye(4)[:3], loss="mse", target=np.zeros((3, 4)), per_layer=True)]


@FUZZ
@given(which_h=st.sampled_from([0, 1]), v=arrays([(73,), (40,), (3, 4)]),
       k=st.sampled_from([1, 3, 0, 2.5, 10**9]),
       which=st.sampled_from(["largest", "smallest", "both", 0]),
       tol=st.sampled_from([None, 1e-3, 0.0, float("inf"), "a"]),
       max_iter=st.sampled_from([None, 5, 0, -1, 10**12]),
       samples=st.sampled_from([1, 3, 99, 0, 10**12, None]),
       method=st.sampled_from(["hutch++", "hutchinson", "exact"]),
       seed=st.sampled_from([0, -1, 2**64, 7.5]),
       sigma=st.sampled_from([None, 0.1, 0.0, -1.0, float("nan")]),
       n_grid=st.sampled_from([2, 100, 1, 10**12]))
def test_fuzz_hessian_methods(which_h, v, k, which, tol, max_iter, samples, method, seed,
                              sigma, n_grid):
    H = HESSIANS[which_h]
    call_checked(H.hvp, v)
    call_checked(H.eigenvalues, k, which, tol=tol, max_iter=max_iter, seed=seed)
    call_checked(H.trace, samples, method=method, seed=seed)
    call_checked(H.density, n_vectors=2, steps=5, n_grid=n_grid, sigma=sigma, seed=seed)


TRANSFORMER = pyjac.Transformer(2, 8, 2, 5, mlp_ratio=1.5, seed=4, dtype="float64")


@FUZZ
@given(x=arrays([(5, 8), (2, 5, 8), (0, 5, 8), (2, 4, 8), (2, 5, 7)]),
       loss=st.sampled_from(["sum_squares", "mse", "cross_entropy", 3]),
       target=st.one_of(st.none(), arrays([(2, 5, 8), (5, 8), (2, 5)])),
       threads=st.sampled_from([None, 1, 2, 0, 2.5]))
def test_fuzz_transformer_backprop(x, loss, target, threads):
    call_checked(TRANSFORMER.backprop, x, loss=loss, target=target, n_threads=threads)
    call_checked(TRANSFORMER.backprop, x, grad_output=target)


@FUZZ
@given(x=arrays([(5, 8), (1, 5, 8), (2, 5, 8), (0, 8), (5, 7)]),
       per_block=st.sampled_from([False, True, "no"]),
       iters=st.sampled_from([1, 20, 0, -2, 2.5]),
       tol=st.sampled_from([1e-6, 0.0, float("nan")]),
       probes=st.sampled_from([None, 4, 0, -1, 1.5]))
def test_fuzz_transformer_jacobians(x, per_block, iters, tol, probes):
    call_checked(TRANSFORMER.spectral_norm, x, per_block, iters, tol)
    call_checked(TRANSFORMER.jacobian_norms, x, probes=probes, iters=iters, tol=tol)


@FUZZ
@given(depth=st.sampled_from([1, 2, 0, -1, 3.5, 10**9, float("nan")]),
       width=st.sampled_from([8, 0, 7, -1, 2.5]),
       heads=st.sampled_from([2, 3, 0, -2, "a"]),
       mlp_ratio=st.sampled_from([4, 0, -1, 0.01, float("nan")]),
       norm=st.sampled_from(["pre", "post", None, "mid"]),
       activation=st.sampled_from(["gelu", "relu", "tanh"]),
       scale=st.sampled_from([1.0, 0.0, -1.0, float("inf")]))
def test_fuzz_transformer_constructor(depth, width, heads, mlp_ratio, norm, activation, scale):
    net = call_checked(pyjac.Transformer, depth, width, heads, 3, mlp_ratio=mlp_ratio,
                       norm=norm, activation=activation, residual_scale=scale)
    if net is not None and net.depth * net.width <= 64:
        call_checked(net.backprop, np.ones((1, 3, net.width)))


@FUZZ
@given(x=arrays([(4,), (2, 4)]), at=st.sampled_from([None, [1], [0], [5], ["a"], 2]))
def test_fuzz_jacobian_norms(x, at):
    call_checked(NET64.jacobian_norms, x, singular_values_at=at)


@FUZZ
@given(x=arrays([(4,), (1, 4)]), iters=st.sampled_from([1, 10, 0, -3, 2.0]),
       tol=st.sampled_from([1e-6, 0.0, -1.0, float("nan"), 1e300]))
def test_fuzz_chain_spectral_norm(x, iters, tol):
    call_checked(NET64.spectral_norm, x, iters=iters, tol=tol)


@FUZZ
@given(m=arrays([(3, 3), (2, 5), (1, 1), (0, 3)]))
def test_fuzz_matrix_spectral_norm(m):
    call_checked(pyjac.spectral_norm, m, iters=50)


@FUZZ
@given(w0=arrays([(3, 4), (4, 4)]), w1=arrays([(2, 3), (2, 4)]),
       b=st.sampled_from([None, "zeros", 3, "ragged"]))
def test_fuzz_from_weights(w0, w1, b):
    biases = {None: None, 3: 3, "ragged": [np.zeros(3), [0.0, [1.0]]],
              "zeros": [np.zeros(3), np.zeros(2)]}[b]
    net = call_checked(pyjac.Chain.from_weights, [w0, w1], biases, activation="tanh")
    if net is not None:
        call_checked(net.backprop, np.ones((2, net.widths[0])))


@FUZZ
@given(xs=st.one_of(st.none(), arrays([(3, 2, 2), (3, 1, 2), (0, 2, 2)])),
       h0=st.one_of(st.none(), arrays([(2, 4), (1, 4)])),
       steps=st.sampled_from([None, 3, 0, -1, 2**40]),
       clip=st.sampled_from([None, ("norm", 1.0), ("value", 0.1), ("norm", -1.0), "x"]))
def test_fuzz_recurrent_backprop(xs, h0, steps, clip):
    call_checked(RNN.backprop, xs, steps=steps, h0=h0, clip=clip)


@FUZZ
@given(x=arrays([(6, 4), (5, 4)]), y=arrays([(6,), (5,), (6, 3)]),
       loss=st.sampled_from(["cross_entropy", "mse"]),
       lr=st.sampled_from([0.1, 0.0, float("inf"), 10**400]),
       shuffle=st.sampled_from([True, "no"]))
def test_fuzz_train(x, y, loss, lr, shuffle):
    if isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "iub":
        y = np.abs(y.astype(np.int64)) % 3

    def train_fresh(*args, **kwargs):  # training changes the chain: a new one per call
        return pyjac.train(pyjac.Chain(1, [4, 3], dtype="float64", seed=4), *args, **kwargs)

    call_checked(train_fresh, x, y, epochs=1, lr=lr, loss=loss, batch_size=2, shuffle=shuffle)


@FUZZ
@given(x=arrays([(6, 4), (5, 4)]), y=arrays([(6,), (6, 3)]),
       optimizer=st.sampled_from(["sgd", "adam", "adamw", "Adam", "rmsprop", None]),
       momentum=st.sampled_from([0.0, 0.9, 1.0, -0.1, float("nan")]),
       nesterov=st.sampled_from([False, True, "yes"]),
       weight_decay=st.sampled_from([None, 0.0, 0.1, -1.0, float("inf")]),
       betas=st.sampled_from([(0.9, 0.999), (0.0, 0.0), (1.0, 0.9), (0.9,), 0.9, ("a", 1)]),
       eps=st.sampled_from([1e-8, 0.0, -1.0, 1e300, float("nan")]),
       clip=st.sampled_from([None, 0.5, 1e-300, -1.0]),
       bins=st.sampled_from([32, None, 1, 0, 10**9, 2.5]))
def test_fuzz_train_optimizers(x, y, optimizer, momentum, nesterov, weight_decay, betas, eps,
                               clip, bins):
    if isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "iub":
        y = np.abs(y.astype(np.int64)) % 3

    def train_fresh(*args, **kwargs):
        return pyjac.train(pyjac.Chain(2, [4, 5, 3], dtype="float64", seed=4), *args, **kwargs)

    call_checked(train_fresh, x, y, epochs=2, optimizer=optimizer, momentum=momentum,
                 nesterov=nesterov, weight_decay=weight_decay, betas=betas, eps=eps, clip=clip,
                 weight_bins=bins, batch_size=2)


@FUZZ
@given(x=arrays([(5, 3, 2), (4, 3, 2), (5, 3, 3), (0, 3, 2)]),
       y=arrays([(5, 1), (5,), (5, 3), (5, 3, 1), (4, 3)]),
       cell=st.sampled_from(["tanh", "lstm", "gru", "relu"]),
       loss=st.sampled_from(["mse", "cross_entropy"]),
       predict=st.sampled_from(["last", "every_step", "first", None]),
       readout=st.sampled_from([None, "ok", "wide", "ragged"]),
       optimizer=st.sampled_from(["sgd", "adam"]),
       clip=st.sampled_from([None, 0.1]))
def test_fuzz_train_recurrent(x, y, cell, loss, predict, readout, optimizer, clip):
    if isinstance(y, np.ndarray) and loss == "cross_entropy" and y.dtype.kind in "iub":
        y = np.abs(y.astype(np.int64)) % 3
    given_readout = {None: None, "ok": (np.full((3, 4), 0.1), np.zeros(3)),
                     "wide": (np.zeros((3, 5)), np.zeros(3)), "ragged": ([[0.1] * 4], [0.0, 1])
                     }[readout]

    def train_fresh(*args, **kwargs):
        kwargs["readout"] = (None if given_readout is None
                             else tuple(np.array(a, dtype=object).tolist() for a in given_readout))
        return pyjac.train(pyjac.Recurrent(4, 2, cell=cell, seed=5, dtype="float64"), *args,
                           **kwargs)

    call_checked(train_fresh, x, y, epochs=2, loss=loss, predict=predict, optimizer=optimizer,
                 clip=clip, batch_size=2)


@FUZZ
@given(n=st.sampled_from([1, 5, 0, -2, 2.5, 10**12, 2**31 - 1]),
       length=st.sampled_from([2, 7, 1, 0, "3", 10**6]),
       symbols=st.sampled_from([2, 8, 1, 3.0]),
       dtype=st.sampled_from(["float32", "float64", "int8", None]))
def test_fuzz_tasks(n, length, symbols, dtype):
    call_checked(pyjac.adding_problem, n, length, dtype=dtype)
    call_checked(pyjac.copy_problem, n, length, symbols=symbols, dtype=dtype)


@FUZZ
@given(act=st.sampled_from(["tanh", "relu", "sigmoid", "erf", 3]),
       sw=st.sampled_from([1.0, 0.0, -1.0, 1e300, float("nan"), 10**400, "1"]),
       sb=st.sampled_from([0.0, 0.05, -1.0, 1e300, float("inf")]))
def test_fuzz_theory(act, sw, sb):
    call_checked(pyjac.theory.chi1, act, sw, sb)
    call_checked(pyjac.theory.q_star, act, sw, sb)


@FUZZ
@given(x=arrays([(2, 4), (4,), (3, 5)]))
def test_fuzz_diagnose(x):
    call_checked(pyjac.diagnose, NET64, x)
    call_checked(pyjac.diagnose, [(np.eye(4), np.zeros(4), "tanh"), (x, np.zeros(4), "relu")],
                 np.ones((2, 4)))


@pytest.fixture(scope="module", autouse=True)
def _report_count(request):
    yield
    request.config.stash.setdefault(_COUNT_KEY, 0)
    request.config.stash[_COUNT_KEY] += FUZZ_CALLS["n"]


_COUNT_KEY = pytest.StashKey[int]()


SCALARS = st.sampled_from([0, 1, 2, -1, 3.5, 1e300, -1e-300, float("nan"), float("inf"),
                           10**400, True, None, "2", [1], np.float32(2.0), np.int64(3)])


@FUZZ
@given(depth=SCALARS, width=st.one_of(SCALARS, st.just([4, 5, 3])),
       activation=st.sampled_from(["tanh", "ReLU", "swish", 3, ["tanh", "relu"], None]),
       init=st.sampled_from(["he", "orthogonal", "Identity", "bogus", 1]),
       gain=SCALARS, bias_std=SCALARS, residual=st.sampled_from([False, True, "yes"]),
       norm=st.sampled_from([None, "layernorm", "batchnorm", "x"]),
       dtype=st.sampled_from(["float32", "float64", "float16", np.float64, int, "x"]))
def test_fuzz_chain_constructor(depth, width, activation, init, gain, bias_std, residual,
                                norm, dtype):
    net = call_checked(pyjac.Chain, depth, width, activation=activation, init=init, gain=gain,
                       bias_std=bias_std, residual=residual, norm=norm, dtype=dtype)
    if net is not None:
        for w in net.weights:
            assert np.isfinite(w).all()


@FUZZ
@given(width=SCALARS, input_size=st.sampled_from([0, 2, -1, 1.5]),
       cell=st.sampled_from(["tanh", "LSTM", "gru", "relu", "rnn", 0]),
       radius=SCALARS, gain=SCALARS, forget=SCALARS)
def test_fuzz_recurrent_constructor(width, input_size, cell, radius, gain, forget):
    rnn = call_checked(pyjac.Recurrent, width, input_size, cell=cell, spectral_radius=radius,
                       gain=gain, forget_bias=forget)
    if rnn is not None:
        assert np.isfinite(rnn.W).all() and np.isfinite(rnn.b).all()


@FUZZ
@given(x=arrays([(4,), (2, 4)]), k=st.sampled_from([None, 1, 4, 5, 0, -1, 2.0]),
       depth=st.sampled_from([None, 1, 2, 3, 0, 7]))
def test_fuzz_lyapunov_and_jacobian(x, k, depth):
    call_checked(NET64.lyapunov_exponents, x, k=k)
    call_checked(NET64.jacobian, x, depth=depth)


@FUZZ
@given(xs=st.one_of(st.none(), arrays([(5, 2), (5, 1, 2)])),
       steps=st.sampled_from([None, 5, 0, 3]), k=st.sampled_from([None, 1, 8, 9, 0]))
def test_fuzz_recurrent_jacobians(xs, steps, k):
    call_checked(RNN.jacobian_norms, xs, steps=steps)
    call_checked(RNN.lyapunov_exponents, xs, steps=steps, k=k)


@FUZZ
@given(m=arrays([(3, 3), (2, 2), (2, 3)]))
def test_fuzz_spectral_radius(m):
    call_checked(pyjac.spectral_radius, m)


@FUZZ
@given(act=st.sampled_from(["tanh", "relu", "gelu", "linear", "x"]), sw=SCALARS, sb=SCALARS,
       depth=st.sampled_from([1, 10, 0, -2, 2.5, 10**12]))
def test_fuzz_theory_more(act, sw, sb, depth):
    call_checked(pyjac.theory.depth_scale, act, sw, sb)
    call_checked(pyjac.theory.critical_sigma_w2, act, sb)
    call_checked(pyjac.theory.jacobian_spectrum_moments, act, "gaussian", sw, sb, depth=depth)
