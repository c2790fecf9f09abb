"""pyjac.Transformer against an independent numpy implementation and central differences
of its loss (no torch needed): the output, the gradient at every residual-stream point and
every parameter's gradient norm, attention entropy and rank collapse."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pyjac
from pyjac.transformer import PARAMETER_NAMES, TORCH_NAMES

_erf = np.vectorize(math.erf)


def _act(name, z):
    return np.maximum(z, 0) if name == "relu" else 0.5 * z * (1 + _erf(z / math.sqrt(2)))


def _ln(z, w, b):
    mu = z.mean(-1, keepdims=True)
    return (z - mu) / np.sqrt(z.var(-1, keepdims=True) + 1e-5) * w + b


class NumpyStack:
    """The stack in numpy float64, sublayer by sublayer, from net's parameters (copied)."""

    def __init__(self, net):
        self.net = net
        self.blocks = [{k: np.array(v, np.float64) for k, v in b.items()} for b in net.blocks]

    def _attention(self, z, p, stats=None):
        net = self.net
        B, T, d = z.shape
        h, dh = net.heads, d // net.heads
        qkv = z @ p["self_attn.in_proj_weight"].T + p["self_attn.in_proj_bias"]
        q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(B, T, h, dh).transpose(0, 2, 1, 3)
                   for i in range(3))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)
        if net.causal:
            s = np.where(np.triu(np.ones((T, T), bool), 1), -np.inf, s)
        s = s - s.max(-1, keepdims=True)
        prob = np.exp(s)
        prob /= prob.sum(-1, keepdims=True)
        if stats is not None:
            logp = np.where(prob > 0, np.log(np.where(prob > 0, prob, 1)), 0)
            stats.append((-(prob * logp).sum(-1)).mean(axis=(0, 2)))
        o = (prob @ v).transpose(0, 2, 1, 3).reshape(B, T, d)
        return o @ p["self_attn.out_proj.weight"].T + p["self_attn.out_proj.bias"]

    def _join(self, base, branch):
        s = self.net.residual_scale
        return base + s * branch if self.net.residual else s * branch

    def attention_sublayer(self, l, x, stats=None):
        p, norm = self.blocks[l], self.net.norm
        if norm == "pre":
            return self._join(x, self._attention(_ln(x, p["norm1.weight"], p["norm1.bias"]), p,
                                                 stats))
        a = self._join(x, self._attention(x, p, stats))
        return _ln(a, p["norm1.weight"], p["norm1.bias"]) if norm == "post" else a

    def mlp_sublayer(self, l, a):
        p, norm = self.blocks[l], self.net.norm
        if self.net.hidden == 0:
            return a

        def mlp(z):
            g = _act(self.net.activation, z @ p["linear1.weight"].T + p["linear1.bias"])
            return g @ p["linear2.weight"].T + p["linear2.bias"]

        if norm == "pre":
            return self._join(a, mlp(_ln(a, p["norm2.weight"], p["norm2.bias"])))
        out = self._join(a, mlp(a))
        return _ln(out, p["norm2.weight"], p["norm2.bias"]) if norm == "post" else out

    def from_point(self, point, z):
        """The stack's output from stream point ``point`` (0: input; 2l+1: after block
        l+1's attention sublayer; 2l+2: after block l+1) holding z."""
        l = point // 2
        if point % 2 == 1:
            z = self.mlp_sublayer(l, z)
            l += 1
        for m in range(l, self.net.depth):
            z = self.mlp_sublayer(m, self.attention_sublayer(m, z))
        return z

    def points(self, x, stats=None):
        out = [x]
        for l in range(self.net.depth):
            out.append(self.attention_sublayer(l, out[-1], stats))
            out.append(self.mlp_sublayer(l, out[-1]))
        return out


def _grad(f, z, eps=1e-4):
    """The gradient of the scalar f at z by central differences, Richardson-extrapolated."""
    g = np.zeros_like(z)
    flat, gflat = z.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        def central(h, i=i):
            old = flat[i]
            flat[i] = old + h
            up = f(z)
            flat[i] = old - h
            down = f(z)
            flat[i] = old
            return (up - down) / (2 * h)
        gflat[i] = (4 * central(eps / 2) - central(eps)) / 3
    return g


