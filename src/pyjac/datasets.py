"""Small classification data sets for :func:`pyjac.train`.

The real one is scikit-learn's handwritten digits (1797 8x8 images, shipped inside
the scikit-learn wheel, nothing downloaded); install it with ``pip install
"pyjac[data]"``. Without scikit-learn a synthetic stand-in of the same shape is
generated instead.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import check_allocation, check_dtype, check_int, check_real


class Dataset(NamedTuple):
    """A train/test split, features standardised with the training set's statistics."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # "sklearn.datasets.load_digits" or "synthetic"

    def __repr__(self) -> str:
        return (f"Dataset(x_train: {self.x_train.shape}, y_train: {self.y_train.shape}, "
                f"x_test: {self.x_test.shape}, y_test: {self.y_test.shape}, "
                f"source={self.source!r})")

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def synthetic_digits(n: int = 1797, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A digits-shaped stand-in: 10 classes of noisy 8x8 "images" with values in 0..16.

    Each class is a fixed random blob pattern (smoothed noise); an example is its
    class pattern, shifted by up to one pixel, plus pixel noise, so the classes
    overlap a little and a linear model does not solve the task perfectly.
    """
    n = check_int(n, "n", minimum=10)
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.0, 1.0, size=(10, 10, 10))
    kernel = np.array([0.25, 0.5, 0.25])
    for axis in (1, 2):  # separable smoothing: blobs rather than salt and pepper
        raw = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), axis, raw)
    prototypes = 16.0 * (raw - raw.min()) / (raw.max() - raw.min())
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    shifts = rng.integers(0, 3, size=(n, 2))
    images = np.empty((n, 8, 8))
    for i, (label, (dy, dx)) in enumerate(zip(labels, shifts)):
        images[i] = prototypes[label, dy:dy + 8, dx:dx + 8]
    images += rng.normal(0.0, 3.0, size=images.shape)
    return np.clip(images, 0.0, 16.0).reshape(n, 64), labels.astype(np.int64)


def load_digits(*, test_fraction: float = 0.25, seed: int = 0, dtype: object = "float32",
                fallback: bool = True) -> Dataset:
    """scikit-learn's handwritten digits, split and standardised; synthetic without it.

    Parameters
    ----------
    test_fraction : float, default 0.25
        Share of the examples held out (a seeded random split).
    seed : int, default 0
        Seeds the split (and the synthetic data).
    dtype : {"float32", "float64"}
        dtype of the features; labels are int64.
    fallback : bool, default True
        Without scikit-learn, return :func:`synthetic_digits` (``source ==
        "synthetic"``) instead of raising ImportError.
    """
    test_fraction = check_real(test_fraction, "test_fraction", positive=True)
    if test_fraction >= 1:
        raise ValueError(f"test_fraction: must lie in (0, 1), got {test_fraction}")
    seed = check_int(seed, "seed", minimum=0)
    np_dtype = check_dtype(dtype)
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        if not fallback:
            raise ImportError(
                'load_digits needs scikit-learn: pip install "pyjac[data]" '
                "(or pass fallback=True for the synthetic stand-in)"
            ) from None
        x, y = synthetic_digits(seed=seed)
        source = "synthetic"
    else:
        bunch = sk_load_digits()
        x, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
        source = "sklearn.datasets.load_digits"
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, int(round(test_fraction * len(y))))
    test, train = order[:n_test], order[n_test:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0  # constant pixels (the digits' borders) stay zero
    def scale(rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((x[rows] - mean) / std, dtype=np_dtype)
    return Dataset(scale(train), y[train], scale(test), y[test], source)


class SequenceTask(NamedTuple):
    """A seeded long-range task for :func:`pyjac.train` on a :class:`pyjac.Recurrent`.

    ``x`` is (n, steps, input_size), batch first; ``y`` the targets (see each task);
    ``chance_loss`` the loss of the best prediction that ignores the inputs (the level
    a net that remembers nothing stays at); ``predict`` and ``loss`` the
    :func:`pyjac.train` arguments the task needs.
    """

    x: np.ndarray
    y: np.ndarray
    chance_loss: float
    predict: str
    loss: str
    name: str

    def __repr__(self) -> str:
        return (f"SequenceTask({self.name}: x {self.x.shape}, y {self.y.shape}, "
                f"chance_loss={self.chance_loss:.4g}, predict={self.predict!r}, "
                f"loss={self.loss!r})")


def adding_problem(n: int, length: int, *, seed: int = 0, dtype: object = "float32"
                   ) -> SequenceTask:
    """The adding problem (Hochreiter & Schmidhuber 1997; as in Arjovsky et al. 2016).

    Each sequence has two channels: a value drawn uniformly from [0, 1) at every step,
    and a marker that is 1 at two steps, one drawn from the first half of the sequence
    and one from the second, and 0 elsewhere. The target, read from the last state, is
    the sum of the two marked values. Predicting 1 whatever the input gives the mean
    squared error 1/6 (the variance of the sum): ``chance_loss``. The first marker lies
    at least ``length // 2`` steps before the end, so the gradient must cross that many.

    Parameters
    ----------
    n : int
        Sequences, at least 1.
    length : int
        Steps per sequence, at least 2.
    seed : int, default 0
    dtype : {"float32", "float64"}

    Returns
    -------
    SequenceTask
        ``x`` (n, length, 2), ``y`` (n, 1); ``predict="last"``, ``loss="mse"``.
    """
    n = check_int(n, "n", minimum=1)
    length = check_int(length, "length", minimum=2)
    np_dtype = check_dtype(dtype)
    # float64 values and markers, then the stacked x in the dtype
    check_allocation(n * length * (2 * 8 + 2 * np_dtype.itemsize), f"n: {n} sequences of {length}")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(n, length))
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=2).astype(np_dtype)
    y = (values[rows, first] + values[rows, second])[:, None].astype(np_dtype)
    return SequenceTask(x, y, 1.0 / 6.0, "last", "mse", f"adding problem, length {length}")


def copy_problem(n: int, delay: int, *, symbols: int = 8, length: int = 10, seed: int = 0,
                 dtype: object = "float32") -> SequenceTask:
    """The copy problem (Hochreiter & Schmidhuber 1997; as in Arjovsky et al. 2016).

    A sequence of ``length`` symbols drawn from ``symbols`` categories, then ``delay - 1``
    blanks, a delimiter, and ``length`` more blanks: ``delay + 2 * length`` steps in all,
    one-hot encoded over ``symbols + 2`` categories (the symbols, blank =
    ``symbols``, delimiter = ``symbols + 1``). The target at every step is blank,
    except over the last ``length`` steps, where it is the sequence to recall. Blanks
    everywhere and a uniform guess over the symbols at the recall steps gives the
    cross-entropy ``length * ln(symbols) / (delay + 2 * length)``: ``chance_loss``.

    Parameters
    ----------
    n : int
        Sequences, at least 1.
    delay : int
        Steps between the end of the sequence and the delimiter's step + 1, at least 1.
    symbols : int, default 8
        Categories of the sequence, at least 2.
    length : int, default 10
        Symbols to remember, at least 1.
    seed : int, default 0
    dtype : {"float32", "float64"}

    Returns
    -------
    SequenceTask
        ``x`` (n, delay + 2 length, symbols + 2), ``y`` int64 (n, delay + 2 length);
        ``predict="every_step"``, ``loss="cross_entropy"``.
    """
    n = check_int(n, "n", minimum=1)
    delay = check_int(delay, "delay", minimum=1)
    symbols = check_int(symbols, "symbols", minimum=2)
    length = check_int(length, "length", minimum=1)
    np_dtype = check_dtype(dtype)
    steps = delay + 2 * length
    # int64 tokens and targets, then the one-hot x in the dtype
    check_allocation(n * steps * (16 + (symbols + 2) * np_dtype.itemsize),
                     f"n: {n} sequences of {steps} steps")
    blank, delimiter = symbols, symbols + 1
    rng = np.random.default_rng(seed)
    sequence = rng.integers(0, symbols, size=(n, length))
    tokens = np.full((n, steps), blank, dtype=np.int64)
    tokens[:, :length] = sequence
    tokens[:, length + delay - 1] = delimiter
    y = np.full((n, steps), blank, dtype=np.int64)
    y[:, steps - length:] = sequence
    x = np.eye(symbols + 2, dtype=np_dtype)[tokens]
    chance = length * np.log(symbols) / steps
    return SequenceTask(x, y, float(chance), "every_step", "cross_entropy",
                        f"copy problem, delay {delay}")
