"""Segmentation metrics written from their definitions, to check the numbers the tools print.

A tool run with ``--out DIR`` writes its label map of every image (mmseg's ``IoUMetric`` with
``output_dir``: the dataset's label ids, i.e. +1 where the dataset reduces label 0). Recomputing
aAcc / mIoU / mAcc from those files and the fixture's label PNGs, with each benchmark's label rule
stated here by hand (docs/method.md §4), checks the printed metrics value for value:

    label rule     reduce_zero_label: GT 0 -> ignored (255), GT k -> k - 1
    IoU_c          |pred = c and gt = c| / |pred = c or gt = c| over pixels with gt != 255
                   (a class absent from both is NaN and left out of the mean)
    Acc_c          |pred = c and gt = c| / |gt = c|
    aAcc           sum_c |pred = c and gt = c| / |gt != 255|
"""
import os
import os.path as osp

import numpy as np
from PIL import Image

from declip_mm.testing import BENCHMARK_LAYOUTS

#: benchmark -> (classes evaluated, reduce_zero_label), from the benchmarks' definitions
LABEL_RULES = {'voc21': (21, False), 'voc20': (20, True), 'context60': (60, False),
               'context59': (59, True), 'coco_stuff164k': (171, False),
               'coco_object': (81, False), 'cityscapes': (19, False), 'ade20k': (150, True)}


def prediction_pairs(out_dir, data_root, bench):
    """(pred, gt) int64 label maps in the metric's class space, one pair per fixture image."""
    lay = BENCHMARK_LAYOUTS[bench]
    _, reduce = LABEL_RULES[bench]
    ann_dir = osp.join(data_root, lay['ann_dir'], lay.get('city', ''))
    pairs = []
    for f in sorted(os.listdir(ann_dir)):
        if not f.endswith(lay['seg_suffix']):
            continue
        stem = f[:-len(lay['seg_suffix'])]
        gt = np.asarray(Image.open(osp.join(ann_dir, f))).astype(np.int64)
        pred_file = osp.join(out_dir, osp.splitext(stem + lay['img_suffix'])[0] + '.png')
        pred = np.asarray(Image.open(pred_file)).astype(np.int64)
        if reduce:
            gt = np.where((gt == 0) | (gt == 255), 255, gt - 1)
            pred = pred - 1
        assert pred.shape == gt.shape, (pred_file, pred.shape, gt.shape)
        pairs.append((pred, gt))
    assert pairs, f'no label files in {ann_dir}'
    return pairs


def metrics_from_formula(pairs, num_classes, ignore_index=255):
    """aAcc, mIoU, mAcc (percent) of (pred, gt) pairs, from the definitions above."""
    inter = np.zeros(num_classes)
    area_pred = np.zeros(num_classes)
    area_gt = np.zeros(num_classes)
    for pred, gt in pairs:
        valid = gt != ignore_index
        p, g = pred[valid], gt[valid]
        for c in range(num_classes):
            inter[c] += np.sum((p == c) & (g == c))
            area_pred[c] += np.sum(p == c)
            area_gt[c] += np.sum(g == c)
    union = area_pred + area_gt - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, inter / union, np.nan)
        acc = np.where(area_gt > 0, inter / area_gt, np.nan)
    return dict(aAcc=100 * inter.sum() / area_gt.sum(), mIoU=100 * np.nanmean(iou),
                mAcc=100 * np.nanmean(acc), classes_predicted=int((area_pred > 0).sum()))


def check_tool_metrics(metrics, out_dir, data_root, bench):
    """The tool's printed aAcc / mIoU / mAcc (rounded to 2 decimals) equal the formula on its own
    written predictions; returns the recomputed numbers."""
    num_classes, _ = LABEL_RULES[bench]
    ref = metrics_from_formula(prediction_pairs(out_dir, data_root, bench), num_classes)
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert abs(float(metrics[key]) - ref[key]) <= 0.006, (key, metrics[key], ref[key])
    return ref
