"""Small classification data sets for :func:`pyjac.train`.

The real one is scikit-learn's handwritten digits (1797 8x8 images, shipped inside
the scikit-learn wheel, nothing downloaded); install it with ``pip install
"pyjac[data]"``. Without scikit-learn a synthetic stand-in of the same shape is
generated instead.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import check_dtype, check_int, check_real


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
