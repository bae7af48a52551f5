"""Detection data preprocessor that pads test batches to a square (F-ViT's test padding).

Provenance: CLIPSelf, ICLR 2024, ``F-ViT/configs/ov_coco/fvit_vitb16_upsample_fpn_bs64_3e_ovcoco_*``:
the test pipeline normalises with ImageNet's mean/std and then pads with ``Pad(pad_to_square=True)``
(zeros after normalisation, i.e. the mean colour), the training pipeline with ``Pad(size=(640, 640))``.
mmdet 3 normalises in the data preprocessor; this class pads the normalised test batch on the right and
bottom to a square of its longest side with ``pad_value`` (0). Fixed-size training padding is mmdet's
``BatchFixedSizePad`` batch augment (also after normalisation), configured next to it.
"""
from __future__ import annotations

import torch.nn.functional as F
from mmdet.models.data_preprocessors import DetDataPreprocessor

__all__ = ['SquarePadDetDataPreprocessor']


class SquarePadDetDataPreprocessor(DetDataPreprocessor):
    """``DetDataPreprocessor`` whose test batches are padded to a square.

    Args:
        test_pad_to_square (bool): in test mode (``training=False``), pad the batch (already padded
            to ``pad_size_divisor``) on the right and bottom to ``(L, L)``, L its longer side, with
            ``pad_value``; ``batch_input_shape`` and ``pad_shape`` follow. Defaults to True.
        **kwargs: :class:`DetDataPreprocessor` arguments (mean, std, bgr_to_rgb, pad_size_divisor,
            pad_value, batch_augments, ...).

    Shapes:
        test: (B, 3, H, W) -> (B, 3, L, L), L = max(H, W); training: as ``DetDataPreprocessor``.
    """

    def __init__(self, test_pad_to_square: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_pad_to_square = bool(test_pad_to_square)

    def forward(self, data: dict, training: bool = False) -> dict:
        out = super().forward(data, training)
        if training or not self.test_pad_to_square:
            return out
        inputs, samples = out['inputs'], out['data_samples']
        h, w = inputs.shape[-2:]
        side = max(h, w)
        if (h, w) == (side, side):
            return out
        inputs = F.pad(inputs, (0, side - w, 0, side - h), mode='constant', value=self.pad_value)
        for s in samples or []:
            s.set_metainfo({'batch_input_shape': (side, side), 'pad_shape': (side, side)})
        return {'inputs': inputs, 'data_samples': samples}
