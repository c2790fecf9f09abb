import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def pytest_configure(config):
    # .ci/sanitize runs the tests against a sanitized extension: make sure it is that one.
    expected = os.environ.get("PYJAC_EXPECT_CORE")
    if expected:
        from pyjac import _core

        assert os.path.realpath(_core.__file__).startswith(os.path.realpath(expected)), (
            f"pyjac._core was loaded from {_core.__file__}, not from {expected}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    try:
        import test_fuzz
    except ImportError:  # pragma: no cover
        return
    count = config.stash.get(test_fuzz._COUNT_KEY, 0)
    if count:
        terminalreporter.write_line(f"fuzz: {count} public-API calls tried")
