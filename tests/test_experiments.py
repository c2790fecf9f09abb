"""pyjac.sweep, Results, the cache, pyjac.plot, the figure builders and the seed-claim
report."""

import math
import sys

import numpy as np
import pytest

import pyjac
from pyjac import experiments, theory
from pyjac.experiments import Results
from pyjac.figures import report

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SMALL = dict(depth=6, width=8, batch=3, cache=False, progress=False)


@pytest.fixture
def count_core(monkeypatch):
    """Count the calls into the C++ backprop."""
    calls = {"n": 0}
    original = pyjac._core.chain_backprop

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(pyjac._core, "chain_backprop", counting)
    return calls


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------------------
def test_sweep_is_tidy_one_row_per_config_seed_and_layer():
    res = pyjac.sweep(activation=["tanh", "relu"], init=["xavier", "orthogonal"], seeds=2,
                      **SMALL)
    assert len(res) == 2 * 2 * 2 * (6 + 1)
    for col in (*experiments.CONFIG_COLUMNS, "config", "seed", "layer", "grad_norm",
                "weight_grad_norm", "derivative_mean", "dead_fraction", "theory_log_ratio"):
        assert col in res.columns
    assert res.unique("activation") == ["tanh", "relu"]
    assert res.unique("seed") == [0, 1]
    assert res.varying() == ["activation", "init"]
    assert np.isnan(res.select(layer=0)["weight_grad_norm"]).all()
    assert np.isfinite(res.select(layer=3)["weight_grad_norm"]).all()
    assert res.meta["computed_runs"] == 8 and res.meta["cached_runs"] == 0


@pytest.mark.parametrize("loss", ["random", "sum_squares"])
def test_sweep_rows_agree_with_direct_backprop(loss):
    res = pyjac.sweep(activation="tanh", sigma_w2=[0.8, 2.5], sigma_b2=0.1, depth=7, width=9,
                      batch=4, seeds=[3, 5], loss=loss, input_scale=0.7, cache=False,
                      progress=False)
    for sw in (0.8, 2.5):
        for seed in (3, 5):
            net = pyjac.Chain(7, 9, activation="tanh", init="gaussian", gain=math.sqrt(sw),
                              bias_std=math.sqrt(0.1), seed=seed, dtype="float64")
            data = np.random.default_rng([seed, 1])
            x = data.standard_normal((4, 9)) * 0.7
            if loss == "random":
                r = net.backprop(x, grad_output=data.standard_normal((4, 9)))
            else:
                r = net.backprop(x)
            rows = res.select(sigma_w2=sw, seed=seed)
            np.testing.assert_array_equal(rows["layer"], np.arange(8))
            np.testing.assert_allclose(rows["grad_norm"], r.grad_norm, rtol=1e-12)
            np.testing.assert_allclose(rows["weight_grad_norm"][1:], r.weight_grad_norm,
                                       rtol=1e-12)
            np.testing.assert_allclose(rows["derivative_mean"][1:], r.derivative_mean,
                                       rtol=1e-12)
            np.testing.assert_allclose(rows["activation_norm"], r.activation_norm, rtol=1e-12)
            assert rows["sigma_w2"][0] == pytest.approx(net.sigma_w2)
            assert rows["init"][0] == "gaussian"
            assert rows["gain"][0] == pytest.approx(math.sqrt(sw))


def test_run_inputs_are_documented_draws():
    config = dict(batch=2, width=3, input_scale=2.0, loss="random")
    x, go = experiments.run_inputs(config, 7)
    data = np.random.default_rng([7, 1])
    np.testing.assert_array_equal(x, data.standard_normal((2, 3)) * 2.0)
    np.testing.assert_array_equal(go, data.standard_normal((2, 3)))
    assert experiments.run_inputs(dict(config, loss="sum_squares"), 7)[1] is None


