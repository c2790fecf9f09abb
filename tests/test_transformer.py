"""pyjac.Transformer against torch autograd in float64 (and nn.TransformerEncoderLayer)."""

from __future__ import annotations

import numpy as np
import pytest

import pyjac
from pyjac.transformer import PARAMETER_NAMES, TORCH_NAMES

torch = pytest.importorskip("torch")
F = torch.nn.functional


def stack_forward(net, params, xt, record=True):
    """The stack in plain torch ops from ``params`` (float64 tensors by PyTorch's names):
    its output, and when ``record``, the stream points, queries and keys (gradients
    retained) and the attention entropy per block and head."""
    d, h = net.width, net.heads
    dh = d // h
    s = net.residual_scale
    B, T, _ = xt.shape
    act = F.gelu if net.activation == "gelu" else F.relu
    points, queries, keys, entropy = [xt], [], [], []

    def ln(z, w, b):
        return F.layer_norm(z, (d,), w, b, eps=1e-5)

    def attention(z, p):
        qkv = z @ p["self_attn.in_proj_weight"].T + p["self_attn.in_proj_bias"]
        q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
        if record:
            q.retain_grad()
            k.retain_grad()
            queries.append(q)
            keys.append(k)
        split = [t.reshape(B, T, h, dh).transpose(1, 2) for t in (q, k, v)]
        scores = split[0] @ split[1].transpose(-1, -2) / np.sqrt(dh)
        if net.causal:
            scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1),
                                        float("-inf"))
        p_att = torch.softmax(scores, dim=-1)
        if record:
            plogp = torch.where(p_att > 0, p_att * torch.log(p_att), torch.zeros_like(p_att))
            entropy.append((-plogp.sum(-1)).mean(dim=(0, 2)).detach().numpy())
        o = (p_att @ split[2]).transpose(1, 2).reshape(B, T, d)
        return o @ p["self_attn.out_proj.weight"].T + p["self_attn.out_proj.bias"]

    def mlp(z, p):
        g = act(z @ p["linear1.weight"].T + p["linear1.bias"])
        return g @ p["linear2.weight"].T + p["linear2.bias"]

    def join(base, branch):
        return base + s * branch if net.residual else s * branch

    z = xt
    for p in params:
        if net.norm == "pre":
            a = join(z, attention(ln(z, p["norm1.weight"], p["norm1.bias"]), p))
        elif net.norm == "post":
            a = ln(join(z, attention(z, p)), p["norm1.weight"], p["norm1.bias"])
        else:
            a = join(z, attention(z, p))
        if net.hidden == 0:  # attention alone
            z = a * 1.0
        elif net.norm == "pre":
            z = join(a, mlp(ln(a, p["norm2.weight"], p["norm2.bias"]), p))
        elif net.norm == "post":
            z = ln(join(a, mlp(a, p)), p["norm2.weight"], p["norm2.bias"])
        else:
            z = join(a, mlp(a, p))
        if record:
            a.retain_grad()
            z.retain_grad()
        points += [a, z]
    return z, points, queries, keys, entropy


def torch_parameters(net, requires_grad=True):
    return [{k: torch.tensor(np.asarray(v, np.float64), requires_grad=requires_grad)
             for k, v in b.items()} for b in net.blocks]


def sub_stack(net, lo, hi):
    """Blocks lo..hi-1 of net as a Transformer of their own (same settings and weights)."""
    sub = pyjac.Transformer.__new__(pyjac.Transformer)
    sub.__dict__.update(net.__dict__)
    sub.blocks = net.blocks[lo:hi]
    return sub


def torch_jacobian(net, params, lo, hi, inp):
    """The Jacobian of blocks lo..hi-1 at one sequence inp, by torch autograd, as a
    (T d) x (T d) matrix."""
    sub = sub_stack(net, lo, hi)
    size = inp.size
    J = torch.autograd.functional.jacobian(
        lambda xt: stack_forward(sub, params[lo:hi], xt[None], record=False)[0][0],
        torch.tensor(inp))
    return J.reshape(size, size).numpy()


