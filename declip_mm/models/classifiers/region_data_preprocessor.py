"""Batching of region-classification samples (the transforms already normalised the images)."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from ...registry import MODELS

__all__ = ['RegionDataPreprocessor']


@MODELS.register_module()
class RegionDataPreprocessor(BaseDataPreprocessor):
    """Stack the letterboxed images and concatenate the regions of the whole batch.

    Output ``inputs``: ``imgs`` (B, 3, S, S); ``rois`` (K, 5) rows ``(batch_index, x1, y1, x2, y2)``
    in token units; ``masks`` (K, g, g) bool; ``batch_index`` (K,) long; ``crops`` (K, 3, c, c) when
    the samples carry crops. K is the number of regions of the batch (images in order).
    """

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, dict):  # pseudo_collate: dict of per-sample lists -> list of dicts
            n = len(inputs['img'])
            inputs = [{k: v[i] for k, v in inputs.items()} for i in range(n)]
        elif not (isinstance(inputs, Sequence) and inputs and isinstance(inputs[0], dict)):
            raise TypeError('RegionDataPreprocessor expects PackRegionInputs samples')
        imgs = torch.stack([s['img'] for s in inputs])
        rois: List[torch.Tensor] = []
        for b, s in enumerate(inputs):
            boxes = s['boxes'].to(imgs)
            rois.append(torch.cat([boxes.new_full((boxes.shape[0], 1), float(b)), boxes], 1))
        counts = [int(s['boxes'].shape[0]) for s in inputs]
        batch: Dict[str, Any] = {
            'imgs': imgs, 'rois': torch.cat(rois),
            'masks': torch.cat([s['masks'] for s in inputs]).bool(),
            'batch_index': torch.repeat_interleave(torch.arange(len(inputs), device=imgs.device),
                                                   torch.tensor(counts, device=imgs.device))}
        if all('crops' in s for s in inputs):
            batch['crops'] = torch.cat([s['crops'] for s in inputs]).to(imgs)
        return {'inputs': batch, 'data_samples': data.get('data_samples')}
