"""The pyjac command: reproduce end to end on --quick, sweep, plot, --help, errors."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pyjac
from pyjac import cli, figures
from pyjac.experiments import Results
from pyjac.figures import report

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402

# Pixel size of each figure at the default --dpi 110 (figsize x dpi).
EXPECTED_SIZE = {
    "fig1_gradient_vs_depth": (1210, 902),
    "fig2_residual_layernorm": (1650, 506),
    "fig3_sigmoid_vs_relu": (1430, 528),
    "fig4_rnn_gradient_vs_time": (1430, 528),
    "fig5_jacobian_spectra": (1650, 506),
    "fig6_phase_diagram": (1485, 594),
    "fig7_gradient_clipping": (1430, 528),
    "fig8_dead_and_saturated": (1430, 528),
    "fig9_training": (1760, 528),
    "fig10_mixed_precision": (1430, 528),
    "fig11_transformer_gradients": (1760, 528),
    "fig12_rank_collapse": (1760, 528),
    "fig13_curvature": (1760, 528),
    "fig14_gradient_noise": (1430, 528),
    "fig15_recurrent_memory": (1870, 528),
    "fig16_optimizers": (1430, 990),
}


def run(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `pyjac reproduce --quick` shared by the tests below (about 20 s on 2 cores)."""
    out = tmp_path_factory.mktemp("figures")
    cache = tmp_path_factory.mktemp("cache")
    code = cli.main(["reproduce", "--out", str(out), "--quick", "--cache-dir", str(cache),
                     "--no-progress"])
    return code, out, cache


