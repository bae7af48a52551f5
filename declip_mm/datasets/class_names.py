"""Class-name files: one class per line, in the dataset's class order; synonyms separated by a
separator (default ``';'``, the format DeCLIP's and ProxyCLIP's evaluators parse; SCLIP-format files
use ``','``).

A class's probability is the maximum over its names (docs/method.md §4). Blank lines and lines starting with
``#`` are skipped.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Union

__all__ = ['load_class_names', 'check_class_names']

NameList = List[List[str]]


def load_class_names(source: Union[str, Sequence[Union[str, Sequence[str]]]],
                     separator: str = ';') -> NameList:
    """Read class names from a file, or normalise a list.

    Args:
        source: path of a class-name file, or a list with one entry per class (a name or synonyms).
        separator: synonym separator inside a line. Defaults to ``';'``.

    Returns:
        list[list[str]]: one list of names per class.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'class-name file not found: {path!r}')
        with open(path, encoding='utf-8') as f:
            lines = [ln.strip() for ln in f]
        entries = [ln for ln in lines if ln and not ln.startswith('#')]
        if not entries:
            raise ValueError(f'class-name file {path!r} is empty')
        out = [[n.strip() for n in ln.split(separator) if n.strip()] for ln in entries]
    else:
        out = [[source_i] if isinstance(source_i, str) else [str(n) for n in source_i]
               for source_i in source]
        out = [[n.strip() for n in names if n.strip()] for names in out]
    for i, names in enumerate(out):
        if not names:
            raise ValueError(f'class {i} has no name')
    return out


def _norm(s: str) -> str:
    return ''.join(ch for ch in s.lower() if ch.isalnum())


#: the renames that the shipped class-name files use (dataset class -> names accepted in its place).
#: Anything else must name the dataset class itself (one of the line's synonyms, normalised).
CLASS_NAME_ALIASES = {
    'boat': ('ship', ),            # VOC: SCLIP / ProxyCLIP files say 'ship'
    'diningtable': ('table', ),    # VOC: 'table'
    'table': ('diningtable', ),    # Pascal Context 59: CAT-Seg's datasets/pc59.json says 'diningtable'
}


def _matches(dataset_class: str, group: Sequence[str]) -> bool:
    """Whether a file line (its synonyms) names ``dataset_class``.

    Exact after normalisation (lower case, letters and digits only): no containment, so
    ``table`` / ``pooltable`` or ``light`` / ``trafficlight`` in swapped positions are caught.
    """
    target = _norm(dataset_class)
    if target == 'background':
        return True  # background lines list stuff names by design (SCLIP / ProxyCLIP files)
    accepted = {target} | {_norm(a) for a in CLASS_NAME_ALIASES.get(target, ())}
    return any(_norm(n) in accepted for n in group)


def check_class_names(names: NameList, dataset_classes: Optional[Sequence[str]],
                      source: str = 'class names') -> None:
    """Refuse a class list whose count or order does not match the dataset's ``METAINFO['classes']``.

    Each line must name the dataset class at its position: one of the line's synonyms equal to it
    after dropping case, spaces and punctuation, or a known rename (:data:`CLASS_NAME_ALIASES`). There
    is no fuzzy matching: near-duplicates (``table`` / ``pool table``) in each other's place are
    refused. A dataset class called ``background`` accepts any line.
    """
    if dataset_classes is None:
        return
    # a plain name instead of a list of synonyms (its letters are not names)
    names = [[g] if isinstance(g, str) else list(g) for g in names]
    if len(names) != len(dataset_classes):
        raise ValueError(f'{source} has {len(names)} classes but the dataset has '
                         f'{len(dataset_classes)}')
    bad = [(i, cls, group[0]) for i, (cls, group) in enumerate(zip(dataset_classes, names))
           if not _matches(cls, group)]
    if bad:
        show = '; '.join(f'line {i + 1}: dataset {c!r} vs file {n!r}' for i, c, n in bad[:5])
        raise ValueError(f'{source} is not in the dataset\'s class order ({len(bad)} mismatch(es)): '
                         f'{show}')
