"""The grid of (short, long) average lengths a sweep covers, and the split of its period in and out of sample."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

DEFAULT_IN_SAMPLE = 0.7


class GridError(ValueError):
    """A grid or period that cannot be swept; raised before any work, naming the problem."""


@dataclass(frozen=True)
class Grid:
    """Every (short, long) with short in short_from..short_to, long in long_from..long_to (both by ``step``)
    and short < long."""

    short_from: int = 3
    short_to: int = 30
    long_from: int = 10
    long_to: int = 120
    step: int = 1

    def __post_init__(self):
        if self.step < 1:
            raise GridError(f"step={self.step}: the grid's step must be 1 or more")
        for name in ("short_from", "short_to", "long_from", "long_to"):
            if getattr(self, name) < 2:
                raise GridError(f"{name}={getattr(self, name)}: an average needs a length of 2 or more")
        for low, high in (("short_from", "short_to"), ("long_from", "long_to")):
            if getattr(self, low) > getattr(self, high):
                raise GridError(f"{low}={getattr(self, low)} is after {high}={getattr(self, high)}: no lengths")
        if not len(self.pairs()):
            raise GridError(
                f"no pair has short < long: the shorts run {self.short_from}..{self.short_to} and the longs "
                f"{self.long_from}..{self.long_to}"
            )

    def shorts(self) -> list[int]:
        return list(range(self.short_from, self.short_to + 1, self.step))

    def longs(self) -> list[int]:
        return list(range(self.long_from, self.long_to + 1, self.step))

    def pairs(self) -> np.ndarray:
        """The pairs, by short then long: an array of shape (pairs, 2)."""
        return np.array([(s, long) for s in self.shorts() for long in self.longs() if s < long], dtype=int).reshape(
            -1, 2
        )

    def longest(self) -> int:
        return int(self.pairs()[:, 1].max())

    def check_history(self, bars: int, end: dt.date) -> None:
        """Refuses lengths no fund can fill: ``bars`` is the longest history any fund has up to ``end``."""
        if self.longest() >= bars:
            raise GridError(
                f"long={self.longest()} is longer than the history: the fund with the most bars has {bars} up to "
                f"{end}, and a cross needs {self.longest() + 1}; lower long_to"
            )

    def as_json(self) -> dict:
        return {
            "short_from": self.short_from,
            "short_to": self.short_to,
            "long_from": self.long_from,
            "long_to": self.long_to,
            "step": self.step,
            "pairs": len(self.pairs()),
        }


def check_in_sample(in_sample: float) -> None:
    if not 0 < in_sample < 1:
        raise GridError(f"in_sample={in_sample}: the in-sample share must be between 0 and 1")


def split_index(days: int, in_sample: float) -> int:
    """The number of the period's trading days that are in sample."""
    check_in_sample(in_sample)
    k = math.floor(days * in_sample)
    if k < 2 or days - k < 2:
        raise GridError(
            f"the period has {days} trading days: an in-sample share of {in_sample} leaves {k} in sample and "
            f"{days - k} out of sample, and each part needs 2 or more"
        )
    return k
