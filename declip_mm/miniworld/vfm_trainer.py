"""Self-supervised training of the miniature world's tiny VFM, without labels (docs/miniworld.md).

DINO (Caron et al., ICCV 2021) with iBOT's masked-patch term (Zhou et al., ICLR 2022), as DINOv2
combines them (Oquab et al., 2023, §4), scaled down:

* student and teacher share the architecture; the teacher is the exponential moving average of the
  student, momentum ``m`` rising from ``momentum`` to 1 along a cosine;
* multi-crop: 2 global crops (side = the scene side) and ``n_local`` local crops (``local_size``),
  random resized crops with flips and colour jitter;
* image term: for each global crop the teacher's CLS distribution ``softmax((t - c) / tau_t)``
  (centre ``c`` an EMA of the teacher's batch means) is the target of the student's
  ``log_softmax(s / tau_s)`` on every *other* crop (cross-entropy, averaged over pairs);
* patch term: the student sees each global crop with a random subset of patches replaced by a
  learned mask token; on masked positions the teacher's patch distribution of the unmasked crop
  (own centre) is the target (cross-entropy, averaged over masked patches);
* projection heads: MLP (GELU) -> bottleneck -> L2-normalised rows -> prototypes whose weight rows are
  L2-normalised (DINO's weight-normalised last layer with the gain fixed to 1), separate for CLS and
  patches (DINOv2).

The backbone is the timm model ``VFMTeacher`` builds for the arch (``timm.create_model(<arch's timm
name>, num_classes=0, **arch_overrides)``), run the way ``VFMTeacher`` runs it (position embedding
resized by the arch's hub rule for the local crops); the teacher's backbone ``state_dict()`` is saved,
so ``VFMTeacher(arch, pretrained=<file>, arch_overrides=...)`` loads it through its normal path.
"""
from __future__ import annotations

import copy
import json
import math
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .clip_trainer import cosine_lr, render_caption_batch, stream_seeds, to_model_input
from .tower_configs import IMAGENET_MEAN, IMAGENET_STD, VFM_TRAINER_VERSION, WORLD_VFM

__all__ = ['VFMTrainSettings', 'build_vfm_backbone', 'vit_tokens', 'ProjectionHead',
           'random_resized_crops', 'colour_jitter', 'block_masks', 'dino_loss', 'ibot_loss',
           'train_vfm', 'save_vfm']


@dataclass
class VFMTrainSettings:
    """Knobs of the tiny VFM's training (chosen on the correlation figure only).

    Args:
        steps (int): optimizer steps.
        batch_size (int): scenes per step.
        lr (float): peak AdamW learning rate.
        weight_decay (float): AdamW weight decay of the matrices.
        warmup (int): linear warm-up steps.
        momentum (float): initial teacher EMA momentum (cosine to 1).
        out_dim (int): prototypes of each head.
        student_temp (float), teacher_temp (float): softmax temperatures.
        center_momentum (float): EMA of the centres.
        n_local (int), local_size (int): local crops and their side.
        global_scale, local_scale (tuple): area fractions of the random resized crops.
        mask_prob (float): probability that a global crop of the student is masked.
        mask_ratio (tuple): range of the masked fraction of patches.
        ibot_weight (float): weight of the patch term.
        seed (int), world_seed (int), image_size (int), threads (int): as for the CLIP.
    """
    steps: int = 800
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.04
    warmup: int = 30
    momentum: float = 0.99
    out_dim: int = 512
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    center_momentum: float = 0.9
    n_local: int = 2
    local_size: int = 32
    global_scale: Tuple[float, float] = (0.3, 1.0)
    local_scale: Tuple[float, float] = (0.08, 0.3)
    mask_prob: float = 0.5
    mask_ratio: Tuple[float, float] = (0.1, 0.5)
    ibot_weight: float = 1.0
    seed: int = 0
    world_seed: int = 0
    image_size: int = 64
    threads: int = 2


def build_vfm_backbone(spec: Optional[Dict[str, Any]] = None) -> nn.Module:
    """The timm model ``VFMTeacher(**spec)`` builds (random weights)."""
    import timm

    from ..models.backbones.vfm_teacher import VFM_ARCHS
    spec = spec or WORLD_VFM
    arch = VFM_ARCHS[spec['arch']]
    if 'timm' not in arch:
        raise ValueError(f'the VFM trainer builds timm towers; {spec["arch"]!r} is not one')
    return timm.create_model(arch['timm'], pretrained=False, num_classes=0,
                             **dict(spec.get('arch_overrides') or {}))


