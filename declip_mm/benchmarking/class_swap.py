"""Swap the class of live objects for the length of a ``with`` block.

The benchmark's reference mode (:mod:`.reference`) runs declip_mm's models the public code's way by
giving some of their modules (and tower-operation objects) a reference class for a while: a subclass
owned by the benchmark that overrides one method, or the plain parent class of a specialised module.
The models themselves keep one code path and know nothing of it; the parameters, buffers and hooks of
the objects are untouched (only ``__class__`` changes), and the original classes come back on exit.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterable, Iterator

__all__ = ['swapped_classes']


@contextlib.contextmanager
def swapped_classes(objects: Iterable[object], mapping: Dict[type, type]) -> Iterator[int]:
    """Within the block every object whose exact type is a key of ``mapping`` is an instance of the
    mapped class (objects of other types, subclasses included, are left alone); yields how many were
    swapped. The mapped class must share the object's layout (a subclass or a parent class without
    ``__slots__`` changes), which ``__class__`` assignment checks."""
    swapped = []
    seen = set()
    try:
        for obj in objects:
            new = mapping.get(type(obj))
            if new is None or id(obj) in seen:
                continue
            seen.add(id(obj))
            swapped.append((obj, type(obj)))
            obj.__class__ = new
        yield len(swapped)
    finally:
        for obj, cls in reversed(swapped):
            obj.__class__ = cls