def test_sweep_theory_column_is_the_mean_field_prediction():
    res = pyjac.sweep(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, **SMALL)
    expected = theory.predicted_log_grad_norm("tanh", 1.5, 0.05, 6, input_second_moment=1.0)
    np.testing.assert_allclose(res["theory_log_ratio"], expected)
    normed = pyjac.sweep(activation="tanh", norm="layernorm", **SMALL)
    assert np.isnan(normed["theory_log_ratio"]).all()
    off = pyjac.sweep(activation="tanh", theory=False, **SMALL)
    assert np.isnan(off["theory_log_ratio"]).all()


def test_growth_rate_of_an_orthogonal_linear_chain_is_ln_gain():
    res = pyjac.sweep(activation="linear", init="orthogonal", gain=[0.9, 1.1], **SMALL)
    rates = experiments.growth_rate(res)
    np.testing.assert_allclose(rates["log_growth"], [math.log(0.9), math.log(1.1)], rtol=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(depth=[10, 0]), r"depth\[1\]: must be at least 1"),
    (dict(activation="softplus"), "activation: unknown value 'softplus'"),
    (dict(activation=[]), "activation: the list of values is empty"),
    (dict(init="lecun"), "init: unknown value"),
    (dict(gain=2.0, sigma_w2=1.0), "gain, sigma_w2: give one or the other"),
    (dict(sigma_w2=1.0, init="he"), "init: sigma_w2 sets"),
    (dict(sigma_w2=-1.0), "sigma_w2: must be non-negative"),
    (dict(sigma_b2=[0.0, float("nan")]), r"sigma_b2\[1\]: must be finite"),
    (dict(norm="groupnorm"), "norm: unknown value"),
    (dict(norm="batchnorm", batch=1), "batch: norm='batchnorm' needs"),
    (dict(loss="mse"), "loss: unknown value"),
    (dict(seeds=0), "seeds: must be at least 1"),
    (dict(seeds=[1, 1]), "seeds: contains repeated seeds"),
    (dict(n_jobs=0), "n_jobs: must be a positive count"),
])
def test_sweep_errors_name_the_argument(kwargs, match):
    args = dict(SMALL, **kwargs)
    with pytest.raises(ValueError, match=match):
        pyjac.sweep(**args)


def test_sweep_type_errors_name_the_argument():
    with pytest.raises(TypeError, match="depth: expected an integer"):
        pyjac.sweep(**dict(SMALL, depth=2.5))
    with pytest.raises(TypeError, match="residual: expected a bool"):
        pyjac.sweep(**dict(SMALL, residual="yes"))
    with pytest.raises(TypeError, match="cache: expected True, False or a directory"):
        pyjac.sweep(**dict(SMALL, cache=3))
    with pytest.raises(TypeError, match="theory: expected a bool"):
        pyjac.sweep(**dict(SMALL, theory="no"))


# --------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------
def test_cached_sweeps_are_not_recomputed(tmp_path, count_core):
    args = dict(SMALL, activation=["sigmoid", "relu"], seeds=2, cache=tmp_path)
    first = pyjac.sweep(**args)
    assert count_core["n"] == 4
    assert len(list(tmp_path.glob("*.npz"))) == 4 + 2  # four runs, two theory curves
    second = pyjac.sweep(**args)
    assert count_core["n"] == 4  # nothing recomputed
    assert second.meta["computed_runs"] == 0 and second.meta["cached_runs"] == 4
    for col in first.columns:
        np.testing.assert_array_equal(first[col], second[col])
    # a new seed computes only the new runs
    third = pyjac.sweep(**dict(args, seeds=3))
    assert count_core["n"] == 6
    assert third.meta["computed_runs"] == 2
    # a change in any parameter is a different run
    pyjac.sweep(**dict(args, width=9))
    assert count_core["n"] == 10


