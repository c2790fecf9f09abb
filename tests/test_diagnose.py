"""pyjac.diagnose: verdicts, fixes, numbers equal Chain.backprop, every input form, CLI."""

import json

import numpy as np
import pytest

import pyjac
from pyjac import cli
from pyjac.diagnose import DEFAULT_THRESHOLDS


def _x(width, batch=16, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, width))


def _layers(net):
    return [(w, b, a) for w, b, a in zip(net.weights, net.biases, net.activations)]


@pytest.fixture(scope="module")
def sigmoid_xavier():
    return pyjac.Chain(20, 64, activation="sigmoid", init="xavier", seed=0)


def test_sigmoid_chain_vanishes_at_the_first_layers(sigmoid_xavier):
    rep = pyjac.diagnose(sigmoid_xavier, _x(64))
    assert rep.verdicts[:10] == ["vanishing"] * 10
    assert rep.verdicts[-1] == "healthy"
    assert set(rep.verdicts) <= {"vanishing", "healthy"}
    assert rep.rate < 0.3  # sigmoid' <= 1/4: the geometric shrink rate is flagged
    assert all("shrinks" in f for f in rep.flags)
    names = [f.name for f in rep.fixes]
    assert "relu_activation" in names
    relu = rep.fixes[names.index("relu_activation")]
    assert relu.ratio_before == pytest.approx(rep.ratio[0])
    assert 1e-3 <= relu.ratio_after <= 1e3
    # the predicted effect is pyjac's own measurement of the rebuilt chain
    fixed = pyjac.Chain(20, 64, activation="relu", init="he", seed=0)
    g = fixed.backprop(_x(64)).grad_norm
    assert relu.ratio_after == pytest.approx(g[1] / g[-1], rel=1e-12)
    assert "gradient_clipping" not in names  # clipping does not help vanishing
    text = str(rep)
    assert "vanishing" in text and "ReLU instead of sigmoid" in text


def test_gaussian_sigmoid_is_saturated_and_gets_a_non_saturating_fix():
    # N(0, 1) weights (gain sqrt(64)): the units saturate; at depth 20 and width 64 the
    # gradient of the first layer is ~0.1 of the output's (measured, not 0.25^20).
    net = pyjac.Chain(20, 64, activation="sigmoid", init="gaussian", gain=8.0, seed=0)
    rep = pyjac.diagnose(net, _x(64, batch=32))
    assert rep.saturated_fraction[0] > 0.5
    assert "saturated" in rep.flags[0]
    assert rep.ratio[0] < 0.5
    assert "relu_activation" in [f.name for f in rep.fixes]
    strict = pyjac.diagnose(net, _x(64, batch=32), thresholds={"vanishing": 0.2})
    assert strict.verdicts[0] == "vanishing"


def test_relu_he_is_healthy_everywhere():
    net = pyjac.Chain(20, 256, activation="relu", init="he", seed=1)
    rep = pyjac.diagnose(net, _x(256))
    assert rep.verdicts == ["healthy"] * 20
    assert rep.healthy
    assert rep.fixes == []
    assert "20 healthy" in rep.summary
    assert str(rep).count("\n") > 20
    broken = pyjac.Chain(20, 64, activation="sigmoid", init="xavier", seed=0)
    assert pyjac.diagnose(broken, _x(64), suggest=False).fixes == []


@pytest.mark.parametrize("activation,init", [("linear", "orthogonal"), ("relu", "he")])
def test_gain_three_explodes(activation, init):
    net = pyjac.Chain(20, 64, activation=activation, init=init, gain=3.0, seed=0)
    rep = pyjac.diagnose(net, _x(64))
    assert rep.verdicts[0] == "exploding"
    assert "healthy" not in rep.verdicts[:10]
    assert "vanishing" not in rep.verdicts
    names = [f.name for f in rep.fixes]
    assert names[-1] == "gradient_clipping"
    assert ("orthogonal_init" if activation == "linear" else "he_init") in names
    for f in rep.fixes[:-1]:
        assert DEFAULT_THRESHOLDS["vanishing"] <= f.ratio_after <= DEFAULT_THRESHOLDS["exploding"]


