"""The side-by-side cases of ``tools/benchmark.py``, built the same way for the tool and the tests.

Each ``make_*`` builds a model with random weights from a seed (the cost does not depend on the
weights) and returns ``run(mode)`` callables for ``mode`` in ``'default'`` / ``'reference'``
(:mod:`.reference`). Real-size defaults are the issue's protocol: EVA02-B/16 student at 560, CLIP
teacher on 20 grid crops of 224, DINOv2-B/14-reg at 490, AdamW (training step); a 448 x 597 image,
sliding windows of 336 at stride 112 (training-free inference); the CAT-Seg model on one 384 view with
150 classes (CAT-Seg head).
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .reference import reference_catseg_predict, reference_predict, reference_train_losses

__all__ = ['TrainCase', 'InferCase', 'CatSegCase', 'grid_rois']

CLIP_MEAN = [122.771, 116.746, 104.094]
CLIP_STD = [68.501, 66.632, 70.323]


def grid_rois(batch: int, tokens: int, rows: int = 4, cols: int = 5) -> Tensor:
    """(batch * rows * cols, 5) boxes (image index, x1, y1, x2, y2) of a rows x cols grid on a
    ``tokens`` x ``tokens`` content map (the DeCLIP pseudo-box layout of ``DeCLIPGridCrops``)."""
    sx, sy = tokens / cols, tokens / rows
    cells = torch.tensor([[j * sx, i * sy, (j + 1) * sx, (i + 1) * sy]
                          for i in range(rows) for j in range(cols)])
    k = rows * cols
    return torch.cat([torch.arange(batch).repeat_interleave(k)[:, None].float(),
                      cells.repeat(batch, 1)], 1)


class TrainCase:
    """One DeCLIP optimisation step (losses, backward, AdamW).

    Args:
        student (dict): ``DeCLIPVisionTransformer`` config.
        vfm (dict): ``VFMTeacher`` config.
        side (int): student input side. crops (int): teacher crops per image (a 4 x 5 grid for 20).
        crop_size (int): teacher crop side. batch (int): images per step.
        teacher_dtype (str, optional): the default mode's teacher precision (None = fp32); the
            reference always runs fp32 teachers, so bf16 modes are compared with the fp32 reference.
        optimizer (str): the default mode's AdamW implementation, ``'fused'`` (declip_mm's configs)
            or ``'torch'`` (torch's default choice: for-loop on a CPU, foreach on a GPU), which the
            public code uses and the reference keeps.
        vfm_cache (bool): default mode only: a ``VFMFeatureCache`` in a temporary folder, filled by
            the first (warm-up) step, so the timed steps read the VFM features from disk as epochs
            2-6 of a cached run do (the VFM teacher is skipped).
    """

    def __init__(self, student: dict, vfm: dict, side: int = 560, crops: int = 20,
                 crop_size: int = 224, batch: int = 1, teacher_dtype: Optional[str] = None,
                 optimizer: str = 'fused', vfm_cache: bool = False, seed: int = 0) -> None:
        import tempfile

        from ..models import DeCLIPDistiller
        cache = None
        if vfm_cache:  # the real VFMFeatureCache in a temporary folder; the warm-up call fills it
            self._tmp = tempfile.TemporaryDirectory(prefix='declip_bench_cache_')
            images = [os.path.join(self._tmp.name, f'image{i}.jpg') for i in range(batch)]
            for i, path in enumerate(images):  # the image key reads the file's stats
                with open(path, 'wb') as f:
                    f.write(b'benchmark image %d' % i)
            cache = dict(cache_dir=os.path.join(self._tmp.name, 'vfm'))
        torch.manual_seed(seed)
        self.model = DeCLIPDistiller(student=student, vfm_teacher=vfm, teacher_dtype=teacher_dtype,
                                     vfm_cache=cache).train()
        patch = self.model.student.patch_size[0]
        vfm_side = self.model.vfm_teacher.input_side(side, patch)
        g = torch.Generator().manual_seed(seed + 1)
        rows = 4 if crops == 20 else 1
        self.inputs = dict(
            student=torch.randn(batch, 3, side, side, generator=g),
            vfm=torch.randn(batch, 3, vfm_side, vfm_side, generator=g),
            crops=torch.randn(batch * crops, 3, crop_size, crop_size, generator=g),
            rois=grid_rois(batch, side // patch, rows, crops // rows))
        if vfm_cache:
            self.inputs['img_path'] = images
        self.optimizer_kind = optimizer
        self._opt: Dict[str, torch.optim.Optimizer] = {}

    def to(self, device: torch.device) -> TrainCase:
        self.model.to(device)
        self.inputs = {k: v.to(device) if isinstance(v, Tensor) else v
                       for k, v in self.inputs.items()}
        return self

    def _optimizer(self, mode: str) -> torch.optim.Optimizer:
        if mode not in self._opt:
            params = [p for p in self.model.parameters() if p.requires_grad]
            fused = self.optimizer_kind == 'fused' and mode == 'default'
            self._opt[mode] = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.1,
                                                fused=fused or None)
        return self._opt[mode]

    def losses(self, mode: str) -> Dict[str, Tensor]:
        """The losses of one forward (no update)."""
        if mode == 'reference':
            return reference_train_losses(self.model, self.inputs)
        return self.model.loss(self.inputs)

    def step(self, mode: str) -> Dict[str, float]:
        opt = self._optimizer(mode)
        opt.zero_grad(set_to_none=True)
        losses = self.losses(mode)
        sum(losses.values()).backward()
        opt.step()
        return {k: float(v) for k, v in losses.items()}

    def runner(self, mode: str) -> Callable[[], object]:
        return lambda: self.step(mode)

    def held_tensors(self, mode: str) -> list:
        """What stays allocated between steps (weights, optimizer state, inputs); gradients are
        released first (``zero_grad(set_to_none=True)``, as each step starts)."""
        opt = self._optimizer(mode)
        opt.zero_grad(set_to_none=True)
        return [self.model, opt, self.inputs]


class InferCase:
    """Training-free prediction of one image by ``DeCLIPZeroShotSegmentor`` (slide 336 / 112).

    Args:
        backbone, text_encoder (dict): tower configs. num_classes (int): vocabulary size.
        size (tuple): (H, W) of the resized image. ori (tuple, optional): the original size the
            labels are produced at (defaults to ``size``). crop, stride (int): window and stride.
    """

    def __init__(self, backbone: dict, text_encoder: dict, num_classes: int = 150,
                 size: Sequence[int] = (448, 597), ori: Optional[Sequence[int]] = None,
                 crop: int = 336, stride: int = 112, batch_size: int = 16, seed: int = 0) -> None:
        from mmseg.structures import SegDataSample

        from ..models import DeCLIPZeroShotSegmentor
        torch.manual_seed(seed)
        self.seg = DeCLIPZeroShotSegmentor(
            backbone=backbone, text_encoder=text_encoder,
            class_names=[f'class {i}' for i in range(num_classes)],
            test_cfg=dict(mode='slide', crop_size=crop, stride=stride,
                          batch_size=batch_size)).eval()
        self.seg._weights_ready = True  # random weights on purpose
        g = torch.Generator().manual_seed(seed + 1)
        self.img = torch.randn(1, 3, *size, generator=g)
        ori = tuple(ori or size)
        self.meta = dict(ori_shape=ori, img_shape=tuple(size), pad_shape=tuple(size),
                         padding_size=[0, 0, 0, 0])
        self._sample = SegDataSample
        with torch.no_grad():
            self.seg.class_embeddings()  # once per model, not per image

    def to(self, device: torch.device) -> InferCase:
        self.seg.to(device)
        self.img = self.img.to(device)
        return self

    def predict(self, mode: str) -> Tensor:
        """(1, H, W) labels at the original size."""
        samples = [self._sample(metainfo=self.meta)]
        with torch.no_grad():
            out = reference_predict(self.seg, self.img, samples) if mode == 'reference' else \
                self.seg.predict(self.img, samples)
        return out[0].pred_sem_seg.data

    def runner(self, mode: str) -> Callable[[], object]:
        return lambda: self.predict(mode)

    def held_tensors(self, mode: str) -> list:
        return [self.seg, self.img]


class CatSegCase:
    """The CAT-Seg model (``DeCLIPCATSegSegmentor``) on one view at the head's input size.

    Args:
        model (dict): the segmentor config (``configs/_base_/models/catseg_declip_eva02-b16.py``
            without weights, or a tiny one). num_classes (int): vocabulary size.
        size (int): side of the square view (384).
    """

    def __init__(self, model: dict, num_classes: int = 150, size: int = 384,
                 seed: int = 0) -> None:
        from mmseg.structures import SegDataSample

        from ..registry import MODELS
        torch.manual_seed(seed)
        cfg = dict(model, class_names=[f'class {i}' for i in range(num_classes)])
        cfg['test_cfg'] = dict(cfg.get('test_cfg') or {}, mode='whole')
        self.seg = MODELS.build(cfg).eval()
        self.seg._weights_ready = True  # random weights on purpose
        g = torch.Generator().manual_seed(seed + 1)
        self.img = torch.randn(1, 3, size, size, generator=g)
        self.samples = [SegDataSample(metainfo=dict(ori_shape=(size, size), img_shape=(size, size),
                                                    pad_shape=(size, size),
                                                    padding_size=[0, 0, 0, 0]))]
        with torch.no_grad():
            self.seg.class_embeddings()

    def to(self, device: torch.device) -> CatSegCase:
        self.seg.to(device)
        self.img = self.img.to(device)
        return self

    def predict(self, mode: str) -> Tuple[Tensor, Tensor]:
        """(labels (1, H, W), probabilities (T, H, W))."""
        with torch.no_grad():
            out = reference_catseg_predict(self.seg, self.img, self.samples) \
                if mode == 'reference' else self.seg.predict(self.img, self.samples)
        return out[0].pred_sem_seg.data, out[0].seg_logits.data

    def runner(self, mode: str) -> Callable[[], object]:
        return lambda: self.predict(mode)

    def held_tensors(self, mode: str) -> list:
        return [self.seg, self.img]