def vit_tokens(model: nn.Module, x: Tensor, arch: str, mask: Optional[Tensor] = None,
               mask_token: Optional[Tensor] = None) -> Tensor:
    """CLS and patch tokens after the final norm, (B, 1 + N, D), as ``VFMTeacher._timm_forward``
    computes them (position embedding resized by the arch's hub rule); ``mask`` (B, N) bool
    replaces those patch embeddings by ``mask_token`` (1, 1, D) before the position embedding
    (iBOT)."""
    from ..models.backbones.vfm_teacher import VFM_ARCHS, dino_resize_pos_embed
    m = model
    x = m.patch_embed.proj(x)
    hw = tuple(x.shape[-2:])
    x = m.patch_embed.norm(x.flatten(2).transpose(1, 2))
    if mask is not None:
        x = torch.where(mask.unsqueeze(-1), mask_token.to(x.dtype).expand_as(x), x)
    if m.no_embed_class or getattr(m, 'reg_token', None) is not None:
        raise ValueError('the VFM trainer expects a plain CLS-token ViT (no registers)')
    pos = dino_resize_pos_embed(m.pos_embed, hw, 1, tuple(m.patch_embed.grid_size),
                                **VFM_ARCHS[arch]['pos'])
    x = torch.cat([m.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos
    x = m.norm_pre(x)
    for blk in m.blocks:
        x = blk(x)
    return m.norm(x)


class ProjectionHead(nn.Module):
    """DINO head: 3-layer MLP (GELU) -> bottleneck -> L2 norm -> prototypes with L2-normalised rows."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, bottleneck: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, bottleneck))
        self.prototypes = nn.Parameter(torch.randn(out_dim, bottleneck) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        z = F.normalize(self.mlp(x), dim=-1)
        return F.linear(z, F.normalize(self.prototypes, dim=-1))


def random_resized_crops(images: Tensor, size: int, scale: Tuple[float, float],
                         gen: torch.Generator) -> Tensor:
    """Per-image random resized crops (area fraction in ``scale``, aspect ratio log-uniform in
    [3/4, 4/3], inside the image) with random horizontal flips, bilinear, (B, 3, size, size)."""
    b = images.shape[0]
    area = torch.empty(b).uniform_(scale[0], scale[1], generator=gen)
    logr = torch.empty(b).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    ratio = torch.exp(logr)
    w = torch.sqrt(area * ratio).clamp(max=1.0)          # fractions of the image side
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(b, generator=gen) * (1 - w) + w / 2) * 2 - 1   # centres in [-1, 1]
    cy = (torch.rand(b, generator=gen) * (1 - h) + h / 2) * 2 - 1
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, (b, 3, size, size), align_corners=False)
    return F.grid_sample(images, grid, mode='bilinear', padding_mode='border', align_corners=False)


def colour_jitter(x: Tensor, gen: torch.Generator, strength: float = 0.3, p: float = 0.8,
                  p_gray: float = 0.1) -> Tensor:
    """Brightness, contrast and saturation factors in [1 - s, 1 + s] (with probability ``p``) and
    greyscale (probability ``p_gray``) on [0, 1] images (B, 3, H, W)."""
    b = x.shape[0]

    def factor() -> Tensor:
        f = 1 + (torch.rand(b, generator=gen) * 2 - 1) * strength
        on = torch.rand(b, generator=gen) < p
        return torch.where(on, f, torch.ones(b)).view(b, 1, 1, 1)

    gray_w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    x = x * factor()
    mean = (x * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    gray = (x * gray_w).sum(1, keepdim=True)
    x = (x - gray) * factor() + gray
    to_gray = (torch.rand(b, generator=gen) < p_gray).view(b, 1, 1, 1)
    x = torch.where(to_gray, gray.expand_as(x), x)
    return x.clamp(0, 1)


def block_masks(b: int, grid: int, prob: float, ratio: Tuple[float, float],
                gen: torch.Generator) -> Tensor:
    """(B, grid * grid) bool masks: with probability ``prob`` an image gets a random fraction in
    ``ratio`` of its patches masked (uniformly chosen patches; at least one), else none."""
    n = grid * grid
    masks = torch.zeros(b, n, dtype=torch.bool)
    for i in range(b):
        if float(torch.rand(1, generator=gen)) < prob:
            frac = float(torch.empty(1).uniform_(ratio[0], ratio[1], generator=gen))
            k = max(1, int(round(frac * n)))
            masks[i, torch.randperm(n, generator=gen)[:k]] = True
    return masks


def dino_loss(student: List[Tensor], teacher: List[Tensor], center: Tensor, student_temp: float,
              teacher_temp: float) -> Tensor:
    """DINO's cross-view term: mean over (teacher view i, student view v != i) of
    ``-sum softmax((t_i - c) / tau_t) * log_softmax(s_v / tau_s)``, batch-averaged.

    Args:
        student: logits (B, K) of every crop, the global crops first.
        teacher: logits (B, K) of the global crops.
        center (Tensor): (K,).
    """
    total, n = 0.0, 0
    for i, t in enumerate(teacher):
        q = F.softmax((t - center) / teacher_temp, dim=-1)
        for v, s in enumerate(student):
            if v == i:
                continue
            total = total + torch.sum(-q * F.log_softmax(s / student_temp, dim=-1), dim=-1).mean()
            n += 1
    return total / n


def ibot_loss(student: Tensor, teacher: Tensor, mask: Tensor, center: Tensor, student_temp: float,
              teacher_temp: float) -> Tensor:
    """iBOT's masked-patch term: mean over masked patches of
    ``-sum softmax((t - c) / tau_t) * log_softmax(s / tau_s)``; zero without masked patches.

    Args:
        student, teacher: patch logits (B, N, K); mask (B, N) bool; center (K,).
    """
    if not bool(mask.any()):
        return student.sum() * 0.0
    q = F.softmax((teacher[mask] - center) / teacher_temp, dim=-1)
    return torch.sum(-q * F.log_softmax(student[mask] / student_temp, dim=-1), dim=-1).mean()


def _param_groups(modules: List[nn.Module], weight_decay: float) -> List[Dict[str, Any]]:
    decay, no_decay = [], []
    for mod in modules:
        for name, p in mod.named_parameters():
            exempt = p.ndim < 2 or name.endswith(('cls_token', 'pos_embed', 'mask_token'))
            (no_decay if exempt else decay).append(p)
    return [dict(params=no_decay, weight_decay=0.0), dict(params=decay, weight_decay=weight_decay)]


def train_vfm(spec: Optional[Dict[str, Any]] = None, settings: Optional[VFMTrainSettings] = None,
              log: Optional[Callable[[str], None]] = print,
              log_every: int = 25) -> Tuple[nn.Module, Dict[str, Any]]:
    """Train the tiny VFM of ``spec`` (default :data:`WORLD_VFM`) on the world's scenes.

    Returns:
        tuple: (the teacher's backbone, eval mode; a record: settings, spec, versions, loss curve,
        wall time).
    """
    import timm

    from .classes import WORLD_VERSION
    spec = copy.deepcopy(spec or WORLD_VFM)
    s = settings or VFMTrainSettings()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(s.threads))
    try:
        torch.manual_seed(s.seed)
        gen = torch.Generator().manual_seed(s.seed)
        student = build_vfm_backbone(spec)
        dim = student.embed_dim
        grid = s.image_size // student.patch_embed.proj.kernel_size[0]
        heads = nn.ModuleDict(dict(cls=ProjectionHead(dim, s.out_dim),
                                   patch=ProjectionHead(dim, s.out_dim)))
        mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(mask_token, std=0.02)
        teacher = copy.deepcopy(student).eval()
        t_heads = copy.deepcopy(heads).eval()
        for p in list(teacher.parameters()) + list(t_heads.parameters()):
            p.requires_grad = False
        holder = nn.ParameterDict(dict(mask_token=mask_token))
        opt = torch.optim.AdamW(_param_groups([student, heads, holder], s.weight_decay), lr=s.lr)
        c_cls = torch.zeros(s.out_dim)
        c_patch = torch.zeros(s.out_dim)
        arch = spec['arch']
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        curve: List[Tuple[int, float, float]] = []
        window: List[Tuple[float, float]] = []
        t0 = time.time()
        student.train()
        heads.train()
        for step in range(s.steps):
            seeds = stream_seeds('vfm_train', s.world_seed, step * s.batch_size, s.batch_size)
            images, _ = render_caption_batch(seeds, s.image_size)
            x = to_model_input(images, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))     # [0, 1]
            crops = [random_resized_crops(x, s.image_size, s.global_scale, gen) for _ in range(2)]
            crops += [random_resized_crops(x, s.local_size, s.local_scale, gen)
                      for _ in range(s.n_local)]
            crops = [(colour_jitter(c, gen) - mean) / std for c in crops]
            masks = [block_masks(len(images), grid, s.mask_prob, s.mask_ratio, gen)
                     for _ in range(2)]
            lr = cosine_lr(step, s.lr, s.warmup, s.steps)
            for g in opt.param_groups:
                g['lr'] = lr
            with torch.no_grad():
                t_tok = [vit_tokens(teacher, c, arch) for c in crops[:2]]
                t_cls = [t_heads['cls'](t[:, 0]) for t in t_tok]
                t_patch = [t_heads['patch'](t[:, 1:]) for t in t_tok]
            s_cls, s_patch = [], []
            for v, c in enumerate(crops):
                tok = vit_tokens(student, c, arch, masks[v] if v < 2 else None, mask_token)
                s_cls.append(heads['cls'](tok[:, 0]))
                if v < 2:
                    s_patch.append(heads['patch'](tok[:, 1:]))
            l_dino = dino_loss(s_cls, t_cls, c_cls, s.student_temp, s.teacher_temp)
            l_ibot = sum(ibot_loss(s_patch[i], t_patch[i], masks[i], c_patch, s.student_temp,
                                   s.teacher_temp) for i in range(2)) / 2
            loss = l_dino + s.ibot_weight * l_ibot
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(list(student.parameters()) + list(heads.parameters()), 3.0)
            opt.step()
            with torch.no_grad():
                m = 1 - (1 - s.momentum) * (math.cos(math.pi * step / s.steps) + 1) / 2
                for ps, pt in zip(list(student.parameters()) + list(heads.parameters()),
                                  list(teacher.parameters()) + list(t_heads.parameters())):
                    pt.mul_(m).add_(ps.detach(), alpha=1 - m)
                c_cls.mul_(s.center_momentum).add_(torch.cat(t_cls).mean(0),
                                                   alpha=1 - s.center_momentum)
                c_patch.mul_(s.center_momentum).add_(
                    torch.cat([t.flatten(0, 1) for t in t_patch]).mean(0),
                    alpha=1 - s.center_momentum)
            window.append((float(l_dino.detach()), float(l_ibot.detach())))
            if (step + 1) % log_every == 0 or step + 1 == s.steps:
                a, b = np.mean(window, axis=0)
                curve.append((step + 1, float(a), float(b)))
                window = []
                if log is not None:
                    log(f'[vfm] step {step + 1}/{s.steps} dino {a:.3f} ibot {b:.3f} lr {lr:.2e} '
                        f'm {m:.4f} {time.time() - t0:.0f}s')
        record = dict(settings=asdict(s), spec=spec, world_version=WORLD_VERSION,
                      trainer_version=VFM_TRAINER_VERSION, loss_curve=curve,
                      wall_time_s=round(time.time() - t0, 1), torch=torch.__version__,
                      timm=timm.__version__)
        return teacher.eval(), record
    finally:
        torch.set_num_threads(old_threads)


def save_vfm(backbone: nn.Module, spec: Dict[str, Any], path: str,
             record: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """Write ``path`` (the timm backbone's state dict, fp32), ``<stem>.json`` (the ``VFMTeacher``
    arguments ``arch`` / ``arch_overrides``) and, given a record, ``<stem>.record.json``."""
    stem = osp.splitext(path)[0]
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    torch.save({k: v.detach().float().clone() for k, v in backbone.state_dict().items()}, path)
    with open(stem + '.json', 'w') as f:
        json.dump(spec, f, indent=1)
    out = dict(weights=path, config=stem + '.json')
    if record is not None:
        with open(stem + '.record.json', 'w') as f:
            json.dump(record, f, indent=1)
        out['record'] = stem + '.record.json'
    return out
