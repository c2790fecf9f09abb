"""Recurrent chains: backprop through time against independent numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyjac

CELLS = ["linear", "tanh", "relu", "sigmoid", "lstm", "gru"]
GATES = {"lstm": 4, "gru": 3}
# Relative tolerances of the C++ pass against float64 references, per dtype.
RTOL = {np.float64: 1e-9, np.float32: 2e-4}


# ---- independent numpy reference ------------------------------------------------------


def _sig(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))  # no overflow warning for large |u|


def ref_run(cell, W, U, b, xs, h0, c0=None, W_at=None, bump=None):
    """Forward pass in float64; returns the lists of states h_0..h_T (and c_0..c_T).

    W_at(t) replaces W at step t (for per-step finite differences); bump = (t, kind,
    delta) adds delta to h_t or c_t right after it is computed.
    """
    n = W.shape[1]
    T, B = xs.shape[0], xs.shape[1]
    h = np.array(h0, dtype=np.float64)
    c = np.zeros((B, n)) if c0 is None else np.array(c0, dtype=np.float64)

    def bumped(t, kind, v):
        if bump is not None and bump[0] == t and bump[1] == kind:
            return v + bump[2]
        return v

    h = bumped(0, "h", h)
    c = bumped(0, "c", c)
    hs, cs = [h], [c]
    for t in range(1, T + 1):
        Wt = W if W_at is None else W_at(t)
        xu = xs[t - 1] @ U.T + b
        if cell == "lstm":
            a = h @ Wt.T + xu
            i, f, g, o = _sig(a[:, :n]), _sig(a[:, n:2 * n]), np.tanh(a[:, 2 * n:3 * n]), _sig(
                a[:, 3 * n:]
            )
            c = bumped(t, "c", f * c + i * g)
            h = o * np.tanh(c)
        elif cell == "gru":
            hw = h @ Wt.T
            r = _sig(xu[:, :n] + hw[:, :n])
            z = _sig(xu[:, n:2 * n] + hw[:, n:2 * n])
            nn = np.tanh(xu[:, 2 * n:] + r * hw[:, 2 * n:])
            h = (1 - z) * nn + z * h
        else:
            u = h @ Wt.T + xu
            h = {"linear": u, "tanh": np.tanh(u), "relu": np.maximum(u, 0), "sigmoid": _sig(u)}[
                cell
            ]
        h = bumped(t, "h", h)
        hs.append(h)
        cs.append(c)
    return hs, cs


def ref_loss(cell, W, U, b, xs, h0, c0=None, loss="last", go=None, **kw):
    hs, _ = ref_run(cell, W, U, b, xs, h0, c0, **kw)
    if go is not None:
        if go.ndim == 2:
            return float(np.sum(go * hs[-1]))
        return float(sum(np.sum(go[t - 1] * hs[t]) for t in range(1, len(hs))))
    if loss == "last":
        return 0.5 * float(np.sum(hs[-1] ** 2))
    return 0.5 * float(sum(np.sum(h**2) for h in hs[1:]))


def central_diff(f, x, eps=1e-6):
    """Gradient of the scalar f at x by central differences (x is modified and restored)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def small_problem(cell, seed=0, n=4, m=3, B=2, T=5, dtype=np.float64):
    rng = np.random.default_rng(seed)
    G = GATES.get(cell, 1)
    W = rng.standard_normal((G * n, n)) * 1.2 / np.sqrt(n)
    U = rng.standard_normal((G * n, m)) * 0.6
    b = rng.standard_normal(G * n) * 0.3
    xs = rng.standard_normal((T, B, m))
    h0 = rng.standard_normal((B, n)) * 0.5
    c0 = rng.standard_normal((B, n)) * 0.5 if cell == "lstm" else None
    rnn = pyjac.Recurrent.from_weights(W.astype(dtype), U.astype(dtype), b.astype(dtype), cell=cell)
    return rnn, W, U, b, xs, h0, c0


