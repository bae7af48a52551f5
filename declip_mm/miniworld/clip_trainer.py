"""Contrastive pre-training of the miniature world's tiny CLIP (docs/miniworld.md).

CLIP (Radford et al., 2021): image and caption embeddings, L2-normalised, scored by
``exp(logit_scale) * <img_i, txt_j>``; the loss is open_clip's ``ClipLoss`` (the mean of the two
cross-entropies over the batch's rows and columns). AdamW with linear warm-up then cosine decay
(open_clip's ``cosine_lr``), weight decay on matrices only (open_clip's ``main.py`` exempts gains,
biases and the logit scale). Scenes are rendered on the fly from a seed stream disjoint from every
evaluation stream (:func:`stream_seeds`), captions are the generator's own, a horizontal flip is the
only augmentation (captions never say left or right). After training, the token-embedding rows of
tokens no caption contained are set to zero (they never received a gradient and held only their
random initialisation, shrunk by weight decay): the shipped archive then stores the seen rows only
(``shipped.py``).

The model is open_clip's ``CustomTextCLIP`` (text tower under ``text.*``) whose image tower is
the EVA02-style timm trunk of the config, wrapped as open_clip's ``TimmModel`` keys it
(``visual.trunk.*``); its ``state_dict()`` is saved as it is (an open_clip checkpoint) with the
config as JSON beside it, so ``DeCLIPVisionTransformer(model_name=<json>, pretrained=<pt>)`` and
``DeCLIPTextEncoder`` load it like any release.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .tower_configs import CLIP_MEAN, CLIP_STD, CLIP_TRAINER_VERSION, WORLD_CLIP_CONFIG

__all__ = ['CLIPTrainSettings', 'stream_seeds', 'render_caption_batch', 'render_training_batch',
           'to_model_input',
           'build_clip_model', 'param_groups', 'cosine_lr', 'clip_loss_step', 'train_clip',
           'save_clip']

#: seed streams of the towers: (``scene_seed`` split, first index). The world's ``scene_seed``
#: (``layouts.py``) reserves the splits 'clip', 'vfm' and 'zero_shot' for the tower trainers, so no
#: stream meets a scene of the written layouts (pairs, unlabeled images, benchmark, CAT-Seg split);
#: the zero-shot objects and the correlation scenes share the 'zero_shot' split in disjoint halves
STREAMS = {'clip_train': ('clip', 0), 'clip_crops': ('clip', 1 << 22),
           'clip_objects': ('clip', 1 << 23), 'vfm_train': ('vfm', 0),
           'zero_shot': ('zero_shot', 0), 'correlation': ('zero_shot', 1 << 23)}
STREAM_SPAN = 1 << 22
#: DeCLIP's grid layouts go up to 6 x 6 cells: a scene crop's side is ``size / g``, g in 1..6
CROP_GRIDS = (1, 2, 3, 4, 5, 6)


def stream_seeds(stream: str, world_seed: int, start: int, n: int) -> List[int]:
    """Scene / object seeds ``start .. start + n - 1`` of a stream (:data:`STREAMS`) of a world."""
    from .layouts import scene_seed
    if stream not in STREAMS:
        raise ValueError(f'unknown seed stream {stream!r}; choose one of {sorted(STREAMS)}')
    if start < 0 or start + n > STREAM_SPAN:
        raise ValueError(f'stream index range [{start}, {start + n}) exceeds [0, {STREAM_SPAN})')
    split, first = STREAMS[stream]
    return [scene_seed(int(world_seed), split, first + start + i) for i in range(int(n))]


@dataclass
class CLIPTrainSettings:
    """Knobs of the tiny CLIP's training (chosen on the zero-shot figures only, docs/miniworld.md).

    Args:
        steps (int): optimizer steps.
        batch_size (int): image-caption pairs per step (the contrastive batch).
        lr (float): peak AdamW learning rate.
        weight_decay (float): AdamW weight decay of the matrices.
        warmup (int): linear warm-up steps.
        seed (int): torch seed (initialisation) and flip draws.
        world_seed (int): which world; the scenes are the ``'clip_train'`` stream of it.
        image_size (int): scene side (pixels).
        hflip (bool): random horizontal flips.
        threads (int): torch intra-op threads.
        object_fraction (float): share of each batch made of single-object images (``render_object``
            of the ``'clip_objects'`` stream) captioned by the class name alone ("a photo of a
            kite"); the rest are scenes with the generator's captions.
        object_thing_prob (float): share of those single-object images that show a thing (the others
            are stuff patches).
        shared_stuff_prob (float): probability that all the scenes of a batch are drawn on the same
            1-2 stuff classes (``render_scene(classes=...)``), so that only the thing words tell
            their captions apart.
        caption_stuff_prob (float): probability that a scene caption with things also names the
            stuff (``make_caption(stuff_prob=...)``; the world's captions use 0.6).
        logit_scale_init (float): initial ``exp(logit_scale)`` (open_clip: 1 / 0.07).
        crop_fraction (float): share of each batch made of square crops of scenes (the
            ``'clip_crops'`` stream; side ``size / g`` with g uniform in :data:`CROP_GRIDS`, as
            DeCLIP's grid cells, at a uniform position) resized to the image side and captioned by
            what they show (``captions.crop_caption``): the close-ups of web data, so that a crop
            of a scene (DeCLIP's content teacher input) is embedded by its own content.
    """
    steps: int = 2000
    batch_size: int = 96
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 25
    seed: int = 0
    world_seed: int = 0
    image_size: int = 64
    hflip: bool = True
    threads: int = 2
    object_fraction: float = 0.75
    object_thing_prob: float = 0.8
    shared_stuff_prob: float = 0.75
    caption_stuff_prob: float = 0.3
    logit_scale_init: float = 1 / 0.07
    crop_fraction: float = 0.125


def render_caption_batch(seeds: Sequence[int], size: int) -> Tuple[np.ndarray, List[str]]:
    """Scenes of ``seeds``: images (B, size, size, 3) uint8 and their captions."""
    from .generator import render_scene
    images, captions = [], []
    for s in seeds:
        scene = render_scene(int(s), size)
        images.append(scene.image)
        captions.append(scene.caption)
    return np.stack(images), captions


def render_training_batch(step: int, s: CLIPTrainSettings, rng: np.random.Generator
                          ) -> Tuple[np.ndarray, List[str], Dict[str, Any]]:
    """The image-caption pairs of training step ``step`` (see :class:`CLIPTrainSettings`): scenes of
    the ``'clip_train'`` stream (indices ``step * batch_size + i``), optionally on a stuff set shared
    by the batch, then single-object images of the ``'clip_objects'`` stream (same indices); ``rng``
    draws the shared stuff, the object classes and the object captions.

    Returns:
        tuple: images (B, S, S, 3) uint8, captions, and ``info``: ``scene_seeds``, ``stuff`` (the
        shared stuff classes or ``None``), ``object_seeds`` and ``object_classes``.
    """
    from .captions import _STUFF_TEMPLATES, _THING_TEMPLATES, crop_caption, make_caption, thing_phrase
    from .classes import STUFF_CLASSES, THING_CLASSES
    from .generator import render_object, render_scene
    n_obj = int(round(s.batch_size * s.object_fraction))
    n_crop = int(round(s.batch_size * s.crop_fraction))
    n_scene = s.batch_size - n_obj - n_crop
    if n_scene < 0:
        raise ValueError(f'object_fraction + crop_fraction exceed 1 ({s.object_fraction} + '
                         f'{s.crop_fraction})')
    classes = None
    if n_scene and rng.random() < s.shared_stuff_prob:
        k = int(rng.integers(1, 3))
        stuff = [STUFF_CLASSES[i] for i in rng.choice(len(STUFF_CLASSES), size=k, replace=False)]
        classes = tuple(THING_CLASSES) + tuple(stuff)
    images, captions = [], []
    info: Dict[str, Any] = dict(
        scene_seeds=stream_seeds('clip_train', s.world_seed, step * s.batch_size, n_scene),
        stuff=None if classes is None else classes[len(THING_CLASSES):],
        object_seeds=stream_seeds('clip_objects', s.world_seed, step * s.batch_size, n_obj),
        object_classes=[],
        crop_seeds=stream_seeds('clip_crops', s.world_seed, step * s.batch_size, n_crop),
        crop_boxes=[])
    for seed in info['scene_seeds']:
        scene = render_scene(int(seed), s.image_size, classes=classes,
                             n_stuff=None if classes is None else len(classes) - len(THING_CLASSES),
                             caption=False)
        images.append(scene.image)
        captions.append(make_caption(scene, np.random.default_rng([int(seed), 0xCA9]),
                                     stuff_prob=s.caption_stuff_prob))
    for seed in info['object_seeds']:
        if rng.random() < s.object_thing_prob:
            name = THING_CLASSES[int(rng.integers(len(THING_CLASSES)))]
            tpl = _THING_TEMPLATES[int(rng.integers(len(_THING_TEMPLATES)))]
            captions.append(tpl.format(things=thing_phrase(name, 1, rng)))
        else:
            name = STUFF_CLASSES[int(rng.integers(len(STUFF_CLASSES)))]
            captions.append(_STUFF_TEMPLATES[int(rng.integers(len(_STUFF_TEMPLATES)))]
                            .format(stuff=name))
        info['object_classes'].append(name)
        images.append(render_object(name, int(seed), s.image_size)[0])
    if info['crop_seeds']:
        import cv2
    for seed in info['crop_seeds']:          # after the objects: no draw changes without crops
        scene = render_scene(int(seed), s.image_size, caption=False)
        side = int(round(s.image_size / CROP_GRIDS[int(rng.integers(len(CROP_GRIDS)))]))
        y0 = int(rng.integers(s.image_size - side + 1))
        x0 = int(rng.integers(s.image_size - side + 1))
        box = (y0, y0 + side, x0, x0 + side)
        info['crop_boxes'].append(box)
        images.append(cv2.resize(scene.image[box[0]:box[1], box[2]:box[3]],
                                 (s.image_size, s.image_size), interpolation=cv2.INTER_LINEAR))
        captions.append(crop_caption(scene.label[box[0]:box[1], box[2]:box[3]], rng))
    return np.stack(images), captions, info


def to_model_input(images: np.ndarray, mean: Sequence[float] = CLIP_MEAN,
                   std: Sequence[float] = CLIP_STD) -> Tensor:
    """uint8 (B, H, W, 3) RGB -> normalised float (B, 3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def build_clip_model(cfg: Dict[str, Any]) -> nn.Module:
    """open_clip ``CustomTextCLIP`` (EVA02 configs) or ``CLIP`` (OpenAI-style configs) of ``cfg``.

    open_clip 3.x's ``TimmModel`` cannot pass constructor keywords to timm, so for an EVA config the
    image tower is the project's ``EvaVisionTower`` (open_clip's ``TimmModel`` layout: ``trunk`` =
    the timm model with the projection as its classifier head, an empty ``head``); the model class,
    text tower, logit scale and ``encode_*`` methods are open_clip's.
    """
    import open_clip

    from ..models.backbones.clip_towers import EvaVisionTower, is_eva_config
    cfg = dict(cfg)
    custom_text = bool(cfg.pop('custom_text', False))
    cfg.pop('quick_gelu', None)
    if is_eva_config(cfg):
        stub = dict(image_size=cfg['vision_cfg'].get('image_size', 224), layers=1, width=32,
                    patch_size=cfg['vision_cfg'].get('image_size', 224), head_width=32)
        cls = open_clip.model.CustomTextCLIP if custom_text else open_clip.model.CLIP
        model = cls(cfg['embed_dim'], stub, cfg['text_cfg'])
        model.visual = EvaVisionTower(cfg['embed_dim'], cfg['vision_cfg'])
        return model
    cls = open_clip.model.CustomTextCLIP if custom_text else open_clip.model.CLIP
    return cls(cfg['embed_dim'], cfg['vision_cfg'], cfg['text_cfg'])


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """open_clip ``main.py``'s split: no decay for 1-D parameters (gains, biases), embeddings'
    position / class tokens and the logit scale; decay for the rest."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = (p.ndim < 2 or 'logit_scale' in name or name.endswith(('cls_token', 'pos_embed',
                  'positional_embedding', 'class_embedding')))
        (no_decay if exempt else decay).append(p)
    return [dict(params=no_decay, weight_decay=0.0), dict(params=decay, weight_decay=weight_decay)]


def cosine_lr(step: int, base_lr: float, warmup: int, total: int) -> float:
    """open_clip's ``cosine_lr``: linear warm-up to ``base_lr`` over ``warmup`` steps, then
    ``0.5 * (1 + cos(pi * e / es)) * base_lr`` with e the steps after warm-up of es."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    e, es = step - warmup, max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * e / es)) * base_lr


def clip_loss_step(model: nn.Module, x: Tensor, tokens: Tensor, loss_fn: nn.Module) -> Tensor:
    """ClipLoss of one batch (normalised features, ``exp(logit_scale)`` clamped at 100 as open_clip's
    training loop clamps the parameter at log 100)."""
    img = F.normalize(model.encode_image(x), dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    return loss_fn(img, txt, model.logit_scale.exp())


def train_clip(cfg: Optional[Dict[str, Any]] = None,
               settings: Optional[CLIPTrainSettings] = None,
               log: Optional[Callable[[str], None]] = print,
               log_every: int = 25) -> Tuple[nn.Module, Dict[str, Any]]:
    """Train the tiny CLIP of ``cfg`` (default :data:`WORLD_CLIP_CONFIG`) on the world's scenes.

    Returns:
        tuple: (the open_clip model in eval mode, a record: settings, config, versions, loss curve,
        the token ids seen in training, wall time).
    """
    import open_clip
    from open_clip.loss import ClipLoss

    from .classes import WORLD_VERSION
    cfg = dict(cfg or WORLD_CLIP_CONFIG)
    s = settings or CLIPTrainSettings()
    if int(cfg['vision_cfg'].get('image_size', 224)) != s.image_size:
        raise ValueError(f'settings.image_size {s.image_size} differs from the config\'s image_size '
                         f'{cfg["vision_cfg"].get("image_size")}')
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(s.threads))
    try:
        torch.manual_seed(s.seed)
        rng = np.random.default_rng([s.seed, 0xC11F])
        model = build_clip_model(cfg)
        with torch.no_grad():
            model.logit_scale.fill_(math.log(s.logit_scale_init))
        model.train()
        ctx = int(cfg['text_cfg'].get('context_length', 77))
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=ctx)
        opt = torch.optim.AdamW(param_groups(model, s.weight_decay), lr=s.lr,
                                betas=(0.9, 0.98), eps=1e-6)
        loss_fn = ClipLoss()
        seen_tokens: set = set()
        curve: List[Tuple[int, float]] = []
        t0 = time.time()
        window: List[float] = []
        for step in range(s.steps):
            images, captions, _ = render_training_batch(step, s, rng)
            if s.hflip:
                flip = rng.random(len(images)) < 0.5
                images[flip] = images[flip, :, ::-1]
            tokens = tokenizer(captions)
            seen_tokens.update(int(t) for t in torch.unique(tokens))
            lr = cosine_lr(step, s.lr, s.warmup, s.steps)
            for g in opt.param_groups:
                g['lr'] = lr
            loss = clip_loss_step(model, to_model_input(images), tokens, loss_fn)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            window.append(float(loss.detach()))
            if (step + 1) % log_every == 0 or step + 1 == s.steps:
                curve.append((step + 1, float(np.mean(window))))
                window = []
                if log is not None:
                    log(f'[clip] step {step + 1}/{s.steps} loss {curve[-1][1]:.3f} lr {lr:.2e} '
                        f'scale {model.logit_scale.exp().item():.1f} {time.time() - t0:.0f}s')
        model.eval()
        with torch.no_grad():  # rows of tokens never seen held only their initialisation: zero
            table = model.text.token_embedding.weight if hasattr(model, 'text') \
                else model.token_embedding.weight
            unseen = torch.ones(table.shape[0], dtype=torch.bool)
            unseen[sorted(seen_tokens)] = False
            table[unseen] = 0
        record = dict(settings=asdict(s), config=cfg, world_version=WORLD_VERSION,
                      trainer_version=CLIP_TRAINER_VERSION, loss_curve=curve,
                      seen_token_ids=sorted(seen_tokens), wall_time_s=round(time.time() - t0, 1),
                      torch=torch.__version__, open_clip=open_clip.__version__)
        return model, record
    finally:
        torch.set_num_threads(old_threads)


def save_clip(model: nn.Module, cfg: Dict[str, Any], path: str,
              record: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """Write ``path`` (the open_clip state dict, fp32, ``torch.save``), ``<stem>.json`` (the model
    config: a ``model_name`` for the project's towers) and, given a record, ``<stem>.record.json``."""
    stem = osp.splitext(path)[0]
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    sd = {k: v.detach().float().clone() for k, v in model.state_dict().items()
          if not k.endswith('attn_mask')}
    torch.save(sd, path)
    with open(stem + '.json', 'w') as f:
        json.dump(cfg, f, indent=1)
    out = dict(weights=path, config=stem + '.json')
    if record is not None:
        with open(stem + '.record.json', 'w') as f:
            json.dump(record, f, indent=1)
        out['record'] = stem + '.record.json'
    return out
