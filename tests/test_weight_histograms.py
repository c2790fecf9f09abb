"""Per-layer weight histograms recorded by pyjac.train, against numpy.histogram."""

from __future__ import annotations

import numpy as np
import pytest

import pyjac
from pyjac import _core


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_counts_match_numpy_histogram(dtype):
    rng = np.random.default_rng(0)
    net = pyjac.Chain(4, [8, 32, 32, 32, 3], activation=["tanh"] * 3 + ["linear"],
                      init="xavier", seed=1, dtype=dtype)
    w0 = [w.astype(np.float64) for w in net.weights]
    x = rng.standard_normal((64, 8))
    y = rng.integers(0, 3, size=64)
    h = pyjac.train(net, x, y, epochs=4, lr=2.0, batch_size=8, weight_bins=20)
    assert h.weight_histogram.shape == (5, 4, 20) and h.weight_histogram.dtype == np.int32
    assert h.weight_histogram_edges.shape == (4, 21)
    for layer, w in enumerate(w0):
        r = 2 * np.abs(w).max()
        np.testing.assert_allclose(h.weight_histogram_edges[layer, [0, -1]], [-r, r], rtol=1e-15)
        want, _ = np.histogram(w, bins=h.weight_histogram_edges[layer])
        np.testing.assert_array_equal(h.weight_histogram[0, layer], want)
        after, _ = np.histogram(net.weights[layer].astype(np.float64),
                                bins=h.weight_histogram_edges[layer])
        inside = after.sum()
        assert inside + h.weight_histogram_outside[-1, layer].sum() == w.size
        np.testing.assert_array_equal(h.weight_histogram[-1, layer], after)
    # lr 2 moves the readout far: its histogram changed, and some weights left the bins.
    assert np.any(h.weight_histogram[-1, -1] != h.weight_histogram[0, -1])


def test_fixed_bins_catch_weights_that_leave_them():
    w = np.array([[-3.0, -2.0, -0.5, 0.0, 0.5, 1.0, 2.0, 2.5]])
    r = _core.weight_histograms([w], [2.0], 4, 1)
    np.testing.assert_array_equal(r["counts"], [[1, 1, 2, 2]])  # 2.0 is the last bin's edge
    np.testing.assert_array_equal(r["outside"], [[1, 1]])
    np.testing.assert_array_equal(r["ranges"], [2.0])


@pytest.mark.parametrize("values, want_range", [
    ([0.0, 0.0], 1.0),                      # nothing to scale by: [-1, 1]
    ([1e308, -5e307], 1e308),               # twice the largest overflows: the largest itself
    ([5e-324, -1e-320], 2e-320),            # subnormal weights get subnormal bins
    ([np.nan, 1.0], 1.0),                   # a NaN: fall back, and count it nowhere
])
def test_ranges_at_the_extremes(values, want_range):
    r = _core.weight_histograms([np.array([values])], [], 8, 1)
    assert r["ranges"][0] == pytest.approx(want_range, rel=1e-15)
    finite = np.isfinite(values)
    inside = r["counts"].sum() + r["outside"].sum()
    assert inside == finite.sum()
    if want_range != 1.0 or np.all(np.array(values) == 0):
        # np.histogram subtracts edges, which overflows at 1e308: bin by search instead.
        edges = want_range * np.linspace(-1.0, 1.0, 9)
        bins = np.searchsorted(edges, np.array(values)[finite], side="right") - 1
        want = np.bincount(np.minimum(bins, 7), minlength=8)
        np.testing.assert_array_equal(r["counts"][0], want)


def test_many_blocks_in_parallel_count_every_weight():
    rng = np.random.default_rng(3)
    ws = [rng.standard_normal((300, 700)), rng.standard_normal((7, 3))]
    for threads in (1, 2):
        r = _core.weight_histograms(ws, [], 50, threads)
        for layer, w in enumerate(ws):
            want, _ = np.histogram(w, bins=np.linspace(-r["ranges"][layer], r["ranges"][layer],
                                                       51))
            np.testing.assert_array_equal(r["counts"][layer], want)


def test_none_records_nothing_and_bad_bins_are_refused():
    rng = np.random.default_rng(0)
    net = pyjac.Chain(2, [4, 4, 2], seed=0, dtype="float64")
    x, y = rng.standard_normal((8, 4)), np.arange(8) % 2
    h = pyjac.train(net, x, y, epochs=1, weight_bins=None)
    assert h.weight_histogram is None and h.weight_histogram_edges is None
    for bad, error in ((0, ValueError), (-3, ValueError), (2.5, TypeError), (10**6, ValueError)):
        with pytest.raises(error, match="weight_bins"):
            pyjac.train(net, x, y, epochs=1, weight_bins=bad)


def test_plot(tmp_path):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import pyjac.plot

    rng = np.random.default_rng(0)
    net = pyjac.Chain(3, [4, 16, 16, 2], seed=0, dtype="float64")
    h = pyjac.train(net, rng.standard_normal((32, 4)), np.arange(32) % 2, epochs=3, lr=1.0)
    ax = pyjac.plot.weight_histograms(h, layer=-1)
    assert len(ax.patches) == 4  # one outline per epoch, 0..3
    ax = pyjac.plot.weight_histograms(h, 0, difference=True, epochs=[3])
    assert "minus the initial" in ax.get_ylabel()
    with pytest.raises(ValueError, match="layer"):
        pyjac.plot.weight_histograms(h, layer=3)
    with pytest.raises(ValueError, match="epochs"):
        pyjac.plot.weight_histograms(h, epochs=[4])
    with pytest.raises(TypeError, match="history"):
        pyjac.plot.weight_histograms({"weight_histogram": 1})
    h = pyjac.train(net, rng.standard_normal((32, 4)), np.arange(32) % 2, epochs=1,
                    weight_bins=None)
    with pytest.raises(ValueError, match="weight_bins=None"):
        pyjac.plot.weight_histograms(h)
