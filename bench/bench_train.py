"""Benchmark: pyjac.train against the numpy SGD loop (and PyTorch), 3 epochs each.

Usage: python bench/bench_train.py [--repeats N] [--threads N] [--quick]

Float32 ReLU chains with He init, softmax cross-entropy, plain SGD (lr 0.01), shuffled
minibatches. Every contender does the same work per step: forward, backward, the
update, and the records pyjac keeps (per-layer ||dL/dW_l|| and the global gradient norm).
FLOPs are 6*n*sum(n_in*n_out) per epoch; % of peak is against this machine's OpenBLAS
SGEMM rate measured in the same run through the library pyjac links.
"""

from __future__ import annotations

from functools import partial

from _threads import pin_threads_from_argv

pin_threads_from_argv()

import numpy as np  # noqa: E402
from _floors import train_blas_floor  # noqa: E402
from _timing import (  # noqa: E402
    interleaved_medians,
    standard_run,
    torch_linears,
)

import pyjac  # noqa: E402

# (examples, depth, width, batch): the digits' size, then a wider, longer one.
CONFIGS = [(1348, 10, 64, 32), (4096, 10, 256, 128), (4096, 4, 1024, 256)]
LR = 0.01
EPOCHS = 3


def numpy_epoch(weights, biases, x, y, order, batch):
    """The loop a user would write with numpy."""
    n_out = weights[-1].shape[0]
    for start in list(range(0, len(x), batch)) * EPOCHS:
        rows = order[start:start + batch]
        hs = [x[rows]]
        for w, b in zip(weights, biases):
            hs.append(np.maximum(hs[-1] @ w.T + b, 0))
        logits = hs[-1]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - np.eye(n_out, dtype=x.dtype)[y[rows]]) / len(rows)
        grads = []
        for l in range(len(weights) - 1, -1, -1):
            dz = g * (hs[l + 1] > 0)
            grads.append((l, dz.T @ hs[l], dz.sum(axis=0)))
            g = dz @ weights[l]
        norms = [np.linalg.norm(gw) for _, gw, _ in grads]
        _ = np.sqrt(sum(n * n + np.sum(gb * gb) for n, (_, _, gb) in zip(norms, grads)))
        for l, gw, gb in grads:
            weights[l] -= LR * gw
            biases[l] -= LR * gb


def torch_epoch(torch, model, opt, x, y, order, batch):
    loss_fn = torch.nn.CrossEntropyLoss()
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    for start in list(range(0, len(x), batch)) * EPOCHS:
        rows = order[start:start + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[rows]), y[rows])
        loss.backward()
        norms = torch.stack([m.weight.grad.norm() for m in linears])
        total = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
        _ = (norms.tolist(), total.item())
        opt.step()


def main():
    args, repeats, threads, torch, peak = standard_run(__doc__, f"{EPOCHS} epochs")
    header = (f"{'n,depth,width,batch':>20} {'pyjac ms':>9} {'numpy ms':>9} {'vs numpy':>9} "
              f"{'torch ms':>9} {'vs torch':>9} {'GFLOP/s':>8} {'% peak':>7} {'floor ms':>9} "
              f"{'numpy/floor':>11} {'torch/floor':>11}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for n, depth, width, batch in CONFIGS:
        x = rng.standard_normal((n, width)).astype(np.float32)
        y = rng.integers(0, width, size=n)
        order = rng.permutation(n)
        net = pyjac.Chain(depth, width, activation="relu", init="he", seed=0)
        weights = [w.copy() for w in net.weights]
        biases = [b.copy() for b in net.biases]

        def pyjac_epoch(net=net, x=x, y=y, batch=batch):
            pyjac.train(net, x, y, epochs=EPOCHS, lr=LR, batch_size=batch, n_threads=args.threads,
                        progress=False)

        contenders = {"pyjac": pyjac_epoch,
                      "numpy": partial(numpy_epoch, weights, biases, x, y, order, batch),
                      "floor": train_blas_floor(net.weights, x, batch, EPOCHS)}
        if torch is not None:
            layers = []
            for lin in torch_linears(torch, net.weights, net.biases):
                layers += [lin, torch.nn.ReLU()]
            model = torch.nn.Sequential(*layers)
            opt = torch.optim.SGD(model.parameters(), lr=LR)
            contenders["torch"] = partial(torch_epoch, torch, model, opt, torch.from_numpy(x),
                                          torch.from_numpy(y), torch.from_numpy(order), batch)
        times = interleaved_medians(contenders, repeats)
        t_pyjac, t_numpy = times["pyjac"], times["numpy"]
        t_torch = times.get("torch", float("nan"))
        gflops = 6.0 * EPOCHS * n * depth * width * width / t_pyjac * 1e-9
        print(f"{f'{n},{depth},{width},{batch}':>20} {t_pyjac * 1e3:9.1f} {t_numpy * 1e3:9.1f} "
              f"{t_numpy / t_pyjac:8.2f}x {t_torch * 1e3:9.1f} {t_torch / t_pyjac:8.2f}x "
              f"{gflops:8.1f} {100 * gflops / peak:6.1f}% {times['floor'] * 1e3:9.1f} "
              f"{t_numpy / times['floor']:10.2f}x {t_torch / times['floor']:10.2f}x")
    print("\nfloor: the epochs' GEMM calls alone (train_blas_floor in _floors.py); numpy/floor "
          "and\ntorch/floor are the largest speed-ups over each that per-layer OpenBLAS calls "
          "allow.")
    print("\npyjac's run also evaluates the training set once before training (loss and "
          "accuracy)\nand keeps per-epoch loss/accuracy, per-layer gradient norms and weight "
          "changes, which the loops above do not.")


if __name__ == "__main__":
    main()