def test_cache_false_writes_nothing_and_damaged_entries_are_recomputed(tmp_path, count_core,
                                                                       monkeypatch):
    monkeypatch.setenv("PYJAC_CACHE_DIR", str(tmp_path / "default"))
    pyjac.sweep(**dict(SMALL, cache=False))
    assert not (tmp_path / "default").exists()
    pyjac.sweep(**dict(SMALL, cache=True))
    files = sorted((tmp_path / "default").glob("*.npz"))
    assert len(files) == 2
    for f in files:
        f.write_bytes(b"not an npz")
    n = count_core["n"]
    with pytest.warns(RuntimeWarning, match="damaged"):
        res = pyjac.sweep(**dict(SMALL, cache=True))
    assert count_core["n"] == n + 1
    assert np.isfinite(res["grad_norm"]).all()


def test_cache_key_depends_on_config_and_seed():
    base = dict(a=1, b="x")
    assert experiments.config_hash(base, 0) == experiments.config_hash(dict(base), 0)
    assert experiments.config_hash(base, 0) != experiments.config_hash(base, 1)
    assert experiments.config_hash(base, 0) != experiments.config_hash(dict(base, a=2), 0)


def test_process_pool_gives_the_same_rows_as_in_core_threads():
    args = dict(SMALL, activation=["tanh", "relu"], seeds=2)
    serial = pyjac.sweep(**args, n_jobs=1)
    pooled = pyjac.sweep(**args, n_jobs=2)
    assert pooled.meta["n_jobs"] == 2
    for col in serial.columns:
        np.testing.assert_array_equal(serial[col], pooled[col])


def test_progress_falls_back_to_a_stderr_line_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    pyjac.sweep(**dict(SMALL, seeds=3, progress=True))
    err = capsys.readouterr().err
    assert "pyjac sweep: 3/3 runs (100%" in err


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
def _table():
    return pyjac.sweep(activation=["sigmoid", "relu"], residual=[False, True], seeds=2,
                       **SMALL)


def test_results_round_trip_through_npz(tmp_path):
    res = _table()
    path = res.save(tmp_path / "r.npz")
    assert path == tmp_path / "r.npz"
    back = Results.load(path)
    assert back == res
    assert back["activation"].dtype.kind == "U"
    assert back["residual"].dtype == np.bool_
    assert back["seed"].dtype.kind == "i"
    assert back.meta == res.meta


def test_results_save_picks_a_format_and_suffix(tmp_path):
    res = _table()
    path = res.save(tmp_path / "plain")
    expected = "parquet" if experiments.results._have_pyarrow() else "npz"
    assert path.name == f"plain.{expected}"
    assert Results.load(path) == res
    with pytest.raises(ValueError, match="format: unknown value 'csv'"):
        res.save(tmp_path / "x", format="csv")


def test_results_round_trip_through_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    res = _table()
    back = Results.load(res.save(tmp_path / "r.parquet"))
    assert back == res


def test_results_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: no such file"):
        Results.load(tmp_path / "missing.npz")
    (tmp_path / "junk.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a Parquet nor an npz"):
        Results.load(tmp_path / "junk.txt")
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="not a pyjac Results file"):
        Results.load(tmp_path / "other.npz")


def test_results_save_to_an_unwritable_place_names_the_path(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="path: cannot write"):
        _table().save(tmp_path / "file" / "r.npz")


def test_results_to_numpy_and_pandas(monkeypatch):
    res = _table()
    arr = res.to_numpy()
    assert arr.shape == (len(res),)
    assert list(arr.dtype.names) == res.columns
    np.testing.assert_array_equal(arr["grad_norm"], res["grad_norm"])
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="to_pandas needs pandas"):
        res.to_pandas()


def test_results_to_pandas_when_installed():
    pytest.importorskip("pandas")
    frame = _table().to_pandas()
    assert frame.shape[0] == len(_table())


