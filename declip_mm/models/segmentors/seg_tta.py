"""Test-time augmentation for the training-free segmentor: average the class probabilities of the
augmented views (already undone by ``postprocess_result``), then apply the same ``area_thd`` /
``prob_thd`` rule as a single view. mmseg's ``SegTTAModel`` would softmax probabilities again and
drop the threshold.

:func:`resolve_tta_model` picks the wrapper for ``tools/test.py --tta``: a config without
``tta_model`` (or with mmseg's ``SegTTAModel`` from mmseg's default runtime, which needs an
``out_channels`` that our segmentors do not have) gets the right one for its segmentor.
"""
from __future__ import annotations

import logging
from typing import List, Mapping, Optional

from mmengine.logging import print_log
from mmengine.model import BaseTTAModel
from mmengine.structures import PixelData
from mmseg.utils import SampleList

from ...registry import MODELS

__all__ = ['DeCLIPSegTTAModel', 'TTA_WRAPPERS', 'resolve_tta_model']

#: declip_mm segmentors and the TTA wrapper that merges their outputs correctly
TTA_WRAPPERS = {'DeCLIPZeroShotSegmentor': 'DeCLIPSegTTAModel'}
_MMSEG_TTA = ('SegTTAModel', 'mmseg.SegTTAModel')


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


def resolve_tta_model(model_cfg: Mapping, tta_model: Optional[Mapping] = None) -> dict:
    """The ``tta_model`` config to wrap ``model_cfg`` with.

    Args:
        model_cfg: the segmentor config (its ``type`` decides).
        tta_model: the config's ``tta_model``, or ``None`` if it has none.

    Returns:
        dict: ``tta_model`` as given; or, for a declip_mm segmentor, its wrapper from
        :data:`TTA_WRAPPERS` when none is given or mmseg's ``SegTTAModel`` is (a warning says so);
        or mmseg's ``SegTTAModel`` for other segmentors without one.
    """
    typ = model_cfg.get('type')
    ours = TTA_WRAPPERS.get(typ.split('.')[-1]) if isinstance(typ, str) else None
    if tta_model is None:
        return dict(type=ours or 'SegTTAModel')
    tta_model = dict(tta_model)
    if ours and tta_model.get('type') in _MMSEG_TTA:
        print_log(f'--tta: {typ} averages class probabilities and keeps its prob_thd, which mmseg\'s '
                  f'SegTTAModel cannot do; using {ours} instead', logger='current',
                  level=logging.WARNING)
        tta_model['type'] = ours
    return tta_model
