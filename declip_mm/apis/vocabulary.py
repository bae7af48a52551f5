"""User class lists: parsing them, and switching an open-vocabulary segmentor to one at run time."""
from __future__ import annotations

import os
import os.path as osp
from typing import List, Sequence, Union

import torch

from ..datasets.class_names import load_class_names

__all__ = ['ClassesInput', 'BACKGROUND_NAMES', 'parse_classes', 'set_segmentor_classes']

ClassesInput = Union[str, Sequence[Union[str, Sequence[str]]]]
#: a class with one of these names receives the low-confidence pixels (see the inferencer)
BACKGROUND_NAMES = ('background', )


def parse_classes(classes: ClassesInput, separator: str = ';') -> List[List[str]]:
    """A class list in any of the accepted spellings -> one list of names per class.

    Args:
        classes: ``'person, man; sky'`` (classes split by ``;``, synonyms by ``,``), a class-name file
            (one class per line, synonyms split by ``separator``), or a list whose entries are a name
            or a list of synonyms.
        separator: synonym separator inside a class-name file. Defaults to ``';'``.
    """
    if isinstance(classes, (str, os.PathLike)):
        text = os.fspath(classes)
        if osp.isfile(text):
            return load_class_names(text, separator)
        groups = [[n for n in c.split(',')] for c in text.split(';')]
        groups = [[n.strip() for n in g if n.strip()] for g in groups]
        names = [g for g in groups if g]
    else:
        names = load_class_names(list(classes))
    if not names:
        raise ValueError(f'no class names in {classes!r}; e.g. "cat; grass, lawn; sky"')
    return names


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