# ---- gradients against finite differences -------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", ["last", "all"])
@pytest.mark.parametrize("batch", [2, 17])  # split by blocks of units / by examples
def test_weight_and_state_gradients_match_finite_differences(cell, loss, batch):
    rnn, W, U, b, xs, h0, c0 = small_problem(cell, seed=CELLS.index(cell), B=batch)
    r = rnn.backprop(xs, h0=h0, c0=c0, loss=loss, keep_grads=True)

    def f():
        return ref_loss(cell, W, U, b, xs, h0, c0, loss=loss)

    assert r.loss == pytest.approx(f(), rel=1e-12)
    tol = dict(rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(r.weight_grads["W"], central_diff(f, W), **tol)
    np.testing.assert_allclose(r.weight_grads["U"], central_diff(f, U), **tol)
    np.testing.assert_allclose(r.weight_grads["b"], central_diff(f, b), **tol)
    np.testing.assert_allclose(r.h0_grad, central_diff(f, h0), **tol)
    if cell == "lstm":
        np.testing.assert_allclose(r.c0_grad, central_diff(f, c0), **tol)
    for name in ("W", "U", "b"):
        assert r.weight_grad_norm[name] == pytest.approx(np.linalg.norm(r.weight_grads[name]))


@pytest.mark.parametrize("cell", CELLS)
def test_grad_norm_per_step_is_the_total_derivative(cell):
    rnn, W, U, b, xs, h0, c0 = small_problem(cell, seed=10 + CELLS.index(cell), T=4)
    r = rnn.backprop(xs, h0=h0, c0=c0, loss="all")
    T, B, n = xs.shape[0], xs.shape[1], W.shape[1]
    kinds = ["h", "c"] if cell == "lstm" else ["h"]
    for kind in kinds:
        measured = r.grad_norm if kind == "h" else r.cell_grad_norm
        for t in range(T + 1):
            delta = np.zeros((B, n))
            g = central_diff(
                lambda delta=delta, t=t, kind=kind: ref_loss(
                    cell, W, U, b, xs, h0, c0, loss="all", bump=(t, kind, delta)
                ),
                delta,
            )
            assert measured[t] == pytest.approx(np.linalg.norm(g), rel=1e-6, abs=1e-9), (kind, t)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch", [2, 12])  # Gram-matrix ("ghost") path, explicit path
def test_step_contributions_match_per_step_finite_differences(cell, batch):
    rnn, W, U, b, xs, h0, c0 = small_problem(cell, seed=20 + CELLS.index(cell), B=batch, T=4)
    r = rnn.backprop(xs, h0=h0, c0=c0, keep_grads=True)
    T = xs.shape[0]
    total = np.zeros_like(W)
    for t in range(1, T + 1):
        Wt = W.copy()
        g = central_diff(
            lambda Wt=Wt, t=t: ref_loss(
                cell, W, U, b, xs, h0, c0, W_at=lambda s, Wt=Wt, t=t: Wt if s == t else W
            ),
            Wt,
        )
        total += g
        assert r.step_weight_grad_norm[t - 1] == pytest.approx(np.linalg.norm(g), rel=1e-6)
    np.testing.assert_allclose(total, r.weight_grads["W"], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_grad_output_is_pure_backward_propagation(cell):
    rnn, W, U, b, xs, h0, c0 = small_problem(cell, seed=30)
    rng = np.random.default_rng(1)
    go_last = rng.standard_normal(h0.shape)
    go_all = rng.standard_normal((xs.shape[0],) + h0.shape)
    for go, loss in ((go_last, "last"), (go_all, "all")):
        r = rnn.backprop(xs, h0=h0, c0=c0, loss=loss, grad_output=go, keep_grads=True)
        assert r.loss is None
        f = lambda go=go: ref_loss(cell, W, U, b, xs, h0, c0, go=go)  # noqa: E731
        np.testing.assert_allclose(r.weight_grads["W"], central_diff(f, W), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(r.h0_grad, central_diff(f, h0), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_agrees_with_float64(cell):
    rnn64, W, U, b, xs, h0, c0 = small_problem(cell, seed=40, n=16, m=5, B=3, T=20)
    rnn32 = pyjac.Recurrent.from_weights(
        W.astype(np.float32), U.astype(np.float32), b.astype(np.float32), cell=cell
    )
    assert rnn32.dtype == np.float32
    r64 = rnn64.backprop(xs, h0=h0, c0=c0, keep_grads=True)
    r32 = rnn32.backprop(xs, h0=h0, c0=c0, keep_grads=True)
    np.testing.assert_allclose(r32.grad_norm, r64.grad_norm, rtol=RTOL[np.float32] * 20, atol=1e-6)
    for k in ("W", "U", "b"):
        scale = np.abs(r64.weight_grads[k]).max()
        np.testing.assert_allclose(
            r32.weight_grads[k], r64.weight_grads[k], rtol=0, atol=RTOL[np.float32] * 20 * scale
        )
    hs, _ = ref_run(cell, W, U, b, xs, h0, c0)
    np.testing.assert_allclose(r64.h_last, hs[-1], rtol=RTOL[np.float64], atol=1e-12)
    np.testing.assert_allclose(r32.h_last, hs[-1], rtol=RTOL[np.float32], atol=1e-5)


# ---- the theory of vanishing and exploding gradients ----------------------------------


@pytest.mark.parametrize("a", [0.9, 1.1])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_linear_rnn_on_scaled_orthogonal_scales_exactly_as_a_power(a, dtype):
    T = 60
    rnn = pyjac.Recurrent(32, cell="linear", init="orthogonal", spectral_radius=a, dtype=dtype)
    Q = rnn.W.astype(np.float64) / a
    np.testing.assert_allclose(Q @ Q.T, np.eye(32), atol=1e-6 if dtype == "float32" else 1e-12)
    go = np.random.default_rng(0).standard_normal((3, 32))
    r = rnn.backprop(steps=T, h0=np.ones((3, 32)), grad_output=go)
    expected = np.linalg.norm(go) * a ** (T - np.arange(T + 1))
    np.testing.assert_allclose(r.grad_norm, expected, rtol=1e-4 if dtype == "float32" else 1e-10)


def test_tanh_rnn_vanishes_below_the_pascanu_bound_and_not_above():
    """||W||_2 < 1/gamma (gamma = 1 for tanh) is sufficient for vanishing gradients."""
    T = 200
    for radius in (0.9, 1.5):
        rnn = pyjac.Recurrent(48, cell="tanh", spectral_radius=radius, dtype="float64", seed=3)
        assert np.linalg.norm(rnn.W, 2) == pytest.approx(radius)  # orthogonal: sigma = rho
        r = rnn.backprop(steps=T)
        ratio = r.grad_norm / r.grad_norm[-1]
        if radius < 1:
            bound = radius ** (T - np.arange(T + 1))
            assert np.all(ratio <= bound * (1 + 1e-9))
            assert ratio[0] < 1e-9
        else:
            # Beyond the sufficient condition the chaotic regime makes gradients grow.
            assert ratio[0] > 1e3
            assert ratio[0] > 1e10 * 0.9**T


def test_sigmoid_rnn_obeys_the_quarter_bound():
    """gamma = 1/4 for the sigmoid: ||W||_2 = 3.5 < 4 still forces vanishing."""
    T = 100
    rnn = pyjac.Recurrent(32, cell="sigmoid", spectral_radius=3.5, dtype="float64", seed=1)
    r = rnn.backprop(steps=T)
    bound = (3.5 / 4) ** (T - np.arange(T + 1))
    assert np.all(r.grad_norm / r.grad_norm[-1] <= bound * (1 + 1e-9))


def test_lstm_carries_the_gradient_a_million_times_better_than_tanh():
    T, width = 200, 32
    xs = np.random.default_rng(0).standard_normal((T, 4, 8))
    carried = {}
    for cell in ("tanh", "lstm"):
        rnn = pyjac.Recurrent(
            width, 8, cell=cell, spectral_radius=0.9, forget_bias=5.0, dtype="float64"
        )
        r = rnn.backprop(xs)
        carried[cell] = r.grad_norm[0] / r.grad_norm[-1]
        if cell == "lstm":
            assert np.all(np.isfinite(r.cell_grad_norm))
            assert r.cell_grad_norm[0] > 0
    assert carried["lstm"] >= 1e6 * carried["tanh"]


# ---- clipping ---------------------------------------------------------------------------


def test_norm_clipping_hits_tau_and_keeps_the_direction():
    rnn, W, U, b, xs, h0, c0 = small_problem("tanh", seed=50, n=8, T=10)
    raw = rnn.backprop(xs, h0=h0, keep_grads=True)
    g = np.concatenate([raw.weight_grads[k].ravel() for k in ("W", "U", "b")])
    assert raw.total_grad_norm == pytest.approx(np.linalg.norm(g))
    tau = 0.25 * raw.total_grad_norm
    r = rnn.backprop(xs, h0=h0, keep_grads=True, clip=("norm", tau))
    assert r.total_grad_norm == pytest.approx(raw.total_grad_norm, rel=1e-12)
    assert r.clipped_grad_norm == pytest.approx(tau, rel=1e-12)
    gc = np.concatenate([r.weight_grads[k].ravel() for k in ("W", "U", "b")])
    assert np.linalg.norm(gc) == pytest.approx(tau, rel=1e-12)
    np.testing.assert_allclose(gc, g * (tau / np.linalg.norm(g)), rtol=1e-12, atol=1e-15)
    assert r.clip_cosine == pytest.approx(1.0, abs=1e-12)
    # Below the threshold nothing changes.
    r2 = rnn.backprop(xs, h0=h0, keep_grads=True, clip=("norm", 2 * raw.total_grad_norm))
    np.testing.assert_array_equal(r2.weight_grads["W"], raw.weight_grads["W"])
    assert r2.clipped_grad_norm == pytest.approx(raw.total_grad_norm, rel=1e-12)


def test_value_clipping_changes_the_direction():
    rnn, W, U, b, xs, h0, c0 = small_problem("tanh", seed=51, n=8, T=10)
    raw = rnn.backprop(xs, h0=h0, keep_grads=True)
    g = np.concatenate([raw.weight_grads[k].ravel() for k in ("W", "U", "b")])
    c = 0.2 * np.abs(g).max()
    r = rnn.backprop(xs, h0=h0, keep_grads=True, clip=("value", c))
    gc = np.concatenate([r.weight_grads[k].ravel() for k in ("W", "U", "b")])
    np.testing.assert_allclose(gc, np.clip(g, -c, c), rtol=1e-12)
    cosine = g @ gc / (np.linalg.norm(g) * np.linalg.norm(gc))
    assert cosine < 0.999  # the direction turned
    assert r.clip_cosine == pytest.approx(cosine, rel=1e-10)
    assert r.clipped_fraction == pytest.approx(np.mean(np.abs(g) > c))
    assert r.clipped_grad_norm == pytest.approx(np.linalg.norm(gc), rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(log_tau=st.floats(-4, 4), cell=st.sampled_from(CELLS))
def test_norm_clipping_property(log_tau, cell):
    rnn, W, U, b, xs, h0, c0 = small_problem(cell, seed=52, T=6)
    tau = 10.0**log_tau
    r = rnn.backprop(xs, h0=h0, c0=c0, clip=("norm", tau))
    assert r.clipped_grad_norm == pytest.approx(min(tau, r.total_grad_norm), rel=1e-10)
    assert r.clip_cosine == pytest.approx(1.0, abs=1e-10)


# ---- init, reproducibility, threads ----------------------------------------------------


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_spectral_radius_is_exact_for_every_gate_block(cell):
    rnn = pyjac.Recurrent(24, 5, cell=cell, init="gaussian", spectral_radius=0.7, dtype="float64")
    radii = rnn.spectral_radii()
    assert len(radii) == GATES.get(cell, 1)
    for value in radii.values():
        assert value == pytest.approx(0.7, rel=1e-12)
    n = 24
    for k in range(rnn.gates):
        block = rnn.W[k * n:(k + 1) * n]
        assert np.max(np.abs(np.linalg.eigvals(block))) == pytest.approx(0.7, rel=1e-10)


def test_init_layout_seed_and_forget_bias():
    rnn = pyjac.Recurrent(8, 3, cell="lstm", forget_bias=2.5, seed=7)
    assert rnn.W.shape == (32, 8) and rnn.U.shape == (32, 3) and rnn.b.shape == (32,)
    np.testing.assert_array_equal(rnn.b[8:16], 2.5)
    np.testing.assert_array_equal(np.delete(rnn.b, np.s_[8:16]), 0.0)
    again = pyjac.Recurrent(8, 3, cell="lstm", forget_bias=2.5, seed=7)
    np.testing.assert_array_equal(again.W, rnn.W)
    np.testing.assert_array_equal(again.U, rnn.U)
    other = pyjac.Recurrent(8, 3, cell="lstm", seed=8)
    assert not np.array_equal(other.W, rnn.W)
    ident = pyjac.Recurrent(5, cell="tanh", init="identity", gain=0.5, dtype="float64")
    np.testing.assert_array_equal(ident.W, 0.5 * np.eye(5))
    gauss = pyjac.Recurrent(400, cell="tanh", init="gaussian", gain=2.0, dtype="float64")
    assert np.std(gauss.W) == pytest.approx(2.0 / np.sqrt(400), rel=0.02)
    he = pyjac.Recurrent(400, cell="relu", init="he", dtype="float64")
    assert np.std(he.W) == pytest.approx(np.sqrt(2.0 / 400), rel=0.02)


@pytest.mark.parametrize(
    "cell, width, batch",
    # batch >= 16 splits the work by examples, smaller batches by blocks of units
    [("tanh", 128, 64), ("lstm", 128, 64), ("gru", 100, 64), ("tanh", 256, 8),
     ("lstm", 100, 8), ("gru", 128, 12)],
)
def test_results_identical_for_one_thread_and_all(cell, width, batch):
    # Large enough that the time loops run in parallel; 100 units leave a partial block.
    rnn = pyjac.Recurrent(width, 16, cell=cell, spectral_radius=1.0, seed=2)
    xs = np.random.default_rng(3).standard_normal((13, batch, 16)).astype(np.float32)
    a = rnn.backprop(xs, loss="all", keep_grads=True, clip=("value", 0.01), n_threads=1)
    b = rnn.backprop(xs, loss="all", keep_grads=True, clip=("value", 0.01), n_threads=-1)
    for field in ("grad_norm", "state_norm", "step_weight_grad_norm"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for k in ("W", "U", "b"):
        np.testing.assert_array_equal(a.weight_grads[k], b.weight_grads[k])
    assert a.total_grad_norm == b.total_grad_norm
    w1 = pyjac.Recurrent(64, cell="gru", seed=9).W
    w2 = pyjac.Recurrent(64, cell="gru", seed=9).W
    np.testing.assert_array_equal(w1, w2)


# ---- exploding runs and bad input ---------------------------------------------------------


def test_exploding_run_is_reported_and_completes():
    rnn = pyjac.Recurrent(16, cell="linear", spectral_radius=20.0, dtype="float32")
    r = rnn.backprop(steps=200)
    assert r.first_nonfinite_step is not None
    assert r.first_nonfinite_stage == "forward"
    assert 1 <= r.first_nonfinite_step <= 200
    assert r.grad_norm.shape == (201,)
    assert not np.isfinite(r.state_norm[-1])


def test_backward_explosion_past_float32_is_exact():
    # h stays at zero; W = 10 Q (orthogonal Q), so dL/dh_t grows by exactly 10 per step
    # back, past float32's largest value: the pass carries a power-of-two scale, so the
    # norms are exact (float64 holds them) and nothing is reported non-finite. The
    # bias gradient sums dL/dz_t = dL/dh_t over the steps, which float64 holds.
    rnn = pyjac.Recurrent(16, cell="linear", spectral_radius=10.0, dtype="float32")
    go = np.ones((1, 16), dtype=np.float32)
    r = rnn.backprop(steps=60, h0=np.zeros(16), grad_output=go, keep_grads=True)
    np.testing.assert_allclose(r.grad_norm, 4.0 * 10.0 ** (60 - np.arange(61)), rtol=1e-5)
    assert r.first_nonfinite_stage is None and r.first_nonfinite_step is None
    W = rnn.W.astype(np.float64)
    g, db = go[0].astype(np.float64), np.zeros(16)
    for _ in range(60):  # dL/dh_{t-1} = dL/dh_t W for the linear cell
        db += g
        g = g @ W
    np.testing.assert_allclose(r.total_grad_norm, np.linalg.norm(db), rtol=1e-5)
    assert np.all(np.isinf(r.weight_grads["b"]))  # the true db, rounded to float32
    assert np.all(r.weight_grads["W"] == 0)  # h_{t-1} = 0 at every step


def test_backward_explosion_past_float64_is_reported_as_backward():
    # The same past float64's largest value: the plain norm reads inf where
    # 4 * 10**(T-t) passes ~1.8e308, reported as the backward pass's; the log stays exact.
    rnn = pyjac.Recurrent(16, cell="linear", spectral_radius=10.0, dtype="float32")
    go = np.ones((1, 16), dtype=np.float32)
    r = rnn.backprop(steps=330, h0=np.zeros(16), grad_output=go)
    assert r.first_nonfinite_stage == "backward"
    logs = math.log(4.0) + (330 - np.arange(331)) * math.log(10.0)
    np.testing.assert_allclose(r.log_grad_norm, logs, rtol=1e-6)
    assert r.first_nonfinite_step == int(np.max(np.nonzero(~np.isfinite(r.grad_norm))))


def test_autonomous_and_single_sequence_shapes():
    rnn = pyjac.Recurrent(6, 2, cell="gru", dtype="float64")
    r = rnn.backprop(np.ones((7, 2)), keep_grads=True)
    assert r.grad_norm.shape == (8,) and r.step_weight_grad_norm.shape == (7,)
    assert r.h_last.shape == (6,) and r.h0_grad.shape == (6,)
    auto = pyjac.Recurrent(6, cell="tanh").backprop(steps=5)
    assert auto.state_norm[0] > 0  # seeded random start, not zeros
    assert auto.h_last.shape == (6,)
    batch = rnn.backprop(np.ones((7, 3, 2)), h0=np.zeros((3, 6)))
    assert batch.h_last.shape == (3, 6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(xs=np.ones((5, 2, 4))), "xs"),
        (dict(xs=np.ones((5,))), "xs"),
        (dict(xs=np.ones((5, 2, 3)), steps=4), "steps"),
        (dict(steps=0), "steps"),
        (dict(), "steps"),
        (dict(steps=3, h0=np.ones((2, 5))), "h0"),
        (dict(xs=np.ones((5, 2, 3)), h0=np.ones((3, 6))), "h0"),
        (dict(steps=3, c0=np.ones(6)), "c0"),
        (dict(steps=3, clip=("norm",)), "clip"),
        (dict(steps=3, clip="norm"), "clip"),
        (dict(steps=3, clip=("max", 1.0)), "clip"),
        (dict(steps=3, clip=("norm", 0.0)), "clip"),
        (dict(steps=3, clip=("value", -1.0)), "clip"),
        (dict(steps=3, loss="mean"), "loss"),
        (dict(steps=3, grad_output=np.ones((2, 6))), "grad_output"),
        (dict(xs=np.full((5, 2, 3), np.nan)), "xs"),
        (dict(steps=3, h0=np.full(6, np.inf)), "h0"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs, match):
    rnn = pyjac.Recurrent(6, 3, cell="tanh")
    with pytest.raises(ValueError, match=match):
        rnn.backprop(**kwargs)


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="cell"):
        pyjac.Recurrent(4, cell="transformer")
    with pytest.raises(ValueError, match="width"):
        pyjac.Recurrent(0)
    with pytest.raises(ValueError, match="init"):
        pyjac.Recurrent(4, init="zeros")
    with pytest.raises(TypeError, match="dtype"):
        pyjac.Recurrent(4, dtype="int8")
    with pytest.raises(ValueError, match="spectral_radius"):
        pyjac.Recurrent(4, init="identity", gain=0.0, spectral_radius=0.5)
    with pytest.raises(ValueError, match="W"):
        pyjac.Recurrent.from_weights(np.ones((5, 4)), cell="lstm")
    with pytest.raises(ValueError, match="U"):
        pyjac.Recurrent.from_weights(np.eye(4), np.ones((3, 2)))
    with pytest.raises(ValueError, match="b"):
        pyjac.Recurrent.from_weights(np.eye(4), None, np.ones(3))
    with pytest.raises(ValueError, match="W"):
        pyjac.Recurrent.from_weights(np.full((4, 4), np.nan))


# ---- Jacobian products and Lyapunov exponents ------------------------------------------


def ref_step_jacobians(cell, W, U, b, xs, h0, c0=None, eps=1e-6):
    """The state Jacobians J_t = d s_t / d s_{t-1}, t = 1..T, by central differences of
    one reference step along the reference trajectory (batch 1)."""
    n = W.shape[1]
    hs, cs = ref_run(cell, W, U, b, xs, h0, c0)
    lstm = cell == "lstm"
    S = 2 * n if lstm else n

    def step(t, s):
        h, c = s[None, :n], (s[None, n:] if lstm else None)
        out_h, out_c = ref_run(cell, W, U, b, xs[t - 1:t], h, c)
        return np.concatenate([out_h[-1][0], out_c[-1][0]]) if lstm else out_h[-1][0]

    Js = []
    for t in range(1, xs.shape[0] + 1):
        s = np.concatenate([hs[t - 1][0], cs[t - 1][0]]) if lstm else hs[t - 1][0].copy()
        J = np.zeros((S, S))
        for j in range(S):
            e = np.zeros(S)
            e[j] = eps
            J[:, j] = (step(t, s + e) - step(t, s - e)) / (2 * eps)
        Js.append(J)
    return Js


@pytest.mark.parametrize("a", [0.8, 1.0, 1.25])
def test_linear_scaled_orthogonal_has_every_exponent_ln_a(a):
    T = 40
    rnn = pyjac.Recurrent(24, cell="linear", spectral_radius=a, dtype="float64", seed=4)
    lyap = rnn.lyapunov_exponents(steps=T)
    assert lyap.shape == (24,)
    np.testing.assert_allclose(lyap, np.log(a), atol=1e-12)
    j = rnn.jacobian_norms(steps=T)
    depth = T - np.arange(T + 1)
    np.testing.assert_allclose(j.log_spectral_norm, depth * np.log(a), atol=1e-10)
    np.testing.assert_allclose(j.log_frobenius_norm, depth * np.log(a) + 0.5 * np.log(24),
                               atol=1e-10)
    lyap32 = pyjac.Recurrent(24, cell="linear", spectral_radius=a, seed=4).lyapunov_exponents(
        steps=T, k=5
    )
    np.testing.assert_allclose(lyap32, np.log(a), atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_jacobian_norms_match_explicit_products(cell):
    rnn, W, U, b, xs, h0, c0 = small_problem(cell, seed=60 + CELLS.index(cell), n=5, B=1, T=6)
    r = rnn.jacobian_norms(xs[:, 0], h0=h0[0], c0=None if c0 is None else c0[0])
    Js = ref_step_jacobians(cell, W, U, b, xs, h0, c0)
    T = len(Js)
    S = Js[0].shape[0]
    P = np.eye(S)
    for t in range(T, -1, -1):
        if t < T:
            P = P @ Js[t]  # d s_T / d s_t = J_T ... J_{t+1}
        assert r.log_frobenius_norm[t] == pytest.approx(np.log(np.linalg.norm(P)), abs=1e-6)
        assert r.log_spectral_norm[t] == pytest.approx(np.log(np.linalg.norm(P, 2)), abs=1e-6)
    # With the whole frame, the exponents add up to the volume growth: log|det P| / T.
    lyap = rnn.lyapunov_exponents(xs[:, 0], h0=h0[0], c0=None if c0 is None else c0[0])
    assert lyap.shape == (S,)
    finite = np.isfinite(lyap)
    assert np.all(np.diff(lyap[finite]) <= 0)
    sign, logdet = np.linalg.slogdet(P)
    if np.isfinite(logdet):
        # (finite differences of a nearly singular product: relative accuracy)
        assert lyap.sum() == pytest.approx(logdet / T, rel=1e-6, abs=1e-6)
    else:  # dead ReLUs: a zero direction, exponent -inf
        assert np.all(lyap[~finite] == -np.inf) and not finite.all()


def test_lyapunov_exponents_of_the_lstm_use_the_full_state():
    rnn = pyjac.Recurrent(8, 2, cell="lstm", forget_bias=3.0, dtype="float64", seed=5)
    xs = np.random.default_rng(2).standard_normal((50, 2))
    lyap = rnn.lyapunov_exponents(xs)
    assert lyap.shape == (16,)
    assert rnn.state_size == 16
    # The forget gate bounds the cell path's contraction: with f near 1 the top
    # exponent sits just below zero, far above a tanh RNN's at radius 0.5.
    tanh = pyjac.Recurrent(8, 2, cell="tanh", spectral_radius=0.5, dtype="float64", seed=5)
    assert lyap[0] > tanh.lyapunov_exponents(xs)[0] + 0.3


def test_tanh_spectral_radius_moves_the_top_exponent_through_zero():
    stable = pyjac.Recurrent(64, cell="tanh", spectral_radius=0.9, dtype="float64", seed=3)
    chaotic = pyjac.Recurrent(64, cell="tanh", spectral_radius=1.5, dtype="float64", seed=3)
    assert stable.lyapunov_exponents(steps=300, k=4)[0] < 0
    assert chaotic.lyapunov_exponents(steps=300, k=4)[0] > 0


def test_jacobian_results_identical_for_one_thread_and_all():
    rnn = pyjac.Recurrent(64, 4, cell="lstm", seed=6)  # state 128 rows x 256: parallel loops
    xs = np.random.default_rng(1).standard_normal((10, 4)).astype(np.float32)
    a, b = (rnn.jacobian_norms(xs, n_threads=t) for t in (1, -1))
    np.testing.assert_array_equal(a.log_spectral_norm, b.log_spectral_norm)
    np.testing.assert_array_equal(a.log_frobenius_norm, b.log_frobenius_norm)
    la, lb = (rnn.lyapunov_exponents(xs, k=32, n_threads=t) for t in (1, -1))
    np.testing.assert_array_equal(la, lb)


def test_jacobian_bad_input():
    rnn = pyjac.Recurrent(6, 3, cell="gru")
    with pytest.raises(ValueError, match="xs"):
        rnn.jacobian_norms(np.ones((4, 2, 3)))
    with pytest.raises(ValueError, match="h0"):
        rnn.lyapunov_exponents(steps=4, h0=np.ones((2, 6)))
    with pytest.raises(ValueError, match="k"):
        rnn.lyapunov_exponents(steps=4, k=7)
    with pytest.raises(ValueError, match="steps"):
        rnn.jacobian_norms(steps=0)


# ---- PyTorch's layout, when PyTorch is there -------------------------------------------------


@pytest.mark.parametrize("cell", ["tanh", "relu", "lstm", "gru"])
def test_matches_pytorch_with_the_documented_layout(cell):
    torch = pytest.importorskip("torch")
    n, m, B, T = 6, 3, 2, 7
    rng = np.random.default_rng(70)
    xs = rng.standard_normal((T, B, m))
    h0 = rng.standard_normal((B, n))
    G = GATES.get(cell, 1)
    if cell == "lstm":
        mod = torch.nn.LSTM(m, n).double()
    elif cell == "gru":
        mod = torch.nn.GRU(m, n).double()
    else:
        mod = torch.nn.RNN(m, n, nonlinearity=cell).double()
    with torch.no_grad():
        if cell == "gru":
            mod.bias_hh_l0[2 * n:] = 0.0  # pyjac's GRU has no hidden bias inside r * (...)
    W = mod.weight_hh_l0.detach().numpy().copy()
    U = mod.weight_ih_l0.detach().numpy().copy()
    b = (mod.bias_ih_l0 + mod.bias_hh_l0).detach().numpy().copy()
    assert W.shape == (G * n, n) and U.shape == (G * n, m)
    rnn = pyjac.Recurrent.from_weights(W, U, b, cell=cell)
    r = rnn.backprop(xs, h0=h0, keep_grads=True)

    x_t = torch.from_numpy(xs)
    h_t = torch.from_numpy(h0)[None].requires_grad_(True)
    state = (h_t, torch.zeros_like(h_t)) if cell == "lstm" else h_t
    out, _ = mod(x_t, state)
    loss = 0.5 * (out[-1] ** 2).sum()
    loss.backward()
    assert r.loss == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(r.h_last, out[-1].detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(r.weight_grads["W"], mod.weight_hh_l0.grad.numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(r.weight_grads["U"], mod.weight_ih_l0.grad.numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(r.weight_grads["b"], mod.bias_ih_l0.grad.numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(r.h0_grad, h_t.grad.numpy()[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["tanh", "lstm", "gru"])
def test_vanishing_step_contributions_survive_float32(cell):
    # With a tiny forget/update path and spectral radius 0.3 the early steps' shares of
    # dL/dW fall far below sqrt(float32's smallest normal), where the batch Gram matrices
    # of the ghost norm would underflow: they must still match the float64 run.
    rng = np.random.default_rng(3)
    rnn64 = pyjac.Recurrent(24, input_size=3, cell=cell, spectral_radius=0.3, seed=1,
                            dtype="float64", **({"forget_bias": -4.0} if cell == "lstm" else {}))
    rnn32 = pyjac.Recurrent.from_weights(
        *(a.astype(np.float32) for a in (rnn64.W, rnn64.U, rnn64.b)), cell=cell
    )
    xs = rng.standard_normal((120, 2, 3))  # long enough for 10+ such steps in every cell
    r64 = rnn64.backprop(xs)
    r32 = rnn32.backprop(xs)
    ref = r64.step_weight_grad_norm
    small = (ref < 1e-20) & (ref > 1e-33)
    assert small.any()
    np.testing.assert_allclose(r32.step_weight_grad_norm[small], ref[small], rtol=2e-3)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch", [2, 72])  # split by units, and by rows of examples
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_through_time_alone_is_the_same_gradient(cell, batch, dtype):
    # weight_grads=False keeps two slabs of pre-activation gradients instead of one per
    # step: the gradient through time must not change by a bit, at any thread count,
    # including a pass that rescales (an output gradient far below the dtype's range
    # after some steps).
    rnn = pyjac.Recurrent(12, 3, cell=cell, seed=4, dtype=dtype)
    rng = np.random.default_rng(13)
    xs = rng.standard_normal((150, batch, 3))
    go = rng.standard_normal((batch, 12)) * 2.0 ** (-100 if dtype == "float32" else -900)
    for kw in ({}, {"grad_output": go}):
        full = rnn.backprop(xs, keep_grads=True, **kw)
        for n_threads in (1, 2):
            lean = rnn.backprop(xs, keep_grads=True, weight_grads=False, n_threads=n_threads,
                                **kw)
            np.testing.assert_array_equal(lean.grad_norm, full.grad_norm)
            np.testing.assert_array_equal(lean.log_grad_norm, full.log_grad_norm)
            np.testing.assert_array_equal(lean.h0_grad, full.h0_grad)
            np.testing.assert_array_equal(lean.state_norm, full.state_norm)
            if cell == "lstm":
                np.testing.assert_array_equal(lean.log_cell_grad_norm, full.log_cell_grad_norm)
                np.testing.assert_array_equal(lean.c0_grad, full.c0_grad)
            assert lean.first_underflow_step == full.first_underflow_step
            assert lean.steps == 150


def test_gradient_through_time_alone_leaves_the_weight_fields_empty():
    rnn = pyjac.Recurrent(8, 2, cell="tanh", seed=1)
    r = rnn.backprop(np.ones((5, 2)), keep_grads=True, weight_grads=False)
    for name in ("weight_grad_norm", "step_weight_grad_norm", "log_step_weight_grad_norm",
                 "total_grad_norm", "clipped_grad_norm", "clip_cosine", "clipped_fraction",
                 "weight_grads"):
        assert getattr(r, name) is None, name
    assert r.h0_grad.shape == (8,)
    assert "total_grad_norm=None" in repr(r)
    with pytest.raises(ValueError, match="clip"):
        rnn.backprop(np.ones((5, 2)), clip=("norm", 1.0), weight_grads=False)
    with pytest.raises(TypeError, match="weight_grads"):
        rnn.backprop(np.ones((5, 2)), weight_grads="no")