def reference(net, x, loss="sum_squares", target=None):
    """The loss, the gradient norm at every stream point and of every parameter,
    query/key gradient norms, attention entropy and the stream, by torch autograd in
    float64 from net's parameters."""
    d = net.width
    params = torch_parameters(net)
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    z, points, queries, keys, entropy = stack_forward(net, params, xt)
    if loss == "sum_squares":
        value = 0.5 * (z ** 2).sum()
    elif loss == "mse":
        value = ((z - torch.tensor(target)) ** 2).mean()
    else:
        value = (torch.tensor(target) * z).sum()
    value.backward()
    grads = np.array([float(pt.grad.norm()) for pt in points])
    pnorm = np.full((net.depth, len(PARAMETER_NAMES)), np.nan)
    for l, p in enumerate(params):
        w = p["self_attn.in_proj_weight"].grad
        cols = [w[:d], w[d:2 * d], w[2 * d:]] + [p[n].grad for n in TORCH_NAMES[1:]]
        used = [i for i in range(14) if (net.norm is not None or i < 10)
                and (net.hidden > 0 or not 6 <= i < 10)
                and (net.hidden > 0 or net.norm != "pre" or i < 12)
                and (net.hidden > 0 or net.norm != "post" or i < 12)]
        for i in used:
            pnorm[l, i] = float(cols[i].norm())
    return dict(loss=float(value.detach()), grad_norm=grads, parameter_grad_norm=pnorm,
                query_grad_norm=np.array([float(q.grad.norm()) for q in queries]),
                key_grad_norm=np.array([float(k.grad.norm()) for k in keys]),
                attention_entropy=np.array(entropy),
                stream=[pt.detach().numpy() for pt in points], output=z.detach().numpy())


def rank_measures(X):
    """Mean cosine similarity of distinct token pairs and ||X - 1 xbar^T|| / ||X||,
    averaged over the batch, by numpy."""
    sims, dists = [], []
    for ex in X:
        u = ex / np.linalg.norm(ex, axis=1, keepdims=True)
        c = u @ u.T
        n = len(ex)
        sims.append((c.sum() - n) / (n * (n - 1)))
        dists.append(np.linalg.norm(ex - ex.mean(0)) / np.linalg.norm(ex))
    return np.mean(sims), np.mean(dists)


