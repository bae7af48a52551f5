"""Training-free open-vocabulary segmentation on DeCLIP content features (docs/method.md §4).

The protocol of SCLIP / ClearCLIP / NACLIP / DeCLIP's evaluator::

    predict(inputs, data_samples)
      └─ inference                  'slide' (batched windows) or 'whole'
           └─ _window_logits        pad each window to a multiple of the patch (split evenly, as
                                    SCLIP's compute_padsize), backbone -> content, L2-normalise per
                                    token, cosine with the name embeddings, bilinear to the padded
                                    window size, crop the padding back
           (overlapping windows are averaged: sum of window logits / count of windows per pixel;
            the resize-and-add of all windows is one separable matrix product, window_accumulate)
      └─ postprocess_result         remove preprocessor padding, undo flips, bilinear to the original
                                    size, x logit_scale, softmax over *names*, max over each class's
                                    names, optional area threshold, argmax, top prob < prob_thd -> 0
                                    (in row strips unless keep_seg_logits: memory ~ pixels)
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.structures import SegDataSample
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, OptSampleList, SampleList
from torch import Tensor

from ...datasets.class_names import load_class_names
from ...registry import MODELS
from ..text.embedding_cache import cached_embeddings, embedding_cache_file
from ..text.vocabulary_key import vocabulary_key
from .lazy_weights import LazyTowerWeightsMixin
from .probability_maps import NameSoftmaxMaps
from .strip_postprocess import labels_in_strips
from .window_accumulate import WindowCanvas

__all__ = ['DeCLIPZeroShotSegmentor', 'window_grid', 'center_pad_size']


def window_grid(h: int, w: int, crop: Tuple[int, int], stride: Tuple[int, int]
                ) -> List[Tuple[int, int, int, int]]:
    """Sliding windows (y1, y2, x1, x2) of mmseg's ``slide_inference`` (last window flush with the
    border; a window never exceeds the image, so an image smaller than the crop is one window)."""
    (hc, wc), (hs, ws) = crop, stride
    h_grids = max(h - hc + hs - 1, 0) // hs + 1
    w_grids = max(w - wc + ws - 1, 0) // ws + 1
    boxes = []
    for i in range(h_grids):
        for j in range(w_grids):
            y1, x1 = i * hs, j * ws
            y2, x2 = min(y1 + hc, h), min(x1 + wc, w)
            boxes.append((max(y2 - hc, 0), y2, max(x2 - wc, 0), x2))
    return boxes


def center_pad_size(h: int, w: int, patch: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding to the next multiple of the patch, split evenly
    (the smaller half first), as SCLIP's ``compute_padsize``."""
    lr = (-w) % patch[1]
    tb = (-h) % patch[0]
    return lr // 2, lr - lr // 2, tb // 2, tb - tb // 2


