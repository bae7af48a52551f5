"""``ClassGroupIoUMetric``: mmseg's ``IoUMetric`` that also reports the mIoU over named groups of
classes (e.g. the classes a CAT-Seg head was trained on and the held-out ones; docs/miniworld.md).

For every class ``c`` of the dataset, ``IoU_c = I_c / U_c`` with the intersection and union pixel
counts summed over the whole test set (mmseg's ``IoUMetric``: a class whose union is empty is NaN and
left out of means). A group's ``mIoU.<group>`` is ``100 * nanmean(IoU_c for c in group)``, rounded to
two decimals as mmseg rounds ``mIoU``; ``IoU.<class>`` keys give every class's value (x 100). The
open-vocabulary segmentation literature reports the mIoU of seen and unseen classes this way (e.g.
ZegFormer, Ding et al. CVPR 2022, "mIoU(S)" and "mIoU(U)").
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
from mmseg.evaluation import IoUMetric

from ..registry import METRICS

__all__ = ['ClassGroupIoUMetric', 'class_iou', 'group_miou']


def class_iou(intersect, union) -> np.ndarray:
    """Per-class IoU (float64), NaN where the union is empty."""
    intersect = np.asarray(intersect, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, intersect / np.where(union > 0, union, 1), np.nan)


def group_miou(iou: np.ndarray, classes: Sequence[str], group: Sequence[str]) -> float:
    """``100 * nanmean`` of ``iou`` over the classes of ``group`` (names from ``classes``)."""
    index = {c: i for i, c in enumerate(classes)}
    missing = [c for c in group if c not in index]
    if missing:
        raise ValueError(f'class group names {missing} are not dataset classes {list(classes)}')
    vals = iou[[index[c] for c in group]]
    if np.all(np.isnan(vals)):
        return float('nan')
    return float(np.round(np.nanmean(vals) * 100, 2))


@METRICS.register_module()
class ClassGroupIoUMetric(IoUMetric):
    """``IoUMetric`` plus ``mIoU.<group>`` for each group and ``IoU.<class>`` for each class.

    Args:
        class_groups (dict[str, list[str]], optional): group name -> class names (of the dataset).
        **kwargs: ``IoUMetric`` arguments (``iou_metrics``, ``ignore_index``, ...).
    """

    def __init__(self, class_groups: Optional[Dict[str, Sequence[str]]] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.class_groups = {str(k): [str(c) for c in v] for k, v in (class_groups or {}).items()}
        for name, group in self.class_groups.items():
            if not group:
                raise ValueError(f'class group {name!r} is empty')

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = dict(super().compute_metrics(results))
        if self.format_only or not results:
            return metrics
        cols = tuple(zip(*results))
        iou = class_iou(sum(cols[0]).cpu().numpy(), sum(cols[1]).cpu().numpy())
        classes = list(self.dataset_meta['classes'])
        for name, group in self.class_groups.items():
            metrics[f'mIoU.{name}'] = group_miou(iou, classes, group)
        for c, v in zip(classes, iou):
            metrics[f'IoU.{c}'] = float(np.round(v * 100, 2)) if np.isfinite(v) else float('nan')
        return metrics
