"""F-ViT-style open-vocabulary two-stage detector on the (frozen) DeCLIP tower.

Provenance: CLIPSelf, ICLR 2024, ``F-ViT/models/fvit.py`` (``FViT``): a Faster R-CNN whose backbone
is a frozen CLIP ViT, with a ViTDet-like simple pyramid from four blocks to strides 4-32 and an FPN;
at prediction time the frozen tower's dense CLIP map is also returned and RoI-aligned for the
ensemble of detector and CLIP scores (:class:`DeCLIPOVRoIHead`, :class:`DeCLIPOVBBoxHead`).

Call graph::

    loss(inputs, samples)        TwoStageDetector.loss (extract_feat -> RPN -> RoI losses)
    predict(inputs, samples)
      └─ backbone.forward_featmaps(inputs, need_content=True)   maps (strides 4..32), content map
      └─ neck(maps) -> rpn_head.predict -> roi_head.predict(..., clip_map=content)
      └─ pred_instances.label_names   names of the current vocabulary
      └─ dataset_label_map (optional)  labels -> the test dataset's category indices, by name
                                       (set by tools/test.py through :meth:`set_dataset_classes`)
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmdet.models.detectors import TwoStageDetector
from mmdet.structures import SampleList
from torch import Tensor

from .vocabulary_map import vocabulary_label_map

__all__ = ['DeCLIPFViT']


class DeCLIPFViT(TwoStageDetector):
    """Two-stage open-vocabulary detector (F-ViT) whose vocabulary can be set at test time.

    Takes :class:`TwoStageDetector`'s arguments. The backbone should be a
    :class:`DeCLIPVisionTransformer` with ``out_type='featmap'`` (``frozen_stages=depth`` for
    F-ViT's frozen tower); the RoI head a :class:`DeCLIPOVRoIHead` with a
    :class:`DeCLIPOVBBoxHead`. Other backbones work without the CLIP score.
    """

    def _features(self, inputs: Tensor, need_content: bool
                  ) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
        if hasattr(self.backbone, 'forward_featmaps'):
            maps, content = self.backbone.forward_featmaps(inputs, need_content=need_content)
        else:
            maps, content = self.backbone(inputs), None
        return (self.neck(maps) if self.with_neck else maps), content

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        return self._features(batch_inputs, need_content=False)[0]

    @property
    def vocabulary(self):
        return list(self.roi_head.bbox_head.class_names)

    def set_vocabulary(self, classes: Sequence[Union[str, Sequence[str]]],
                       base_classes: Optional[Sequence[str]] = None) -> None:
        """Detect ``classes`` from now on (labels index them); ``base_classes`` are the ones the
        detector was trained on (ensemble exponent α; the others use β)."""
        self.roi_head.bbox_head.set_vocabulary(classes, base_classes)
        if getattr(self, 'dataset_classes', None) is not None:  # keep scoring by name
            self.set_dataset_classes(self.dataset_classes)

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Boxes, scores and labels of the current vocabulary (``pred_instances.label_names``)."""
        use_clip = getattr(self.roi_head, 'with_clip_score', False)
        x, content = self._features(batch_inputs, need_content=use_clip)
        if batch_data_samples[0].get('proposals', None) is None:
            rpn_results_list = self.rpn_head.predict(x, batch_data_samples, rescale=False)
        else:
            rpn_results_list = [s.proposals for s in batch_data_samples]
        kwargs = dict(clip_map=content) if use_clip else {}
        results_list = self.roi_head.predict(x, rpn_results_list, batch_data_samples,
                                             rescale=rescale, **kwargs)
        names = getattr(self.roi_head.bbox_head, 'class_names', None)
        label_map = getattr(self, 'dataset_label_map', None)
        for n, res in enumerate(results_list):
            label_names = None if names is None else [names[int(i)] for i in res.labels]
            if label_map is not None:  # vocabulary index -> dataset index; -1: not scored
                mapped = label_map.to(res.labels.device)[res.labels]
                keep = mapped >= 0
                res = res[keep]
                res.labels = mapped[keep]
                if label_names is not None:
                    label_names = [m for m, k in zip(label_names, keep.tolist()) if k]
            if label_names is not None:
                res.label_names = label_names
            results_list[n] = res
        return self.add_pred_to_datasample(batch_data_samples, results_list)

    def set_dataset_classes(self, classes: Optional[Sequence[str]]) -> Optional[List[int]]:
        """Score predictions against a dataset with these categories: from now on labels are
        dataset indices, matched by name (:func:`vocabulary_label_map`), and boxes of vocabulary
        entries that are no dataset category are dropped. ``None`` switches the mapping off (labels
        index the vocabulary). Returns the map (None: identical lists)."""
        label_map = None if classes is None else vocabulary_label_map(
            self.roi_head.bbox_head.classes, list(classes), type(self).__name__)
        self.dataset_classes = None if classes is None else list(classes)
        self.dataset_label_map = None if label_map is None else torch.tensor(label_map)
        return label_map