def test_nonfinite_chain_is_exploding_and_reported():
    net = pyjac.Chain(40, 32, activation="linear", init="orthogonal", gain=20.0, seed=0)
    rep = pyjac.diagnose(net, _x(32))
    assert rep.first_nonfinite_layer is not None
    assert "exploding" in rep.verdicts
    assert "NaN/Inf" in rep.summary
    assert "gradient_clipping" in [f.name for f in rep.fixes]
    json.dumps(rep.to_dict(), allow_nan=True)


def test_numbers_equal_chain_backprop_and_spectral_norm():
    net = pyjac.Chain(6, [8, 12, 10, 10, 9, 7, 5], activation="tanh", init="xavier",
                      bias_std=0.1, seed=3, dtype="float64")
    x = _x(8, batch=5)
    rep = pyjac.diagnose(net, x)
    r = net.backprop(x)
    np.testing.assert_array_equal(rep.grad_norm, r.grad_norm)
    np.testing.assert_array_equal(rep.weight_grad_norm, r.weight_grad_norm)
    np.testing.assert_array_equal(rep.derivative_mean, r.derivative_mean)
    np.testing.assert_array_equal(rep.saturated_fraction, r.saturated_fraction)
    np.testing.assert_array_equal(rep.dead_fraction, r.dead_fraction)
    np.testing.assert_allclose(rep.ratio, r.grad_norm[1:] / r.grad_norm[-1])
    np.testing.assert_allclose(rep.step, r.grad_norm[:-1] / r.grad_norm[1:])
    sn = net.spectral_norm(x[0], per_layer=True).value
    np.testing.assert_allclose(rep.spectral_norm, sn, rtol=1e-3)
    # sigma_max(J_l) of a tanh layer: at most ||W_l||_2
    assert np.all(rep.spectral_norm <= [np.linalg.norm(w, 2) * (1 + 1e-6) for w in net.weights])
    d = rep.to_dict()
    assert d["grad_norm"] == [float(v) for v in r.grad_norm]
    assert d["verdicts"] == rep.verdicts and len(d["flags"]) == 6
    json.dumps(d)


def test_loss_and_target_are_passed_through():
    net = pyjac.Chain(4, 10, activation="relu", seed=0, dtype="float64")
    x, labels = _x(10, batch=6), np.arange(6) % 10
    rep = pyjac.diagnose(net, x, loss="cross_entropy", target=labels)
    np.testing.assert_array_equal(
        rep.grad_norm, net.backprop(x, loss="cross_entropy", target=labels).grad_norm)
    assert rep.loss == "cross_entropy"


def test_npz_path_loaded_npz_and_tuple_list_give_the_same_report(tmp_path):
    net = pyjac.Chain(5, [6, 9, 9, 7, 7, 4], activation="tanh", init="gaussian", gain=1.5,
                      bias_std=0.2, seed=2)
    acts = ["tanh", "relu", "sigmoid", "gelu", "silu"]
    x = _x(6)
    arrays = {f"W{i}": w for i, w in enumerate(net.weights)}
    arrays.update({f"b{i}": b for i, b in enumerate(net.biases)})
    path = tmp_path / "net.npz"
    np.savez(path, activations=np.array(acts), **arrays)
    alt = tmp_path / "alt.npz"
    np.savez(alt, **{f"weights_{i}": w for i, w in enumerate(net.weights)},
             **{f"biases_{i}": b for i, b in enumerate(net.biases)})
    layers = [(w, b, a) for w, b, a in zip(net.weights, net.biases, acts)]
    reports = [pyjac.diagnose(layers, x), pyjac.diagnose(path, x), pyjac.diagnose(str(path), x),
               pyjac.diagnose(np.load(path), x), pyjac.diagnose(alt, x, activation=acts),
               pyjac.diagnose(dict(arrays), x, activation=acts)]
    ref = reports[0].to_dict()
    assert ref["activations"] == acts
    for rep in reports[1:]:
        assert rep.to_dict() == ref
    assert str(reports[1]) == str(reports[0])


