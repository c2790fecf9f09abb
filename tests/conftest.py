import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
