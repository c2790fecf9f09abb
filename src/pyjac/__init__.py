"""pyjac: exact, fast measurements of vanishing and exploding gradients.

Build a chain, measure it::

    import numpy as np, pyjac
    net = pyjac.Chain(1000, 64, activation="tanh", init="orthogonal")
    r = net.backprop(np.random.default_rng(0).standard_normal((16, 64)))
    r.grad_norm          # ||dL/dh_l|| for l = 0..1000, exact

The numerics run in a C++ core (OpenMP + OpenBLAS from scipy-openblas32).
"""

from __future__ import annotations

import os as _os

# Loads libscipy_openblas into the process before the extension needs its symbols
# (the extension's RPATH finds it too; this also covers unusual install layouts).
import scipy_openblas32 as _scipy_openblas32  # noqa: F401

# Idle OpenMP threads spin before they sleep. libgomp's default spin (~300,000 rounds)
# makes every parallel region crawl when another process takes one of the team's cores,
# and passive waiting makes barrier-heavy calls up to 6x slower on a quiet machine
# (a thread woken from sleep on a virtual machine takes long to run). The core gives
# a call only the cores that other processes leave free (threads.cpp,
# busy_cores_elsewhere), so the spin mostly meets a quiet team: 30,000 rounds (tens of
# microseconds) keep within ~10% of the better policy quiet and beside a busy process
# (see the README). libgomp reads it once, when the extension loads it; a user's
# OMP_WAIT_POLICY or GOMP_SPINCOUNT wins, and the environment is restored after, so that
# other libraries' OpenMP runtimes loaded later do not inherit it.
_SPIN_DEFAULT = "30000"
_set_spin = "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ
if _set_spin:
    _os.environ["GOMP_SPINCOUNT"] = _SPIN_DEFAULT
try:
    from . import _core  # noqa: F401  (the extension: loaded first, errors surface here)
finally:
    if _set_spin:
        del _os.environ["GOMP_SPINCOUNT"]

from . import (
    curvature,
    datasets,
    plot,  # matplotlib is imported only when a figure is drawn
    theory,
)
from ._results import BackpropResult
from ._train_recurrent import RecurrentTrainingHistory
from .chain import ACTIVATIONS, INITS, Chain
from .curvature import Hessian
from .datasets import Dataset, SequenceTask, adding_problem, copy_problem, load_digits
from .diagnose import DiagnosisReport, diagnose
from .experiments import Results, sweep
from .jacobian import JacobianNorms
from .recurrent import CELLS, Recurrent, RecurrentBackpropResult, RecurrentJacobianResult
from .spectral import SpectralNormResult, spectral_norm, spectral_radius
from .train import TrainingHistory, train
from .transformer import Transformer, TransformerBackpropResult

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "CELLS",
    "INITS",
    "BackpropResult",
    "Chain",
    "Dataset",
    "DiagnosisReport",
    "Hessian",
    "JacobianNorms",
    "Recurrent",
    "RecurrentBackpropResult",
    "RecurrentJacobianResult",
    "RecurrentTrainingHistory",
    "Results",
    "SequenceTask",
    "SpectralNormResult",
    "TrainingHistory",
    "Transformer",
    "TransformerBackpropResult",
    "__version__",
    "adding_problem",
    "copy_problem",
    "curvature",
    "datasets",
    "diagnose",
    "load_digits",
    "plot",
    "spectral_norm",
    "spectral_radius",
    "sweep",
    "theory",
    "train",
]
