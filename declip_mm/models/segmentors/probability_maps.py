"""Full-resolution class probabilities of one image, computed on demand (issue 24, item 4).

A segmentor's post-processing resizes its class scores to the photo's size. Holding them for every
class costs ``num_classes x H x W`` floats (a 12 MP photo with 150 classes: 7.2 GB in float32, and
the softmax needs a few such tensors). These objects keep what the segmentor produced at its own
resolution and compute, row strip by row strip (:mod:`.strip_postprocess`):

* :meth:`ClassProbabilityMaps.labels`: the argmax with a confidence threshold, (H, W) int64;
* :meth:`ClassProbabilityMaps.class_probabilities`: the full-resolution maps of chosen classes
  (for the zero-shot segmentor: one pass over all names for the per-pixel softmax denominator, kept,
  then each class from its own names);
* :meth:`ClassProbabilityMaps.dense`: all of them at once, computed as the segmentor's
  ``postprocess_result(keep_seg_logits=True)`` computes them (memory: classes x pixels).

The labels are those of the full computation: the strips repeat PyTorch's bilinear kernel row by row
(see :mod:`.strip_postprocess`), the softmax and the max over names are per pixel. The probabilities
agree with it to float32 rounding (~1e-7).

Each object keeps its own copy of the vocabulary's name-to-class map, so it stays valid after the
segmentor switches to another class list.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .strip_postprocess import (
    _source_rows,
    bilinear_rows,
    labels_in_strips,
    logsumexp_in_strips,
    probabilities_in_strips,
    strip_rows,
)

__all__ = ['ClassProbabilityMaps', 'NameSoftmaxMaps', 'ResizedClassMaps', 'DenseClassMaps']


class ClassProbabilityMaps:
    """Class probabilities of one image at (H, W) = ``out_hw``; subclasses say how they are made.

    Attributes:
        num_classes (int): number of classes.
        out_hw (tuple): (H, W) of the maps.
    """

    num_classes: int
    out_hw: Tuple[int, int]

    def labels(self, prob_thd: float = 0.0, low_label: int = 0) -> Tensor:
        """(H, W) int64 argmax over classes (the first of equal maxima); pixels whose top
        probability is below ``prob_thd`` get ``low_label``."""
        raise NotImplementedError

    def class_probabilities(self, classes: Sequence[int], out: Optional[Tensor] = None) -> Tensor:
        """(len(classes), H, W) probabilities of ``classes`` (into ``out``, of any float dtype)."""
        raise NotImplementedError

    def dense(self) -> Tensor:
        """(num_classes, H, W) float32: every class at once."""
        raise NotImplementedError

    def class_probability(self, k: int) -> Tensor:
        """(H, W) float32 probability of class ``k``."""
        return self.class_probabilities([int(k)])[0]

    def _check(self, classes: Sequence[int]) -> list:
        ks = [int(k) for k in classes]
        bad = [k for k in ks if not 0 <= k < self.num_classes]
        if bad:
            raise IndexError(f'class index {bad[0]} out of range: this result has '
                             f'{self.num_classes} classes (0..{self.num_classes - 1})')
        return ks


class NameSoftmaxMaps(ClassProbabilityMaps):
    """The training-free segmentor's probabilities (docs/method.md §4): bilinear resize of the
    cosine map to (H, W), x ``logit_scale``, softmax over names, max over each class's names.

    Args:
        name_logits (Tensor): (num_names, h, w) cosines (padding removed, flips undone).
        out_hw (tuple): (H, W) of the photo.
        logit_scale (float): multiplies the cosines before the softmax.
        name_to_class (Tensor): (num_names,) class of every name (copied).
        num_classes (int): number of classes.
        align_corners (bool): of the resize. Defaults to False.
        max_elems, max_bytes (int, optional): strip size, as in :func:`labels_in_strips`.
    """

    def __init__(self, name_logits: Tensor, out_hw: Tuple[int, int], logit_scale: float,
                 name_to_class: Tensor, num_classes: int, align_corners: bool = False,
                 max_elems: Optional[int] = None, max_bytes: Optional[int] = None) -> None:
        if name_logits.dim() != 3 or name_logits.shape[0] != name_to_class.numel():
            raise ValueError(f'name_logits must be (num_names={name_to_class.numel()}, h, w), got '
                             f'{tuple(name_logits.shape)}')
        self.name_logits = name_logits.contiguous()
        self.out_hw = (int(out_hw[0]), int(out_hw[1]))
        self.logit_scale = float(logit_scale)
        self.name_to_class = name_to_class.detach().clone()
        self.num_classes = int(num_classes)
        self.align_corners = bool(align_corners)
        self.max_elems, self.max_bytes = max_elems, max_bytes
        self._lse: Optional[Tensor] = None  # (H, W) float64 softmax denominator, on first need

    def labels(self, prob_thd: float = 0.0, low_label: int = 0) -> Tensor:
        return labels_in_strips(self.name_logits, self.out_hw, self.logit_scale,
                                self.name_to_class, self.num_classes, prob_thd=prob_thd,
                                area_thd=None, align_corners=self.align_corners,
                                max_elems=self.max_elems, max_bytes=self.max_bytes,
                                low_label=low_label)[0]

    def class_probabilities(self, classes: Sequence[int], out: Optional[Tensor] = None) -> Tensor:
        """The first call computes the per-pixel softmax denominator over all names in strips
        (one pass, kept: 8 bytes per pixel); each class then costs the resize of its own names."""
        ks = self._check(classes)
        if self._lse is None:
            self._lse = logsumexp_in_strips(self.name_logits, self.out_hw, self.logit_scale,
                                            self.align_corners, self.max_elems, self.max_bytes)
        return probabilities_in_strips(self.name_logits, self._lse, self.logit_scale,
                                       self.name_to_class, ks, self.align_corners,
                                       self.max_elems, self.max_bytes, out=out)

    def dense(self) -> Tensor:
        """The segmentor's former full computation (``F.interpolate`` of all names at once)."""
        z = F.interpolate(self.name_logits[None], size=self.out_hw, mode='bilinear',
                          align_corners=self.align_corners)[0]
        probs = (z * self.logit_scale).softmax(dim=0)
        if probs.shape[0] == self.num_classes:
            return probs
        idx = self.name_to_class.to(probs.device).view(-1, 1, 1).expand_as(probs)
        out = probs.new_full((self.num_classes, *probs.shape[1:]), -1.0)
        return out.scatter_reduce(0, idx, probs, reduce='amax', include_self=True)


