"""Labels of a large image in row strips: memory proportional to its pixels, not pixels x classes.

The training-free segmentor's post-processing (docs/method.md §4) resizes the (num_names, h, w) cosine map to
the original image size, multiplies by the logit scale, takes the softmax over names and the max over
each class's names, then the argmax with ``area_thd`` / ``prob_thd``. Done at once it holds several
(num_names, H, W) float tensors: ~1.8 GB per megapixel at 150 classes. Here the same steps run on
strips of output rows, so only one strip of (num_names, rows, W) floats lives at a time and the
result is the (1, H, W) label map alone.

The bilinear resize of a strip is computed as PyTorch's kernel does (half-pixel source coordinates,
clamped indices, separable weights): the width step is ``F.interpolate`` itself on the needed source
rows (identity in height, hence exact), the height step applies the same two-row weights by hand with
the kernel's fused multiply-add. On this build (torch 2.14, x86) that reproduces the full-image
``F.interpolate`` bit for bit at the protocol's sizes (checked by the tests); where a kernel variant
rounds differently (some tiny outputs) values agree to ~1e-7 relative, so labels could only differ
where two classes' probabilities (or the top probability and ``prob_thd``) tie to that rounding.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['bilinear_rows', 'labels_in_strips']


def _source_rows(in_size: int, out_size: int, align_corners: bool, device: torch.device
                 ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per output row: the two source rows and their weights (i0, i1, w0, w1), (out_size,) each.

    Formula of PyTorch's ``upsample_bilinear2d`` (``area_pixel_compute_source_index``): source
    coordinate ``scale * (y + 0.5) - 0.5`` clamped at 0 (``scale * y`` with ``align_corners``).
    """
    y = torch.arange(out_size, device=device, dtype=torch.float64)
    if in_size == out_size:
        i = y.long()
        return i, i, torch.ones(out_size, device=device), torch.zeros(out_size, device=device)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = (torch.tensor(scale, dtype=torch.float32).double() * y).float()
    else:
        scale = torch.tensor(in_size, dtype=torch.float32) / out_size   # float, as the kernel
        src = (scale.double() * (y + 0.5) - 0.5).float().clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    w1 = (src - i0.float()).clamp(0, 1)
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, 1 - w1, w1


def bilinear_rows(x: Tensor, out_hw: Tuple[int, int], rows: Tuple[int, int],
                  align_corners: bool = False, row_table=None) -> Tensor:
    """Rows ``rows[0]:rows[1]`` of ``F.interpolate(x[None], out_hw, mode='bilinear')[0]``.

    Args:
        x (Tensor): (C, h, w).
        out_hw (tuple): the full output size (H, W).
        rows (tuple): the output rows [y0, y1) to compute.
        align_corners (bool): as in ``F.interpolate``.
        row_table (tuple, optional): ``_source_rows(h, H, ...)``, to reuse between strips.

    Returns:
        Tensor: (C, y1 - y0, W).
    """
    h = x.shape[-2]
    y0, y1 = rows
    if row_table is None:
        row_table = _source_rows(h, out_hw[0], align_corners, x.device)
    i0, i1, w0, w1 = (t[y0:y1] for t in row_table)
    s0, s1 = int(i0.min()), int(i1.max()) + 1
    # width step on the source rows this strip needs: F.interpolate with the height unchanged
    t = F.interpolate(x[None, :, s0:s1], size=(s1 - s0, out_hw[1]), mode='bilinear',
                      align_corners=align_corners)[0]
    if h == out_hw[0]:
        return t[:, i0 - s0]
    w0, w1 = w0.to(t.dtype).view(1, -1, 1), w1.to(t.dtype).view(1, -1, 1)
    # the kernel's fused multiply-add fma(t0, w0, t1 * w1), one rounding: the float64 sum of a
    # product of two floats (exact in float64) and a float, rounded once to float32
    return (t[:, i0 - s0].double() * w0.double() + (t[:, i1 - s0] * w1).double()).to(t.dtype)


def _strip_class_probs(name_logits: Tensor, out_hw, rows, logit_scale: float,
                       name_to_class: Optional[Tensor], num_classes: int, align_corners: bool,
                       row_table) -> Tensor:
    """(num_classes, rows, W) probabilities of one strip (softmax over names, max over synonyms)."""
    z = bilinear_rows(name_logits, out_hw, rows, align_corners, row_table)
    probs = (z * logit_scale).softmax(dim=0)
    del z
    if name_to_class is None or probs.shape[0] == num_classes:
        return probs
    out = probs.new_full((num_classes, *probs.shape[1:]), -1.0)
    idx = name_to_class.to(probs.device).view(-1, 1, 1).expand_as(probs)
    return out.scatter_reduce(0, idx, probs, reduce='amax', include_self=True)


def labels_in_strips(name_logits: Tensor, out_hw: Tuple[int, int], logit_scale: float,
                     name_to_class: Optional[Tensor], num_classes: int, prob_thd: float = 0.0,
                     area_thd: Optional[float] = None, align_corners: bool = False,
                     max_elems: int = 1 << 20) -> Tensor:
    """Label map (1, H, W) of the segmentor's post-processing, computed in row strips.

    Args:
        name_logits (Tensor): (num_names, h, w) cosines (padding removed, flips undone).
        out_hw (tuple): the original image size (H, W).
        logit_scale (float): multiplies the cosines before the softmax over names.
        name_to_class (Tensor, optional): (num_names,) class of every name.
        num_classes (int): number of classes.
        prob_thd (float): pixels whose top class probability is below it become class 0.
        area_thd (float, optional): classes (except 0) predicted on at most this fraction of the
            non-background pixels are suppressed; needs a first pass over the strips for the areas.
        align_corners (bool): of the resize.
        max_elems (int): floats of one (num_names, rows, W) strip; sets the strip height.

    Returns:
        Tensor: (1, H, W) int64 labels.
    """
    H, W = int(out_hw[0]), int(out_hw[1])
    n = name_logits.shape[0]
    step = max(1, int(max_elems) // max(1, n * W))
    table = _source_rows(name_logits.shape[-2], H, align_corners, name_logits.device)
    strips = [(y, min(y + step, H)) for y in range(0, H, step)]

    def probs_of(r):
        return _strip_class_probs(name_logits, (H, W), r, logit_scale, name_to_class, num_classes,
                                  align_corners, table)

    keep = None
    if area_thd is not None:  # the areas of the unsuppressed argmax, over the whole image
        area = torch.zeros(num_classes, dtype=torch.long, device=name_logits.device)
        for r in strips:
            area += torch.bincount(probs_of(r).argmax(0).flatten(), minlength=num_classes)
        area = area[1:].to(name_logits.dtype)
        keep = (area > area_thd * area.sum()).to(name_logits.dtype).view(-1, 1, 1)
    pred = torch.empty((1, H, W), dtype=torch.long, device=name_logits.device)
    for y0, y1 in strips:
        probs = probs_of((y0, y1))
        if keep is not None:
            probs = torch.cat([probs[:1], probs[1:] * keep])
        lab = probs.argmax(0)   # as the full-image rule: first class among equal maxima
        lab[probs.amax(0) < prob_thd] = 0
        pred[0, y0:y1] = lab
    return pred
