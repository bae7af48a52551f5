"""Regions of a COCO-panoptic image for region classification (protocol: README, region classification).

The protocol is the one of the official DeCLIP / CLIPSelf evaluator (``src/training/data.py``,
``COCOPanopticDataset``; ``src/training/zero_shot.py``), re-implemented here:

* segment ids come from the panoptic PNG, ``id = R + 256 G + 256² B``;
* **things**: the region box is the GT ``bbox`` ``(x, y, x + w, y + h)`` of the json; the *crop* box
  is that box enlarged 1.5x about its centre and clipped to the image;
* **stuff**: the region box and the crop box are the mask box of the official ``mask2box``,
  ``(x_min, y_min, x_max, y_max)`` with the *inclusive* pixel maxima, so ``w = x_max - x_min`` (one
  pixel short of the pixel extent, kept as the official code for comparable numbers);
* a region whose ``w * h`` is ``< min_size²`` or ``> max_size²`` (8 and 1024) is skipped; only the
  first ``max_regions`` (100) segments of an image are considered, as the official ``max_anns``;
* the region box in token units is ``box * s / patch`` with ``s = image_size / max(H, W)`` the
  letterbox scale (the official normalised box times the feature-map size);
* the mask at the token grid ``g = image_size // patch``: the full-resolution binary mask resized
  (bicubic, *no* antialias, ``align_corners=False``: torchvision's tensor ``resize`` with
  ``antialias=None``) to ``round(H g / max(H, W)) x round(W g / max(H, W))``, zero-padded
  bottom/right to ``g x g`` and thresholded at ``> 0`` (the official ``ResizeLongest`` on the mask);
* the crop: PIL ``crop`` of the original image at the (float) crop box, longest side resized
  (bicubic) to ``crop_size``, zero-padded *centred* to a square, CLIP-normalised (the official
  ``ResizeMaxSize`` crop transform).
"""
from __future__ import annotations

import io
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement
from PIL import Image

from ..registry import TRANSFORMS
from .image_check import checked_bytes
from .transforms import CLIP_MEAN, CLIP_STD, _normalize, letterbox

