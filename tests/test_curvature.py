"""Curvature (Chain.hessian) against dense Hessians from torch.autograd in float64."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import pyjac

torch = pytest.importorskip("torch")
F = torch.nn.functional

ACTS = {
    "linear": lambda t: t,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": lambda t: F.leaky_relu(t, 0.01),
    "gelu": F.gelu,
    "silu": F.silu,
}


def _torch_output(net, x):
    """The chain's output as a function of its flat parameter list, in torch."""
    xt = torch.tensor(np.asarray(x, dtype=np.float64))

    def out(*params):
        h = xt
        for l in range(net.depth):
            z = h @ params[2 * l].T + params[2 * l + 1]
            if net.norm == "layernorm":
                z = F.layer_norm(z, z.shape[-1:], eps=1e-5)
            elif net.norm == "batchnorm":
                z = F.batch_norm(z, None, None, training=True, eps=1e-5)
            a = ACTS[net.activations[l]](z)
            skip = net.residual and net.widths[l] == net.widths[l + 1]
            h = h + net.residual_scale * a if skip else a
        return h

    return out


def _torch_loss(loss, target):
    if loss == "sum_squares":
        return lambda h: 0.5 * (h ** 2).sum()
    if loss == "mse":
        t = torch.tensor(target)
        return lambda h: ((h - t) ** 2).mean()
    if loss == "cross_entropy":
        t = torch.tensor(target)
        return lambda h: F.cross_entropy(h, t)
    g = torch.tensor(target)  # grad_output: the loss <g, h>
    return lambda h: (g * h).sum()


def _params(net):
    out = []
    for w, b in zip(net.weights, net.biases):
        out += [torch.tensor(np.asarray(w, np.float64)), torch.tensor(np.asarray(b, np.float64))]
    return tuple(out)


def _flatten_blocks(blocks, sizes):
    offs = np.concatenate([[0], np.cumsum(sizes)])
    dense = np.zeros((offs[-1], offs[-1]))
    for i in range(len(sizes)):
        for j in range(len(sizes)):
            dense[offs[i]:offs[i + 1], offs[j]:offs[j + 1]] = (
                blocks[i][j].reshape(sizes[i], sizes[j]).numpy())
    return dense


def dense_hessian(net, x, loss="sum_squares", target=None):
    params = _params(net)
    out, lossf = _torch_output(net, x), _torch_loss(loss, target)
    blocks = torch.autograd.functional.hessian(lambda *p: lossf(out(*p)), params)
    return _flatten_blocks(blocks, [p.numel() for p in params])


def dense_gauss_newton(net, x, loss="sum_squares", target=None):
    params = _params(net)
    out, lossf = _torch_output(net, x), _torch_loss(loss, target)
    h = out(*params).detach()
    jac = torch.autograd.functional.jacobian(out, params)
    J = torch.cat([j.reshape(h.numel(), -1) for j in jac], dim=1).numpy()
    HL = torch.autograd.functional.hessian(lossf, h).reshape(h.numel(), h.numel()).numpy()
    return J.T @ HL @ J


def _problem(loss, net, batch=5, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, net.widths[0]))
    n_out = net.widths[-1]
    target = {"sum_squares": None, "mse": rng.normal(size=(batch, n_out)),
              "cross_entropy": rng.integers(0, n_out, size=batch),
              "grad_output": rng.normal(size=(batch, n_out))}[loss]
    return x, target


def _hessian(net, x, loss, target, **kw):
    if loss == "grad_output":
        return net.hessian(x, grad_output=target, **kw)
    return net.hessian(x, loss=loss, target=target, **kw)


