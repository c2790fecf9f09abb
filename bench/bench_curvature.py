"""Benchmark: Hessian-vector products and the top Hessian eigenvalue, pyjac vs PyTorch.

Usage: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_curvature.py
       [--quick] [--threads N] [--busy]

A float32 tanh chain (depth 20, width 256, batch 128; mean squared error to random
targets), every weight and bias a parameter:

- one Hessian-vector product: pyjac's ``H.hvp`` (tape kept from ``net.hessian``) against
  PyTorch's double backward, both with the first backward pass's graph kept (PyHessian's
  way: ``autograd.grad(grads, params, v, retain_graph=True)``) and from scratch (forward,
  backward with ``create_graph``, second backward);
- the top eigenvalue to 1e-4 relative: ``net.hessian(...).eigenvalues()`` (Lanczos)
  against PyHessian's power iteration in PyTorch, each run for as many products as it
  needs to come within 1e-4 of a float64 Lanczos run to 1e-10 (found first), the set-up
  (forward and backward) included in its time; and pyjac with its own stopping test.

The floor rows time the same 6 GEMMs a layer alone, in numpy (OpenBLAS, what pyjac
links) and torch (MKL). JAX (jvp of grad) is timed when installed. GFLOP/s count
2 * batch * n_in * n_out per GEMM; a pyjac product runs 6 GEMMs a layer (2 tangent
forward, 4 tangent backward).
"""

from __future__ import annotations

import importlib.util
import time

from _threads import pin_threads_from_argv

pin_threads_from_argv()

import numpy as np  # noqa: E402
from _timing import interleaved_medians, standard_run  # noqa: E402

import pyjac  # noqa: E402

DEPTH, WIDTH, BATCH = 20, 256, 128
TOL = 1e-4


def problem(dtype: str):
    net = pyjac.Chain(DEPTH, WIDTH, activation="tanh", init="gaussian", gain=1.2, seed=1,
                      dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, WIDTH)).astype(dtype)
    y = rng.standard_normal((BATCH, WIDTH)).astype(dtype)
    return net, x, y


def torch_setup(torch, net, x, y):
    params = []
    for w, b in zip(net.weights, net.biases):
        params += [torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def loss_fn():
        h = xt
        for l in range(DEPTH):
            h = torch.tanh(h @ params[2 * l].T + params[2 * l + 1])
        return ((h - yt) ** 2).mean()

    return params, loss_fn


def gemm_floor(matmul, a, w):
    """The 6 GEMMs a layer of one product (shapes as in the tangent passes), ``DEPTH``
    times: the BLAS-only floor of a Hessian-vector product in that library."""
    def run():
        for _ in range(DEPTH):
            for _ in range(2):
                matmul(a, w.T)      # forward: (B x n_in)(n_in x n)
                matmul(a.T, a)      # weight output: (n x B)(B x n_in)
                matmul(a, w)        # backward: (B x n)(n x n_in)
    return run


def torch_power_iteration(torch, params, loss_fn, iters):
    """PyHessian's hessian.eigenvalues(top_n=1): power iteration on Hv, ``iters`` products;
    the Rayleigh quotient after each."""
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
    gen = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=gen) for p in params]
    norm = torch.sqrt(sum((a * a).sum() for a in v))
    v = [a / norm for a in v]
    history = []
    for _ in range(iters):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        history.append(float(sum((a * b).sum() for a, b in zip(hv, v))))
        norm = torch.sqrt(sum((a * a).sum() for a in hv))
        v = [a / norm for a in hv]
    return history


def products_to_reach(errors, tol=TOL):
    """The first product count whose estimate is within tol (None if none is)."""
    return next((i + 1 for i, e in enumerate(errors) if e <= tol), None)


