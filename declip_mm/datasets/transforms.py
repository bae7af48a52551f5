"""Data transforms of DeCLIP distillation (docs/method.md §2).

Images are RGB uint8 (H, W, 3) throughout; padding is done in pixel space with 0 (black) *before*
normalisation, as the official torchvision pipelines (``ResizeLongest`` / ``ResizeMaxSize`` with
``fill=0``, then ``Normalize``).

* :class:`LoadImageOrSkip`: read an image; a corrupt, unreadable or truncated file (a JPEG / PNG that
  ends early, :mod:`.image_check`) gives a warning naming it and ``None`` (mmengine's dataset then
  draws another image) instead of a crash or a partly grey training image.
* :class:`DeCLIPGridCrops`: a random grid layout (M rows, N cols) among the 24 pairs with M = 1..6 and
  ceil(M/2) <= N <= min(2M, 6); the cells tile the original image; shuffled, at most 20 kept. Teacher
  crops are cut from the full-resolution image, longest side resized (bicubic) to ``crop_size``,
  zero-padded *centred* to a square, CLIP-normalised. Boxes are returned in the student's token
  units (letterbox scale / patch size).
* :class:`DeCLIPLetterbox`: longest side resized (bicubic) to ``size``, zero-padded bottom/right to
  ``size`` x ``size``, normalised. Used for the student (560, CLIP mean/std) and the VFM teacher
  ((560 // p_clip) * p_vfm, ImageNet mean/std).
* :class:`PackDeCLIPInputs`: tensors for the model.
"""
from __future__ import annotations

import io
import math
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from PIL import Image

from ..registry import TRANSFORMS
from .image_check import truncation_reason, warn_truncated

__all__ = ['GRID_LAYOUTS', 'CLIP_MEAN', 'CLIP_STD', 'IMAGENET_MEAN', 'IMAGENET_STD',
           'LoadImageOrSkip', 'DeCLIPGridCrops', 'DeCLIPLetterbox', 'PackDeCLIPInputs',
           'letterbox', 'grid_cells']

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: the 24 (rows, cols) layouts of docs/method.md §2
GRID_LAYOUTS: Tuple[Tuple[int, int], ...] = tuple(
    (m, n) for m in range(1, 7) for n in range(math.ceil(m / 2), min(2 * m, 6) + 1))
assert len(GRID_LAYOUTS) == 24


