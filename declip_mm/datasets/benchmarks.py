"""Benchmark datasets of the training-free protocol (docs/method.md §4) that mmseg lacks, registered under
``DeCLIP*`` names that cannot collide with mmseg's own.

* ``DeCLIPPascalVOC20Dataset``: VOC2012 val without background: ``reduce_zero_label=True`` maps the
  background to 255 (ignored) and class k to k-1 (SCLIP's ``PascalVOC20Dataset``).
* ``DeCLIPCOCOObjectDataset``: COCO-Object, 81 classes (background + the 80 COCO things), label maps
  ``*_instanceTrainIds.png`` written by ``tools/dataset_converters/coco_object.py``.
* ``DeCLIPPascalContext60Dataset`` / ``DeCLIPPascalContext59Dataset``: Pascal Context with (60) and
  without (59, ``reduce_zero_label=True``) the background class, as mmseg defines them.
"""
from __future__ import annotations

import os.path as osp

from mmseg.datasets import (
    BaseSegDataset,
    COCOStuffDataset,
    PascalContextDataset,
    PascalContextDataset59,
    PascalVOCDataset,
)

from ..registry import DATASETS

__all__ = ['DeCLIPPascalVOC20Dataset', 'DeCLIPCOCOObjectDataset', 'DeCLIPPascalContext60Dataset',
           'DeCLIPPascalContext59Dataset', 'COCO_THING_CLASSES']

#: the 80 COCO thing classes, in COCO-Stuff's order (its train ids 0..79)
COCO_THING_CLASSES = tuple(COCOStuffDataset.METAINFO['classes'][:80])


def _require(path: str, what: str) -> None:
    if not osp.exists(path):
        raise FileNotFoundError(f'{what} not found: {path!r} (see docs/datasets.md)')


@DATASETS.register_module()
class DeCLIPPascalVOC20Dataset(BaseSegDataset):
    """Pascal VOC 2012 with the 20 object classes; background ignored."""

    METAINFO = dict(classes=PascalVOCDataset.METAINFO['classes'][1:],
                    palette=PascalVOCDataset.METAINFO['palette'][1:])

    def __init__(self, ann_file: str = 'ImageSets/Segmentation/val.txt', img_suffix='.jpg',
                 seg_map_suffix='.png', reduce_zero_label: bool = True, **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, ann_file=ann_file, **kwargs)
        _require(self.ann_file, 'VOC split file')


@DATASETS.register_module()
class DeCLIPCOCOObjectDataset(BaseSegDataset):
    """COCO-Object: background + 80 COCO thing classes (val2017, 5000 images)."""

    METAINFO = dict(classes=('background', ) + COCO_THING_CLASSES,
                    palette=[[0, 0, 0]] + COCOStuffDataset.METAINFO['palette'][:80])

    def __init__(self, img_suffix='.jpg', seg_map_suffix='_instanceTrainIds.png',
                 reduce_zero_label: bool = False, **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)


@DATASETS.register_module()
class DeCLIPPascalContext60Dataset(PascalContextDataset):
    """Pascal Context, 60 classes including background (label 0)."""

    def __init__(self, ann_file: str = 'ImageSets/SegmentationContext/val.txt', **kwargs) -> None:
        super().__init__(ann_file=ann_file, **kwargs)
        _require(self.ann_file, 'Pascal Context split file')


@DATASETS.register_module()
class DeCLIPPascalContext59Dataset(PascalContextDataset59):
    """Pascal Context, 59 classes; background ignored (``reduce_zero_label=True``)."""

    def __init__(self, ann_file: str = 'ImageSets/SegmentationContext/val.txt', **kwargs) -> None:
        super().__init__(ann_file=ann_file, **kwargs)
        _require(self.ann_file, 'Pascal Context split file')
