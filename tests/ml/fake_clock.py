"""A stand-in for ``time.time`` in tests of time limits."""

from __future__ import annotations


class Clock:
    """A ``time.time`` that advances ``step`` seconds at every call (an epoch takes "a minute or so")."""

    def __init__(self, step: float = 40.0) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now