def _normalize(img: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (t - m) / s


def _resize_longest(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    return img.resize((nw, nh), Image.BICUBIC)


def letterbox(img: np.ndarray, size: int, centre: bool = False) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Longest side to ``size`` (bicubic), zero-pad to a square (bottom/right, or centred).

    Returns the padded image and the (h, w) of the resized image inside it.
    """
    pil = _resize_longest(Image.fromarray(img), size)
    w, h = pil.size
    out = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = ((size - h) // 2, (size - w) // 2) if centre else (0, 0)
    out[top:top + h, left:left + w] = np.asarray(pil)
    return out, (h, w)


def grid_cells(h: int, w: int, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, 4) cell boxes ``(x1, y1, x2, y2)`` tiling an (h, w) extent, row-major."""
    ys = np.linspace(0, h, rows + 1)
    xs = np.linspace(0, w, cols + 1)
    return np.array([[xs[j], ys[i], xs[j + 1], ys[i + 1]]
                     for i in range(rows) for j in range(cols)], dtype=np.float64)


@TRANSFORMS.register_module()
class LoadImageOrSkip(BaseTransform):
    """Load ``results['img_path']`` as RGB uint8; return ``None`` (skip) on a bad file.

    A truncated JPEG / PNG is skipped too, whatever Pillow's ``LOAD_TRUNCATED_IMAGES`` says, with one
    warning per file: ``"<path>: JPEG is truncated (no end-of-image marker); image skipped"``.
    """

    def transform(self, results: dict) -> Optional[dict]:
        path = results['img_path']
        try:
            with open(path, 'rb') as f:
                data = f.read()
            reason = truncation_reason(data)
            if reason is not None:
                warn_truncated(str(path), f'{reason}; image skipped')
                return None
            with Image.open(io.BytesIO(data)) as im:
                img = np.asarray(im.convert('RGB'))
            if img.ndim != 3 or img.shape[0] < 2 or img.shape[1] < 2:
                raise ValueError(f'unusable image shape {img.shape}')
        except Exception as e:  # corrupt, truncated, missing: skip, do not crash the run
            warnings.warn(f'skipping unreadable image {path}: {e}', stacklevel=2)
            return None
        results['img'] = img
        results['ori_shape'] = img.shape[:2]
        return results


@TRANSFORMS.register_module()
class DeCLIPGridCrops(BaseTransform):
    """Random grid crops for the CLIP teacher and their boxes in student token units.

    Args:
        crop_size (int): teacher input side (224 for B/16, 336 for L/14-336).
        max_crops (int): keep at most this many cells. Defaults to 20.
        student_size (int): the student letterbox side. Defaults to 560.
        student_patch (int): the student's patch size. Defaults to 16.
        layouts (sequence): allowed (rows, cols). Defaults to :data:`GRID_LAYOUTS`.
        seed (int, optional): if set, each image's draw is a function of (seed, epoch, sample index),
            so any number of processes / workers sees the same crops; otherwise numpy's global RNG.
    """

    def __init__(self, crop_size: int = 224, max_crops: int = 20, student_size: int = 560,
                 student_patch: int = 16, layouts: Sequence[Tuple[int, int]] = GRID_LAYOUTS,
                 seed: Optional[int] = None, mean=CLIP_MEAN, std=CLIP_STD) -> None:
        self.crop_size = int(crop_size)
        self.max_crops = int(max_crops)
        self.student_size = int(student_size)
        self.student_patch = int(student_patch)
        self.layouts = tuple(tuple(x) for x in layouts)
        self.seed = seed
        self.mean, self.std = tuple(mean), tuple(std)

    def _rng(self, results: dict) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(np.random.randint(0, 2**31 - 1))
        return np.random.default_rng([int(self.seed), int(results.get('epoch', 0)),
                                      int(results.get('sample_idx', 0))])

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        rng = self._rng(results)
        rows, cols = self.layouts[int(rng.integers(len(self.layouts)))]
        cells = grid_cells(h, w, rows, cols)
        order = rng.permutation(len(cells))[:self.max_crops]
        cells = cells[order]
        pil = Image.fromarray(img)
        crops: List[torch.Tensor] = []
        for x1, y1, x2, y2 in cells:
            box = (int(round(x1)), int(round(y1)), max(int(round(x2)), int(round(x1)) + 1),
                   max(int(round(y2)), int(round(y1)) + 1))
            crop = np.asarray(pil.crop(box))
            crop, _ = letterbox(crop, self.crop_size, centre=True)
            crops.append(_normalize(crop, self.mean, self.std))
        scale = self.student_size / max(h, w) / self.student_patch
        results['crops'] = torch.stack(crops)
        results['crop_boxes'] = torch.from_numpy(cells * scale).float()
        results['grid_layout'] = (rows, cols)
        return results


@TRANSFORMS.register_module()
class DeCLIPLetterbox(BaseTransform):
    """Letterbox ``results['img']`` to a normalised (3, size, size) tensor in ``results[key]``.

    Also stores ``results[key + '_valid_hw']``: the (h, w) pixels of the image inside the square.
    """

    def __init__(self, size: int = 560, key: str = 'student_img', mean=CLIP_MEAN,
                 std=CLIP_STD) -> None:
        self.size = int(size)
        self.key = key
        self.mean, self.std = tuple(mean), tuple(std)

    def transform(self, results: dict) -> dict:
        img, hw = letterbox(results['img'], self.size, centre=False)
        results[self.key] = _normalize(img, self.mean, self.std)
        results[self.key + '_valid_hw'] = hw
        return results


@TRANSFORMS.register_module()
class PackDeCLIPInputs(BaseTransform):
    """Collect the tensors of a distillation sample (drops the raw image)."""

    KEYS = ('student_img', 'vfm_img', 'crops', 'crop_boxes', 'student_img_valid_hw',
            'vfm_img_valid_hw', 'img_path', 'grid_layout')

    def transform(self, results: dict) -> dict:
        # extra VFM teachers' letterboxes (several teachers, docs/method.md §6): vfm_img_<t>
        keys = list(self.KEYS) + sorted(k for k in results if k.startswith('vfm_img_')
                                        and k not in self.KEYS)
        # tuples become tensors: pseudo_collate would transpose them across the batch
        return {'inputs': {k: (torch.tensor(results[k]) if isinstance(results[k], tuple)
                               else results[k]) for k in keys if k in results}}
