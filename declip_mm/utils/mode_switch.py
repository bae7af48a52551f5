"""A process-wide on/off switch entered with a context manager.

The benchmarks' reference mode (``declip_mm.benchmarking.reference``) turns some of declip_mm's
faster code paths back into the public code's way of computing (``literal_rope``,
``literal_heads``); each owning module keeps one switch.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = ['ModeSwitch']


class ModeSwitch:
    """Off by default; on within :meth:`active` (nested blocks restore the outer state)."""

    def __init__(self) -> None:
        self._on = False

    @property
    def on(self) -> bool:
        return self._on

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        previous = self._on
        self._on = True
        try:
            yield
        finally:
            self._on = previous
