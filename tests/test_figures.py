"""Figure captions are written from the measured numbers: they cannot contradict them."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")

from pyjac import figures as F  # noqa: E402
from pyjac.figures import (  # noqa: E402  # noqa: E402,I001
    residual_layernorm,
    rnn_gradient_vs_time,
    singular_values,
    training,
)
from pyjac.figures.common import join_words, theory_gap, trend  # noqa: E402

CLAIM = re.compile(r"(vanishes|explodes|stays within a decade) \(([-+0-9.e]+)\)")


def _check_trend_claims(caption: str) -> int:
    """Every 'vanishes (x)' / 'explodes (x)' / 'stays within a decade (x)' fits its x."""
    found = 0
    for word, number in CLAIM.findall(caption):
        x = float(number)
        if word == "vanishes":
            assert x < 0.1, caption
        elif word == "explodes":
            assert x > 10, caption
        else:
            assert 0.1 <= x <= 10, caption
        found += 1
    return found


def test_trend_words_follow_the_number():
    assert trend(1e-5).startswith("vanishes")
    assert trend(2.7e3).startswith("explodes")
    assert trend(0.5).startswith("stays within a decade")
    assert trend(float("nan")).startswith("is lost")
    assert join_words(["a"]) == "a" and join_words(["a", "b", "c"]) == "a, b and c"
    assert "factor 2" in theory_gap([("x", 2.0, 1.0), ("y", 1.0, 1.0)])
    assert "No case" in theory_gap([("x", 2.0, float("nan"))])


def test_figure4_claims_name_the_radii_where_the_gradient_grows():
    # The case: rho = 1.1 measured 0.927 must not be said to grow.
    gains = {"tanh": {0.5: 1e-30, 1.0: 0.08, 1.1: 0.927, 1.5: 481.0},
             "lstm": {0.5: 1e-8, 1.0: 0.007, 1.1: 0.06, 1.5: 0.8}}
    text = rnn_gradient_vs_time._fig4_claims(gains, 100)
    assert "shrinks over the 100 steps at rho = 0.5, 1 and 1.1 and grows at rho = 1.5" in text
    assert "at every radius below 1 the LSTM keeps more" in text
    gains["lstm"][0.5] = 1e-40
    assert "every radius" not in rnn_gradient_vs_time._fig4_claims(gains, 100)


def test_figure5_claims_follow_the_spectra():
    # (mean s^2, spread of the middle 80%, theory's mean), as measured in the issue.
    deepest = {"orthogonal tanh": (1.01, 3.9, 1.0), "Gaussian tanh": (0.158, 6e30, 1.0),
               "Gaussian ReLU": (0.365, float("inf"), 1.0)}
    text = singular_values._fig5_claims(deepest, 128, 256)
    assert text.startswith("Orthogonal tanh keeps its spectrum the most concentrated")
    assert "left the infinite-width theory by more than 1.5x for Gaussian tanh and " \
           "Gaussian ReLU" in text
    # No chain is singled out when none is clearly more concentrated.
    same = {"a": (1.0, 4.0, 1.0), "b": (1.0, 5.0, 1.0)}
    assert "concentrated" not in singular_values._fig5_claims(same, 8, 256)


def test_figure2_mechanism_only_where_measured():
    exploding = {"relu": {"residual": 2.35e22, "scaled": 29.5},
                 "sigmoid": {"plain": 1e-60, "residual": 1.4}}
    text = residual_layernorm._fig2_mechanism(exploding, "scaled", 100, 1024)
    assert "1.67 per block, not the 1.41" in text and "from 2.350e+22 to 29.5" in text
    assert "predicts 1.65" in text  # exp(50.06 / 100): the residual theory at width 1024
    assert "residual path stops the sigmoid's vanishing" in text
    tame = {"relu": {"residual": 3.0, "scaled": 1.0},
            "sigmoid": {"plain": 1e-60, "residual": 1e-3}}
    assert residual_layernorm._fig2_mechanism(tame, "scaled", 100, 1024) == ""


def test_figure9_says_near_chance_only_when_the_loss_is():
    class H:
        def __init__(self, final_loss):
            self.weight_change = np.array([[0.0] * 10, [1e-5] * 9 + [0.1], [1e-5] * 9 + [0.1]])
            self.weight_change[-1, -2] = 0.1
            self.weight_grad_norm = np.full((3, 10), 1.0)
            self.loss = np.array([2.3, 2.3, final_loss])
            self.val_accuracy = np.array([0.1, 0.1, 0.5])

    chance = float(np.log(10))
    stuck = training._fig9_claims(["a"], [H(2.29)], 10, chance)
    assert "stays near chance" in stuck and "first layers barely move" in stuck
    learned = training._fig9_claims(["a"], [H(0.3)], 10, chance)
    assert "near chance" not in learned and "2.3 -> 0.3" in learned


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("figure-cache")


@pytest.mark.parametrize("build", [F.fig1_gradient_vs_depth, F.fig2_residual_layernorm])
def test_gradient_figures_state_only_what_their_tables_show(build, cache):
    fig, info = build(quick=True, cache=cache)
    matplotlib.pyplot.close(fig)
    if build is F.fig2_residual_layernorm:
        assert _check_trend_claims(info.caption) == 12
        for row in info.rows:  # each row's numbers appear, in order, in the caption
            act = row[0].split(" ")[0]
            sentence = info.caption.split(f"{act}: ", 1)[1].split(". ")[0]
            assert [float(v) for _, v in CLAIM.findall(sentence)] == \
                [float(v) for v in row[1:]]
    else:
        # "relu: vanishes under gaussian 1.461e-08 and orthogonal 1.415e-08; stays ..."
        seen = 0
        for row in info.rows:
            sentence = info.caption.split(f" {row[0]}: ", 1)[1].split(". ")[0]
            for clause in sentence.split("; "):
                fate, cases = clause.split(" under ")
                for case in re.split(r", | and ", cases):
                    init, value = case.split(" ")
                    assert trend(float(value)).startswith(fate), (fate, case)
                    seen += 1
        assert seen == 16
        assert "Largest gap between measurement and mean-field prediction" in info.caption


def test_figure4_caption_matches_its_table(cache):
    fig, info = F.fig4_rnn_gradient_vs_time(quick=True, cache=cache)
    matplotlib.pyplot.close(fig)
    tanh = {float(r[1]): float(r[2]) for r in info.rows if r[0] == "tanh"}
    clause = info.caption.split("tanh RNN's gradient ", 1)[1].split(";")[0]
    said = set()
    if "grows at rho = " in clause:
        said = {float(v) for v in re.split(r", | and ", clause.split("grows at rho = ")[1])}
    assert said == {r for r, g in tanh.items() if g >= 1}


def test_figure10_explains_the_loss_scaled_norm():
    fig, info = F.fig10_mixed_precision(quick=False)
    matplotlib.pyplot.close(fig)
    scaled = next(r for r in info.rows if "loss scale" in r[0])
    if abs(np.log(float(scaled[-1]))) > np.log(1.1):
        assert "is rounding, not a larger gradient" in info.caption
    # One direction for every figure: the x axis runs from 0 to depth.
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert lo < hi


def test_plot_colours_ordered_parameters_and_keeps_the_legend_off_the_data(tmp_path):
    # The README's sweep: 2 activations x 8 weight variances, 16 curves.
    import pyjac
    from pyjac import plot as jplot

    res = pyjac.sweep(activation=["tanh", "relu"], sigma_w2=list(np.linspace(0.5, 4, 8)),
                      depth=20, width=32, cache=tmp_path, progress=False)
    ax = jplot.gradient_vs_depth(res)
    fig = ax.figure
    assert len(fig.axes) == 2  # the colour bar
    assert "sigma_w" in fig.axes[1].get_ylabel()
    data = [line for line in ax.get_lines() if line.get_zorder() < 4]  # not theory
    solid = [line for line in data if line.get_linestyle() == "-"]
    dashed = [line for line in data if line.get_linestyle() == "--"]
    assert len(solid) == len(dashed) == 8  # activation by line style
    assert len({tuple(line.get_color()) for line in solid}) == 8  # one colour per sigma_w2
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["tanh", "relu", "mean-field theory"]
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert box.x0 >= ax.get_window_extent().x1  # outside the axes
    matplotlib.pyplot.close(fig)


def test_memory_horizon_of_a_geometric_decay():
    from pyjac.figures.recurrent_memory import memory_horizon

    # ||dL/dh_t|| = 0.5^(T - t): it falls below 1e-3 of the last one 10 steps back
    # (0.5^10 = 9.8e-4), and never within 5 steps.
    T = 40
    g = 0.5 ** (T - np.arange(T + 1.0))
    assert memory_horizon(g) == 10
    assert memory_horizon(g[-6:]) == 5
    g[20] = np.nan  # a lost value counts as fallen
    assert memory_horizon(np.ones(T + 1)) == T and memory_horizon(g) == 10


def test_figure15_claims_follow_the_scores():
    from pyjac.figures.recurrent_memory import _fig15_claims

    text = _fig15_claims(["a", "b"], [10, 50, 200],
                         {"a": [0.05, 0.5, 0.95], "b": [0.01, 0.02, 0.03]}, {"a": 12, "b": 200})
    assert "a: the gradient at initialisation falls 1000x within 12 steps; it solves L = 10" in text
    assert "stays at chance at L = 200 and learns part of L = 50" in text
    assert "b: the gradient at initialisation falls less than 1000x over all 200 steps" in text
    assert "solves L = 10, 50 and 200" in text


def test_figure16_counts_the_weights_that_changed_bin():
    from pyjac.figures.optimizers import _fig16_claims, bins_crossed
    from pyjac.figures.training import TRAINING_NETS

    class H:
        def __init__(self, first_change, counts_after, loss=1.0):
            self.weight_histogram = np.array([[[5, 5, 0]], [counts_after]])
            self.weight_histogram_outside = np.zeros((2, 1, 2), dtype=np.int32)
            self.weight_change = np.array([[0.0, 0.0], [first_change, 0.1]])
            self.loss = np.array([2.3, loss])
            self.val_accuracy = np.array([0.1, 0.5])

    assert bins_crossed(H(0.1, [4, 4, 2]), 0) == 2
    assert bins_crossed(H(0.1, [5, 5, 0]), 0) == 0
    runs = {}
    for label, _, _ in TRAINING_NETS[:2]:
        runs[label, "sgd"] = H(1e-5, [5, 5, 0])
        runs[label, "adam"] = H(1e-2, [4, 5, 1])
    text = _fig16_claims(runs, 2)
    assert "layer 1 moved 1.000e-05 of its initial size under SGD (0 of its" in text
    assert "0.01 under Adam (1), 1e+03x more" in text


def test_figure13_claims_follow_the_measurements():
    from pyjac.figures.curvature import _fig13_claims

    grid = [0.5, 1.0, 2.0, 4.0]
    text = _fig13_claims(grid, [0.1, 1.0, 0.5, 100.0], [1e-3, 0.1, 2.0, 20.0],
                         [0.01, -0.2, -3.0, -50.0], [2.0, 5.0, 0.1, -90.0],
                         [0.1, 0.2, 0.3, 4.0])
    assert "from 0.1 at sigma_w2 = 0.5 to 100 at 4 (1e+03x)" in text
    assert "does not rise at every step" in text
    assert "sigma_w2 = 1 (-0.2), 2 (-3) and 4 (-50)" in text
    assert "within two standard errors of 0 at sigma_w2 = 2." in text
    rising = _fig13_claims(grid, [0.1, 1.0, 5.0, 100.0], [1e-3, 0.1, 2.0, 20.0],
                           [0.01, 0.02, 0.03, 0.04], [2.0, 5.0, 9.0, 90.0],
                           [0.1, 0.2, 0.3, 4.0])
    assert "rises at every step" in rising and "negative" not in rising
    assert "standard errors" not in rising


def test_figures_13_and_14_captions_carry_their_tables():
    fig, info = F.fig13_curvature(quick=True)
    matplotlib.pyplot.close(fig)
    first, last = info.rows[0], info.rows[-1]
    assert f"goes from {first[1]} at sigma_w2 = {first[0]} to {last[1]} at {last[0]}" in \
        info.caption
    assert f"goes from {first[5]} to {last[5]}" in info.caption
    assert "Lanczos converged for" in info.caption
    fig, info = F.fig14_gradient_noise(quick=True)
    matplotlib.pyplot.close(fig)
    for row in info.rows:
        assert f"{row[0]}: SNR of layer 1 {row[1]} and of layer 9 {row[2]} in epoch 1, " \
               f"{row[3]} and {row[4]} in the last epoch" in info.caption


def test_figures_11_and_12_captions_carry_their_tables():
    fig, info = F.fig11_transformer_gradients(quick=True)
    matplotlib.pyplot.close(fig)
    depth12 = {r[0]: r for r in info.rows if r[1] == "12"}
    for label, row in depth12.items():
        ratio = float(row[4])
        clause = info.caption.split(f"{label}: ", 1)[1].split(";")[0]
        word = ("grows toward" if ratio > 2 else "falls toward" if ratio < 0.5
                else "stays within 2x")
        assert word in clause, (label, ratio, clause)
    nores = float(depth12["pre-LN, no residual"][5])
    assert ("does not vanish" in info.caption) == (nores >= 1e-2)
    fig, info = F.fig12_rank_collapse(quick=True)
    matplotlib.pyplot.close(fig)
    pure = info.rows[0]
    assert pure[0].startswith("pure attention")
    assert float(pure[2]) < 1e-10 < float(info.rows[1][2])  # collapse only without skips
    for row in info.rows[1:]:
        assert f"{row[0]}: {row[2]} after block" in info.caption
