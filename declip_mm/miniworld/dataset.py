"""``MiniWorldDataset``: the miniature world's labelled splits in mmseg's ADE layout (docs/miniworld.md).

mmseg's ``ADE20KDataset`` (``.jpg`` images, ``.png`` maps, ``reduce_zero_label=True``: PNG value
``k + 1`` is class ``k``, 0 ignored) with the world's classes as ``METAINFO``. Being a class of its
own (rather than ``metainfo=`` on ``ADE20KDataset``, which mmseg only allows for a subset of ADE's 150
classes), it lets a config restrict the classes with ``metainfo=dict(classes=SEEN)``: mmseg then maps
the other classes to 255 (ignored) and re-indexes the rest, as the CAT-Seg training split needs.
Registered on import; configs list ``declip_mm.miniworld.dataset`` in ``custom_imports``.
"""
from __future__ import annotations

from mmseg.datasets import ADE20KDataset

from ..registry import DATASETS
from .classes import ALL_CLASSES

__all__ = ['MiniWorldDataset', 'miniworld_palette']


def miniworld_palette():
    """A fixed, distinct RGB colour per class (for mmseg's visualiser)."""
    import colorsys
    n = len(ALL_CLASSES)
    return [[int(round(255 * c)) for c in colorsys.hsv_to_rgb(i / n, 0.65, 0.95)] for i in range(n)]


@DATASETS.register_module()
class MiniWorldDataset(ADE20KDataset):
    """The world's benchmark / CAT-Seg training split (ADE layout, ``reduce_zero_label=True``)."""

    METAINFO = dict(classes=ALL_CLASSES, palette=miniworld_palette())
