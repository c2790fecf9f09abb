"""Every ```python block of README.md runs as written, on its own, and every value quoted
in a comment is what the line computes.

A checked value is a line holding one expression whose comment starts with a number
(``theory.chi1("tanh", 1.2, 0.05)  # 0.845: ...``): the expression's value must round to
that number at the digits shown.
"""

from __future__ import annotations

import ast
import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
NUMBER = re.compile(r"#\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\b")


def _quoted_values(source: str) -> list[tuple[int, str, str]]:
    """(line number, expression, quoted number) for each checked line."""
    tree = ast.parse(source)
    lines = source.splitlines()
    out = []
    for node in tree.body:
        if not isinstance(node, ast.Expr) or node.lineno != node.end_lineno:
            continue
        line = lines[node.lineno - 1]
        code = ast.get_source_segment(source, node)
        comment = line[len(line.split("#")[0]):]
        match = NUMBER.match(comment)
        if match:
            out.append((node.lineno, code, match.group(1)))
    return out


def _tolerance(quoted: str) -> float:
    """Half a unit in the last digit shown."""
    mantissa, _, exponent = quoted.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 0.5 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def test_readme_has_its_blocks():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_as_written(index, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYJAC_CACHE_DIR", str(tmp_path / "cache"))
    source = BLOCKS[index]
    namespace: dict = {"__name__": f"readme_block_{index}"}
    with redirect_stdout(io.StringIO()):
        exec(compile(source, f"README.md block {index}", "exec"), namespace)
        for lineno, code, quoted in _quoted_values(source):
            value = float(np.asarray(eval(code, namespace)))
            assert abs(value - float(quoted)) <= _tolerance(quoted), (
                f"README block {index}, line {lineno}: {code} is {value!r}, the comment "
                f"says {quoted}")
    plt.close("all")


def test_quoted_values_are_found():
    # the checker itself: these README lines must be among the checked ones
    checked = [code for block in BLOCKS for _, code, _ in _quoted_values(block)]
    assert 'theory.chi1("tanh", 1.2, 0.05)' in checked
    assert "j.log_spectral_norm[-1]" in checked
    assert _tolerance("953.1018") == pytest.approx(5e-5)
    assert _tolerance("1.6e-12") == pytest.approx(5e-14)
