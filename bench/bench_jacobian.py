"""pyjac vs the numpy way: spectral norms of Jacobian products at every depth, and
end-to-end power iteration. float32, median of repeats, one run.

    python bench/bench_jacobian.py [--quick] [--threads N]

The numpy way forms the layer Jacobians ``diag(phi') W`` from a forward pass, the
explicit product ``P_l`` and ``np.linalg.norm(P_l, 2)`` (an SVD) at every depth;
power iteration uses numpy matvecs through the chain. PyTorch and JAX rows appear
when they are installed. The same run measures this machine's float32 GEMM peak
(numpy, 2048^3) so that pyjac's GEMM-bound phases can be put as a % of it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time

import numpy as np

import pyjac


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: page faults, thread pools, lazy loading
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sgemm_peak(repeats: int) -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    t = median_time(lambda: a @ a, repeats)
    return 2 * 2048**3 / t / 1e9


def tanh_chain(depth: int, width: int) -> tuple[pyjac.Chain, np.ndarray]:
    net = pyjac.Chain(depth, width, activation="tanh", init="gaussian", gain=1.5, seed=1,
                      dtype="float32")
    x = np.random.default_rng(2).standard_normal(width).astype(np.float32)
    return net, x


def layer_jacobians(net: pyjac.Chain, x: np.ndarray) -> list[np.ndarray]:
    """The numpy way's first step: J_l = diag(tanh'(z_l)) W_l from a forward pass."""
    h, jac = x, []
    for w, b in zip(net.weights, net.biases):
        h = np.tanh(w @ h + b)
        jac.append((1 - h * h)[:, None] * w)
    return jac


def numpy_norms_every_depth(net: pyjac.Chain, x: np.ndarray) -> np.ndarray:
    p = None
    out = []
    for j in layer_jacobians(net, x):
        p = j if p is None else j @ p
        out.append(np.log(np.linalg.norm(p, 2)))
    return np.array(out)


def numpy_power_iteration(net: pyjac.Chain, x: np.ndarray, iters: int) -> float:
    h, ds = x, []
    for w, b in zip(net.weights, net.biases):
        h = np.tanh(w @ h + b)
        ds.append(1 - h * h)
    v = np.random.default_rng(0).standard_normal(x.shape[0]).astype(np.float32)
    v /= np.linalg.norm(v)
    sigma = 0.0
    for _ in range(iters):
        y = v
        for w, d in zip(net.weights, ds):
            y = d * (w @ y)
        sigma = float(np.linalg.norm(y))
        for w, d in zip(reversed(net.weights), reversed(ds)):
            y = w.T @ (d * y)
        v = y / np.linalg.norm(y)
    return sigma


def torch_norms_every_depth(net, x):  # pragma: no cover - optional
    import torch

    jac = [torch.from_numpy(j) for j in layer_jacobians(net, x)]
    p, out = None, []
    for j in jac:
        p = j if p is None else j @ p
        out.append(float(torch.linalg.matrix_norm(p, ord=2)))
    return np.log(out)


def jax_norms_every_depth(net, x):  # pragma: no cover - optional
    import jax.numpy as jnp

    jac = [jnp.asarray(j) for j in layer_jacobians(net, x)]
    p, out = None, []
    for j in jac:
        p = j if p is None else j @ p
        out.append(float(jnp.linalg.norm(p, 2)))
    return np.log(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="pyjac n_threads")
    args = parser.parse_args()
    reps = 3 if args.quick else 5
    nt = args.threads
    peak = sgemm_peak(3)
    print(f"pyjac {pyjac.__version__}; {os.cpu_count()} CPUs; pyjac threads "
          f"{pyjac._core.max_threads() if nt is None else nt}")
    print(f"float32 GEMM peak (numpy 2048^3, this run): {peak:.1f} GFLOP/s\n")

    rows = []
    for depth, width in ((50, 256), (20, 1024)):
        net, x = tanh_chain(depth, width)
        r = net.jacobian_norms(x, n_threads=nt)
        ref = numpy_norms_every_depth(net, x)
        err = float(np.max(np.abs(r.log_spectral_norm - ref)))
        t_pj = median_time(lambda net=net, x=x: net.jacobian_norms(x, n_threads=nt), reps)
        t_np = median_time(lambda net=net, x=x: numpy_norms_every_depth(net, x),
                           max(1, reps // 2))
        gemm_flops = 2.0 * width**3 * depth  # the product's GEMMs, the dominant work
        extra = f"GEMM phase {100 * gemm_flops / t_pj / 1e9 / peak:.0f}% of peak; " \
                f"max |dlog| vs numpy {err:.1e}"
        rows.append((f"sigma_max every depth, tanh d={depth} w={width}", t_pj, t_np, extra))
        for name, fn in (("torch", torch_norms_every_depth), ("jax", jax_norms_every_depth)):
            if importlib.util.find_spec(name) is None:
                rows.append((f"  {name}: not installed", float("nan"), float("nan"), ""))
            else:  # pragma: no cover - optional
                t = median_time(lambda net=net, x=x, fn=fn: fn(net, x), max(1, reps // 2))
                rows.append((f"  {name} (same, explicit product + norm)", t_pj, t, ""))

    net, x = tanh_chain(100, 256)
    iters = 50
    res = net.spectral_norm(x, iters=iters, tol=1e-300, n_threads=nt)
    ref = numpy_power_iteration(net, x, iters)
    t_pj = median_time(lambda: net.spectral_norm(x, iters=iters, tol=1e-300, n_threads=nt), reps)
    t_np = median_time(lambda: numpy_power_iteration(net, x, iters), max(1, reps // 2))
    traffic = 2 * iters * sum(w.nbytes for w in net.weights)  # W and W^T every iteration
    rows.append((f"power iteration d=100 w=256, {iters} iters", t_pj, t_np,
                 f"{traffic / t_pj / 1e9:.1f} GB/s of weights; "
                 f"rel diff vs numpy {abs(res.value / ref - 1):.1e}"))

    q = np.linalg.qr(np.random.default_rng(3).standard_normal((64, 64)))[0]
    net_deep, _ = tanh_chain(10_000, 64)
    x64 = np.random.default_rng(4).standard_normal(64).astype(np.float32)
    t_pj = median_time(lambda: net_deep.jacobian_norms(x64, n_threads=nt), max(1, reps // 2))
    rows.append(("sigma_max every depth, tanh d=10000 w=64", t_pj, float("nan"),
                 "numpy: explicit product is inf/0 long before"))
    lin = pyjac.Chain.from_weights([(1.1 * q).astype(np.float32)] * 10_000,
                                   activation="linear")
    t_lin = median_time(lambda: lin.jacobian_norms(np.ones(64, np.float32), n_threads=nt),
                        max(1, reps // 2))
    r = lin.jacobian_norms(np.ones(64, np.float32), n_threads=nt)
    rel = abs(r.log_spectral_norm[-1] / (10_000 * np.log(1.1)) - 1)
    rows.append(("sigma_max every depth, 1.1*Q d=10000 w=64", t_lin, float("nan"),
                 f"rel err at l=10000: {rel:.1e}"))

    print(f"{'case':52s} {'pyjac s':>9s} {'numpy s':>9s} {'speedup':>8s}  notes")
    for name, tp, tn, note in rows:
        ratio = tn / tp if np.isfinite(tn) and np.isfinite(tp) else float("nan")
        tp_s = f"{tp:9.4f}" if np.isfinite(tp) else f"{'':9s}"
        tn_s = f"{tn:9.4f}" if np.isfinite(tn) else f"{'-':>9s}"
        r_s = f"{ratio:7.1f}x" if np.isfinite(ratio) else f"{'':8s}"
        print(f"{name:52s} {tp_s} {tn_s} {r_s}  {note}")


if __name__ == "__main__":
    main()