__all__ = ['LoadPanopticRegions', 'PackRegionInputs', 'rgb_to_id', 'mask_box', 'thing_crop_box',
           'mask_to_grid']


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Panoptic segment ids of an (H, W, 3) uint8 PNG: ``R + 256 G + 256² B`` (panopticapi)."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def mask_box(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """The official ``mask2box``: ``(x_min, y_min, x_max, y_max)`` with inclusive maxima."""
    ys, xs = np.where(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def thing_crop_box(bbox: Sequence[float], img_w: int, img_h: int, scale: float = 1.5
                   ) -> Tuple[float, float, float, float]:
    """The GT box ``(x, y, w, h)`` enlarged ``scale`` times about its centre, clipped to the image."""
    x, y, w, h = (float(v) for v in bbox)
    cx, cy, half = x + 0.5 * w, y + 0.5 * h, 0.5 * scale
    return (max(cx - w * half, 0.0), max(cy - h * half, 0.0), min(cx + w * half, float(img_w)),
            min(cy + h * half, float(img_h)))


def mask_to_grid(mask: np.ndarray, grid: int) -> torch.Tensor:
    """(H, W) binary mask -> (grid, grid) bool at the token grid (see the module doc)."""
    h, w = mask.shape
    s = grid / float(max(h, w))
    nh, nw = round(h * s), round(w * s)
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    r = F.interpolate(t, size=(nh, nw), mode='bicubic', align_corners=False, antialias=False)
    out = torch.zeros(grid, grid, dtype=torch.bool)
    out[:nh, :nw] = r[0, 0] > 0.0
    return out


@TRANSFORMS.register_module()
class LoadPanopticRegions(BaseTransform):
    """Read the image and the panoptic PNG; build the regions of one image.

    Expects ``results`` from :class:`COCOPanopticRegionDataset`: ``img_path``, ``seg_map_path``,
    ``img_id`` and ``segments`` (dicts with ``id``, ``label``, ``is_thing``, ``bbox``).

    Adds ``img`` (H, W, 3) RGB uint8, ``ori_shape`` and, for the K kept regions:
    ``region_boxes`` (K, 4) float32 ``(x1, y1, x2, y2)`` in token units, ``region_masks``
    (K, g, g) bool, ``region_crops`` (K, 3, crop_size, crop_size) normalised, ``region_labels``,
    ``region_is_thing``, ``region_seg_ids`` (K,) int64 and ``region_areas`` (K,) the filtered w·h.

    Args:
        image_size (int): side of the letterbox the backbone sees. Defaults to 560.
        patch_size (int): the backbone's patch size (token grid ``image_size // patch_size``).
        crop_size (int): side of the crops for the CLS baseline (224 for B/16, 336 for L/14-336).
        min_size (float): regions with ``w * h < min_size²`` are skipped. Defaults to 8.
        max_size (float): regions with ``w * h > max_size²`` are skipped. Defaults to 1024.
        max_regions (int): only the first ``max_regions`` segments of an image. Defaults to 100.
        thing_crop_scale (float): enlargement of thing crop boxes. Defaults to 1.5.
        with_crops (bool): build the crops (needed only by the ``crops`` feature). Defaults to True.
    """

    def __init__(self, image_size: int = 560, patch_size: int = 16, crop_size: int = 224,
                 min_size: float = 8, max_size: float = 1024, max_regions: int = 100,
                 thing_crop_scale: float = 1.5, with_crops: bool = True,
                 mean=CLIP_MEAN, std=CLIP_STD) -> None:
        if image_size % patch_size:
            raise ValueError(f'image_size {image_size} must be a multiple of patch_size {patch_size}')
        self.image_size, self.patch_size = int(image_size), int(patch_size)
        self.grid = self.image_size // self.patch_size
        self.crop_size = int(crop_size)
        self.min_size, self.max_size = float(min_size), float(max_size)
        self.max_regions = int(max_regions)
        self.thing_crop_scale = float(thing_crop_scale)
        self.with_crops = bool(with_crops)
        self.mean, self.std = tuple(mean), tuple(std)

    @staticmethod
    def _read(path: str, what: str, mode: str) -> np.ndarray:
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} {path} not found')
        with open(path, 'rb') as f:
            data, _ = checked_bytes(f.read(), path)  # a truncated JPEG: warned, decoded partly grey
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert(mode))

    def region_of(self, seg: dict, ids: np.ndarray) -> Tuple[Tuple[float, ...], Tuple[float, ...],
                                                               np.ndarray]:
        """(region box, crop box, full-resolution mask) of one segment, in original pixels."""
        mask = ids == int(seg['id'])
        h, w = ids.shape
        if seg['is_thing']:
            x, y, bw, bh = (float(v) for v in seg['bbox'])
            box = (x, y, x + bw, y + bh)
            crop = thing_crop_box(seg['bbox'], w, h, self.thing_crop_scale)
        else:
            box = tuple(float(v) for v in mask_box(mask))
            crop = box
        return box, crop, mask

    def transform(self, results: dict) -> dict:
        img = self._read(results['img_path'], 'image', 'RGB')
        png = self._read(results['seg_map_path'], 'panoptic PNG', 'RGB')
        if png.shape[:2] != img.shape[:2]:
            raise ValueError(f'panoptic PNG {results["seg_map_path"]} is {png.shape[:2]} but the '
                             f'image is {img.shape[:2]}')
        ids = rgb_to_id(png)
        present = set(np.unique(ids).tolist())
        h, w = img.shape[:2]
        scale = self.image_size / float(max(h, w)) / self.patch_size
        pil = Image.fromarray(img) if self.with_crops else None
        out: Dict[str, List] = {k: [] for k in ('boxes', 'masks', 'crops', 'labels', 'is_thing',
                                                'seg_ids', 'areas')}
        for seg in results['segments'][:self.max_regions]:
            if int(seg['id']) not in present:
                raise ValueError(f'segment id {seg["id"]} of image {results["img_id"]} is absent from '
                                 f'its panoptic PNG {results["seg_map_path"]} (json and PNG folder '
                                 'do not match)')
            box, crop, mask = self.region_of(seg, ids)
            area = (box[2] - box[0]) * (box[3] - box[1])
            if area < self.min_size ** 2 or area > self.max_size ** 2:
                continue
            out['boxes'].append([v * scale for v in box])
            out['masks'].append(mask_to_grid(mask, self.grid))
            if self.with_crops:
                patch = np.asarray(pil.crop(crop))  # PIL rounds the float box, as the official code
                patch, _ = letterbox(patch, self.crop_size, centre=True)
                out['crops'].append(_normalize(patch, self.mean, self.std))
            out['labels'].append(int(seg['label']))
            out['is_thing'].append(bool(seg['is_thing']))
            out['seg_ids'].append(int(seg['id']))
            out['areas'].append(area)
        k, g, c = len(out['labels']), self.grid, self.crop_size
        results['img'] = img
        results['ori_shape'] = (h, w)
        results['region_boxes'] = torch.tensor(out['boxes'], dtype=torch.float32).view(k, 4)
        results['region_masks'] = torch.stack(out['masks']) if k else torch.zeros(0, g, g, dtype=bool)
        if self.with_crops:
            results['region_crops'] = torch.stack(out['crops']) if k else torch.zeros(0, 3, c, c)
        results['region_labels'] = torch.tensor(out['labels'], dtype=torch.long)
        results['region_is_thing'] = torch.tensor(out['is_thing'], dtype=torch.bool)
        results['region_seg_ids'] = torch.tensor(out['seg_ids'], dtype=torch.long)
        results['region_areas'] = torch.tensor(out['areas'], dtype=torch.float64)
        results['region_image_size'] = self.image_size
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(image_size={self.image_size}, patch_size='
                f'{self.patch_size}, crop_size={self.crop_size}, min_size={self.min_size}, '
                f'max_size={self.max_size}, max_regions={self.max_regions})')


@TRANSFORMS.register_module()
class PackRegionInputs(BaseTransform):
    """Pack a region sample: ``inputs`` dict of tensors and a ``BaseDataElement`` data sample.

    ``inputs``: ``img`` (3, S, S) from ``DeCLIPLetterbox(key='img_tensor')``, ``boxes`` (K, 4),
    ``masks`` (K, g, g), ``crops`` (K, 3, c, c) if built. The data sample holds ``labels``,
    ``is_thing``, ``seg_ids`` and the metainfo ``img_id``, ``img_path``, ``ori_shape``, ``classes``.
    """

    def __init__(self, img_key: str = 'img_tensor') -> None:
        self.img_key = img_key

    def transform(self, results: dict) -> dict:
        img = results[self.img_key]
        if img.shape[-1] != results['region_image_size'] or img.shape[-2] != img.shape[-1]:
            raise ValueError(f'the letterbox gives {tuple(img.shape[-2:])} images but '
                             f'LoadPanopticRegions computed boxes for {results["region_image_size"]}: '
                             'set the same size in both transforms')
        inputs = {'img': img, 'boxes': results['region_boxes'], 'masks': results['region_masks']}
        if 'region_crops' in results:
            inputs['crops'] = results['region_crops']
        sample = BaseDataElement(
            metainfo=dict(img_id=results['img_id'], img_path=results['img_path'],
                          ori_shape=results['ori_shape'], classes=results.get('classes')),
            labels=results['region_labels'], is_thing=results['region_is_thing'],
            seg_ids=results['region_seg_ids'])
        return {'inputs': inputs, 'data_samples': sample}
