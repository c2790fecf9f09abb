"""The benchmarks' calibrations: this machine's GEMM rate and the BLAS-call floor of a
backprop. Their values are timings (never asserted); their arguments are checked."""

import math

import pytest

from pyjac import _core


def test_gemm_rate_is_a_positive_rate():
    rate = _core.gemm_gflops(64, 1, 1, True)
    assert math.isfinite(rate) and rate > 0


@pytest.mark.parametrize(
    "depth,width,batch",
    [(3, 64, 16),    # batch < width: the ghost norm's Gram SYRKs
     (2, 16, 64),    # batch > width: dW tiles, as the pass forms dW there
     (1, 1, 1)],
)
def test_backprop_blas_floor_runs_both_weight_gradient_paths(depth, width, batch):
    seconds = _core.backprop_blas_seconds(depth, width, batch, repeats=2, n_threads=2)
    assert math.isfinite(seconds) and seconds > 0


@pytest.mark.parametrize("argument", ["depth", "width", "batch", "repeats"])
def test_backprop_blas_floor_names_a_bad_argument(argument):
    kwargs = dict(depth=2, width=8, batch=4, repeats=1)
    kwargs[argument] = 0
    with pytest.raises(ValueError, match=argument):
        _core.backprop_blas_seconds(**kwargs)