CASES = [
    dict(depth=3, width=[4, 6, 5, 3], activation="tanh", bias_std=0.2),
    dict(depth=3, width=[4, 6, 5, 3], activation="sigmoid", bias_std=0.3),
    dict(depth=3, width=[4, 6, 5, 3], activation="gelu", bias_std=0.3),
    dict(depth=3, width=[4, 6, 5, 3], activation="silu", bias_std=0.3),
    dict(depth=3, width=[5, 5, 5, 3], activation=["relu", "linear", "leaky_relu"], bias_std=0.3),
    dict(depth=4, width=[4, 6, 6, 6, 3], activation="tanh", residual=True, residual_scale=0.7),
    dict(depth=3, width=[4, 6, 6, 3], activation="tanh", norm="layernorm", bias_std=0.3),
    dict(depth=3, width=[4, 6, 6, 3], activation="gelu", norm="batchnorm", residual=True),
]
LOSSES = ["sum_squares", "mse", "cross_entropy", "grad_output"]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("loss", LOSSES)
def test_hvp_matches_torch_dense_hessian(case, loss):
    net = pyjac.Chain(dtype="float64", seed=case, **CASES[case])
    x, target = _problem(loss, net, seed=case)
    dense = dense_hessian(net, x, loss, target)
    H = _hessian(net, x, loss, target)
    v = np.random.default_rng(7).normal(size=H.size)
    ref = dense @ v
    np.testing.assert_allclose(H.hvp(v), ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    # each layer's own diagonal block
    Hl = _hessian(net, x, loss, target, per_layer=True)
    offs = np.concatenate([[0], np.cumsum([np.prod(s) for s in H.shapes])])[::2]
    block_ref = np.concatenate([dense[a:b, a:b] @ v[a:b] for a, b in zip(offs[:-1], offs[1:])])
    np.testing.assert_allclose(Hl.hvp(v), block_ref, rtol=0,
                               atol=1e-10 * np.abs(block_ref).max())
    if loss != "grad_output":
        assert H.loss == pytest.approx(float(_torch_loss(loss, target)(
            _torch_output(net, x)(*_params(net)))), rel=1e-12)


@pytest.mark.parametrize("case", [0, 2, 4, 5, 6, 7])
@pytest.mark.parametrize("loss", ["sum_squares", "mse", "cross_entropy"])
def test_gauss_newton_is_jt_hl_j_and_positive_semidefinite(case, loss):
    net = pyjac.Chain(dtype="float64", seed=case, **CASES[case])
    x, target = _problem(loss, net, seed=case)
    dense = dense_gauss_newton(net, x, loss, target)
    G = _hessian(net, x, loss, target, kind="gauss_newton")
    v = np.random.default_rng(3).normal(size=G.size)
    ref = dense @ v
    np.testing.assert_allclose(G.hvp(v), ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    low = G.eigenvalues(k=1, which="smallest")
    assert low.values[0] >= -1e-10 * G.eigenvalues().values[0]


def test_eigenvalues_match_dense_within_1e_8():
    net = pyjac.Chain(3, [6, 8, 7, 4], activation="tanh", bias_std=0.3, dtype="float64", seed=4)
    x, target = _problem("mse", net, batch=6)
    dense = dense_hessian(net, x, "mse", target)
    exact = np.linalg.eigvalsh(dense)
    H = net.hessian(x, loss="mse", target=target)
    top = H.eigenvalues(k=3, return_eigenvectors=True)
    assert top.converged
    np.testing.assert_allclose(top.values, exact[::-1][:3], rtol=1e-8)
    for value, vector in zip(top.values, top.vectors):
        assert np.linalg.norm(dense @ vector - value * vector) < 1e-6 * abs(exact).max()
    low = H.eigenvalues(k=2, which="smallest")
    np.testing.assert_allclose(low.values, exact[:2], rtol=1e-8, atol=1e-8 * abs(exact).max())
    both = H.eigenvalues(k=2, which="both")
    np.testing.assert_allclose(both.values, np.r_[exact[:2], exact[-2:]], rtol=1e-8,
                               atol=1e-8 * abs(exact).max())
    assert (np.diff(both.values) >= 0).all()
    assert (both.residuals >= 0).all()


def test_per_layer_eigenvalues_and_traces_are_those_of_the_diagonal_blocks():
    net = pyjac.Chain(3, [5, 6, 6, 3], activation="gelu", norm="layernorm", dtype="float64",
                      seed=2)
    x, target = _problem("cross_entropy", net, batch=7)
    dense = dense_hessian(net, x, "cross_entropy", target)
    H = net.hessian(x, loss="cross_entropy", target=target, per_layer=True)
    offs = np.concatenate([[0], np.cumsum([np.prod(s) for s in H.shapes])])[::2]
    blocks = [dense[a:b, a:b] for a, b in zip(offs[:-1], offs[1:])]
    top = H.eigenvalues(k=2)
    assert top.values.shape == (3, 2) and top.converged.all()
    for got, block in zip(top.values, blocks):
        np.testing.assert_allclose(got, np.linalg.eigvalsh(block)[::-1][:2], rtol=1e-8)
    tr = H.trace(samples=3 * max(b.shape[0] for b in blocks))
    # a budget of 3n products spans the whole block: Hutch++ is then exact
    np.testing.assert_allclose(tr.value, [np.trace(b) for b in blocks], rtol=1e-10,
                               atol=1e-10 * max(abs(np.trace(b)) for b in blocks))


@pytest.mark.parametrize("method", ["hutch++", "hutchinson"])
def test_trace_estimates_within_three_standard_errors(method):
    net = pyjac.Chain(3, [6, 10, 10, 4], activation="tanh", bias_std=0.3, dtype="float64",
                      seed=5)
    x, target = _problem("mse", net, batch=8)
    exact = np.trace(dense_hessian(net, x, "mse", target))
    H = net.hessian(x, loss="mse", target=target)
    for seed in range(3):
        est = H.trace(samples=60, method=method, seed=seed)
        assert est.products == 60
        assert est.standard_error > 0
        assert abs(est.value - exact) < 3 * est.standard_error
    # Hutch++ beats Hutchinson on a spectrum dominated by a few large eigenvalues
    plain = H.trace(samples=60, method="hutchinson")
    better = H.trace(samples=60, method="hutch++")
    assert better.standard_error < plain.standard_error


def test_density_integrates_to_one_and_matches_the_dense_spectrum():
    net = pyjac.Chain(2, [5, 6, 3], activation="tanh", bias_std=0.3, dtype="float64", seed=3)
    x, target = _problem("mse", net, batch=6)
    dense = dense_hessian(net, x, "mse", target)
    exact = np.linalg.eigvalsh(dense)
    H = net.hessian(x, loss="mse", target=target)
    d = H.density(n_vectors=200, steps=H.size, seed=1)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(d.weights.sum(axis=1), 1.0, rtol=1e-10)
    # with as many steps as dimensions the nodes are the eigenvalues themselves
    for row_nodes, row_weights in zip(d.nodes, d.weights):
        used = row_nodes[row_weights > 1e-12]
        assert np.min(np.abs(used[:, None] - exact[None, :]), axis=1).max() < 1e-8 * abs(
            exact).max()
    # its cumulative measure follows the dense eigenvalues' histogram
    points = np.quantile(exact, [0.1, 0.3, 0.5, 0.7, 0.9])
    slq_cdf = [np.mean(np.sum(d.weights * (d.nodes <= p + 1e-12), axis=1)) for p in points]
    dense_cdf = [np.mean(exact <= p + 1e-12) for p in points]
    np.testing.assert_allclose(slq_cdf, dense_cdf, atol=0.08)
    # moments: tr(H) / n, estimated by Rademacher vectors, whose z^T H z has variance
    # 2 * sum_{i != j} H_ij^2
    off = dense - np.diag(np.diag(dense))
    std = np.sqrt(2 * np.sum(off ** 2) / 200) / H.size
    assert abs(d.moment(1) - exact.mean()) < 4 * std
    assert d.moment(0) == pytest.approx(1.0)


def test_list_form_and_block_diagonal_product():
    net = pyjac.Chain(3, [4, 5, 5, 2], activation="tanh", dtype="float64", seed=9)
    x = np.random.default_rng(0).normal(size=(4, 4))
    H = net.hessian(x)
    rng = np.random.default_rng(1)
    parts = [rng.normal(size=s) for s in H.shapes]
    kept = [p.copy() for p in parts]
    out = H.hvp(parts)
    assert [o.shape for o in out] == H.shapes
    flat = np.concatenate([p.ravel() for p in parts])
    np.testing.assert_array_equal(np.concatenate([o.ravel() for o in out]), H.hvp(flat))
    assert all(np.array_equal(a, b) for a, b in zip(parts, kept))
    flat_kept = flat.copy()
    H.hvp(flat)
    np.testing.assert_array_equal(flat, flat_kept)
    ints = np.arange(H.size)  # converted, not written
    np.testing.assert_allclose(H.hvp(ints), H.hvp(ints.astype(float)), rtol=0, atol=0)


def test_float32_agrees_with_float64():
    kw = dict(depth=4, width=32, activation="tanh", bias_std=0.1, seed=3)
    x = np.random.default_rng(0).normal(size=(16, 32))
    h64 = pyjac.Chain(dtype="float64", **kw).hessian(x, loss="mse", target=np.zeros((16, 32)))
    h32 = pyjac.Chain(dtype="float32", **kw).hessian(x, loss="mse", target=np.zeros((16, 32)))
    v = np.random.default_rng(2).normal(size=h64.size)
    ref = h64.hvp(v)
    np.testing.assert_allclose(h32.hvp(v), ref, atol=1e-5 * np.abs(ref).max())
    top64, top32 = h64.eigenvalues(), h32.eigenvalues()
    assert top32.converged
    assert top32.values[0] == pytest.approx(top64.values[0], rel=1e-4)


def test_same_numbers_at_any_thread_count_and_under_concurrency():
    net = pyjac.Chain(4, 256, activation="gelu", norm="layernorm", residual=True, seed=1)
    x = np.random.default_rng(0).normal(size=(64, 256))
    v = np.random.default_rng(1).normal(size=4 * 256 * 257)
    one = net.hessian(x, n_threads=1)
    two = net.hessian(x, n_threads=2)
    serial = one.hvp(v)
    np.testing.assert_array_equal(two.hvp(v), serial)
    e1, e2 = one.eigenvalues(k=2, max_iter=30), two.eigenvalues(k=2, max_iter=30)
    np.testing.assert_array_equal(e1.values, e2.values)
    assert one.trace(samples=9).value == two.trace(samples=9).value
    mismatches = []

    def worker():
        for _ in range(5):
            if not np.array_equal(two.hvp(v), serial):
                mismatches.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []


def test_store_weights_false_gives_the_stored_chains_curvature():
    kw = dict(depth=3, width=24, activation="tanh", seed=4, dtype="float64")
    x = np.random.default_rng(0).normal(size=(6, 24))
    v = np.random.default_rng(1).normal(size=3 * 24 * 25)
    stored = pyjac.Chain(**kw).hessian(x).hvp(v)
    drawn = pyjac.Chain(store_weights=False, **kw).hessian(x).hvp(v)
    np.testing.assert_array_equal(drawn, stored)


def test_the_hessian_keeps_its_own_copies():
    net = pyjac.Chain(2, 8, activation="tanh", dtype="float64", seed=1)
    x = np.random.default_rng(0).normal(size=(3, 8))
    x_kept = x.copy()
    H = net.hessian(x)
    v = np.ones(H.size)
    before = H.hvp(v)
    net.weights[0][:] = 0.0
    x[:] = 0.0
    np.testing.assert_array_equal(H.hvp(v), before)
    assert np.array_equal(x_kept, x_kept)


def test_nonfinite_curvature_is_reported_not_raised():
    net = pyjac.Chain(3, 8, activation="linear", gain=1e120, dtype="float64", seed=1)
    H = net.hessian(np.ones((2, 8)))
    r = H.eigenvalues()
    assert not r.converged and np.isnan(r.values).all()


def test_bad_arguments_name_themselves():
    net = pyjac.Chain(2, 6, activation="tanh", seed=1)
    x = np.ones((3, 6))
    with pytest.raises(ValueError, match="kind"):
        net.hessian(x, kind="fisher")
    with pytest.raises(TypeError, match="per_layer"):
        net.hessian(x, per_layer="yes")
    with pytest.raises(ValueError, match="target"):
        net.hessian(x, loss="mse")
    with pytest.raises(ValueError, match="loss"):
        net.hessian(x, loss="hinge")
    with pytest.raises(ValueError, match="x"):
        net.hessian(np.ones((3, 5)))
    H = net.hessian(x)
    with pytest.raises(ValueError, match="v"):
        H.hvp(np.ones(H.size + 1))
    with pytest.raises(ValueError, match="v"):
        H.hvp(np.full(H.size, np.nan))
    with pytest.raises(ValueError, match=r"v\[1\]"):
        H.hvp([np.ones((6, 6)), np.ones(5), np.ones((6, 6)), np.ones(6)])
    with pytest.raises(ValueError, match="k"):
        H.eigenvalues(k=H.size + 1)
    with pytest.raises(ValueError, match="k"):
        H.eigenvalues(k=0)
    with pytest.raises(ValueError, match="which"):
        H.eigenvalues(which="middle")
    with pytest.raises(ValueError, match="tol"):
        H.eigenvalues(tol=0)
    with pytest.raises(ValueError, match="samples"):
        H.trace(samples=0)
    with pytest.raises(ValueError, match="method"):
        H.trace(method="exact")
    with pytest.raises(ValueError, match="steps"):
        H.density(steps=0)
    with pytest.raises(ValueError, match="n_threads"):
        net.hessian(x, n_threads=0)
    with pytest.raises(MemoryError, match="max_iter"):
        pyjac.Chain(2, 2048, seed=1).hessian(np.ones((2, 2048))).eigenvalues(max_iter=10**6)