def test_reproduce_quick_writes_every_figure_and_the_report(quick_run):
    code, out, _ = quick_run
    assert code == 0
    drawn = [s.name for s in figures.FIGURES if figures.available(s) is None]
    assert {"fig1_gradient_vs_depth", "fig2_residual_layernorm", "fig3_sigmoid_vs_relu",
            "fig6_phase_diagram", "fig7_gradient_clipping",
            "fig8_dead_and_saturated", "fig9_training", "fig10_mixed_precision",
            "fig11_transformer_gradients", "fig12_rank_collapse",
            "fig13_curvature", "fig14_gradient_noise", "fig15_recurrent_memory",
            "fig16_optimizers"} <= set(drawn)
    for name in drawn:
        png = out / f"{name}.png"
        assert png.stat().st_size > 20_000, name
        image = mpimg.imread(png)
        height, width = image.shape[:2]
        assert (width, height) == EXPECTED_SIZE[name], name
        assert image[..., :3].std() > 0.05, f"{name} looks blank"
        svg = (out / f"{name}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    text = (out / "report.md").read_text()
    for name in drawn:
        assert f"]({name}.png)" in text
    for spec in figures.FIGURES:
        reason = figures.available(spec)
        if reason is not None:
            assert f"- {spec.name} ({spec.title}): {reason}" in text


def test_report_table_holds_the_computed_numbers(quick_run):
    _, out, _ = quick_run
    text = (out / "report.md").read_text()
    claims = report.seed_claims(quick=True)
    for i, c in enumerate(claims):
        row = next(line for line in text.splitlines() if line.startswith(f"| {i + 1} | "))
        assert report._num(c.exact) in row
        assert report._num(c.measured) in row
        assert c.verdict in row
    # the numbers the texts get right and wrong, computed by pyjac
    assert "| 0.3487 | 0.3487 |" in text                      # 0.9^10, "35% survives"
    assert "| 0.005154 | 0.005154 |" in text                  # 0.9^50, "less than 1%"
    assert "| 1.378e+04 | 1.378e+04 |" in text                # 1.1^100 = 13780
    assert "| 5.243e-14 | 5.243e-14 |" in text                # 0.2^19
    assert "| 9.537e-07 | 9.537e-07 |" in text                # 0.25^10, "a million"
    assert "| 9.095e-13 | 9.095e-13 |" in text                # 0.25^20
    assert re.search(r"\| 1\.42e\+08 \| 3\.638e\+07 \| 3\.638e\+07 \|.*\*\*WRONG\*\*", text)
    assert re.search(r"\| 1\.07e-14 \| 7\.451e-15 \| 7\.451e-15 \|.*\*\*WRONG\*\*", text)
    assert "4 of them are wrong" in text
    # each figure's own table of measured numbers
    assert "| sigma_b2 | critical sigma_w2 (theory) | measured zero crossing |" in text
    assert "## Figure 6: Order-to-chaos phase diagram (tanh)" in text


def test_reproduce_again_redraws_from_the_cache(quick_run, monkeypatch, capsys, tmp_path):
    _, _, cache = quick_run
    calls = {"n": 0}
    original = pyjac._core.chain_backprop

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(pyjac._core, "chain_backprop", counting)
    code, out, _ = run(["reproduce", "--out", str(tmp_path), "--quick", "--cache-dir",
                        str(cache), "--only", "fig1,fig8", "--formats", "png",
                        "--no-progress"], capsys)
    assert code == 0
    # not a terminal: a line when each figure starts, and one when it is done
    lines = out.splitlines()
    started = lines.index("[1/2] fig1_gradient_vs_depth: drawing ...")
    assert lines[started + 1].startswith("[1/2] fig1_gradient_vs_depth: ") and " s -> " in (
        lines[started + 1])
    assert "[2/2] fig8_dead_and_saturated: drawing ..." in lines
    assert (tmp_path / "fig1_gradient_vs_depth.png").is_file()
    assert not (tmp_path / "fig1_gradient_vs_depth.svg").exists()
    assert not (tmp_path / "fig2_residual_layernorm.png").exists()
    # the sweeps came from the cache; only the report's own small chains ran
    n_claims = calls["n"]
    calls["n"] = 0
    report.seed_claims(quick=True)
    assert n_claims == calls["n"]


def test_help_everywhere(capsys):
    for argv in (["--help"], ["reproduce", "--help"], ["sweep", "--help"], ["plot", "--help"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 0
        assert "usage: pyjac" in capsys.readouterr().out
    assert cli.main([]) == 2  # no command: help, status 2


def test_module_entry_point_runs():
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-m", "pyjac", "--version"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0
    assert result.stdout.strip() == f"pyjac {pyjac.__version__}"


def test_sweep_then_plot(tmp_path, capsys):
    path = tmp_path / "phase.npz"
    code, out, err = run(["sweep", "--activation", "tanh", "--sigma-w2", "0.5:3:3",
                          "--sigma-b2", "0", "0.2", "--depth", "8", "--width", "12",
                          "--batch", "3", "--seeds", "2", "--no-theory", "--out", str(path),
                          "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0, err
    assert f"wrote {path}" in out and "6 configs x 2 seeds" in out
    res = Results.load(path)
    assert len(res) == 6 * 2 * 9
    np.testing.assert_allclose(sorted(res.unique("sigma_w2")), [0.5, 1.75, 3.0])
    for kind in ("phase_diagram", "gradient_vs_depth", "per_layer"):
        png = tmp_path / f"{kind}.png"
        extra = ["--select", "sigma_b2=0"] if kind != "phase_diagram" else []
        code, out, err = run(["plot", str(path), "--kind", kind, "--out", str(png), *extra],
                             capsys)
        assert code == 0, err
        assert mpimg.imread(png).shape[0] > 100
    code, out, err = run(["plot", str(path), "--kind", "gradient_flow", "--select",
                          "sigma_b2=0", "--select", "sigma_w2=3.0"], capsys)
    assert code == 0, err
    assert (tmp_path / "phase_gradient_flow.png").is_file()


def test_sweep_and_plot_errors(tmp_path, capsys):
    code, _, err = run(["sweep", "--depth", "0", "--out", str(tmp_path / "r.npz"),
                        "--no-cache"], capsys)
    assert code == 2 and "pyjac sweep: error: depth: must be at least 1, got 0" in err
    code, _, err = run(["sweep", "--activation", "softplus", "--out",
                        str(tmp_path / "r.npz"), "--no-cache"], capsys)
    assert code == 2 and "activation: unknown value 'softplus'" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["sweep", "--sigma-w2", "abc", "--out", "x.npz"])
    assert exc.value.code == 2
    assert "expected a number or START:STOP:COUNT" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["plot", "x.npz", "--kind", "pie_chart"])
    assert exc.value.code == 2
    assert "--kind: invalid choice: 'pie_chart'" in capsys.readouterr().err
    code, _, err = run(["plot", str(tmp_path / "missing.npz"), "--kind", "per_layer"], capsys)
    assert code == 2 and "RESULTS: no such file" in err


def test_unwritable_out_is_an_error_naming_it(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run(["reproduce", "--out", str(blocker / "figs"), "--quick"], capsys)
    assert code == 2
    assert f"pyjac reproduce: error: --out: cannot write to '{blocker / 'figs'}'" in err
    code, _, err = run(["reproduce", "--out", str(tmp_path / "f"), "--only", "fig99"], capsys)
    assert code == 2 and "--only: unknown figure 'fig99'" in err
    code, _, err = run(["reproduce", "--out", str(tmp_path / "f"), "--formats", "gif"], capsys)
    assert code == 2 and "--formats" in err


def test_examples_exist_for_every_figure():
    examples = Path(__file__).resolve().parent.parent / "examples"
    for spec in figures.FIGURES:
        assert (examples / f"{spec.name}.py").is_file(), spec.name