CASES = [
    dict(norm="pre"),
    dict(norm="post"),
    dict(norm=None),
    dict(norm="pre", residual=False),
    dict(norm="post", residual=False),
    dict(norm="pre", causal=True),
    dict(norm="post", activation="relu", causal=True),
    dict(norm="pre", residual_scale=0.35),
    dict(norm=None, residual_scale=0.5, activation="relu"),
    dict(norm=None, residual=False, mlp_ratio=0),
    dict(norm="pre", mlp_ratio=0, causal=True),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("loss", ["sum_squares", "mse", "grad_output"])
def test_every_norm_matches_torch_autograd(case, loss):
    kw = dict(mlp_ratio=1.75)
    kw.update(CASES[case])
    net = pyjac.Transformer(3, 12, 3, init="gaussian", seed=case, dtype="float64", **kw)
    rng = np.random.default_rng(case)
    x = rng.standard_normal((2, 7, 12))
    target = None if loss == "sum_squares" else rng.standard_normal((2, 7, 12))
    ref = reference(net, x, loss, target)
    if loss == "grad_output":
        r = net.backprop(x, grad_output=target)
        assert r.loss is None
    else:
        r = net.backprop(x, loss=loss, target=target)
        assert r.loss == pytest.approx(ref["loss"], rel=1e-12)
    np.testing.assert_allclose(r.output, ref["output"], rtol=1e-11, atol=1e-12)
    for name in ("grad_norm", "parameter_grad_norm", "query_grad_norm", "key_grad_norm",
                 "attention_entropy"):
        np.testing.assert_allclose(getattr(r, name), ref[name], rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(r.activation_norm,
                               [np.linalg.norm(p) for p in ref["stream"]], rtol=1e-12)
    for i, point in enumerate(ref["stream"][::2]):
        sim, dist = rank_measures(point)
        assert r.token_similarity[i] == pytest.approx(sim, rel=1e-9, abs=1e-12)
        assert r.rank_one_distance[i] == pytest.approx(dist, rel=1e-9)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_from_torch_matches_nn_transformer_encoder(norm_first, activation):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 40, dropout=0.1, activation=activation,
                                             batch_first=True, norm_first=norm_first,
                                             dtype=torch.float64)
    encoder = torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    net = pyjac.Transformer.from_torch(encoder, seq_len=6)
    assert (net.depth, net.width, net.heads, net.hidden) == (3, 16, 4, 40)
    assert net.norm == ("pre" if norm_first else "post") and net.dtype == np.float64
    x = torch.randn(4, 6, 16, dtype=torch.float64, requires_grad=True)
    y = encoder(x)
    (0.5 * (y ** 2).sum()).backward()
    r = net.backprop(x.detach().numpy())
    np.testing.assert_allclose(r.output, y.detach().numpy(), rtol=1e-11, atol=1e-12)
    assert r.grad_norm[0] == pytest.approx(float(x.grad.norm()), rel=1e-10)
    for l, lay in enumerate(encoder.layers):
        assert r.parameter("W_1")[l] == pytest.approx(float(lay.linear1.weight.grad.norm()),
                                                      rel=1e-10)
        assert r.parameter("norm2.weight")[l] == pytest.approx(
            float(lay.norm2.weight.grad.norm()), rel=1e-10)
    # causal attention, as torch's is_causal mask
    causal = pyjac.Transformer.from_torch(encoder, causal=True)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    with torch.no_grad():
        yc = encoder(x, mask=mask, is_causal=True)
    np.testing.assert_allclose(causal.backprop(x.detach().numpy()).output, yc.numpy(),
                               rtol=1e-11, atol=1e-12)


def test_torch_init_matches_torch_statistics_and_float32_agrees():
    net = pyjac.Transformer(2, 64, 4, seed=1)
    w = net.blocks[0]["self_attn.in_proj_weight"]
    assert w.shape == (192, 64) and abs(w).max() <= np.sqrt(6 / 256) + 1e-7
    assert np.all(net.blocks[0]["norm1.weight"] == 1)
    x = np.random.default_rng(0).standard_normal((2, 10, 64))
    r32 = net.backprop(x)
    blocks64 = pyjac.Transformer(2, 64, 4, seed=1, dtype="float64")
    r64 = blocks64.backprop(x)
    np.testing.assert_allclose(r32.grad_norm, r64.grad_norm, rtol=2e-4)
    np.testing.assert_allclose(r32.parameter_grad_norm, r64.parameter_grad_norm, rtol=2e-3)


def test_same_numbers_at_any_thread_count():
    net = pyjac.Transformer(2, 64, 4, 32, norm="post", causal=True, seed=3)
    x = np.random.default_rng(0).standard_normal((8, 32, 64))
    one, two = net.backprop(x, n_threads=1), net.backprop(x, n_threads=2)
    for name in ("grad_norm", "parameter_grad_norm", "query_grad_norm", "attention_entropy",
                 "token_similarity", "output"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))


def test_pure_attention_collapses_to_rank_one_and_residuals_prevent_it():
    # Dong et al. 2021: attention alone (no skips, no MLP, no norms) drives
    # the tokens to one direction with depth; skip connections keep them apart.
    kw = dict(mlp_ratio=0, norm=None, init="gaussian", seed=2, dtype="float64")
    x = np.random.default_rng(1).standard_normal((4, 16, 32))
    pure = pyjac.Transformer(12, 32, 4, residual=False, **kw).backprop(x)
    skip = pyjac.Transformer(12, 32, 4, residual=True, residual_scale=0.3, **kw).backprop(x)
    assert pure.rank_one_distance[-1] < 0.05 * pure.rank_one_distance[0]
    assert pure.token_similarity[-1] > 0.95
    assert skip.rank_one_distance[-1] > 0.5 * skip.rank_one_distance[0]


