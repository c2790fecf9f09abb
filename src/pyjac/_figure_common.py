"""What every figure module shares: the figure record, the spec, number formatting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import plot as jplot


@dataclass
class FigureInfo:
    """What a figure shows: caption, measured numbers and notes for the report."""

    name: str
    title: str
    caption: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Spec:
    """One figure of ``pyjac reproduce``: file name, title and builder."""

    name: str
    title: str
    build: Callable[..., tuple[Any, FigureInfo]]


def _plt():
    return jplot._pyplot()


def _e(v: float) -> str:
    """A number for a table: 3 significant digits, scientific when far from 1."""
    if v is None or not np.isfinite(v):
        return "n/a"
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.3e}"
