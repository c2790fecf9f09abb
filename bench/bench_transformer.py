"""Benchmark: one forward + backward pass with per-parameter gradient norms through a
transformer encoder stack, pyjac vs PyTorch's nn.TransformerEncoder.

Usage: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_transformer.py
       [--quick] [--threads N] [--busy]

float32, pre-LN, GELU, MLP ratio 4, 0.5 * sum(y**2). PyTorch computes the output, the
loss, every parameter's gradient (backward) and their norms, and ||dL/dx||; pyjac the same
and its other measurements (every residual-stream point, queries/keys, attention
entropy, rank collapse). FLOPs: per block 2 N (4 d^2 + 2 d m) for the projections and MLP
plus 4 N T d for the attention, forward; backward twice that (N = batch * seq_len tokens).
The "GEMM floor" times the same GEMMs alone in numpy (the OpenBLAS pyjac links): what any
pass built on these BLAS calls needs at least.
"""

from __future__ import annotations

import importlib.util

from _threads import pin_threads_from_argv

pin_threads_from_argv()

import numpy as np  # noqa: E402
from _timing import interleaved_medians, standard_run  # noqa: E402

import pyjac  # noqa: E402

CONFIGS = [(12, 256, 4, 128, 8), (6, 512, 8, 256, 4)]  # depth, width, heads, seq, batch


def flops(depth, width, seq, batch, hidden):
    n = batch * seq
    forward = 2 * n * (4 * width * width + 2 * width * hidden) + 4 * n * seq * width
    return 3 * forward * depth


def gemm_floor(depth, width, heads, seq, batch, hidden):
    """The GEMMs of one pyjac pass alone, in numpy (OpenBLAS): per block the four
    projections forward, their input and weight gradients backward, and the attention's
    two products forward and four backward per (example, head)."""
    rng = np.random.default_rng(1)
    n, dh = batch * seq, width // heads

    def m(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x, w_in, w_o = m(n, width), m(3 * width, width), m(width, width)
    w1, w2, g = m(hidden, width), m(width, hidden), m(n, hidden)
    q = m(batch * heads, seq, dh)
    p = m(batch * heads, seq, seq)

    def run():
        for _ in range(depth):
            qkv = x @ w_in.T
            x @ w_o.T
            x @ w1.T
            g @ w2.T
            qkv.T @ x, qkv @ w_in          # in_proj: weight and input gradients
            x.T @ x, x @ w_o                # out_proj
            g.T @ x, g @ w1                 # linear1
            x.T @ g, x @ w2                 # linear2
            q @ q.transpose(0, 2, 1), p @ q                  # scores, P V
            q @ q.transpose(0, 2, 1), p.transpose(0, 2, 1) @ q, p @ q, p.transpose(0, 2, 1) @ q
    return run


def main():
    args, repeats, threads, torch, peak = standard_run(__doc__, "one pass each")
    if torch is None:
        print("PyTorch is not installed: pyjac alone")
    if importlib.util.find_spec("jax") is None:
        print("JAX: not installed")
    print(f"{'depth,width,heads,seq,batch':>28} {'pyjac ms':>9} {'torch ms':>9} {'vs torch':>9} "
          f"{'pyjac % peak':>13} {'torch % peak':>13} {'GEMM floor ms':>14}")
    for depth, width, heads, seq, batch in CONFIGS:
        hidden = 4 * width
        x = np.random.default_rng(0).standard_normal((batch, seq, width)).astype(np.float32)
        contenders = {}
        if torch is not None:
            torch.manual_seed(0)
            layer = torch.nn.TransformerEncoderLayer(width, heads, hidden, dropout=0.0,
                                                     activation="gelu", batch_first=True,
                                                     norm_first=True)
            encoder = torch.nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
            net = pyjac.Transformer.from_torch(encoder)
            xt = torch.from_numpy(x)

            def torch_pass(encoder=encoder, xt=xt):
                xin = xt.clone().requires_grad_(True)
                encoder.zero_grad(set_to_none=True)
                y = encoder(xin)
                (0.5 * (y ** 2).sum()).backward()
                norms = torch.stack([p.grad.norm() for p in encoder.parameters()])
                return norms.tolist(), float(xin.grad.norm())

            contenders["torch"] = torch_pass
        else:
            net = pyjac.Transformer(depth, width, heads)
        contenders["pyjac"] = lambda net=net, x=x: net.backprop(x, n_threads=threads)
        contenders["floor"] = gemm_floor(depth, width, heads, seq, batch, hidden)
        times = interleaved_medians(contenders, repeats, inner=1)
        work = flops(depth, width, seq, batch, hidden) / 1e9
        t_pj = times["pyjac"]
        t_t = times.get("torch", float("nan"))
        print(f"{f'{depth},{width},{heads},{seq},{batch}':>28} {1e3 * t_pj:9.1f} {1e3 * t_t:9.1f} "
              f"{t_t / t_pj:8.2f}x {100 * work / t_pj / peak:12.0f}% "
              f"{100 * work / t_t / peak:12.0f}% {1e3 * times['floor']:14.1f}")


if __name__ == "__main__":
    main()