def test_nonfinite_is_reported():
    net = pyjac.Transformer(2, 8, 2, norm=None, init="gaussian", gain=1e200, dtype="float64")
    r = net.backprop(np.ones((1, 3, 8)))
    assert r.first_nonfinite_layer is not None and r.first_nonfinite_stage == "forward"


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="heads"):
        pyjac.Transformer(2, 10, 3)
    with pytest.raises(ValueError, match="norm"):
        pyjac.Transformer(2, 8, 2, norm="middle")
    with pytest.raises(ValueError, match="activation"):
        pyjac.Transformer(2, 8, 2, activation="tanh")
    with pytest.raises(ValueError, match="attention"):
        pyjac.Transformer(2, 8, 2, attention="linear")
    with pytest.raises(ValueError, match="mlp_ratio"):
        pyjac.Transformer(2, 8, 2, mlp_ratio=0.01)
    net = pyjac.Transformer(2, 8, 2, 5)
    with pytest.raises(ValueError, match="seq_len"):
        net.backprop(np.ones((2, 6, 8)))
    with pytest.raises(ValueError, match="x"):
        net.backprop(np.ones((2, 5, 7)))
    with pytest.raises(ValueError, match="x"):
        net.backprop(np.ones((0, 5, 8)))
    with pytest.raises(ValueError, match="target"):
        net.backprop(np.ones((2, 5, 8)), loss="mse")
    with pytest.raises(ValueError, match="loss"):
        net.backprop(np.ones((2, 5, 8)), loss="cross_entropy")
    with pytest.raises(ValueError, match="grad_output"):
        net.backprop(np.ones((2, 5, 8)), grad_output=np.ones((2, 4, 8)))
    with pytest.raises(TypeError, match="module"):
        pyjac.Transformer.from_torch(torch.nn.Linear(3, 3))
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
    with pytest.raises(ValueError, match="dropout"):
        pyjac.Transformer.from_torch(layer)
    custom = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=torch.tanh,
                                              batch_first=True)
    with pytest.raises(ValueError, match="activation"):
        pyjac.Transformer.from_torch(custom)
    x = np.ones((2, 5, 8))
    kept = x.copy()
    net.backprop(x)
    np.testing.assert_array_equal(x, kept)


def test_diagnose_names_the_collapse_and_measures_the_fixes():
    import json

    x = np.random.default_rng(0).standard_normal((2, 16, 32))
    y = np.random.default_rng(1).standard_normal((2, 16, 32))
    torch.manual_seed(3)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True,
                                             dtype=torch.float64)
    encoder = torch.nn.TransformerEncoder(layer, 24, enable_nested_tensor=False)
    rep = pyjac.diagnose(encoder, x, loss="mse", target=y)
    assert rep.depth == 24 and rep.norm == "post" and len(rep.verdicts) == 24
    assert rep.spread > 10 and any("collapsed" in f for f in rep.flags)
    # each fix was measured: the spread of block gradients it reports is what a stack
    # with the same weights and the fix gives
    assert rep.fixes and all(f.spread_after < f.spread_before or
                             f.rank_distance_after >= 0.05 for f in rep.fixes)
    fix = next(f for f in rep.fixes if f.name == "pre_ln")
    fixed = pyjac.Transformer.from_torch(encoder)
    fixed.norm = "pre"
    p = fixed.backprop(x, loss="mse", target=y).block_grad_norm
    assert fix.spread_after == pytest.approx(p.max() / p.min(), rel=1e-12)
    assert "pre-LN" in str(rep)
    json.dumps(rep.to_dict())
    pure = pyjac.Transformer(8, 32, 4, mlp_ratio=0, norm=None, residual=False, seed=1,
                             dtype="float64")
    rep = pyjac.diagnose(pure, x)
    assert "collapsed" in rep.flags[-1] and rep.spread > 10
    assert "residual" in [f.name for f in rep.fixes]
    assert pyjac.diagnose(pyjac.Transformer(2, 32, 4, dtype="float64"), x,
                          suggest=False).fixes == []
    with pytest.raises(ValueError, match="loss"):
        pyjac.diagnose(pure, x, loss="cross_entropy", target=np.zeros(2, int))
    with pytest.raises(ValueError, match="activation"):
        pyjac.diagnose(pure, x, activation="relu")


