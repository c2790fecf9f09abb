"""Benchmark: pyjac.train on recurrent nets against the same loop in PyTorch.

Usage: python bench/bench_train_recurrent.py [--repeats N] [--threads N] [--quick] [--busy]

Float32 LSTM and GRU with a linear readout, Adam (lr 1e-3), shuffled minibatches,
one epoch each on the adding problem (the readout at the last step, mse) and the copy
problem (the readout at every step, cross-entropy). PyTorch runs nn.LSTM / nn.GRU
(batch_first) + nn.Linear + torch.optim.Adam and, like pyjac, reads the global gradient
norm every step. FLOPs per epoch: 6 * n * steps * G * width * (width + input_size), the
recurrent products of the forward and backward passes (the readout's are left out).
"""

from __future__ import annotations

from _threads import pin_threads_from_argv

pin_threads_from_argv()

import numpy as np  # noqa: E402
from _floors import recurrent_blas_floor  # noqa: E402
from _timing import (  # noqa: E402
    interleaved_medians,
    standard_run,
)

import pyjac  # noqa: E402

# (cell, task, sequences, steps or delay, width, batch)
CONFIGS = [
    ("lstm", "adding", 1024, 50, 128, 32),
    ("lstm", "adding", 1024, 100, 256, 64),
    ("gru", "adding", 1024, 100, 256, 64),
    ("lstm", "copy", 512, 50, 128, 32),
]
LR = 1e-3
GATES = {"lstm": 4, "gru": 3}


def task_of(kind, n, length):
    if kind == "adding":
        return pyjac.adding_problem(n, length, seed=0)
    return pyjac.copy_problem(n, length, seed=0)


def torch_loop(torch, cell, task, width, batch):
    """One epoch of the loop a PyTorch user would write."""
    x = torch.from_numpy(task.x)
    y = torch.from_numpy(task.y)
    n_in = task.x.shape[2]
    n_out = int(task.y.max()) + 1 if task.loss == "cross_entropy" else task.y.shape[1]
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](n_in, width, batch_first=True)
    readout = torch.nn.Linear(width, n_out)
    params = list(rnn.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    loss_fn = (torch.nn.MSELoss() if task.loss == "mse" else torch.nn.CrossEntropyLoss())
    generator = torch.Generator().manual_seed(0)

    def epoch():
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            rows = order[start:start + batch]
            states, _ = rnn(x[rows])
            if task.predict == "last":
                loss = loss_fn(readout(states[:, -1]), y[rows])
            else:
                out = readout(states)
                loss = loss_fn(out.reshape(-1, n_out), y[rows].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            _ = torch.sqrt(sum((p.grad ** 2).sum() for p in params)).item()
            opt.step()

    return epoch


def main():
    args, repeats, threads, torch, peak = standard_run(__doc__, "one epoch")
    header = (f"{'cell task n,steps,width,batch':>34} {'pyjac ms':>9} {'torch ms':>9} "
              f"{'vs torch':>9} {'GFLOP/s':>8} {'% peak':>7} {'floor ms':>9} {'torch/floor':>11}")
    print(header)
    print("-" * len(header))
    for cell, kind, n, length, width, batch in CONFIGS:
        task = task_of(kind, n, length)
        steps = task.x.shape[1]
        rnn = pyjac.Recurrent(width, task.x.shape[2], cell=cell, seed=0)

        def pyjac_epoch(rnn=rnn, task=task, batch=batch):
            pyjac.train(rnn, task.x, task.y, epochs=1, batch_size=batch, loss=task.loss,
                        predict=task.predict, optimizer="adam", lr=LR, n_threads=args.threads,
                        progress=False)

        batch_floor = recurrent_blas_floor(
            rnn.W, rnn.U, np.ascontiguousarray(task.x[:batch].transpose(1, 0, 2)))

        def floor(batch_floor=batch_floor, steps_per_epoch=-(-n // batch)):
            for _ in range(steps_per_epoch):
                batch_floor()

        contenders = {"pyjac": pyjac_epoch, "floor": floor}
        if torch is not None:
            contenders["torch"] = torch_loop(torch, cell, task, width, batch)
        times = interleaved_medians(contenders, repeats, inner=1)
        t_pyjac = times["pyjac"]
        t_torch = times.get("torch", float("nan"))
        flops = 6.0 * n * steps * GATES[cell] * width * (width + task.x.shape[2])
        gflops = flops / t_pyjac * 1e-9
        label = f"{cell} {kind} {n},{steps},{width},{batch}"
        print(f"{label:>34} {t_pyjac * 1e3:9.1f} {t_torch * 1e3:9.1f} "
              f"{t_torch / t_pyjac:8.2f}x {gflops:8.1f} {100 * gflops / peak:6.1f}% "
              f"{times['floor'] * 1e3:9.1f} {t_torch / times['floor']:10.2f}x")
    print("\nfloor: the epoch's per-step GEMM calls alone (recurrent_blas_floor in _floors.py, "
          "numpy's OpenBLAS);\ntorch/floor is the largest speed-up over PyTorch that per-step "
          "OpenBLAS calls allow.")
    print("\npyjac's run also evaluates the training set once before the epoch (loss and "
          "accuracy),\nand records per-gate gradient norms and weight changes, the gradient "
          "at every step\nand weight histograms, which the PyTorch loop does not.")


if __name__ == "__main__":
    main()
