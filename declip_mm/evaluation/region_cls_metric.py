"""Mean per-class top-1 / top-5 accuracy of region classification, things and stuff apart.

As the official evaluator's ``macc_with_is_thing`` (``src/training/zero_shot.py``): for each split
(thing / stuff) and each region feature, the accuracy of every class *that has at least one region in
the split* (a class that never appears is left out of the mean, not counted as 0), then the mean over
those classes. A region is top-k correct when its class is among the k best-scoring classes.
Differences from the official code, on purpose: per-class accuracies are averaged in float64 (the
official rounds each to fp16 first), and under DDP each region is counted once (the official
all-gather keeps the duplicates the distributed sampler adds to fill the last batch).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..registry import METRICS

__all__ = ['RegionClassificationMetric', 'mean_class_accuracy']

_FEATURES = ('rois', 'maskpool', 'crops')


def mean_class_accuracy(correct: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of the fraction of their regions ``correct``.

    Returns NaN when there is no region at all.
    """
    classes = np.unique(labels)
    if classes.size == 0:
        return float('nan')
    return float(np.mean([correct[labels == c].astype(np.float64).mean() for c in classes]))


@METRICS.register_module()
class RegionClassificationMetric(BaseMetric):
    """Top-1 / top-5 mean per-class accuracy (in %) of thing and stuff regions for each feature.

    Keys: ``<feature>.<thing|stuff>.macc<1|5>`` (the official names, e.g. ``rois.thing.macc1``),
    for each feature the model predicted (``rois``, ``maskpool``, ``crops``).

    Args:
        topk (sequence[int]): accuracies to report. Defaults to (1, 5).
        collect_device (str): ``'cpu'`` or ``'gpu'`` (mmengine). Defaults to ``'cpu'``.
        prefix (str, optional): key prefix (mmengine). Defaults to ``'region_cls'``.
    """

    default_prefix = 'region_cls'

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f'topk must be positive integers, got {topk}')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """One result per image (so mmengine's gather drops the sampler's padding by count)."""
        for s in data_samples:
            res = dict(img_id=int(s['img_id']))
            for k in ('seg_ids', 'labels', 'is_thing'):
                res[k] = np.asarray(s[k].cpu() if hasattr(s[k], 'cpu') else s[k])
            for f in _FEATURES:
                if f'pred_{f}' in s:
                    p = s[f'pred_{f}']
                    res[f] = np.asarray(p.cpu() if hasattr(p, 'cpu') else p).astype(np.int64)
            self.results.append(res)

    @staticmethod
    def _dedupe(results: List[dict]) -> List[dict]:
        # the sampler repeats images to fill the last batch of every process: keep each (image,
        # segment) once, whatever the sampler
        seen, out = set(), []
        for r in results:
            keep = np.array([(r['img_id'], int(s)) not in seen for s in r['seg_ids']], dtype=bool)
            seen.update((r['img_id'], int(s)) for s in r['seg_ids'])
            if keep.all():
                out.append(r)
            elif keep.any():
                out.append({k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in r.items()})
        return out

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        results = self._dedupe(results)
        features = [f for f in _FEATURES if results and all(f in r for r in results)]
        if not features:
            raise ValueError('no region predictions to evaluate (expected pred_rois / pred_maskpool '
                             '/ pred_crops from DeCLIPRegionClassifier)')
        labels = np.concatenate([r['labels'] for r in results]).astype(np.int64)
        is_thing = np.concatenate([r['is_thing'] for r in results]).astype(bool)
        metrics: Dict[str, float] = {}
        counts = defaultdict(int)
        for f in features:
            pred = np.concatenate([r[f].reshape(len(r['labels']), -1) for r in results])
            if pred.shape[1] < max(self.topk):
                raise ValueError(f'{f}: {pred.shape[1]} predictions per region, top-'
                                 f'{max(self.topk)} asked')
            hit = pred == labels[:, None]
            for split, sel in (('thing', is_thing), ('stuff', ~is_thing)):
                counts[split] = int(sel.sum())
                for k in self.topk:
                    acc = mean_class_accuracy(hit[sel, :k].any(1), labels[sel])
                    metrics[f'{f}.{split}.macc{k}'] = 100.0 * acc
        for split, n in counts.items():
            if n == 0:
                print_log(f'region classification: no {split} region in the dataset; its '
                          'accuracies are NaN', logger='current', level=logging.WARNING)
        print_log(f'region classification: {counts["thing"]} thing and {counts["stuff"]} stuff '
                  f'regions in {len(results)} images', logger='current')
        return metrics