def test_results_select_groupby_curves():
    res = _table()
    part = res.select(activation="relu", residual=[True])
    assert set(part["activation"]) == {"relu"} and part["residual"].all()
    assert res.select(norm=None) == res
    keys = [k for k, _ in res.groupby("activation", "residual")]
    assert keys == [("sigmoid", False), ("sigmoid", True), ("relu", False), ("relu", True)]
    layers, Y = part.curves("grad_norm")
    assert Y.shape == (2, 7)
    np.testing.assert_array_equal(layers, np.arange(7))
    with pytest.raises(KeyError, match="nope: no such column"):
        res.select(nope=1)
    assert "4 configs" in repr(res) and "2 seeds" in repr(res)
    mixed = pyjac.sweep(**dict(SMALL, depth=[3, 4]))
    with pytest.raises(ValueError, match="layer: runs cover different layer values"):
        mixed.curves("grad_norm")


def test_results_constructor_checks():
    with pytest.raises(ValueError, match="has 2 rows, expected 3"):
        Results({"a": [1, 2, 3], "b": [1, 2]})
    with pytest.raises(ValueError, match="expected a 1-D array"):
        Results({"a": np.zeros((2, 2))})
    with pytest.raises(TypeError, match="meta: must be JSON-serialisable"):
        Results({"a": [1]}, meta={"f": object()})
    with pytest.raises(TypeError, match="columns: expected a mapping"):
        Results([1, 2])
    both = Results.concat([Results({"a": [1]}), Results({"a": [2, 3]})])
    np.testing.assert_array_equal(both["a"], [1, 2, 3])


# --------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------
def test_gradient_vs_depth_draws_log_lines_with_theory():
    res = pyjac.sweep(activation=["sigmoid", "relu"], init="orthogonal", seeds=2, **dict(
        SMALL, depth=12))
    ax = pyjac.plot.gradient_vs_depth(res)
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel().startswith("layer")
    assert ax.get_ylabel()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["sigmoid", "relu", "mean-field theory"]
    # 2 means + 2 theory lines; the relu mean starts at 1 at the output layer
    assert len(ax.get_lines()) == 4
    y = ax.get_lines()[0].get_ydata()
    assert y[-1] == pytest.approx(1.0)


def test_per_layer_on_linear_axes_and_gradient_flow_bars():
    res = pyjac.sweep(activation="relu", sigma_w2=2.0, sigma_b2=[0.0, 0.5], seeds=2, **SMALL)
    ax = pyjac.plot.per_layer(res, "dead_fraction", log=False)
    assert ax.get_yscale() == "linear"
    ax = pyjac.plot.gradient_flow(res)
    assert ax.get_yscale() == "log"
    assert len(ax.patches) == 2 * 6  # one bar per layer and config, layer 0 left out
    with pytest.raises(ValueError, match="max_configs=1"):
        pyjac.plot.gradient_flow(res, max_configs=1)
    with pytest.raises(TypeError, match="results: expected pyjac.Results"):
        pyjac.plot.gradient_flow({"a": 1})
    with pytest.raises(ValueError, match="lacks the column"):
        pyjac.plot.per_layer(res, "nope")


def test_phase_diagram_draws_grid_and_critical_line():
    res = pyjac.sweep(activation="tanh", sigma_w2=[0.5, 1.5, 3.0], sigma_b2=[0.0, 0.2],
                      theory=False, **dict(SMALL, depth=10, width=16))
    ax = pyjac.plot.phase_diagram(res)
    assert ax.get_xlabel() == r"weight variance $\sigma_w^2$"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert r"mean-field critical line $\chi_1 = 1$" in labels
    line = [ln for ln in ax.get_lines() if ln.get_color() == "k"][0]
    assert line.get_xdata()[0] == pytest.approx(theory.critical_sigma_w2("tanh", 0.0))
    two = pyjac.sweep(activation="tanh", sigma_w2=[0.5, 1.5], width=[8, 9], depth=4, batch=2,
                      theory=False, cache=False, progress=False)
    with pytest.raises(ValueError, match="width vary"):
        pyjac.plot.phase_diagram(two)