def test_npz_norm_residual_and_missing_biases(tmp_path):
    net = pyjac.Chain(3, 8, activation="relu", seed=0, residual=True, norm="layernorm")
    path = tmp_path / "net.npz"
    np.savez(path, **{f"W{i}": w for i, w in enumerate(net.weights)},
             activations=np.array("relu"), norm=np.array("layernorm"), residual=np.array(True))
    rep = pyjac.diagnose(path, _x(8))
    assert rep.norm == "layernorm" and rep.residual
    np.testing.assert_array_equal(rep.grad_norm, net.backprop(_x(8)).grad_norm)


def test_cli_diagnose_prints_the_report(tmp_path, capsys):
    net = pyjac.Chain(20, 32, activation="sigmoid", init="xavier", seed=0)
    path = tmp_path / "w.npz"
    np.savez(path, **{f"W{i}": w for i, w in enumerate(net.weights)},
             **{f"b{i}": b for i, b in enumerate(net.biases)})
    code = cli.main(["diagnose", str(path), "--activation", "sigmoid", "--batch", "8",
                     "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "vanishing" in out and "ReLU instead of sigmoid" in out
    x = np.random.default_rng(1).standard_normal((8, 32))
    expected = str(pyjac.diagnose(path, x, activation="sigmoid"))
    assert out.strip() == expected.strip()
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("layer"))
    assert len(lines[header + 2]) <= len(lines[header + 1])  # aligned columns


@pytest.mark.parametrize("argv,flag", [
    (["MISSING"], "FILE"),
    (["NOACT"], "--activation"),
    (["GOOD", "--activation", "softplus"], "--activation"),
    (["GOOD", "--batch", "0"], "--batch"),
    (["GOOD", "--seed", "-1"], "--seed"),
    (["TEXT"], "FILE"),
])
def test_cli_diagnose_errors_name_the_argument(tmp_path, capsys, argv, flag):
    good = tmp_path / "good.npz"
    np.savez(good, W0=np.eye(3), activations=np.array("relu"))
    noact = tmp_path / "noact.npz"
    np.savez(noact, W0=np.eye(3))
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    paths = {"MISSING": str(tmp_path / "missing.npz"), "GOOD": str(good),
             "NOACT": str(noact), "TEXT": str(text)}
    argv = [paths.get(a, a) for a in argv]
    assert cli.main(["diagnose", *argv]) == 2
    err = capsys.readouterr().err
    assert f"pyjac diagnose: error: {flag}" in err


@pytest.mark.parametrize("model,kwargs,exc,match", [
    (42, {}, TypeError, "model_or_weights"),
    ([], {}, ValueError, "model_or_weights"),
    ([(np.eye(3), None)], {}, ValueError, "activation"),
    ([(np.eye(3), None, "softplus")], {}, ValueError, r"model_or_weights\[0\]\[2\]"),
    ([(np.eye(3), None, "relu"), (np.ones((2, 4)), None, "relu")], {}, ValueError,
     r"weights\[1\]"),
    ([(np.eye(3), np.zeros(2), "relu")], {}, ValueError, r"biases\[0\]"),
    ([(np.eye(3), None, "relu")], {"activation": ["relu", "tanh"]}, ValueError, "activation"),
    ([(np.eye(3), None, "relu")], {"thresholds": {"vanish": 1}}, ValueError, "thresholds"),
    ([(np.eye(3), None, "relu")], {"thresholds": {"vanishing": 2.0}}, ValueError,
     "thresholds"),
    ([(np.eye(3), None, "relu")], {"thresholds": {"dead": -1}}, ValueError, "thresholds"),
    ([(np.eye(3), None, "relu")], {"loss": "hinge"}, ValueError, "loss"),
    ([(np.eye(3), None, "relu")], {"suggest": "yes"}, TypeError, "suggest"),
    ([(np.eye(3), None, "relu")], {"n_threads": 0}, ValueError, "n_threads"),
    ({"X0": np.eye(3)}, {}, ValueError, "W0"),
    ({"W0": np.eye(3), "W2": np.eye(3)}, {"activation": "relu"}, ValueError, "W2"),
])
def test_bad_inputs_raise_errors_naming_the_argument(model, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        pyjac.diagnose(model, np.ones((2, 3)), **kwargs)


def test_bad_x_and_chain_with_activation():
    net = pyjac.Chain(2, 3, seed=0)
    with pytest.raises(ValueError, match="x"):
        pyjac.diagnose(net, np.ones((2, 4)))
    with pytest.raises(ValueError, match="x"):
        pyjac.diagnose(net, [[np.nan, 0, 0]])
    with pytest.raises(ValueError, match="activation"):
        pyjac.diagnose(net, np.ones(3), activation="relu")
    with pytest.raises(ValueError, match="no such file"):
        pyjac.diagnose("/nonexistent/w.npz", np.ones(3))


def test_torch_sequential_gives_the_same_numbers_as_arrays():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 9), nn.Tanh(), nn.Linear(9, 8), nn.Sigmoid(),
        nn.Sequential(nn.Linear(8, 8), nn.LeakyReLU(0.01)), nn.Linear(8, 7), nn.GELU(),
        nn.Linear(7, 7), nn.SiLU(), nn.Linear(7, 5), nn.Identity())
    acts = ["relu", "tanh", "sigmoid", "leaky_relu", "gelu", "silu", "linear"]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    layers = [(m.weight.detach().numpy(), m.bias.detach().numpy(), a)
              for m, a in zip(linears, acts)]
    x = _x(6, batch=7).astype(np.float32)
    rep_t = pyjac.diagnose(model, x)
    rep_a = pyjac.diagnose(layers, x)
    assert rep_t.to_dict() == rep_a.to_dict()
    assert pyjac.diagnose(model, torch.tensor(x)).to_dict() == rep_a.to_dict()
    assert rep_t.activations == acts
    # and the gradients are torch's own
    xt = torch.tensor(x, requires_grad=True)
    out = model(xt)
    (0.5 * (out**2).sum()).backward()
    np.testing.assert_allclose(rep_t.grad_norm[0], xt.grad.norm().item(), rtol=1e-4)
    np.testing.assert_allclose(rep_t.weight_grad_norm,
                               [m.weight.grad.norm().item() for m in linears], rtol=1e-4)