@MODELS.register_module()
class DeCLIPZeroShotSegmentor(LazyTowerWeightsMixin, BaseSegmentor):
    """Training-free segmentor: cosine of DeCLIP content features with class-name embeddings.

    Args:
        backbone (dict): a ``DeCLIPVisionTransformer`` config.
        text_encoder (dict): a ``DeCLIPTextEncoder`` config.
        class_names (str | list): class-name file (one class per line, synonyms separated by
            ``name_separator``) or a list with one entry (name or synonyms) per class.
        name_separator (str): synonym separator in the file. Defaults to ``';'``.
        logit_scale (float): multiplies cosines before the softmax over names. Defaults to 40.
        prob_thd (float): pixels whose top class probability is below it become class 0.
        area_thd (float, optional): classes (except 0) predicted on less than this fraction of the
            non-background pixels are suppressed (ClearCLIP / NACLIP option). Defaults to None.
        test_cfg (dict): ``mode`` ('slide' | 'whole'), ``crop_size`` (int | (h, w)), ``stride``,
            ``batch_size`` (windows per backbone call, default 16), ``keep_seg_logits`` (also return
            the (num_classes, H, W) probabilities as ``seg_logits``; default False: only the labels,
            computed in row strips so that memory grows with the pixels alone; ``tools/test.py
            --out`` and the TTA wrapper turn it on), ``postprocess_max_bytes`` (buffers of the
            post-processing strips, which sets their height; default None: 32 MiB on one thread,
            128 MiB on several, see ``strip_postprocess``), ``postprocess_max_elems`` (floats of
            one strip instead; overrides the bytes if set).
        data_preprocessor (dict): mmseg ``SegDataPreProcessor`` config (CLIP mean/std, BGR->RGB).
        embedding_cache_dir (str, optional): folder keeping the class-name embeddings on disk per
            (model, text weights file, templates, names); never for random text weights. Defaults
            to None.
        align_corners (bool): of the bilinear resizes. Defaults to False.
        train_cfg (dict, optional): unused (training-free); accepted for mmseg's ``init_model``.
        pretrained (str, optional): overrides ``backbone.pretrained`` (mmseg convention).
    """

    #: every weight comes from the towers' pretrained files: evaluated without a model checkpoint
    #: (declip_mm.apis.strict_checkpoint.check_trained_head)
    training_free = True

    def __init__(self,
                 backbone: ConfigType,
                 text_encoder: ConfigType,
                 class_names: Union[str, Sequence],
                 name_separator: str = ';',
                 logit_scale: float = 40.0,
                 prob_thd: float = 0.0,
                 area_thd: Optional[float] = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 embedding_cache_dir: Optional[str] = None,
                 align_corners: bool = False,
                 train_cfg: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if isinstance(data_preprocessor, dict):  # mmseg's registry: works without a default scope
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if pretrained is not None:  # mmseg convention: a segmentor-level pretrained is the backbone's
            backbone = dict(backbone, pretrained=pretrained)
        self.backbone = MODELS.build(backbone)
        self.text_encoder = MODELS.build(text_encoder)
        self.class_names = load_class_names(class_names, name_separator)
        self.num_classes = len(self.class_names)
        self.register_buffer('name_to_class',
                             self.text_encoder.name_to_class_index(self.class_names),
                             persistent=False)
        self.register_buffer('text_embeddings', torch.empty(0), persistent=False)
        self._vocab_key = vocabulary_key(self.class_names)  # the list name_to_class describes
        self._emb_key = None  # the (list, templates) text_embeddings were computed for
        self.logit_scale = float(logit_scale)
        self.prob_thd = float(prob_thd)
        self.area_thd = None if area_thd is None else float(area_thd)
        self.align_corners = align_corners
        test_cfg = dict(test_cfg or {})
        self.mode = test_cfg.get('mode', 'slide')
        if self.mode not in ('slide', 'whole'):
            raise ValueError(f"test_cfg.mode must be 'slide' or 'whole', got {self.mode!r}")
        self.crop_size = self._pair(test_cfg.get('crop_size', 336))
        self.stride = self._pair(test_cfg.get('stride', 112))
        self.batch_size = int(test_cfg.get('batch_size', 16))
        if self.batch_size < 1:
            raise ValueError('test_cfg.batch_size must be >= 1')
        self.keep_seg_logits = bool(test_cfg.get('keep_seg_logits', False))
        max_elems = test_cfg.get('postprocess_max_elems')
        self.postprocess_max_elems = None if max_elems is None else int(max_elems)
        max_bytes = test_cfg.get('postprocess_max_bytes')
        self.postprocess_max_bytes = None if max_bytes is None else int(max_bytes)
        if self.postprocess_max_elems is not None and self.postprocess_max_elems < 1:
            raise ValueError('test_cfg.postprocess_max_elems must be >= 1')
        if self.postprocess_max_bytes is not None and self.postprocess_max_bytes < 1:
            raise ValueError('test_cfg.postprocess_max_bytes must be >= 1')
        self.test_cfg = test_cfg
        self.embedding_cache_dir = embedding_cache_dir
        # set by tools/eval_all.py: a SharedFeatureCache reusing the features of identical windows
        self.feature_cache = None
        self._text_from_file = False  # text weights are those of text_encoder.pretrained
        self._init_lazy_weights()

    def _on_state_dict_loaded(self) -> None:
        self._text_from_file = False  # a state dict replaced the text weights: not the file's
        self._emb_key = None  # and the embeddings of the former weights are stale

    # vocabulary ------------------------------------------------------------------------------
    def set_class_names(self, names: Sequence) -> None:
        """Use another class list (a list with one entry per class: a name or synonyms).

        Assigning ``class_names`` directly works too: the name-to-class map, ``num_classes`` and
        the text embeddings are keyed by the list itself and refreshed on the next use.
        """
        if isinstance(names, (str, bytes)) or not len(names):
            raise ValueError(f'names must be a non-empty list of class names, got {names!r}')
        self.class_names = load_class_names(list(names))
        self._sync_vocabulary()

    def _sync_vocabulary(self) -> None:
        """Make ``num_classes`` and ``name_to_class`` describe the current ``class_names``."""
        key = vocabulary_key(self.class_names)
        if key != self._vocab_key:
            self.num_classes = len(key)
            self.name_to_class = self.text_encoder.name_to_class_index(
                [list(c) for c in key]).to(self.name_to_class.device)
            self._vocab_key = key

    # weights ---------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Load the backbone's and the text encoder's local ``pretrained`` files."""
        self.backbone.init_weights()
        self.text_encoder.init_weights()
        self.text_embeddings = torch.empty(0, device=self.text_embeddings.device)
        self._weights_ready = True
        self._text_from_file = self.text_encoder.pretrained is not None
        self._is_init = True

    def class_embeddings(self) -> Tensor:
        """(num_names, E) normalised name embeddings, computed on first use on the model's device
        and kept for this class list (recomputed when ``class_names`` or the templates change)."""
        dev = next(self.backbone.parameters()).device
        self._sync_vocabulary()
        te = self.text_encoder
        key = (self._vocab_key, tuple(te.templates))  # keyed by the list itself, not its length
        if (self.text_embeddings.numel() == 0 or self.text_embeddings.device != dev
                or self._emb_key != key):
            path = embedding_cache_file(
                self.embedding_cache_dir, te.model_name,
                te.pretrained if self._text_from_file else None, te.templates, self.class_names)
            with torch.no_grad():
                emb = cached_embeddings(path, lambda: te(self.class_names))
            self.text_embeddings = emb.to(dev)
            self._emb_key = key
        return self.text_embeddings

    # features --------------------------------------------------------------------------------
    def window_multiple(self) -> Tuple[int, int]:
        """(h, w) multiple a window is zero-padded to (centred): the backbone's patch."""
        return self.backbone.patch_size

    def extract_feat(self, inputs: Tensor) -> Tensor:
        """L2-normalised content features (B, E, h, w) (through ``feature_cache`` when set)."""
        if self.feature_cache is not None:
            return self.feature_cache.get(
                inputs, lambda x: F.normalize(self.backbone(x)['content'], dim=1), self.backbone)
        return F.normalize(self.backbone(inputs)['content'], dim=1)

    def encode_decode(self, inputs: Tensor, batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        """Cosine logits over names (B, num_names, H, W) of images whose size fits the patch."""
        feats = self.extract_feat(inputs)
        text = self.class_embeddings().to(feats.dtype)
        logits = torch.einsum('bchw,nc->bnhw', feats, text)
        return F.interpolate(logits, size=inputs.shape[-2:], mode='bilinear',
                             align_corners=self.align_corners)

    def _window_logits(self, crops: Tensor) -> Tensor:
        """Logits of windows of one size: pad to the patch multiple, run in batches, crop back."""
        h, w = crops.shape[-2:]
        pad = center_pad_size(h, w, self.window_multiple())
        if any(pad):
            crops = F.pad(crops, pad)
        outs = [self.encode_decode(crops[i:i + self.batch_size])
                for i in range(0, crops.shape[0], self.batch_size)]
        logits = torch.cat(outs)
        return logits[:, :, pad[2]:pad[2] + h, pad[0]:pad[0] + w]

    def slide_inference(self, inputs: Tensor, batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        """Overlap-averaged window logits (B, num_names, H, W).

        Windows run through the backbone in batches of ``batch_size``. Their logits are not resized
        one by one: :class:`~.window_accumulate.WindowCanvas` sums the height-resized maps per
        window column and writes the resized sum with one matrix product (the bilinear resize is
        linear and separable), the same values as resizing and adding each window up to the order
        of the float additions; then the sum is divided by the windows per pixel.
        """
        b, _, h, w = inputs.shape
        boxes = window_grid(h, w, self.crop_size, self.stride)
        hc, wc = boxes[0][1] - boxes[0][0], boxes[0][3] - boxes[0][2]
        pad = center_pad_size(hc, wc, self.window_multiple())
        text = self.class_embeddings()
        count = inputs.new_zeros((1, 1, h, w))
        for y1, y2, x1, x2 in boxes:
            count[:, :, y1:y2, x1:x2] += 1
        canvas = None
        jobs = [(i, k) for i in range(b) for k in range(len(boxes))]  # image-major
        for j0 in range(0, len(jobs), self.batch_size):
            chunk = jobs[j0:j0 + self.batch_size]
            crops = torch.stack([inputs[i, :, y1:y2, x1:x2] for i, k in chunk
                                 for y1, y2, x1, x2 in (boxes[k], )])
            if any(pad):
                crops = F.pad(crops, pad)
            feats = self.extract_feat(crops)
            cos = torch.einsum('bchw,nc->bnhw', feats, text.to(feats.dtype))
            if canvas is None:
                canvas = WindowCanvas(boxes, b, text.shape[0], cos.shape[-2:], pad,
                                      self.align_corners, inputs)
            for n, (i, k) in enumerate(chunk):
                canvas.add(i, boxes[k], cos[n])
        preds = canvas.finish(inputs.new_empty((b, text.shape[0], h, w)))
        return preds.div_(count)  # in place: one (B, names, H, W) tensor

    def whole_inference(self, inputs: Tensor, batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        return self._window_logits(inputs)

    def inference(self, inputs: Tensor, batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        self._ensure_weights()
        if self.mode == 'slide':
            return self.slide_inference(inputs, batch_img_metas)
        return self.whole_inference(inputs, batch_img_metas)

    # mmseg API ---------------------------------------------------------------------------------
    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        raise RuntimeError('DeCLIPZeroShotSegmentor is training-free and has no loss; train the '
                           'backbone with DeCLIPDistiller (configs/declip/) instead')

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        return self.inference(inputs)

    @torch.no_grad()
    def predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        if data_samples is not None:
            metas = [s.metainfo for s in data_samples]
        else:
            metas = [dict(ori_shape=inputs.shape[2:], img_shape=inputs.shape[2:],
                          pad_shape=inputs.shape[2:], padding_size=[0, 0, 0, 0])] * inputs.shape[0]
        return self.postprocess_result(self.inference(inputs, metas), data_samples)

    def class_probabilities(self, name_logits: Tensor) -> Tensor:
        """(num_names, H, W) cosines -> (num_classes, H, W) probabilities: softmax over names of
        ``logit_scale * cosine``, then the max over each class's names."""
        probs = (name_logits * self.logit_scale).softmax(dim=0)
        if probs.shape[0] == self.num_classes:
            return probs
        idx = self.name_to_class.to(probs.device)
        out = probs.new_full((self.num_classes, *probs.shape[1:]), -1.0)
        return out.scatter_reduce(0, idx.view(-1, 1, 1).expand_as(probs), probs, reduce='amax',
                                  include_self=True)

    def predict_from_probabilities(self, probs: Tensor) -> Tensor:
        """(num_classes, H, W) probabilities -> (1, H, W) labels with area_thd and prob_thd."""
        if self.area_thd is not None:
            pred = probs.argmax(0)
            area = torch.bincount(pred.flatten(), minlength=self.num_classes)[1:].to(probs.dtype)
            keep = (area > self.area_thd * area.sum()).to(probs.dtype)
            probs = torch.cat([probs[:1], probs[1:] * keep.view(-1, 1, 1)])
        pred = probs.argmax(0, keepdim=True)
        pred[probs.max(0, keepdim=True)[0] < self.prob_thd] = 0
        return pred

    def _restored_logits(self, seg_logits: Tensor, data_samples: OptSampleList, i: int
                         ) -> Tuple[Tensor, Tuple[int, int]]:
        """Image ``i``'s (1, num_names, h, w) logits with the preprocessor's padding removed and
        flips undone, and the original size (H, W) they are resized to."""
        logit = seg_logits[i:i + 1]
        h, w = seg_logits.shape[-2:]
        if data_samples is None:
            return logit, (h, w)
        meta = data_samples[i].metainfo
        pad = meta.get('img_padding_size', meta.get('padding_size', [0, 0, 0, 0]))
        left, right, top, bottom = pad
        logit = logit[:, :, top:h - bottom, left:w - right]
        if meta.get('flip', False):
            dims = (3, ) if meta.get('flip_direction') == 'horizontal' else (2, )
            logit = logit.flip(dims=dims)
        return logit, tuple(int(v) for v in meta['ori_shape'][:2])

    def postprocess_result(self, seg_logits: Tensor, data_samples: OptSampleList = None) -> SampleList:
        """Fill ``pred_sem_seg`` (and ``seg_logits``, the class probabilities, when
        ``keep_seg_logits``) at the original image size.

        Without ``keep_seg_logits`` the labels are computed in row strips
        (:func:`labels_in_strips`), so the memory grows with the pixels only, not pixels x classes.
        """
        b = seg_logits.shape[0]
        only_pred = data_samples is None
        if only_pred:
            data_samples = [SegDataSample() for _ in range(b)]
        for i in range(b):
            logit, out_hw = self._restored_logits(seg_logits, None if only_pred else data_samples, i)
            if not self.keep_seg_logits:
                pred = labels_in_strips(
                    logit[0], out_hw, self.logit_scale, self.name_to_class, self.num_classes,
                    self.prob_thd, self.area_thd, self.align_corners, self.postprocess_max_elems,
                    self.postprocess_max_bytes)
                data_samples[i].set_data({'pred_sem_seg': PixelData(data=pred)})
                continue
            if not only_pred:
                logit = F.interpolate(logit, size=out_hw, mode='bilinear',
                                      align_corners=self.align_corners)
            probs = self.class_probabilities(logit[0])
            data_samples[i].set_data({
                'seg_logits': PixelData(data=probs),
                'pred_sem_seg': PixelData(data=self.predict_from_probabilities(probs)),
            })
        return data_samples

    @torch.no_grad()
    def predict_probability_maps(self, inputs: Tensor, data_samples: OptSampleList = None
                                 ) -> List[NameSoftmaxMaps]:
        """Per image, its class probabilities at the original size, computed on demand in row
        strips (:class:`~.probability_maps.NameSoftmaxMaps`, used by the inferencer): holds the
        (num_names, h, w) cosines at the network's resolution instead of (num_classes, H, W)."""
        if data_samples is not None:
            metas = [s.metainfo for s in data_samples]
        else:
            metas = [dict(ori_shape=inputs.shape[2:], img_shape=inputs.shape[2:],
                          pad_shape=inputs.shape[2:], padding_size=[0, 0, 0, 0])] * inputs.shape[0]
        seg_logits = self.inference(inputs, metas)
        maps = []
        for i in range(seg_logits.shape[0]):
            logit, out_hw = self._restored_logits(seg_logits, data_samples, i)
            maps.append(NameSoftmaxMaps(logit[0], out_hw, self.logit_scale, self.name_to_class,
                                        self.num_classes, self.align_corners,
                                        self.postprocess_max_elems, self.postprocess_max_bytes))
        return maps