def test_singular_value_spectra_from_a_mapping_and_results():
    rng = np.random.default_rng(0)
    spectra = {1: np.abs(1 + 0.05 * rng.standard_normal(64)),
               16: np.exp(rng.standard_normal(64))}
    ax = pyjac.plot.singular_value_spectra(spectra)
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["depth 1", "depth 16"]
    table = Results({"at_depth": np.repeat([1, 16], 64),
                     "singular_value": np.concatenate([spectra[1], spectra[16]])})
    ax = pyjac.plot.singular_value_spectra(table)
    assert len(ax.patches) == 2
    with pytest.raises(TypeError, match="spectra: expected Results or a mapping"):
        pyjac.plot.singular_value_spectra([1, 2])
    with pytest.raises(ValueError, match="bins: expected a positive integer"):
        pyjac.plot.singular_value_spectra(spectra, bins=0)


def test_rnn_gradient_vs_time_from_synthetic_results():
    steps = 20
    rows = {k: [] for k in ("cell", "spectral_radius", "config", "seed", "step", "grad_norm")}
    for c_i, (cell, rho) in enumerate([(c, r) for c in ("tanh", "lstm")
                                       for r in (0.5, 1.0, 1.5)]):
        for seed in (0, 1):
            t = np.arange(steps + 1)
            rows["cell"] += [cell] * (steps + 1)
            rows["spectral_radius"] += [rho] * (steps + 1)
            rows["config"] += [c_i] * (steps + 1)
            rows["seed"] += [seed] * (steps + 1)
            rows["step"] += list(t)
            rows["grad_norm"] += list(rho ** (steps - t) * (1 + 0.01 * seed))
    ax = pyjac.plot.rnn_gradient_vs_time(Results(rows))
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel().startswith("time steps")
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    # The radii are on the colour bar; the legend names the cells and the reference.
    assert texts == ["tanh", "lstm", r"$\rho^{T-t}$"]
    bar = ax.figure.axes[1]
    assert "spectral radius" in bar.get_ylabel()
    assert list(bar.get_yticks()) == [0.5, 1.0, 1.5]
    y = ax.get_lines()[0].get_ydata()  # tanh, rho 0.5: 0.5**(T - t) against T - t
    assert y[-1] == pytest.approx(0.5**steps, rel=1e-9)


def test_activation_derivatives_marks_the_sigmoid_peak():
    ax = pyjac.plot.activation_derivatives()
    texts = [t.get_text() for t in ax.texts]
    assert "sigmoid'(0) = 0.25" in texts


# --------------------------------------------------------------------------------------
# figures and the report
# --------------------------------------------------------------------------------------
def test_seed_claims_are_computed_and_the_wrong_ones_marked():
    claims = report.seed_claims(quick=True)
    by_text = {c.text_value: c for c in claims}
    # scalar claims: measured on chains built for them, equal to the closed forms
    for c in claims:
        if c.exact is not None and c.measured is not None and c.how.startswith(
                ("linear chain", "width-1")):
            assert c.measured == pytest.approx(c.exact, rel=1e-9), c.quote
    assert by_text["35%"].exact == pytest.approx(0.9**10) and by_text["35%"].verdict == "right"
    assert by_text["< 1%"].exact < 0.01
    assert by_text["13780"].exact == pytest.approx(13780.61234, rel=1e-9)
    assert by_text["5.24e-14"].verdict == "right"
    assert by_text["1.42e+08"].wrong and by_text["1.42e+08"].exact == pytest.approx(2.5**19)
    sig1 = 1 / (1 + math.exp(-1))
    assert by_text["1.07e-14"].wrong
    assert by_text["1.07e-14"].exact == pytest.approx((sig1 * (1 - sig1)) ** 20)
    assert by_text["~1e-6"].exact == pytest.approx(0.25**10)
    assert by_text["9.1e-13"].exact == pytest.approx(0.25**20)
    wrong = [c for c in claims if c.wrong]
    assert len(wrong) == 4
    assert sum("regardless of weights" in c.quote or "at most 0.25" in c.quote
               for c in wrong) == 2
    md = report.claims_markdown(claims)
    assert "3.638e+07" in md and "7.451e-15" in md and "**WRONG**" in md