def test_torch_layernorm_and_unsupported_modules():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 5), nn.LayerNorm(5), nn.ReLU(),
                          nn.Linear(5, 5), nn.LayerNorm(5, elementwise_affine=False), nn.Tanh())
    rep = pyjac.diagnose(model, _x(5).astype(np.float32))
    assert rep.norm == "layernorm"
    linears = [m for m in model if isinstance(m, nn.Linear)]
    net = pyjac.Chain.from_weights([m.weight.detach().numpy() for m in linears],
                                   [m.bias.detach().numpy() for m in linears],
                                   activation=["relu", "tanh"], norm="layernorm")
    np.testing.assert_array_equal(rep.grad_norm, net.backprop(_x(5).astype(np.float32)).grad_norm)

    trained = nn.LayerNorm(5)
    with torch.no_grad():
        trained.weight.mul_(2.0)
    bad = [
        (nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1)), "Dropout"),
        (nn.Sequential(nn.Linear(4, 4), nn.LeakyReLU(0.2)), "LeakyReLU"),
        (nn.Sequential(nn.Linear(4, 4), nn.GELU(approximate="tanh")), "GELU"),
        (nn.Sequential(nn.Linear(4, 5), trained, nn.ReLU()), "LayerNorm"),
        (nn.Sequential(nn.ReLU(), nn.Linear(4, 4)), "ReLU"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Tanh()), "Tanh"),
        (nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 4)), "LayerNorm"),
        (nn.Linear(4, 4), "Sequential"),
    ]
    for model, name in bad:
        with pytest.raises(ValueError, match=f"model_or_weights.*{name}"):
            pyjac.diagnose(model, np.ones((2, 4), dtype=np.float32))
