"""The figures the tiny towers are chosen on (pre-registration, docs/miniworld.md): zero-shot
classification of held-out single-object images, and how well patch-feature correlations agree with
object membership. No segmentation number enters here.

Zero-shot (CLIP paper, §3.1.2): the class embedding is the prompt ensemble of the project's
``DeCLIPTextEncoder`` (L2-normalised mean of the normalised template embeddings); an image is assigned
the class of highest cosine similarity with its ``encode_image`` embedding. Things are classified
among the thing classes (chance 1 / #things) and among all classes (a background answer counts as
wrong), stuff patches among the stuff classes (chance 1 / #stuff).

Correlation agreement: on held-out scenes, a patch belongs to a segment (one thing instance, or the
region of one stuff class) when at least ``purity`` of its pixels do; for every pair of pure patches of
the same image, the cosine similarity of their features is scored against "same segment". Reported:
the mean similarity of same- and different-segment pairs and the ROC AUC (Mann-Whitney U / (n1 n0),
ties counted one half).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['object_images', 'zero_shot_figures', 'segment_map', 'patch_segments', 'roc_auc',
           'correlation_agreement', 'format_zero_shot_table', 'format_correlation_table']


def object_images(classes: Sequence[str], seeds: Sequence[int], size: int
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """``render_object`` images: every class with every seed. Returns (N, size, size, 3) uint8 and
    (N,) class positions in ``classes``."""
    from .generator import render_object
    images, labels = [], []
    for ci, name in enumerate(classes):
        for s in seeds:
            images.append(render_object(name, int(s), size)[0])
            labels.append(ci)
    return np.stack(images), np.asarray(labels)


def _accuracy_table(pred: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> Dict[str, Any]:
    per_class = {c: float(np.mean(pred[labels == i] == i)) for i, c in enumerate(classes)}
    return dict(top1=float(np.mean(pred == labels)), chance=1.0 / len(classes),
                per_class=per_class, n=int(len(labels)))


@torch.no_grad()
def zero_shot_figures(encode_image: Callable[[Tensor], Tensor], class_embeddings: Tensor,
                      seeds: Sequence[int], size: int = 64,
                      to_input: Optional[Callable[[np.ndarray], Tensor]] = None,
                      batch_size: int = 128) -> Dict[str, Any]:
    """Zero-shot top-1 on ``render_object`` images of ``seeds``.

    Args:
        encode_image: (B, 3, H, W) model input -> (B, E) image embeddings.
        class_embeddings (Tensor): (len(ALL_CLASSES), E), rows in ``ALL_CLASSES`` order, normalised.
        seeds: object seeds (disjoint from training: the ``'zero_shot'`` stream).
        size (int): image side.
        to_input: uint8 (B, H, W, 3) -> model input; defaults to the CLIP normalisation.

    Returns:
        dict: ``things`` (among things), ``things_all`` (among all classes), ``stuff`` (among stuff),
        each ``{top1, chance, per_class, n}``.
    """
    from .classes import ALL_CLASSES, STUFF_CLASSES, THING_CLASSES
    if to_input is None:
        from .clip_trainer import to_model_input as to_input
    emb = F.normalize(class_embeddings.float(), dim=-1)
    if emb.shape[0] != len(ALL_CLASSES):
        raise ValueError(f'class_embeddings has {emb.shape[0]} rows, the world has '
                         f'{len(ALL_CLASSES)} classes')
    out = {}
    n_things = len(THING_CLASSES)
    for kind, classes in (('things', THING_CLASSES), ('stuff', STUFF_CLASSES)):
        images, labels = object_images(classes, seeds, size)
        feats = torch.cat([F.normalize(encode_image(to_input(images[i:i + batch_size])).float(),
                                       dim=-1) for i in range(0, len(images), batch_size)])
        sims = feats @ emb.t()
        if kind == 'things':
            out['things'] = _accuracy_table(sims[:, :n_things].argmax(1).numpy(), labels, classes)
            out['things_all'] = _accuracy_table(sims.argmax(1).numpy(), labels, classes)
            out['things_all']['chance'] = 1.0 / len(ALL_CLASSES)
        else:
            out['stuff'] = _accuracy_table(sims[:, n_things:].argmax(1).numpy(), labels, classes)
    return out


def segment_map(scene) -> np.ndarray:
    """(H, W) int segment ids of a ``Scene``: thing instance k (paint order, visible pixels) -> k + 1;
    stuff pixels -> 1000 + their class index."""
    seg = 1000 + scene.label.astype(np.int64)
    for k, (_, mask) in enumerate(scene.objects):
        seg[mask] = k + 1
    return seg


def patch_segments(seg: np.ndarray, patch: int, purity: float = 0.75) -> np.ndarray:
    """(h * w,) segment id of each patch (row-major), or -1 where no segment holds ``purity`` of it."""
    h, w = seg.shape[0] // patch, seg.shape[1] // patch
    blocks = seg[:h * patch, :w * patch].reshape(h, patch, w, patch).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(h * w, patch * patch)
    out = np.full(h * w, -1, dtype=np.int64)
    for i, b in enumerate(blocks):
        vals, counts = np.unique(b, return_counts=True)
        j = int(np.argmax(counts))
        if counts[j] >= purity * b.size:
            out[i] = vals[j]
    return out


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC = Mann-Whitney U / (n_pos * n_neg), average ranks for ties."""
    from scipy.stats import rankdata
    positive = np.asarray(positive, dtype=bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError('roc_auc needs both positive and negative pairs')
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _pair_stats(sims: np.ndarray, same: np.ndarray) -> Dict[str, float]:
    return dict(same_mean=float(sims[same].mean()), diff_mean=float(sims[~same].mean()),
                auc=roc_auc(sims, same), n_same=int(same.sum()), n_diff=int((~same).sum()))


@torch.no_grad()
def correlation_agreement(features: Callable[[np.ndarray], Tensor], seeds: Sequence[int],
                          size: int = 64, patch: int = 8, purity: float = 0.75,
                          batch_size: int = 64) -> Dict[str, Dict[str, float]]:
    """Agreement of patch-feature cosine similarities with object membership on scenes of ``seeds``.

    Args:
        features: uint8 (B, H, W, 3) images -> (B, C, h, w) patch features (h = H / ``patch``).
        seeds: scene seeds (the ``'correlation'`` stream).

    Returns:
        dict: ``'all'`` (every pair of pure patches of an image) and ``'things'`` (pairs of patches
        that both lie on things: same instance vs another instance, where colour alone does not
        decide, since an instance has two colours and instances share the palette), each with
        ``same_mean``, ``diff_mean`` (mean cosine similarity of same- / different-segment pairs),
        ``auc``, ``n_same``, ``n_diff``.
    """
    from .generator import render_scene
    sims_all: List[np.ndarray] = []
    same_all: List[np.ndarray] = []
    thing_all: List[np.ndarray] = []
    seeds = list(seeds)
    for i in range(0, len(seeds), batch_size):
        scenes = [render_scene(int(s), size, caption=False) for s in seeds[i:i + batch_size]]
        feats = features(np.stack([sc.image for sc in scenes])).float()
        if tuple(feats.shape[-2:]) != (size // patch, size // patch):
            raise ValueError(f'features give a {tuple(feats.shape[-2:])} grid, expected '
                             f'{(size // patch, size // patch)}')
        feats = F.normalize(feats.flatten(2).transpose(1, 2), dim=-1)   # (B, N, C)
        for sc, f in zip(scenes, feats):
            ids = patch_segments(segment_map(sc), patch, purity)
            keep = np.flatnonzero(ids >= 0)
            if len(keep) < 2:
                continue
            sim = (f[keep] @ f[keep].t()).numpy()
            iu = np.triu_indices(len(keep), k=1)
            k_ids = ids[keep]
            sims_all.append(sim[iu])
            same_all.append((k_ids[:, None] == k_ids[None, :])[iu])
            on_thing = k_ids < 1000
            thing_all.append((on_thing[:, None] & on_thing[None, :])[iu])
    sims = np.concatenate(sims_all)
    same = np.concatenate(same_all)
    things = np.concatenate(thing_all)
    return {'all': _pair_stats(sims, same), 'things': _pair_stats(sims[things], same[things])}


def format_zero_shot_table(fig: Dict[str, Any]) -> str:
    """Markdown table of :func:`zero_shot_figures` (per class)."""
    lines = ['| set | class | top-1 | chance |', '|---|---|---|---|']
    for key, label in (('things', 'things among things'), ('things_all', 'things among all'),
                       ('stuff', 'stuff among stuff')):
        t = fig[key]
        for c, a in t['per_class'].items():
            lines.append(f'| {label} | {c} | {a:.2f} | {t["chance"]:.3f} |')
        lines.append(f'| {label} | **all** | **{t["top1"]:.3f}** | {t["chance"]:.3f} |')
    return '\n'.join(lines)


def format_correlation_table(corr: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    """Markdown table of several :func:`correlation_agreement` results keyed by feature name."""
    lines = ['| features | same cos (all) | diff cos (all) | AUC (all) | same cos (things) | '
             'diff cos (things) | AUC (things) |', '|---|---|---|---|---|---|---|']
    for name, r in corr.items():
        a, t = r['all'], r['things']
        lines.append(f'| {name} | {a["same_mean"]:.3f} | {a["diff_mean"]:.3f} | {a["auc"]:.3f} | '
                     f'{t["same_mean"]:.3f} | {t["diff_mean"]:.3f} | {t["auc"]:.3f} |')
    return '\n'.join(lines)
