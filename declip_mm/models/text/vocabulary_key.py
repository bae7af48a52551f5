"""The key that cached class embeddings are stored under: the class list itself (issue 21, item 9).

Two vocabularies of the same length (``['cat', 'dog']`` and ``['car', 'bus']``, or the same names in
another order, or the same names grouped into other synonym sets) must never share cached text
embeddings or a name-to-class map; only an equal list may.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

__all__ = ['vocabulary_key']


def vocabulary_key(names: Sequence[Union[str, Sequence[str]]]) -> Tuple[Tuple[str, ...], ...]:
    """``[['person', 'man'], 'sky']`` -> ``(('person', 'man'), ('sky',))``: hashable, and equal
    exactly when the classes, their order, their synonyms and the synonyms' order are equal."""
    return tuple((n, ) if isinstance(n, str) else tuple(str(s) for s in n) for n in names)