CASES = [
    dict(norm="pre"),
    dict(norm="post", activation="relu"),
    dict(norm=None, residual_scale=0.5),
    dict(norm="pre", residual=False, causal=True),
    dict(norm="post", mlp_ratio=0),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_against_numpy_and_central_differences(case):
    kw = dict(mlp_ratio=1.5)
    kw.update(CASES[case])
    net = pyjac.Transformer(2, 4, 2, init="gaussian", seed=case, dtype="float64", **kw)
    ref = NumpyStack(net)
    rng = np.random.default_rng(case)
    x, y = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))

    def loss(out):
        return np.mean((out - y) ** 2)

    r = net.backprop(x, loss="mse", target=y)
    entropy = []
    points = ref.points(x, entropy)
    np.testing.assert_allclose(r.output, points[-1], rtol=1e-12, atol=1e-13)
    assert r.loss == pytest.approx(loss(points[-1]), rel=1e-12)
    np.testing.assert_allclose(r.attention_entropy, entropy, rtol=1e-10)
    for i, z in enumerate(points[::2]):  # rank collapse at the input and each block's output
        unit = z / np.linalg.norm(z, axis=2, keepdims=True)
        gram = unit @ unit.transpose(0, 2, 1)
        T = z.shape[1]
        similarity = np.mean((gram.sum(axis=(1, 2)) - T) / (T * (T - 1)))
        distance = np.mean([np.linalg.norm(e - e.mean(0)) / np.linalg.norm(e) for e in z])
        assert r.token_similarity[i] == pytest.approx(similarity, rel=1e-9, abs=1e-12)
        assert r.rank_one_distance[i] == pytest.approx(distance, rel=1e-9)
    for i, z in enumerate(points):
        g = _grad(lambda zz, i=i: loss(ref.from_point(i, zz)), z.copy())
        assert r.grad_norm[i] == pytest.approx(np.linalg.norm(g), rel=1e-7), i
    for l in range(net.depth):
        for name in TORCH_NAMES:
            array = ref.blocks[l][name]
            if array.size == 0:
                continue
            g = _grad(lambda a, name=name, l=l: loss(ref.from_point(0, x)), array)
            if name == "self_attn.in_proj_weight":
                d = net.width
                got = [r.parameter(n)[l] for n in ("W_Q", "W_K", "W_V")]
                want = [np.linalg.norm(g[i * d:(i + 1) * d]) for i in range(3)]
            else:
                column = {"self_attn.in_proj_bias": "in_proj_bias",
                          "self_attn.out_proj.weight": "W_O",
                          "self_attn.out_proj.bias": "out_proj_bias", "linear1.weight": "W_1",
                          "linear1.bias": "b_1", "linear2.weight": "W_2",
                          "linear2.bias": "b_2"}.get(name, name)
                got, want = [r.parameter(column)[l]], [np.linalg.norm(g)]
            for a, b in zip(got, want):
                if np.isnan(a):  # the block has no such parameter in use
                    assert b == 0.0
                else:
                    assert a == pytest.approx(b, rel=1e-6, abs=1e-12), (l, name)
    assert set(PARAMETER_NAMES) >= {"W_Q", "W_K", "W_V", "W_O"}


@pytest.mark.parametrize("case", [0, 1, 3])
def test_spectral_and_jacobian_norms_match_the_numpy_jacobian(case):
    kw = dict(mlp_ratio=1.5)
    kw.update(CASES[case])
    net = pyjac.Transformer(2, 4, 2, init="gaussian", seed=case, dtype="float64", **kw)
    ref = NumpyStack(net)
    x = np.random.default_rng(case).standard_normal((1, 3, 4))

    def jacobian(last_point):
        cols = []
        for i in range(x.size):
            def out(h, i=i):
                z = x.copy().reshape(-1)
                z[i] += h
                return ref.points(z.reshape(x.shape))[last_point].reshape(-1)
            cols.append((4 * (out(5e-5) - out(-5e-5)) / 1e-4 - (out(1e-4) - out(-1e-4)) / 2e-4)
                        / 3)
        return np.array(cols).T

    norms = net.jacobian_norms(x[0], tol=1e-12, iters=2000)
    for depth in (1, 2):
        J = jacobian(2 * depth)
        assert np.exp(norms.log_spectral_norm[depth - 1]) == pytest.approx(
            np.linalg.norm(J, 2), rel=1e-6)
        assert np.exp(norms.log_frobenius_norm[depth - 1]) == pytest.approx(
            np.linalg.norm(J), rel=1e-6)
    assert net.spectral_norm(x[0], tol=1e-12).value == pytest.approx(
        np.exp(norms.log_spectral_norm[-1]), rel=1e-9)
