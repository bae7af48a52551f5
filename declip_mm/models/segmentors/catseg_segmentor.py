"""Open-vocabulary segmentor: DeCLIP image tower + CLIP text tower + CAT-Seg-style head (docs/catseg.md).

Call graph (mmseg ``EncoderDecoder`` conventions)::

    loss(inputs, data_samples)              training crops (B, 3, 384, 384)
      └─ _head_logits                       [resize to clip_size] -> backbone (content + two
                                            intermediate blocks) -> [L2-normalise content: EVA02]
                                            -> class_embeddings (text tower,
                                            with gradients) -> DeCLIPCATSegHead -> (B, T, h/4, w/4)
      └─ decode_head.loss_by_feat           per-class sigmoid BCE, ignore 255
    predict(inputs, data_samples)
      └─ inference  'catseg': each image resized to 640×640; four 384 windows (stride 256) and one
                    global 384 view, all in one batch; sigmoid of the window maps averaged where
                    they overlap, then averaged with the up-sampled global map (CAT-Seg's
                    ``inference_sliding_window``); 'whole': the input at its own size
      └─ postprocess_result                 undo flips, bilinear to the original size, argmax
    _forward(inputs)                        head logits (tensor mode)

Vocabulary: ``class_names`` (a class-name file or a list; synonyms are averaged); the head has no
per-class parameters, so a model trained on COCO-Stuff's 171 classes evaluates on any list.
Fine-tuning: ``clip_finetune='attention'`` trains the public rule's set (``catseg_finetune.py``): the
image tower's Q/V projection weights and the text tower's fused ``in_proj_weight`` (all rows for EVA02
towers as DeCLIP's CAT-Seg branch, Q/V rows for OpenAI towers as KU-CVLAB/CAT-Seg); no biases, no
position embeddings. Their learning rate multiplier lives in the config's ``paramwise_cfg``.
Content features: L2-normalised before the head for EVA02 towers (DeCLIP's CAT-Seg branch calls
``encode_dense(normalize=True)``, so the appearance guidance sees unit vectors), as they come for
OpenAI towers (KU-CVLAB's ``encode_image(dense=True)`` is not normalised); ``normalize_content``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.structures import SegDataSample
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, OptSampleList, SampleList
from torch import Tensor

from ...datasets.class_names import load_class_names
from ...registry import MODELS
from ..text.vocabulary_key import vocabulary_key
from .catseg_finetune import TEXT_QKV_RULES, apply_catseg_finetune
from .lazy_weights import LazyTowerWeightsMixin
from .probability_maps import ResizedClassMaps
from .zero_shot_segmentor import window_grid

__all__ = ['DeCLIPCATSegSegmentor']


@MODELS.register_module()
class DeCLIPCATSegSegmentor(LazyTowerWeightsMixin, BaseSegmentor):
    """DeCLIP backbone + trainable CLIP text tower + :class:`DeCLIPCATSegHead`.

    Args:
        backbone (dict): ``DeCLIPVisionTransformer`` config; ``out_indices`` must name the two blocks
            that guide the decoder ((3, 7) for B, (7, 15) for L).
        text_encoder (dict): ``DeCLIPTextEncoder`` config (its ``frozen`` is set from
            ``clip_finetune``).
        decode_head (dict): ``DeCLIPCATSegHead`` config; ``text_channels``, ``feat_channels``,
            ``backbone_channels`` and ``num_prompts`` default to the towers' sizes.
        class_names (str | list): class-name file or list (one entry per class, synonyms allowed).
        name_separator (str): synonym separator in class-name files. Defaults to ``';'``.
        clip_finetune (str): ``'attention'`` (the public rule, see ``catseg_finetune.py``), ``'none'``
            or ``'full'``.
        text_qkv_rows (str, optional): rows of the text tower's fused ``in_proj_weight`` trained under
            ``'attention'``: ``'qkv'`` (DeCLIP's CAT-Seg branch) or ``'qv'`` (KU-CVLAB/CAT-Seg).
            ``None`` picks ``'qkv'`` for EVA02 towers and ``'qv'`` for OpenAI towers.
        normalize_content (bool, optional): L2-normalise the content map before the head, so that the
            appearance guidance gets unit vectors (the cost volume is a cosine either way). ``None``
            picks True for EVA02 towers (DeCLIP's branch, ``encode_dense(normalize=True)``) and False
            for OpenAI towers (KU-CVLAB).
        clip_size (int, optional): images (training crops, test windows) are resized to this square
            size before the backbone (336 for ViT-L/14-336 on 384 crops). None keeps their size.
        test_cfg (dict): ``mode`` ('catseg' | 'whole'), ``size`` (640), ``crop_size`` (384),
            ``stride`` (256), ``global_view`` (True), ``batch_size`` (windows per forward, 10).
        data_preprocessor (dict): mmseg ``SegDataPreProcessor`` config (CLIP mean/std).
        train_cfg (dict, optional): unused, accepted for mmseg's API.
        pretrained (str, optional): overrides ``backbone.pretrained``.
    """

    def __init__(self,
                 backbone: ConfigType,
                 text_encoder: ConfigType,
                 decode_head: ConfigType,
                 class_names: Union[str, Sequence],
                 name_separator: str = ';',
                 clip_finetune: str = 'attention',
                 text_qkv_rows: Optional[str] = None,
                 normalize_content: Optional[bool] = None,
                 clip_size: Optional[int] = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if pretrained is not None:
            backbone = dict(backbone, pretrained=pretrained)
        self.backbone = MODELS.build(backbone)
        self.text_encoder = MODELS.build(dict(text_encoder, frozen=clip_finetune == 'none'))
        head = dict(decode_head)
        head.setdefault('text_channels', self.backbone.embed_dim)
        head.setdefault('feat_channels', self.backbone.embed_dim)
        head.setdefault('backbone_channels', self.backbone.width)
        head.setdefault('num_prompts', len(self.text_encoder.templates))
        self.decode_head = MODELS.build(head)
        if self.decode_head.decoder.with_guidance and len(self.backbone.out_indices) != 2:
            raise ValueError('the CAT-Seg decoder is guided by two intermediate blocks: set '
                             'backbone.out_indices to two block indices, e.g. (3, 7) for ViT-B, '
                             f'(7, 15) for ViT-L (got {list(self.backbone.out_indices)})')
        self.class_names = load_class_names(class_names, name_separator)
        if not self.class_names:
            raise ValueError('class_names is empty: give a class-name file or a non-empty list')
        self.num_classes = len(self.class_names)
        self.register_buffer('name_to_class',
                             self.text_encoder.name_to_class_index(self.class_names),
                             persistent=False)
        self.clip_finetune = clip_finetune
        eva = self.backbone.family == 'eva02'
        if text_qkv_rows is None:
            text_qkv_rows = 'qkv' if eva else 'qv'
        if text_qkv_rows not in TEXT_QKV_RULES:
            raise ValueError(f'text_qkv_rows must be one of {TEXT_QKV_RULES}, got {text_qkv_rows!r}')
        self.text_qkv_rows = text_qkv_rows
        self.frozen_slices = apply_catseg_finetune(
            [('backbone.visual', self.backbone.visual, 'image'),
             ('text_encoder.text', self.text_encoder.text, f'text_{text_qkv_rows}')],
            clip_finetune)
        self.normalize_content = eva if normalize_content is None else bool(normalize_content)
        self.clip_size = None if clip_size is None else int(clip_size)
        test_cfg = dict(test_cfg or {})
        self.mode = test_cfg.get('mode', 'catseg')
        if self.mode not in ('catseg', 'whole'):
            raise ValueError(f"test_cfg.mode must be 'catseg' or 'whole', got {self.mode!r}")
        self.test_size = self._pair(test_cfg.get('size', 640))
        self.crop_size = self._pair(test_cfg.get('crop_size', 384))
        self.stride = self._pair(test_cfg.get('stride', 256))
        self.global_view = bool(test_cfg.get('global_view', True))
        self.batch_size = int(test_cfg.get('batch_size', 10))
        if self.batch_size < 1:
            raise ValueError('test_cfg.batch_size must be >= 1')
        self.test_cfg = test_cfg
        self.align_corners = False
        self._init_lazy_weights()

    # weights ---------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load the towers' local ``pretrained`` files; the head keeps PyTorch's initialisation."""
        self.backbone.init_weights()
        self.text_encoder.init_weights()
        self._weights_ready = True
        self._is_init = True

    # vocabulary ------------------------------------------------------------------------------
    def set_class_names(self, names: Sequence) -> None:
        """Use another class list (one entry per class: a name or synonyms); assigning
        ``class_names`` directly works too (the name-to-class map is keyed by the list itself)."""
        if isinstance(names, (str, bytes)) or not len(names):
            raise ValueError(f'names must be a non-empty list of class names, got {names!r}')
        self.class_names = load_class_names(list(names))
        self._sync_vocabulary()

    def _sync_vocabulary(self) -> None:
        """Make ``num_classes`` and ``name_to_class`` describe the current ``class_names``."""
        key = vocabulary_key(self.class_names)
        if key != getattr(self, '_vocab_key', None):  # the list name_to_class describes
            self.num_classes = len(key)
            self.name_to_class = self.text_encoder.name_to_class_index(
                [list(c) for c in key]).to(self.name_to_class.device)
            self._vocab_key = key

    # features --------------------------------------------------------------------------------
    def class_embeddings(self) -> Tensor:
        """(T, P, E): per prompt, the mean of a class's normalised name embeddings, renormalised.

        With a trainable text tower this runs with gradients in training (every step, as CAT-Seg)
        and is cached by the text encoder in eval mode.
        """
        self._sync_vocabulary()
        emb = self.text_encoder(self.class_names, per_template=True)  # (names, P, E)
        if emb.shape[0] == self.num_classes:
            return emb
        idx = self.name_to_class.to(emb.device)
        out = emb.new_zeros((self.num_classes, *emb.shape[1:])).index_add(0, idx, emb)
        return F.normalize(out, dim=-1)

    def extract_feat(self, inputs: Tensor) -> dict:
        """Backbone outputs: ``content`` (B, E, h, w) and ``intermediates`` [(B, D, h, w)] * 2."""
        return self.backbone(inputs)

    def _head_logits(self, inputs: Tensor) -> Tensor:
        """(B, T, h', w') logits at 1/4 of the (clip-resized) input."""
        if self.clip_size is not None and tuple(inputs.shape[-2:]) != (self.clip_size, ) * 2:
            inputs = F.interpolate(inputs, size=(self.clip_size, ) * 2, mode='bilinear',
                                   align_corners=False)
        feats = self.extract_feat(inputs)
        content = feats['content']
        if self.normalize_content:
            content = F.normalize(content, dim=1)
        text = self.class_embeddings().to(content.dtype)
        return self.decode_head(content, text, feats['intermediates'])

    def encode_decode(self, inputs: Tensor, batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        """Class probabilities (B, T, H, W) of images at their own size."""
        logits = self._head_logits(inputs)
        logits = F.interpolate(logits, size=inputs.shape[-2:], mode='bilinear', align_corners=False)
        return logits.sigmoid()

    def _batched(self, crops: Tensor) -> Tensor:
        return torch.cat([self.encode_decode(crops[i:i + self.batch_size])
                          for i in range(0, crops.shape[0], self.batch_size)])

    def catseg_inference(self, inputs: Tensor) -> Tensor:
        """CAT-Seg's test scheme on (B, 3, H, W) images -> (B, T, *test_size) probabilities."""
        b = inputs.shape[0]
        size, crop = self.test_size, self.crop_size
        img = F.interpolate(inputs, size=size, mode='bilinear', align_corners=False)
        boxes = window_grid(size[0], size[1], crop, self.stride)
        views = [img[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in boxes]
        if self.global_view:
            views.append(F.interpolate(inputs, size=crop, mode='bilinear', align_corners=False))
        crops = torch.stack(views, dim=1).flatten(0, 1)  # (B * views, 3, hc, wc), image-major
        probs = self._batched(crops).view(b, len(views), -1, *crop)
        out = inputs.new_zeros((b, probs.shape[2], *size))
        count = inputs.new_zeros((1, 1, *size))
        for k, (y1, y2, x1, x2) in enumerate(boxes):
            out[:, :, y1:y2, x1:x2] += probs[:, k]
            count[:, :, y1:y2, x1:x2] += 1
        out = out / count
        if self.global_view:
            glob = F.interpolate(probs[:, -1], size=size, mode='bilinear', align_corners=False)
            out = (out + glob) / 2
        return out

    def inference(self, inputs: Tensor, batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        """Probabilities (B, T, h, w): ``test_size`` in 'catseg' mode, the input size in 'whole'."""
        self._ensure_weights()
        if self.mode == 'whole':
            return self.encode_decode(inputs)
        if batch_img_metas is None:
            return self.catseg_inference(inputs)
        # images of a batch were padded to a common size: each image is resized from its own extent
        outs = []
        for i, meta in enumerate(batch_img_metas):
            h, w = meta.get('img_shape', inputs.shape[-2:])[:2]
            outs.append(self.catseg_inference(inputs[i:i + 1, :, :h, :w]))
        return torch.cat(outs)

    # mmseg API ---------------------------------------------------------------------------------
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        gt = torch.stack([s.gt_sem_seg.data for s in data_samples]).long()
        return self.decode_head.loss_by_feat(self._head_logits(inputs), gt)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        return self._head_logits(inputs)

    @torch.no_grad()
    def predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        metas = [s.metainfo for s in data_samples] if data_samples is not None else None
        return self.postprocess_result(self.inference(inputs, metas), data_samples)

    @staticmethod
    def predict_from_probabilities(probs: Tensor) -> Tensor:
        """(T, H, W) probabilities -> (1, H, W) labels (argmax)."""
        return probs.argmax(0, keepdim=True)

    def _restored_probs(self, seg_probs: Tensor, meta: dict) -> Tensor:
        """One image's (1, T, h, w) probabilities with padding removed and flips undone."""
        p = seg_probs
        if self.mode == 'whole':  # the preprocessor's padding is still there
            h, w = p.shape[-2:]
            left, right, top, bottom = meta.get('img_padding_size',
                                                meta.get('padding_size', [0, 0, 0, 0]))
            p = p[:, :, top:h - bottom, left:w - right]
        if meta.get('flip', False):
            p = p.flip(dims=(3, ) if meta.get('flip_direction') == 'horizontal' else (2, ))
        return p

    def postprocess_result(self, seg_probs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        """Undo flips, resize to the original size; ``seg_logits`` holds the sigmoid probabilities."""
        b = seg_probs.shape[0]
        only_pred = data_samples is None
        if only_pred:
            data_samples = [SegDataSample() for _ in range(b)]
        for i in range(b):
            p = seg_probs[i:i + 1]
            if not only_pred:
                meta = data_samples[i].metainfo
                p = F.interpolate(self._restored_probs(p, meta), size=tuple(meta['ori_shape'][:2]),
                                  mode='bilinear', align_corners=False)
            data_samples[i].set_data({
                'seg_logits': PixelData(data=p[0]),
                'pred_sem_seg': PixelData(data=self.predict_from_probabilities(p[0])),
            })
        return data_samples

    @torch.no_grad()
    def predict_probability_maps(self, inputs: Tensor, data_samples: OptSampleList = None
                                 ) -> List[ResizedClassMaps]:
        """Per image, the class probabilities at the original size computed on demand
        (:class:`~.probability_maps.ResizedClassMaps`, used by the inferencer): holds the
        (T, h, w) maps at the test size instead of (T, H, W)."""
        metas = [s.metainfo for s in data_samples] if data_samples is not None else None
        seg_probs = self.inference(inputs, metas)
        maps = []
        for i in range(seg_probs.shape[0]):
            p = seg_probs[i:i + 1]
            if metas is None:
                maps.append(ResizedClassMaps(p[0], tuple(p.shape[-2:])))
                continue
            p = self._restored_probs(p, metas[i])
            maps.append(ResizedClassMaps(p[0], tuple(int(v) for v in metas[i]['ori_shape'][:2])))
        return maps
