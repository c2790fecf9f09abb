"""pyjac.train on recurrent nets: against the same cells, readout, loss, clipping and
optimiser written in PyTorch (autograd and torch.optim, float64), on the long-range
tasks, and with bad input."""

from __future__ import annotations

import numpy as np
import pytest

import pyjac


class TestTasks:
    def test_adding_problem(self):
        t = pyjac.adding_problem(500, 20, seed=3, dtype="float64")
        assert t.x.shape == (500, 20, 2) and t.y.shape == (500, 1)
        markers = t.x[:, :, 1]
        np.testing.assert_array_equal(markers.sum(axis=1), 2.0)
        assert np.all(markers[:, :10].sum(axis=1) == 1) and np.all(markers[:, 10:].sum(axis=1) == 1)
        np.testing.assert_allclose(t.y[:, 0], (t.x[:, :, 0] * markers).sum(axis=1), rtol=1e-15)
        assert (t.predict, t.loss, t.chance_loss) == ("last", "mse", 1 / 6)
        # The chance level is the variance of a sum of two uniforms: 2/12.
        assert abs(np.mean((t.y - 1.0) ** 2) - 1 / 6) < 0.02
        assert pyjac.adding_problem(5, 20, seed=3).x.dtype == np.float32
        np.testing.assert_array_equal(pyjac.adding_problem(9, 7, seed=1).x,
                                      pyjac.adding_problem(9, 7, seed=1).x)

    def test_copy_problem(self):
        t = pyjac.copy_problem(50, delay=7, symbols=4, length=3, seed=0)
        steps = 7 + 2 * 3
        assert t.x.shape == (50, steps, 6) and t.y.shape == (50, steps)
        tokens = t.x.argmax(axis=2)
        np.testing.assert_array_equal(t.x.sum(axis=2), 1.0)
        np.testing.assert_array_equal(t.y[:, -3:], tokens[:, :3])  # recall the sequence
        np.testing.assert_array_equal(t.y[:, :-3], 4)                # blank elsewhere
        np.testing.assert_array_equal(tokens[:, 3 + 7 - 1], 5)       # the delimiter
        assert t.chance_loss == pytest.approx(3 * np.log(4) / steps)
        assert (t.predict, t.loss) == ("every_step", "cross_entropy")

    @pytest.mark.parametrize("call, match", [
        (lambda: pyjac.adding_problem(0, 10), "n"),
        (lambda: pyjac.adding_problem(10, 1), "length"),
        (lambda: pyjac.copy_problem(10, 0), "delay"),
        (lambda: pyjac.copy_problem(10, 5, symbols=1), "symbols"),
        (lambda: pyjac.copy_problem(10, 5, dtype="int8"), "dtype"),
        (lambda: pyjac.adding_problem(2**31 - 1, 10**6), "n: 2147483647 sequences"),
        (lambda: pyjac.copy_problem(2**31 - 1, 10**3), "n: 2147483647 sequences"),
    ])
    def test_bad_arguments(self, call, match):
        with pytest.raises((ValueError, TypeError, MemoryError), match=match):
            call()


def _readout(rng, n_out, width):
    return rng.uniform(-0.3, 0.3, (n_out, width)), rng.uniform(-0.3, 0.3, n_out)


