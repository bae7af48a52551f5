"""RoI head that hands the box head the RoI-aligned CLIP content features (F-ViT's ensemble).

Provenance: CLIPSelf's ``F-ViT/models/fvit_head.py`` (``FViTRoIHead``): at prediction time every
proposal is RoI-aligned (1x1) on the frozen tower's dense CLIP map at the patch stride, and the box
head combines the detector's score with the CLIP score of that feature (see
:class:`DeCLIPOVBBoxHead`). Training does not use the CLIP map (as F-ViT).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch.nn.functional as F
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import InstanceList
from torch import Tensor

__all__ = ['DeCLIPOVRoIHead']


class DeCLIPOVRoIHead(StandardRoIHead):
    """:class:`StandardRoIHead` with an extra RoI extractor on the CLIP content map.

    Args:
        clip_roi_extractor (dict, optional): RoI extractor for the content map, e.g.
            ``dict(type='SingleRoIExtractor', roi_layer=dict(type='RoIAlign', output_size=1,
            sampling_ratio=0), out_channels=512, featmap_strides=[16])``. ``None`` disables the
            CLIP score (the detector's score alone).
        normalize_clip_map (bool): L2-normalise every token of the content map before RoI-align
            (F-ViT's backbone does; the pooled feature is normalised again in the box head).
            Defaults to True.
        **kwargs: :class:`StandardRoIHead` arguments.
    """

    def __init__(self, clip_roi_extractor: Optional[dict] = None, normalize_clip_map: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clip_roi_extractor = MODELS.build(clip_roi_extractor) if clip_roi_extractor else None
        self.normalize_clip_map = bool(normalize_clip_map)
        # set by predict() for the duration of one call: mmdet's predict -> predict_bbox ->
        # _bbox_forward chain has no argument for an extra feature map
        self._clip_map: Optional[Tensor] = None

    @property
    def with_clip_score(self) -> bool:
        return self.clip_roi_extractor is not None

    def predict(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
                batch_data_samples: SampleList, rescale: bool = False,
                clip_map: Optional[Tensor] = None) -> InstanceList:
        """As :meth:`StandardRoIHead.predict`; ``clip_map`` (B, E, h, w) enables the ensemble."""
        self._clip_map = clip_map if self.with_clip_score else None
        try:
            return super().predict(x, rpn_results_list, batch_data_samples, rescale=rescale)
        finally:
            self._clip_map = None

    def _bbox_forward(self, x: Tuple[Tensor], rois: Tensor) -> dict:
        """Box head on the FPN RoI features, plus the (N, E) CLIP RoI features when available."""
        bbox_feats = self.bbox_roi_extractor(x[:self.bbox_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        clip_feats = None
        if self._clip_map is not None:
            m = F.normalize(self._clip_map, dim=1) if self.normalize_clip_map else self._clip_map
            clip_feats = self.clip_roi_extractor([m], rois).flatten(1)
        cls_score, bbox_pred = self.bbox_head(bbox_feats, clip_feats)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=bbox_feats)
