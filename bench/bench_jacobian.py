"""pyjac vs the numpy way: spectral norms of Jacobian products at every depth, and
end-to-end power iteration. float32, median of repeats, one run.

    python bench/bench_jacobian.py [--quick] [--threads N]

--threads N pins pyjac, numpy's OpenBLAS and torch to N threads (set before numpy
is imported); without it every library uses every core.

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
import time

from _threads import pin_threads_from_argv  # noqa: E402

_PINNED = pin_threads_from_argv()

import numpy as np  # noqa: E402
from _timing import (  # noqa: E402
    add_busy_argument,
    blas_kernel_note,
    median_time,
    pyjac_threads_note,
    sgemm_peak_gflops,
    start_busy_neighbour,
)

import pyjac  # noqa: E402


def tanh_chain(depth: int, width: int, gain: float = 1.5) -> tuple[pyjac.Chain, np.ndarray]:
    net = pyjac.Chain(depth, width, activation="tanh", init="gaussian", gain=gain, seed=1,
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


def numpy_rescaled_norms_every_depth(net: pyjac.Chain, x: np.ndarray) -> np.ndarray:
    """The careful numpy way for deep chains: rescale the product at every layer."""
    p, log_scale, out = None, 0.0, []
    for j in layer_jacobians(net, x):
        p = j if p is None else j @ p
        s = np.linalg.norm(p)
        p /= s
        log_scale += np.log(s)
        out.append(log_scale + np.log(np.linalg.norm(p, 2)))
    return np.array(out)


def torch_power_iteration(net, x, iters):  # pragma: no cover - optional
    import torch

    h, ds = x, []
    for w, b in zip(net.weights, net.biases):
        h = np.tanh(w @ h + b)
        ds.append(torch.from_numpy(1 - h * h))
    ws = [torch.from_numpy(w) for w in net.weights]
    v = torch.from_numpy(np.random.default_rng(0).standard_normal(x.shape[0]).astype(np.float32))
    v /= torch.linalg.vector_norm(v)
    sigma = 0.0
    with torch.no_grad():
        for _ in range(iters):
            y = v
            for w, d in zip(ws, ds):
                y = d * (w @ y)
            sigma = float(torch.linalg.vector_norm(y))
            for w, d in zip(reversed(ws), reversed(ds)):
                y = w.T @ (d * y)
            v = y / torch.linalg.vector_norm(y)
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
    add_busy_argument(parser)
    args = parser.parse_args()
    if args.busy:
        start_busy_neighbour()
    print(pyjac_threads_note(args.threads))
    reps = 3 if args.quick else 5
    nt = args.threads
    have_torch = importlib.util.find_spec("torch") is not None
    if have_torch and nt is not None:  # pragma: no cover - optional
        import torch

        torch.set_num_threads(nt)
    peak = sgemm_peak_gflops(-1 if nt is None else nt)
    print(f"pyjac {pyjac.__version__}; {os.cpu_count()} CPUs; threads for every library: "
          f"{'all' if nt is None else nt}; load average {os.getloadavg()[0]:.1f}")
    print(f"float32 GEMM peak (OpenBLAS via pyjac, 2048^3, this run): {peak:.1f} GFLOP/s; "
          f"{blas_kernel_note()}\n")

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
        extra = f"product GEMM flops / total time = {100 * gemm_flops / t_pj / 1e9 / peak:.0f}% " \
                f"of peak; max |dlog| vs numpy {err:.1e}"
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
    if have_torch:  # pragma: no cover - optional
        t = median_time(lambda: torch_power_iteration(net, x, iters), max(1, reps // 2))
        rows.append(("  torch (same, torch matvecs)", t_pj, t, ""))
    else:
        rows.append(("  torch: not installed", float("nan"), float("nan"), ""))
    rows.append(("  jax: not installed" if importlib.util.find_spec("jax") is None
                 else "  jax: not benchmarked", float("nan"), float("nan"), ""))

    q = np.linalg.qr(np.random.default_rng(3).standard_normal((64, 64)))[0]
    # gain 1: at gain 1.5 the forward pass is chaotic, so after a few hundred layers
    # numpy's and pyjac's rounding send it (and its Jacobians) to different places and
    # no comparison of the two means anything.
    net_deep, _ = tanh_chain(10_000, 64, gain=1.0)
    x64 = np.random.default_rng(4).standard_normal(64).astype(np.float32)
    t_pj = median_time(lambda: net_deep.jacobian_norms(x64, n_threads=nt), max(1, reps // 2))
    t0 = time.perf_counter()
    ref = numpy_rescaled_norms_every_depth(net_deep, x64)
    t_np = time.perf_counter() - t0
    err = float(np.max(np.abs(net_deep.jacobian_norms(x64).log_spectral_norm - ref)))
    rows.append(("sigma_max every depth, tanh (gain 1) d=10000 w=64", t_pj, t_np,
                 f"numpy rescaled by hand (the plain product is 0 by then); "
                 f"max |dlog| {err:.1e}"))
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