class TestAgainstTorch:
    """The cells written out in torch (the module docstring's equations, one bias), a
    linear readout, PyTorch's losses, clip_grad_norm_ and torch.optim: each minibatch's
    loss, the gradient norm at every step of the last minibatch, and every parameter
    after two epochs agree in float64."""

    @pytest.fixture(autouse=True)
    def _torch(self):
        self.torch = pytest.importorskip("torch")

    def _cell(self, cell, W, U, b, x_t, h, c):
        torch = self.torch
        z_x = x_t @ U.T + b
        if cell == "lstm":
            i, f, g, o = (h @ W.T + z_x).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        if cell == "gru":
            n = h.shape[1]
            zr = h @ W[:2 * n].T + z_x[:, :2 * n]
            r, z = torch.sigmoid(zr[:, :n]), torch.sigmoid(zr[:, n:])
            cand = torch.tanh(z_x[:, 2 * n:] + r * (h @ W[2 * n:].T))
            return (1 - z) * cand + z * h, c
        act = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
               "linear": lambda v: v}[cell]
        return act(h @ W.T + z_x), c

    def _run(self, rnn, V, c, x, y, *, predict, loss, epochs, batch_size, clip, opt):
        torch = self.torch
        params = [torch.tensor(a, dtype=torch.float64, requires_grad=True)
                  for a in (rnn.W, rnn.U, rnn.b, V, c)]
        W, U, b, Vt, ct = params
        cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
               "adamw": torch.optim.AdamW}[opt["optimizer"]]
        optim = cls(params, foreach=False, **{k: v for k, v in opt.items() if k != "optimizer"})
        losses, step_norms = [], None
        for _ in range(epochs):
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[start:start + batch_size])
                yb = torch.from_numpy(y[start:start + batch_size])
                h = torch.zeros(len(xb), rnn.width, dtype=torch.float64, requires_grad=True)
                cell_state = torch.zeros_like(h)
                states = [h]
                for t in range(xb.shape[1]):
                    h, cell_state = self._cell(rnn.cell, W, U, b, xb[:, t], h, cell_state)
                    h.retain_grad()
                    states.append(h)
                read = torch.stack(states[1:], dim=1) if predict == "every_step" else h
                out = read @ Vt.T + ct
                if loss == "mse":
                    value = torch.nn.functional.mse_loss(out, yb)
                else:
                    value = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                                              yb.reshape(-1))
                optim.zero_grad()
                value.backward()
                step_norms = [float(torch.linalg.norm(s.grad)) for s in states]
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                optim.step()
                losses.append(value.item())
        return [p.detach().numpy() for p in params], np.array(losses), np.array(step_norms)

    CASES = [
        ("tanh", "adding", dict(optimizer="adam", lr=0.01), None),
        ("relu", "adding", dict(optimizer="sgd", lr=0.05, momentum=0.9), 1.0),
        ("sigmoid", "copy", dict(optimizer="sgd", lr=0.5), None),
        ("linear", "adding", dict(optimizer="sgd", lr=0.01, nesterov=True, momentum=0.5), None),
        ("lstm", "adding", dict(optimizer="adamw", lr=0.01, weight_decay=0.1), 0.5),
        ("lstm", "copy", dict(optimizer="adam", lr=0.02), None),
        ("gru", "copy", dict(optimizer="adam", lr=0.01, betas=(0.8, 0.99)), 0.3),
        ("gru", "adding", dict(optimizer="sgd", lr=0.1, weight_decay=0.01), None),
    ]

    @pytest.mark.parametrize("cell, task, opt, clip", CASES,
                             ids=[f"{c}-{t}-{o['optimizer']}-{k}" for c, t, o, k in CASES])
    def test_two_epochs(self, cell, task, opt, clip):
        rng = np.random.default_rng(4)
        data = (pyjac.adding_problem(24, 9, seed=1, dtype="float64") if task == "adding"
                else pyjac.copy_problem(24, delay=3, symbols=3, length=2, seed=1,
                                        dtype="float64"))
        rnn = pyjac.Recurrent(6, data.x.shape[2], cell=cell, init="gaussian", gain=1.2, seed=2,
                              dtype="float64")
        rnn.b[:] = rng.uniform(-0.2, 0.2, rnn.b.shape)
        V, c = _readout(rng, int(data.y.max()) + 1 if task == "copy" else 1, 6)
        want, losses, step_norms = self._run(rnn, V, c, data.x, data.y, predict=data.predict,
                                             loss=data.loss, epochs=2, batch_size=10, clip=clip,
                                             opt=opt)
        h = pyjac.train(rnn, data.x, data.y, epochs=2, batch_size=10, shuffle=False,
                        loss=data.loss, predict=data.predict, readout=(V, c), clip=clip, **opt)
        assert h.steps_per_epoch == 3
        np.testing.assert_allclose(h.step_loss, losses, rtol=1e-12)
        np.testing.assert_allclose(h.last_grad_norm[-1], step_norms, rtol=1e-11)
        got = [rnn.W, rnn.U, rnn.b, h.readout_weight, h.readout_bias]
        for name, g, w in zip("WUbVc", got, want):
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-14, err_msg=name)
        assert h.readout_weight is V  # a writable float64 readout is trained in place


