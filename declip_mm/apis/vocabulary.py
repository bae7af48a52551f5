"""User class lists: parsing them, and switching an open-vocabulary segmentor to one at run time."""
from __future__ import annotations

import os
import re
from typing import List, Optional, Sequence, Union

import torch

from ..datasets.class_names import load_class_names

__all__ = ['ClassesInput', 'BACKGROUND_NAMES', 'parse_classes', 'read_class_file',
           'set_segmentor_classes']

ClassesInput = Union[str, 'os.PathLike[str]', Sequence[Union[str, Sequence[str]]]]
#: a class with one of these names receives the low-confidence pixels (see the inferencer)
BACKGROUND_NAMES = ('background', )
#: synonym separators of a user class file (both accepted, as in the string form's ``,``)
FILE_SEPARATORS = ';,'
EXAMPLE = '"cat; grass, lawn; sky"'


def _name_key(name: str) -> str:
    """Names that the tokenizer cannot tell apart compare equal (case, runs of spaces)."""
    return ' '.join(name.lower().split())


def _check_names(names: List[List[str]], source: str) -> List[List[str]]:
    """Drop a name repeated inside one class; refuse a name given to two classes."""
    owner: dict = {}
    out = []
    for i, group in enumerate(names):
        kept = []
        for n in group:
            key = _name_key(n)
            j = owner.setdefault(key, i)
            if j != i:
                raise ValueError(
                    f'{source}: the name {n!r} is in class {j + 1} ({names[j][0]!r}) and in class '
                    f'{i + 1} ({group[0]!r}); a name may stand for one class only (two classes '
                    f'would split its probability). Make them one class, e.g. '
                    f'"{", ".join(dict.fromkeys(names[j] + group))}", or drop one')
            if all(_name_key(k) != key for k in kept):
                kept.append(n)
        out.append(kept)
    return out


def read_class_file(path: os.PathLike, separator: Optional[str] = None) -> List[List[str]]:
    """A user class file: one class per line, its synonyms split at ``;`` **and** ``,`` (or only at
    ``separator`` when given); blank lines and ``#`` lines are skipped."""
    path = os.fspath(path)
    seps = FILE_SEPARATORS if separator is None else separator
    lines = load_class_names(path, seps[0])
    pattern = '|'.join(re.escape(c) for c in seps)
    return [[n.strip() for g in line for n in re.split(pattern, g) if n.strip()] for line in lines]


def parse_classes(classes: ClassesInput, separator: Optional[str] = None) -> List[List[str]]:
    """A class list in any of the accepted spellings -> one list of names per class.

    Args:
        classes: one of
            - a string of class names, ``'person, man; sky'`` (classes split by ``;``, synonyms by
              ``,``). A string is **always names, never a file name**: ``'cat'`` is the class
              "cat" even when a file ``./cat`` exists (input from a web page or an API string is
              data, not a server path);
            - a ``pathlib.Path`` (any ``os.PathLike``) of a class file: one class per line, synonyms
              split at ``;`` or ``,`` (both accepted), ``#`` lines skipped;
            - a list whose entries are a name or a list of synonyms.
        separator: synonym separator of a class file when only one of ``;`` / ``,`` may split
            (default: both).

    A name repeated inside a class is kept once. The same name in two classes is refused (the two
    classes would split its probability): the error names both classes.

    Raises:
        TypeError: ``classes`` (or an entry) of another type, e.g. ``classes=5``.
        ValueError: no names, an empty class, or a name in two classes.
        FileNotFoundError: a Path that is not a file.
    """
    if isinstance(classes, str):
        groups = [[n.strip() for n in c.split(',')] for c in classes.split(';')]
        names = [[n for n in g if n] for g in groups]
        names = [g for g in names if g]
        source = 'classes'
    elif isinstance(classes, os.PathLike):
        names = read_class_file(classes, separator)
        source = f'class file {os.fspath(classes)!r}'
    elif isinstance(classes, (list, tuple)):
        for i, entry in enumerate(classes):
            ok = isinstance(entry, str) or (isinstance(entry, (list, tuple))
                                            and all(isinstance(n, str) for n in entry))
            if not ok:
                raise TypeError(f'class {i + 1} of the list is {entry!r} ({type(entry).__name__}); '
                                'each entry is a name (str) or a list of synonyms (str)')
        names = load_class_names(list(classes))
        source = 'classes'
    else:
        raise TypeError(f'classes must be a string of names like {EXAMPLE}, a list of names '
                        '(or of synonym lists), or a pathlib.Path of a class file; got '
                        f'{type(classes).__name__} {classes!r}')
    if not names:
        raise ValueError(f'no class names in {classes!r}; e.g. {EXAMPLE}')
    return _check_names(names, source)


def set_segmentor_classes(seg: torch.nn.Module, names: List[List[str]]) -> None:
    """Switch an open-vocabulary segmentor to another class list.

    A segmentor that defines ``set_class_names(names)`` is switched through it. Otherwise the
    declip_mm segmentors' shared layout is used: ``class_names`` / ``num_classes`` / a
    ``name_to_class`` buffer from ``text_encoder.name_to_class_index``; a ``text_embeddings`` buffer,
    where a segmentor keeps the embeddings of its current list, is emptied so that it is refilled from
    the text encoder, whose own cache is keyed by the names (switching back costs no text forward).
    """
    if hasattr(seg, 'set_class_names'):
        seg.set_class_names(names)
        return
    missing = [a for a in ('class_names', 'num_classes', 'name_to_class', 'text_encoder')
               if not hasattr(seg, a)]
    if missing:
        raise TypeError(f'{type(seg).__name__} is not an open-vocabulary segmentor the inferencer '
                        f'can re-vocabularise (lacks {missing}); give it set_class_names(names)')
    seg.class_names = [list(n) for n in names]
    seg.num_classes = len(names)
    seg.name_to_class = seg.text_encoder.name_to_class_index(names).to(seg.name_to_class.device)
    if isinstance(getattr(seg, 'text_embeddings', None), torch.Tensor):
        seg.text_embeddings = seg.text_embeddings.new_empty(0)