@pytest.mark.parametrize("case", [0, 1, 2, 5, 6, 8, 9])
def test_spectral_norm_matches_the_torch_jacobian(case):
    kw = dict(mlp_ratio=1.5)
    kw.update(CASES[case])
    net = pyjac.Transformer(3, 8, 2, init="gaussian", seed=case, dtype="float64", **kw)
    x = np.random.default_rng(case).standard_normal((5, 8))
    params = torch_parameters(net, requires_grad=False)
    r = net.spectral_norm(x, tol=1e-12)
    assert r.converged
    assert r.value == pytest.approx(np.linalg.norm(torch_jacobian(net, params, 0, 3, x), 2),
                                    rel=1e-8)
    per = net.spectral_norm(x, per_block=True, tol=1e-12)
    inputs = [x]  # each block's input, from pyjac's own forward pass
    for l in range(2):
        inputs.append(sub_stack(net, l, l + 1).backprop(inputs[-1]).output)
    for l in range(3):
        J = torch_jacobian(net, params, l, l + 1, inputs[l])
        assert per.value[l] == pytest.approx(np.linalg.norm(J, 2), rel=1e-8)
    one = net.spectral_norm(x, n_threads=1)
    assert one.value == net.spectral_norm(x, n_threads=2).value
    with pytest.raises(ValueError, match="x"):
        net.spectral_norm(np.ones((2, 5, 8)))
    with pytest.raises(ValueError, match="iters"):
        net.spectral_norm(x, iters=0)


def test_spectral_norm_of_a_deep_stack_agrees_in_float32_and_reports_overflow():
    kw = dict(norm="pre", init="gaussian", gain=3.0, seed=1)
    x = np.random.default_rng(0).standard_normal((6, 16))
    r32 = pyjac.Transformer(40, 16, 2, **kw).spectral_norm(x, tol=1e-7)
    r64 = pyjac.Transformer(40, 16, 2, dtype="float64", **kw).spectral_norm(x, tol=1e-10)
    assert r32.converged and r64.converged
    assert r32.log_value == pytest.approx(r64.log_value, rel=1e-4)
    # a forward pass that overflows is reported, and nothing is iterated
    blown = pyjac.Transformer(40, 16, 2, norm=None, init="gaussian", gain=3.0, seed=1)
    r = blown.spectral_norm(x, iters=50)
    assert r.first_nonfinite_layer is not None and not r.converged


def test_post_ln_gradients_grow_toward_the_output_and_pre_ln_ones_do_not():
    # Xiong et al. 2020 at initialisation: post-LN's block gradients grow from the input
    # blocks to the output blocks; pre-LN's do not (here they shrink a little).
    x = np.random.default_rng(0).standard_normal((4, 16, 32))
    y = np.random.default_rng(1).standard_normal((4, 16, 32))
    for seed in range(3):
        ratios = {}
        for norm in ("post", "pre"):
            g = pyjac.Transformer(12, 32, 4, norm=norm, seed=seed, dtype="float64").backprop(
                x, loss="mse", target=y).block_grad_norm
            ratios[norm] = g[-1] / g[0]
        assert ratios["post"] > 1.2 and ratios["pre"] < 1.0


@pytest.mark.parametrize("case", [0, 1, 6, 9])
def test_jacobian_norms_at_every_depth_match_the_torch_jacobians(case):
    kw = dict(mlp_ratio=1.5)
    kw.update(CASES[case])
    net = pyjac.Transformer(3, 8, 2, init="gaussian", seed=case, dtype="float64", **kw)
    x = np.random.default_rng(case).standard_normal((5, 8))
    params = torch_parameters(net, requires_grad=False)
    r = net.jacobian_norms(x, tol=1e-12, iters=1000)
    assert r.exact and r.converged.all() and r.first_nonfinite_layer is None
    est = net.jacobian_norms(x, probes=400, seed=3)
    for depth in range(1, 4):
        J = torch_jacobian(net, params, 0, depth, x)
        assert np.exp(r.log_spectral_norm[depth - 1]) == pytest.approx(np.linalg.norm(J, 2),
                                                                        rel=1e-8)
        fro = np.linalg.norm(J)
        assert np.exp(r.log_frobenius_norm[depth - 1]) == pytest.approx(fro, rel=1e-10)
        # the estimate of ||J||_F^2 lies within 4 of its standard errors
        err = est.frobenius_relative_error[depth - 1]
        assert abs(np.exp(2 * est.log_frobenius_norm[depth - 1]) / fro ** 2 - 1) < 4 * err
    with pytest.raises(ValueError, match="probes"):
        pyjac.Transformer(1, 64, 4).jacobian_norms(np.ones((128, 64)))
    with pytest.raises(ValueError, match="probes"):
        net.jacobian_norms(x, probes=0)