def test_lstm_learns_the_adding_problem_where_tanh_stays_at_chance():
    """Hochreiter & Schmidhuber's point: at 50 steps the tanh RNN's gradient through the
    first marker is gone and its held-out loss stays at chance (1/6), while the LSTM's
    additive cell state carries it and the loss falls far below, for two seeds."""
    task = pyjac.adding_problem(3000, 50, seed=1)
    held_out = pyjac.adding_problem(500, 50, seed=2)
    for seed in (0, 1):
        final = {}
        for cell in ("tanh", "lstm"):
            rnn = pyjac.Recurrent(32, 2, cell=cell, seed=seed)
            h = pyjac.train(rnn, task.x, task.y, epochs=8, batch_size=50, loss="mse",
                            optimizer="adam", lr=1e-2, validation=(held_out.x, held_out.y),
                            seed=seed)
            final[cell] = h.val_loss[-1]
        assert final["tanh"] > 0.9 * task.chance_loss
        assert final["lstm"] < 0.1 * task.chance_loss


def test_records():
    task = pyjac.copy_problem(40, delay=5, symbols=4, length=2, seed=0)
    rnn = pyjac.Recurrent(8, 6, cell="lstm", seed=0)
    h = pyjac.train(rnn, task.x, task.y, epochs=3, batch_size=16, predict="every_step",
                    weight_bins=16)
    assert isinstance(h, pyjac.RecurrentTrainingHistory)
    names = ("W_i", "W_f", "W_g", "W_o", "U_i", "U_f", "U_g", "U_o", "V")
    assert h.parameter_names == names
    assert h.weight_change.shape == (4, 9) and h.weight_grad_norm.shape == (3, 9)
    assert h.grad_norm.shape == (3, 10) and h.last_grad_norm.shape == (3, 10)
    np.testing.assert_allclose(np.log(h.last_grad_norm), h.last_log_grad_norm, rtol=1e-12)
    assert h.weight_histogram.shape == (4, 9, 16)
    n = rnn.width
    for g in range(4):  # the histograms are of each gate block
        counts, _ = np.histogram(rnn.W[g * n:(g + 1) * n], bins=h.weight_histogram_edges[g])
        np.testing.assert_array_equal(h.weight_histogram[-1, g], counts)
    assert 0 <= h.accuracy[-1] <= 1 and h.steps == 9
    assert h.config["predict"] == "every_step"
    assert "W_f" in repr(h)


def test_same_numbers_at_any_thread_count():
    task = pyjac.copy_problem(200, delay=10, seed=0)
    results = []
    for threads in (1, 2):
        rnn = pyjac.Recurrent(256, 10, cell="gru", seed=0)
        h = pyjac.train(rnn, task.x, task.y, epochs=1, batch_size=100, predict="every_step",
                        optimizer="adam", n_threads=threads)
        results.append([rnn.W, rnn.U, rnn.b, h.readout_weight, h.step_loss])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_readout_copied_when_it_cannot_be_written():
    task = pyjac.adding_problem(20, 5, seed=0)
    rnn = pyjac.Recurrent(4, 2, seed=0)
    V = np.full((1, 4), 0.1)  # float64 for a float32 net: converted, the caller's kept
    h = pyjac.train(rnn, task.x, task.y, epochs=1, loss="mse", readout=(V, [0.0]))
    np.testing.assert_array_equal(V, 0.1)
    assert h.readout_weight.dtype == np.float32 and not np.all(h.readout_weight == 0.1)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x=np.zeros((4, 5, 3))), ValueError, r"x: expected sequences of shape \(n, steps, 2\)"),
    (dict(x=np.zeros((4, 5))), ValueError, "x: expected sequences"),
    (dict(x=np.full((4, 5, 2), np.nan)), ValueError, "x: contains NaN"),
    (dict(y=np.zeros((3, 1))), ValueError, r"y: mse needs targets of shape \(4, 'n_out'\)"),
    (dict(loss="cross_entropy", y=np.zeros(4)), ValueError, "y: cross_entropy needs integer"),
    (dict(loss="cross_entropy", y=np.array([0, 1, -1, 0])), ValueError, "non-negative"),
    (dict(predict="first"), ValueError, "predict: unknown value 'first'"),
    (dict(predict="every_step"), ValueError, r"y: mse needs targets of shape \(4, 5, 'n_out'\)"),
    (dict(readout=(np.zeros((1, 3)), np.zeros(1))), ValueError, r"readout\[0\]: expected shape"),
    (dict(readout=(np.zeros((1, 4)), np.zeros(2))), ValueError, r"readout\[1\]: expected shape"),
    (dict(readout=(np.zeros((2, 4)), np.zeros(2))), ValueError, "targets have 1 outputs"),
    (dict(readout=np.zeros((1, 4))), TypeError, "readout: expected a pair"),
    (dict(grad_dtype="float16"), ValueError, "grad_dtype, loss_scale"),
    (dict(optimizer="adam", betas=(0.9, 1.5)), ValueError, r"betas\[1\]"),
    (dict(validation=(np.zeros((2, 5, 2)), np.zeros((2, 3)))), ValueError,
     "validation: the targets|validation\\[1\\]: targets have 3 outputs"),
])
def test_bad_input_names_the_argument(kwargs, error, match):
    rnn = pyjac.Recurrent(4, 2, seed=0)
    before = rnn.W.copy()
    args = dict(x=np.zeros((4, 5, 2)), y=np.zeros((4, 1)), loss="mse")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        pyjac.train(rnn, args.pop("x"), args.pop("y"), **args)
    np.testing.assert_array_equal(rnn.W, before)