def main():
    args, repeats, threads, torch, peak = standard_run(__doc__, "each contender")
    net, x, y = problem("float32")
    H = net.hessian(x, loss="mse", target=y, n_threads=threads)
    v = np.random.default_rng(1).standard_normal(H.size)
    flops = 6 * 2.0 * BATCH * WIDTH * WIDTH * DEPTH
    contenders = {"pyjac hvp (tape kept)": lambda: H.hvp(v),
                  "pyjac hessian() + hvp": lambda: net.hessian(
                      x, loss="mse", target=y, n_threads=threads).hvp(v)}
    if torch is not None:
        params, loss_fn = torch_setup(torch, net, x, y)
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
        offs = np.cumsum([0] + [p.numel() for p in params])
        vt = [torch.from_numpy(v[a:b].astype(np.float32)).reshape(p.shape)
              for a, b, p in zip(offs[:-1], offs[1:], params)]
        contenders["torch double backward (graph kept)"] = lambda: torch.autograd.grad(
            grads, params, grad_outputs=vt, retain_graph=True)

        def torch_fresh():
            g = torch.autograd.grad(loss_fn(), params, create_graph=True)
            return torch.autograd.grad(g, params, grad_outputs=vt)

        contenders["torch double backward (from scratch)"] = torch_fresh
        ours = H.hvp(v)
        theirs = np.concatenate([t.detach().numpy().ravel() for t in contenders[
            "torch double backward (graph kept)"]()])
        print(f"hvp agreement, pyjac vs torch (float32): max |diff| / max |Hv| = "
              f"{np.abs(ours - theirs).max() / np.abs(ours).max():.1e}")
    if importlib.util.find_spec("jax") is None:
        print("JAX: not installed")
    a = np.random.default_rng(2).standard_normal((BATCH, WIDTH)).astype(np.float32)
    w = np.random.default_rng(3).standard_normal((WIDTH, WIDTH)).astype(np.float32)
    contenders["floor: the same 6 GEMMs a layer in numpy (OpenBLAS)"] = gemm_floor(np.matmul,
                                                                                 a, w)
    if torch is not None:
        contenders["floor: the same GEMMs in torch (MKL)"] = gemm_floor(
            torch.matmul, torch.from_numpy(a), torch.from_numpy(w))
    times = interleaved_medians(contenders, repeats)
    base = times["pyjac hvp (tape kept)"]
    print(f"\nOne Hessian-vector product, tanh chain depth {DEPTH}, width {WIDTH}, batch "
          f"{BATCH}, float32 ({H.size} parameters)")
    print(f"{'':54} {'ms':>8} {'vs pyjac':>9} {'GFLOP/s':>8} {'% peak':>7}")
    for name, t in times.items():
        gf = flops / t / 1e9 if name.startswith(("pyjac hvp", "floor")) else float("nan")
        print(f"{name:54} {1e3 * t:8.2f} {t / base:8.2f}x {gf:8.1f} "
              f"{100 * gf / peak:6.0f}%" if np.isfinite(gf) else
              f"{name:54} {1e3 * t:8.2f} {t / base:8.2f}x")

    reference = pyjac.Chain(DEPTH, WIDTH, activation="tanh", init="gaussian", gain=1.2, seed=1,
                            dtype="float64").hessian(x.astype(np.float64), loss="mse",
                                                     target=y.astype(np.float64))
    exact = float(reference.eigenvalues(tol=1e-10).values[0])
    # Each method's own iterations until its estimate is within TOL of the reference:
    # Lanczos with a fixed number of steps (no stopping test), power iteration's Rayleigh
    # quotients; then each is timed for that many products, set-up included.
    lanczos_err = [abs(H.eigenvalues(max_iter=m, tol=1e-300).values[0] / exact - 1)
                   for m in range(2, 41)]
    m_lanczos = products_to_reach(lanczos_err) + 1
    rows = []
    t0 = time.perf_counter()
    net.hessian(x, loss="mse", target=y, n_threads=threads).eigenvalues(max_iter=m_lanczos,
                                                                        tol=1e-300)
    rows.append(("pyjac Lanczos (hessian + eigenvalues)", time.perf_counter() - t0, m_lanczos,
                 lanczos_err[m_lanczos - 2]))
    t0 = time.perf_counter()
    default = net.hessian(x, loss="mse", target=y, n_threads=threads).eigenvalues()
    rows.append(("pyjac Lanczos, default stopping (tol 1e-4)", time.perf_counter() - t0,
                 default.iterations, abs(default.values[0] / exact - 1)))
    if torch is not None:
        history = torch_power_iteration(torch, params, loss_fn, 300)
        power_err = [abs(h / exact - 1) for h in history]
        m_power = products_to_reach(power_err)
        if m_power is None:
            rows.append(("torch power iteration: not within 1e-4 in 300", float("nan"), 300,
                         power_err[-1]))
        else:
            t0 = time.perf_counter()
            torch_power_iteration(torch, params, loss_fn, m_power)
            rows.append(("torch power iteration (PyHessian)", time.perf_counter() - t0,
                         m_power, power_err[m_power - 1]))
    print(f"\nTop Hessian eigenvalue to {TOL:g} relative (float64 reference {exact:.6g}); "
          f"each method run for the products it needs to get there")
    print(f"{'':46} {'s':>8} {'products':>9} {'rel err':>9} {'vs pyjac':>9}")
    for name, t, products, err in rows:
        print(f"{name:46} {t:8.3f} {products:9d} {err:9.1e} {t / rows[0][1]:8.2f}x")


if __name__ == "__main__":
    main()