class ResizedClassMaps(ClassProbabilityMaps):
    """Per-class maps (e.g. CAT-Seg's sigmoid probabilities at its test size) resized bilinearly to
    (H, W); a class's full map is the resize of its own channel.

    Args:
        probs (Tensor): (num_classes, h, w) probabilities (padding removed, flips undone).
        out_hw (tuple): (H, W) of the photo.
        align_corners (bool): of the resize. Defaults to False.
        max_elems, max_bytes (int, optional): strip size of :meth:`labels` (:func:`strip_rows`).
    """

    def __init__(self, probs: Tensor, out_hw: Tuple[int, int], align_corners: bool = False,
                 max_elems: Optional[int] = None, max_bytes: Optional[int] = None) -> None:
        if probs.dim() != 3:
            raise ValueError(f'probs must be (num_classes, h, w), got {tuple(probs.shape)}')
        self.probs = probs.contiguous()
        self.num_classes = int(probs.shape[0])
        self.out_hw = (int(out_hw[0]), int(out_hw[1]))
        self.align_corners = bool(align_corners)
        self.max_elems, self.max_bytes = max_elems, max_bytes

    def _resize(self, x: Tensor) -> Tensor:
        return F.interpolate(x[None], size=self.out_hw, mode='bilinear',
                             align_corners=self.align_corners)[0]

    def labels(self, prob_thd: float = 0.0, low_label: int = 0) -> Tensor:
        H, W = self.out_hw
        step = min(H, strip_rows(self.num_classes, W, self.max_bytes, self.max_elems))
        table = _source_rows(self.probs.shape[-2], H, self.align_corners, self.probs.device)
        pred = torch.empty((H, W), dtype=torch.long, device=self.probs.device)
        for y0 in range(0, H, step):
            y1 = min(y0 + step, H)
            top, pred[y0:y1] = bilinear_rows(self.probs, self.out_hw, (y0, y1),
                                             self.align_corners, table).max(0)
            if prob_thd > 0:
                pred[y0:y1][top < prob_thd] = low_label
        return pred

    def class_probabilities(self, classes: Sequence[int], out: Optional[Tensor] = None) -> Tensor:
        ks = self._check(classes)
        res = self._resize(self.probs[ks]) if ks else self.probs.new_empty((0, *self.out_hw))
        return res if out is None else out.copy_(res)

    def dense(self) -> Tensor:
        return self._resize(self.probs)


class DenseClassMaps(ClassProbabilityMaps):
    """Probabilities that already are at full resolution (a segmentor without
    ``predict_probability_maps``: its ``seg_logits``)."""

    def __init__(self, probs: Tensor) -> None:
        if probs.dim() != 3:
            raise ValueError(f'probs must be (num_classes, H, W), got {tuple(probs.shape)}')
        self.probs = probs.float()
        self.num_classes = int(probs.shape[0])
        self.out_hw = (int(probs.shape[1]), int(probs.shape[2]))

    def labels(self, prob_thd: float = 0.0, low_label: int = 0) -> Tensor:
        top, pred = self.probs.max(0)
        if prob_thd > 0:
            pred[top < prob_thd] = low_label
        return pred

    def class_probabilities(self, classes: Sequence[int], out: Optional[Tensor] = None) -> Tensor:
        res = self.probs[self._check(classes)]
        return res if out is None else out.copy_(res)

    def dense(self) -> Tensor:
        return self.probs