def test_a_net_without_inputs_and_chain_only_options():
    with pytest.raises(ValueError, match="input_size >= 1"):
        pyjac.train(pyjac.Recurrent(4), np.zeros((2, 3, 0)), np.zeros((2, 1)), loss="mse")
    with pytest.raises(ValueError, match="predict, readout: only for a pyjac.Recurrent"):
        pyjac.train(pyjac.Chain(2, 4), np.zeros((2, 4)), np.zeros(2, dtype=int),
                    predict="every_step")


def test_memory_is_checked_before_anything_is_allocated(monkeypatch):
    from pyjac import _validation

    task = pyjac.adding_problem(64, 50, seed=0)
    rnn = pyjac.Recurrent(16, 2, seed=0)
    monkeypatch.setattr(_validation, "physical_memory_bytes", lambda: 10_000)
    before = rnn.W.copy()
    with pytest.raises(MemoryError, match="training on sequences of 50 steps needs"):
        pyjac.train(rnn, task.x, task.y, loss="mse")
    np.testing.assert_array_equal(rnn.W, before)


def test_concurrent_training_gives_the_serial_numbers():
    import threading

    task = pyjac.copy_problem(120, delay=6, seed=0)

    def run():
        rnn = pyjac.Recurrent(64, 10, cell="lstm", seed=1)
        h = pyjac.train(rnn, task.x, task.y, epochs=2, batch_size=40, predict="every_step",
                        optimizer="adam")
        return [rnn.W, rnn.U, rnn.b, h.readout_weight, h.step_loss]

    serial = run()
    results = [None] * 4

    def worker(i):
        results[i] = run()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        for a, b in zip(got, serial):
            np.testing.assert_array_equal(a, b)


def test_a_diverging_run_is_data():
    task = pyjac.adding_problem(100, 20, seed=0, dtype="float64")
    rnn = pyjac.Recurrent(8, 2, cell="relu", init="gaussian", gain=3.0, dtype="float64")
    h = pyjac.train(rnn, task.x, task.y, epochs=3, loss="mse", lr=10.0)
    assert np.isfinite(h.step_loss[0]) and np.isnan(h.loss[-1])
    assert h.first_nonfinite_step == int(np.flatnonzero(~np.isfinite(h.step_loss))[0])


def test_subnormal_inputs_and_targets_train_without_error():
    """float64 inputs near 1e-310 (subnormal): Adam's second moment underflows to 0 and
    the step is lr * m / eps, as in PyTorch; the losses stay finite."""
    task = pyjac.adding_problem(60, 10, seed=0, dtype="float64")
    rnn = pyjac.Recurrent(8, 2, cell="tanh", dtype="float64")
    h = pyjac.train(rnn, task.x * 1e-310, task.y * 1e-300, epochs=2, loss="mse",
                    optimizer="adam")
    assert np.all(np.isfinite(h.loss)) and h.first_nonfinite_step is None


def test_gradient_records_are_taken_before_clipping():
    """Value clipping writes the clipped entries back; the per-gate gradient norms must be
    those of the gradient itself, as without clipping (one step: the same gradient)."""
    task = pyjac.adding_problem(16, 12, seed=0, dtype="float64")
    records = []
    for clip in (None, 1e-4):
        rnn = pyjac.Recurrent(6, 2, cell="gru", seed=1, dtype="float64")
        h = pyjac.train(rnn, task.x, task.y, epochs=1, batch_size=16, loss="mse",
                        clip=clip, clip_mode="value")
        records.append(h)
    np.testing.assert_array_equal(records[1].weight_grad_norm, records[0].weight_grad_norm)
    np.testing.assert_array_equal(records[1].step_grad_norm, records[0].step_grad_norm)
    assert records[1].step_clipped_grad_norm[0] < records[0].step_clipped_grad_norm[0]
