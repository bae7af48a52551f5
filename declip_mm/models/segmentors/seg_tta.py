"""Test-time augmentation for the training-free segmentor: average the class probabilities of the
augmented views (already undone by ``postprocess_result``), then apply the same ``area_thd`` /
``prob_thd`` rule as a single view. mmseg's ``SegTTAModel`` would softmax probabilities again and
drop the threshold."""
from __future__ import annotations

from typing import List

from mmengine.model import BaseTTAModel
from mmengine.structures import PixelData
from mmseg.utils import SampleList

from ...registry import MODELS

__all__ = ['DeCLIPSegTTAModel']


@MODELS.register_module()
class DeCLIPSegTTAModel(BaseTTAModel):

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # the views' class probabilities are averaged: the segmentor must return them
        if hasattr(self.module, 'keep_seg_logits'):
            self.module.keep_seg_logits = True

    def merge_preds(self, data_samples_list: List[SampleList]) -> SampleList:
        merged = []
        for views in data_samples_list:
            probs = sum(v.seg_logits.data for v in views) / len(views)
            out = views[0]
            out.set_data({'seg_logits': PixelData(data=probs),
                          'pred_sem_seg': PixelData(data=self.module.predict_from_probabilities(probs))})
            merged.append(out)
        return merged
