"""Batching of distillation samples (the transforms already normalised the images)."""
from __future__ import annotations

from typing import Any, Dict, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from ...registry import MODELS

__all__ = ['DeCLIPDataPreprocessor']


@MODELS.register_module()
class DeCLIPDataPreprocessor(BaseDataPreprocessor):
    """Stack student / VFM images, concatenate the teacher crops of the whole batch and build the
    roi_align boxes ``(batch_index, x1, y1, x2, y2)`` (student token units).

    Output ``inputs``: ``student`` (B, 3, S, S), ``vfm`` (B, 3, V, V), ``crops`` (K, 3, c, c),
    ``rois`` (K, 5), ``vfm_valid_hw`` (B, 2) pixels of the image inside the VFM letterbox; extra VFM
    teachers' ``vfm_img_<t>`` become ``vfm_<t>`` and ``vfm_<t>_valid_hw``; with ``keep_img_path``
    also ``img_path`` (list of B file names: the image identity the VFM feature cache keys on).

    Args:
        keep_img_path (bool): pass ``img_path`` on (``DeCLIPDistiller(vfm_cache=...)`` turns it
            on). Defaults to False.
    """

    def __init__(self, keep_img_path: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.keep_img_path = bool(keep_img_path)

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, dict):  # pseudo_collate: dict of per-sample lists -> list of dicts
            n = len(inputs['student_img'])
            inputs = [{k: v[i] for k, v in inputs.items()} for i in range(n)]
        elif isinstance(inputs, Sequence) and inputs and not isinstance(inputs[0], dict):
            raise TypeError('DeCLIPDataPreprocessor expects PackDeCLIPInputs samples')
        batch: Dict[str, Any] = {'student': torch.stack([s['student_img'] for s in inputs])}
        if 'vfm_img' in inputs[0]:
            batch['vfm'] = torch.stack([s['vfm_img'] for s in inputs])
            batch['vfm_valid_hw'] = torch.stack([torch.as_tensor(s['vfm_img_valid_hw'])
                                                 for s in inputs])
        for key in sorted(k for k in inputs[0] if k.startswith('vfm_img_')
                          and not k.endswith('_valid_hw')):
            name = 'vfm_' + key[len('vfm_img_'):]  # extra VFM teacher t: vfm_img_<t> -> vfm_<t>
            batch[name] = torch.stack([s[key] for s in inputs])
            batch[name + '_valid_hw'] = torch.stack([torch.as_tensor(s[key + '_valid_hw'])
                                                     for s in inputs])
        if 'crops' in inputs[0]:
            batch['crops'] = torch.cat([s['crops'] for s in inputs])
            rois = []
            for b, s in enumerate(inputs):
                boxes = s['crop_boxes'].to(batch['student'])
                rois.append(torch.cat([boxes.new_full((boxes.shape[0], 1), float(b)), boxes], 1))
            batch['rois'] = torch.cat(rois)
        if self.keep_img_path:
            if 'img_path' not in inputs[0]:
                raise KeyError('the VFM feature cache needs img_path in every sample '
                               '(PackDeCLIPInputs packs it from the loaded image)')
            batch['img_path'] = [str(s['img_path']) for s in inputs]
        return {'inputs': batch, 'data_samples': data.get('data_samples')}
