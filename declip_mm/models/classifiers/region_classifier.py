"""Zero-shot region classification with a (De)CLIP image tower (protocol: README, region classification).

The official DeCLIP / CLIPSelf evaluator (``src/training/zero_shot.py``) classifies every GT region
of COCO-panoptic val2017 against the class embeddings with three region features::

    predict(inputs, data_samples)
      ├─ backbone(imgs)['content']        (B, E, g, g) content map of the configured attn_mode,
      │                                   not normalised (the letterbox S -> g = S / patch tokens)
      ├─ rois:     roi_align 1x1 (spatial_scale 1, sampling_ratio -1, aligned) of the content map
      │            over the region box in token units, L2-normalised
      ├─ maskpool: mean of the content map over the tokens of the region mask, L2-normalised
      ├─ crops:    backbone.encode_image(crop), the CLIP CLS embedding of the region crop
      │            (things: box enlarged 1.5x), L2-normalised
      └─ logits = feature @ class_embeddings.T -> top-k class indices per region

The class embeddings come from the text encoder (its template set; ``'vild_hand_craft'`` is the
official one) for the dataset's class names, carried in each sample's metainfo; the text encoder
caches them per class list, so they are built once per model, and ``embedding_cache_dir`` keeps them
on disk across runs (keyed by the text weights file, templates and names).
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor

from ...registry import MODELS
from ..losses.content_distill_loss import region_features

__all__ = ['DeCLIPRegionClassifier', 'mask_pool', 'REGION_FEATURES']

REGION_FEATURES = ('rois', 'maskpool', 'crops')


def mask_pool(content: Tensor, masks: Tensor, batch_index: Tensor) -> Tensor:
    """Mean of the content map under each mask, L2-normalised (the official ``mask_pool``).

    Args:
        content (Tensor): (B, E, g, g) un-normalised content map.
        masks (Tensor): (K, g, g) bool masks at the token grid.
        batch_index (Tensor): (K,) image of each mask.

    Returns:
        Tensor: (K, E). A mask with no token gives a zero row (the official ``sum / (n + 1e-12)``).
    """
    b, e = content.shape[:2]
    flat = content.flatten(2)  # (B, E, N)
    m = masks.flatten(1).to(content.dtype)  # (K, N)
    out = content.new_zeros(m.shape[0], e)
    for i in range(b):  # per image: (K_i, N) @ (N, E), no (K, E, N) intermediate
        sel = batch_index == i
        if sel.any():
            out[sel] = m[sel] @ flat[i].T
    out = out / (m.sum(1, keepdim=True) + 1e-12)
    return F.normalize(out, dim=-1)


@MODELS.register_module()
class DeCLIPRegionClassifier(BaseModel):
    """Classify GT regions with roi_align / mask-pooled content features and crop CLS embeddings.

    Args:
        backbone (dict, optional): ``DeCLIPVisionTransformer`` config. ``None`` when the tower is
            lent by another model at each call (the DeCLIP distiller's validation).
        text_encoder (dict): ``DeCLIPTextEncoder`` config (``templates='vild_hand_craft'``).
        features (sequence[str]): any of ``'rois'``, ``'maskpool'``, ``'crops'``. Defaults to all.
        topk (int): class indices kept per region (the metric reads top-1 and top-5). Defaults to 5.
        crop_batch_size (int): crops per ``encode_image`` call. Defaults to 64.
        embedding_cache_dir (str, optional): folder of cached class embeddings (one ``.pt`` file per
            text weights file, template set and class list; the 133 x 63 prompts take ~1-2 min on a
            CPU). Random text towers (no ``pretrained``, or before ``init_weights``) are never
            cached. Defaults to None.
        data_preprocessor (dict): defaults to ``RegionDataPreprocessor``.
    """

    #: every weight comes from the towers' pretrained files: evaluated without a model checkpoint
    #: (declip_mm.apis.strict_checkpoint.check_trained_head)
    training_free = True

    def __init__(self,
                 backbone: Optional[dict],
                 text_encoder: dict,
                 features: Sequence[str] = REGION_FEATURES,
                 topk: int = 5,
                 crop_batch_size: int = 64,
                 embedding_cache_dir: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        data_preprocessor = MODELS.build(data_preprocessor or dict(type='RegionDataPreprocessor')) \
            if not isinstance(data_preprocessor, torch.nn.Module) else data_preprocessor
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        bad = [f for f in features if f not in REGION_FEATURES]
        if bad or not features:
            raise ValueError(f'features must be a non-empty subset of {REGION_FEATURES}, got '
                             f'{tuple(features)}')
        self.features = tuple(features)
        self.backbone = MODELS.build(backbone) if backbone is not None else None
        self.text_encoder = MODELS.build(text_encoder)
        self.topk = int(topk)
        self.crop_batch_size = int(crop_batch_size)
        self.embedding_cache_dir = embedding_cache_dir
        self._disk_hits: Dict[tuple, Tensor] = {}  # embeddings read from the disk cache
        # the tower is left trainable although nothing trains it (predict runs under no_grad):
        # DistributedDataParallel refuses a module without any parameter that requires a gradient

    def init_weights(self) -> None:
        """Load the local weights of the tower and of the text encoder."""
        if self.backbone is not None:
            self.backbone.init_weights()
        self.text_encoder.init_weights()
        self._is_init = True

    # features ----------------------------------------------------------------------------------
    def _cache_file(self, names: Sequence[str]) -> Optional[str]:
        te = self.text_encoder
        if self.embedding_cache_dir is None or te.pretrained is None or not te.is_init:
            return None  # random, or not loaded yet: nothing worth keeping
        st = os.stat(te.pretrained)
        key = json.dumps([te.model_name, osp.realpath(te.pretrained), st.st_size, st.st_mtime_ns,
                          list(te.templates), list(names)], sort_keys=True, default=str)
        return osp.join(self.embedding_cache_dir,
                        f'class_emb_{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt')

    def class_embeddings(self, names: Sequence[str]) -> Tensor:
        """(C, E) L2-normalised class embeddings (cached by the text encoder per name list, and on
        disk with ``embedding_cache_dir``)."""
        if tuple(names) in self._disk_hits:
            return self._disk_hits[tuple(names)]
        path = self._cache_file(names)
        if path is not None and osp.isfile(path):
            emb = torch.load(path, map_location='cpu', weights_only=True)['embeddings']
            self._disk_hits[tuple(names)] = emb
            return emb
        emb = self.text_encoder(list(names))
        if path is not None:
            os.makedirs(self.embedding_cache_dir, exist_ok=True)
            tmp = f'{path}.{os.getpid()}.tmp'  # processes may race: write aside, rename atomically
            torch.save({'embeddings': emb.detach().cpu(), 'names': list(names)}, tmp)
            os.replace(tmp, path)
        return emb

    def region_features(self, inputs: Dict[str, Tensor], backbone=None) -> Dict[str, Tensor]:
        """The configured region features of a batch, each (K, E) and L2-normalised.

        Args:
            inputs (dict): ``RegionDataPreprocessor`` output (``imgs``, ``rois``, ``masks``,
                ``batch_index``, ``crops``).
            backbone (nn.Module, optional): the tower to use instead of ``self.backbone``.
        """
        bb = backbone if backbone is not None else self.backbone
        if bb is None:
            raise ValueError('DeCLIPRegionClassifier has no backbone: build it with one or pass '
                             'the tower to use')
        feats: Dict[str, Tensor] = {}
        if {'rois', 'maskpool'} & set(self.features):
            content = bb(inputs['imgs'])['content'].float()
            if inputs['masks'].numel() and inputs['masks'].shape[-2:] != content.shape[-2:]:
                raise ValueError(f'region masks are {tuple(inputs["masks"].shape[-2:])} but the '
                                 f'content map is {tuple(content.shape[-2:])}: LoadPanopticRegions '
                                 'needs the image_size / patch_size of the backbone')
            if 'rois' in self.features:
                feats['rois'] = region_features(content, inputs['rois'])
            if 'maskpool' in self.features:
                feats['maskpool'] = mask_pool(content, inputs['masks'], inputs['batch_index'])
        if 'crops' in self.features:
            if 'crops' not in inputs:
                raise ValueError("the 'crops' feature needs LoadPanopticRegions(with_crops=True)")
            crops = inputs['crops']
            outs = [bb.encode_image(crops[i:i + self.crop_batch_size], normalize=True).float()
                    for i in range(0, crops.shape[0], self.crop_batch_size)]
            feats['crops'] = torch.cat(outs) if outs else crops.new_zeros(0, bb.embed_dim)
        return feats

    @torch.no_grad()
    def predict(self, inputs: Dict[str, Tensor], data_samples: list, backbone=None) -> List[dict]:
        """Top-k class indices of every region of every image.

        Returns one dict per image: ``img_id``, ``seg_ids``, ``labels``, ``is_thing`` (K,) and
        ``pred_<feature>`` (K, topk) long class indices, best first; a region whose feature is zero
        (a mask with no token at the grid) predicts -1 (always wrong, instead of an arbitrary tie).
        """
        names = data_samples[0].metainfo.get('classes') if data_samples else None
        if not names:
            raise ValueError("region samples need metainfo['classes'] (COCOPanopticRegionDataset "
                             'provides them)')
        emb = self.class_embeddings(names).to(inputs['imgs'].device).float()
        k = min(self.topk, emb.shape[0])
        feats = self.region_features(inputs, backbone)
        preds = {}
        for name, f in feats.items():
            idx = (f @ emb.T).topk(k, dim=1).indices if f.shape[0] else f.new_zeros(0, k).long()
            idx[f.abs().sum(1) == 0] = -1
            preds[name] = idx.cpu()
        out, start = [], 0
        for s in data_samples:
            n = int(s.labels.shape[0])
            res = dict(img_id=int(s.metainfo['img_id']), seg_ids=s.seg_ids.cpu(),
                       labels=s.labels.cpu(), is_thing=s.is_thing.cpu())
            for name, p in preds.items():
                res[f'pred_{name}'] = p[start:start + n]
            out.append(res)
            start += n
        return out

    def predict_step(self, data: dict, backbone=None) -> List[dict]:
        """Preprocess a dataloader batch and predict (used by ``val_step`` / ``test_step``, and by
        the DeCLIP distiller with its student as ``backbone``)."""
        data = self.data_preprocessor(data, False)
        return self.predict(data['inputs'], data['data_samples'], backbone=backbone)

    def val_step(self, data: dict) -> List[dict]:
        return self.predict_step(data)

    def test_step(self, data: dict) -> List[dict]:
        return self.predict_step(data)

    def forward(self, inputs: Dict[str, Tensor], data_samples: Optional[list] = None,
                mode: str = 'predict'):
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.region_features(inputs)
        raise ValueError(f'DeCLIPRegionClassifier has no {mode!r} mode (evaluation only)')

