"""Open-vocabulary box head: cosine classifier against text embeddings, F-ViT's score ensemble.

Provenance (CLIPSelf, ICLR 2024, public file ``F-ViT/models/fvit_head.py``, ``FViTBBoxHead``):

- region embedding r (from the box head's classification branch) and class embeddings t_c of the
  vocabulary plus ``'background'`` (text tower, prompt-ensembled, L2-normalised):
  logits_c = τ_det · <r / |r|, t_c>, τ_det learned, initialised at 50;
- training: only base classes are learned; logits of the other vocabulary classes are set to -inf
  before the softmax cross-entropy (F-ViT gives them class weight 0 and masks them to -inf);
- prediction with the frozen CLIP tower's RoI-aligned content feature v (F-ViT's "ensemble"):
  p_det = softmax(logits), p_clip = softmax(τ_clip · <v / |v|, t_c>), and
  p_c = p_det,c^(1-α) · p_clip,c^α for base classes and background, p_det,c^(1-β) · p_clip,c^β for
  novel ones; F-ViT's OV-COCO configs use τ_clip = 75, α = 0.1, β = 0.8 (its OV-LVIS ones
  τ_clip = 50, α = 0.1, β = 0.6). The product is not renormalised (as F-ViT), so
  :meth:`_predict_by_feat_single` uses the scores as they are.

Differences from F-ViT: the region embedding is a linear projection of the last classification fc
(F-ViT uses that fc's ReLU output directly, with ``fc_out_channels`` = E = 512, and its own FIXME
says the ReLU should go); class embeddings come from :class:`DeCLIPTextEncoder` (templates
configurable, ``'vild'`` by default) instead of a pre-dumped file, so the vocabulary can change at
test time (:meth:`set_vocabulary`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.layers import multiclass_nms
from mmdet.models.roi_heads.bbox_heads import ConvFCBBoxHead
from mmdet.models.utils import empty_instances
from mmdet.structures.bbox import get_box_tensor, scale_boxes
from mmengine.structures import InstanceData
from torch import Tensor

from ..backbones.clip_towers import resolve_clip_config
from ..text import DeCLIPTextEncoder

ClassNames = Sequence[Union[str, Sequence[str]]]

__all__ = ['DeCLIPOVBBoxHead']


def _primary(name: Union[str, Sequence[str]]) -> str:
    return name if isinstance(name, str) else str(name[0])


class DeCLIPOVBBoxHead(ConvFCBBoxHead):
    """ConvFC box head whose classifier is the text embeddings of a vocabulary (open vocabulary).

    Args:
        text_encoder (dict): :class:`DeCLIPTextEncoder` arguments (``type`` optional), e.g.
            ``dict(model_name='EVA02-B-16', pretrained='weights/...pt', templates='vild')``.
        classes (sequence): the vocabulary; each entry a name or a list of synonyms (their
            embeddings are averaged). Sets ``num_classes``.
        base_classes (sequence[str], optional): the classes trained on (the others are masked out of
            the training loss and use β in the ensemble). ``None``: all of ``classes``.
        background_name (str): text embedded for the background column. Defaults to 'background'.
        learned_temperature (float): initial τ_det (learned). Defaults to 50.
        clip_temperature (float): τ_clip of the CLIP score. Defaults to 75.
        alpha (float): CLIP-score exponent for base classes and background. Defaults to 0.1.
        beta (float): CLIP-score exponent for novel classes. Defaults to 0.8.
        **kwargs: :class:`ConvFCBBoxHead` arguments; ``reg_class_agnostic`` must be True (the
            vocabulary size may change) and ``num_classes`` is taken from ``classes``.

    Shapes: ``forward(x (N, C, 7, 7), clip_feats (N, E) | None)`` -> (scores (N, K + 1),
    deltas (N, 4)); scores are logits in training, probabilities otherwise.
    """

    def __init__(self,
                 text_encoder: Dict[str, Any],
                 classes: ClassNames,
                 base_classes: Optional[Sequence[str]] = None,
                 background_name: str = 'background',
                 learned_temperature: float = 50.0,
                 clip_temperature: float = 75.0,
                 alpha: float = 0.1,
                 beta: float = 0.8,
                 **kwargs: Any) -> None:
        if not kwargs.get('reg_class_agnostic', False):
            raise ValueError('DeCLIPOVBBoxHead needs reg_class_agnostic=True: the vocabulary (and so '
                             'the class count) can change at test time')
        if 'num_classes' in kwargs and kwargs['num_classes'] != len(classes):
            raise ValueError(f'num_classes={kwargs["num_classes"]} contradicts the {len(classes)} '
                             'names in classes; leave num_classes out')
        kwargs['num_classes'] = len(classes)
        super().__init__(**kwargs)
        for name, v in (('alpha', alpha), ('beta', beta)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f'{name} must be in [0, 1], got {v}')
        te = dict(text_encoder)
        te.pop('type', None)
        self.text_encoder = DeCLIPTextEncoder(**te)
        self.embed_dim = int(resolve_clip_config(te.get('model_name', 'ViT-B-16'))['embed_dim'])
        # the classification output is a region embedding in the text space, not K + 1 logits
        self.fc_cls = nn.Linear(self.cls_last_dim, self.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(learned_temperature)))
        self.clip_temperature = float(clip_temperature)
        self.alpha, self.beta = float(alpha), float(beta)
        self.background_name = background_name
        self.set_vocabulary(classes, base_classes)

    # vocabulary --------------------------------------------------------------------------------
    def set_vocabulary(self, classes: ClassNames, base_classes: Optional[Sequence[str]] = None) -> None:
        """Use ``classes`` from now on (labels index this list); base ones by primary name."""
        if isinstance(classes, str) or not len(classes):
            raise ValueError('classes must be a non-empty list of names (or synonym lists)')
        DeCLIPTextEncoder._flatten(classes)  # validates every entry
        names = [_primary(c) for c in classes]
        if base_classes is None:
            base = set(names)
        else:
            base = {str(b) for b in base_classes}
            unknown = sorted(base - set(names))
            if unknown and not base & set(names):
                raise ValueError(f'none of base_classes is in the vocabulary (e.g. {unknown[:3]})')
        self.classes: List[Union[str, List[str]]] = [c if isinstance(c, str) else list(c)
                                                     for c in classes]
        self.class_names = names
        self.num_classes = len(names)
        # background (last column) is a "base" class: it is trained and uses alpha (F-ViT)
        self.base_mask = torch.tensor([n in base for n in names] + [True])

    def class_embeddings(self) -> Tensor:
        """(K + 1, E) L2-normalised: synonyms averaged, ``background_name`` last. Cached by the
        text encoder per vocabulary."""
        vocab = self.classes + [self.background_name]
        emb = self.text_encoder(vocab)
        idx = DeCLIPTextEncoder.name_to_class_index(vocab).to(emb.device)
        out = emb.new_zeros(len(vocab), emb.shape[1]).index_add_(0, idx, emb)
        return F.normalize(out, dim=-1)

    # forward -----------------------------------------------------------------------------------
    def forward(self, x: Tensor, clip_feats: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Args: x (N, C, s, s) RoI features; clip_feats (N, E) RoI-aligned CLIP content features
        (prediction only). Returns (scores (N, K + 1), bbox deltas (N, 4))."""
        region, bbox_pred = super().forward(x)  # fc_cls gives the (N, E) region embedding
        text = self.class_embeddings().to(region.dtype)
        logits = F.normalize(region, dim=-1) @ text.t() * self.logit_scale
        base = self.base_mask.to(logits.device)
        if self.training:
            return logits.masked_fill(~base, float('-inf')), bbox_pred
        scores = logits.softmax(dim=-1)
        if clip_feats is not None:
            clip = (F.normalize(clip_feats.to(region.dtype), dim=-1) @ text.t()
                    * self.clip_temperature).softmax(dim=-1)
            w = torch.where(base, torch.full_like(base, 0, dtype=scores.dtype) + self.alpha,
                            torch.full_like(base, 0, dtype=scores.dtype) + self.beta)
            scores = scores.pow(1.0 - w) * clip.pow(w)
        return scores, bbox_pred

    def _predict_by_feat_single(self, roi: Tensor, cls_score: Tensor, bbox_pred: Tensor,
                                img_meta: dict, rescale: bool = False,
                                rcnn_test_cfg: Optional[dict] = None) -> InstanceData:
        """mmdet's post-processing, with ``cls_score`` already probabilities (no second softmax:
        the ensembled scores are deliberately not renormalised)."""
        results = InstanceData()
        if roi.shape[0] == 0:
            return empty_instances([img_meta], roi.device, task_type='bbox',
                                   instance_results=[results], box_type=self.predict_box_type,
                                   use_box_type=False, num_classes=self.num_classes,
                                   score_per_cls=rcnn_test_cfg is None)[0]
        num_rois = roi.size(0)
        bboxes = self.bbox_coder.decode(roi[..., 1:], bbox_pred.view(-1, self.bbox_coder.encode_size),
                                        max_shape=img_meta['img_shape'])
        if rescale and bboxes.size(0) > 0:
            bboxes = scale_boxes(bboxes, [1 / s for s in img_meta['scale_factor']])
        bboxes = get_box_tensor(bboxes)
        box_dim = bboxes.size(-1)
        bboxes = bboxes.view(num_rois, -1)
        if rcnn_test_cfg is None:
            results.bboxes, results.scores = bboxes, cls_score
            return results
        det_bboxes, det_labels = multiclass_nms(bboxes, cls_score, rcnn_test_cfg.score_thr,
                                                rcnn_test_cfg.nms, rcnn_test_cfg.max_per_img,
                                                box_dim=box_dim)
        results.bboxes = det_bboxes[:, :-1]
        results.scores = det_bboxes[:, -1]
        results.labels = det_labels
        return results
