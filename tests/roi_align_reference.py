"""roi_align with one output bin, written from its definition (torchvision / Detectron2, aligned=True,
spatial_scale=1, sampling_ratio=-1 i.e. adaptive; docs/method.md §2), for the content-loss and
region-classifier tests. Runs in the dtype of ``fmap`` (the tests pass float64)."""
from __future__ import annotations

import math

import torch

__all__ = ['bilinear_sample', 'roi_align_1x1_reference']


def bilinear_sample(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """roi_align's bilinear sample of ``fmap`` (C, H, W) at (y, x): zero outside [-1, H] x [-1, W],
    coordinates below 0 clamped to 0, the last row / column repeated at the border."""
    c, h, w = fmap.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return fmap.new_zeros(c)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * fmap[:, y0, x0] + hy * lx * fmap[:, y0, x1] + ly * hx * fmap[:, y1, x0]
            + ly * lx * fmap[:, y1, x1])


def roi_align_1x1_reference(fmap: torch.Tensor, box) -> torch.Tensor:
    """Mean of the ceil(h) x ceil(w) bilinear samples at the centres of a regular grid over the box
    (x1, y1, x2, y2) shifted by -0.5 (aligned=True): a (C, ) vector (zero for an empty box)."""
    x1, y1, x2, y2 = (float(v) - 0.5 for v in box)
    rh, rw = y2 - y1, x2 - x1
    gh, gw = math.ceil(rh), math.ceil(rw)   # torchvision: no clamp, count = max(gh * gw, 1)
    acc = fmap.new_zeros(fmap.shape[0])
    for iy in range(gh):
        for ix in range(gw):
            acc = acc + bilinear_sample(fmap, y1 + (iy + 0.5) * rh / gh,
                                        x1 + (ix + 0.5) * rw / gw)
    return acc / max(gh * gw, 1)
