"""The figures the tiny towers are chosen on (pre-registration, docs/miniworld.md): zero-shot
classification of held-out single-object images, and how well patch-feature correlations agree with
object membership. No segmentation number enters here.

Zero-shot (CLIP paper, §3.1.2): the class embedding is the prompt ensemble of the project's
``DeCLIPTextEncoder`` (L2-normalised mean of the normalised template embeddings); an image is assigned
the class of highest cosine similarity with its ``encode_image`` embedding. Things are classified
among the thing classes (chance 1 / #things) and among all classes (a background answer counts as
wrong), stuff patches among the stuff classes (chance 1 / #stuff).

Dense zero-shot (the *dense alignment* of the CLIP's patch tokens): on the same held-out single-object
images, every patch lying at least ``purity`` inside the object (a stuff image: every patch) is
classified among all classes by its dense feature (the backbone's ``content`` map in a given attention
mode) against the same class embeddings. A CLIP whose image embedding pools only the [CLS] row need not
align its patch rows with the text at all; this figure says whether they are.

Crop zero-shot (the quality of DeCLIP's content teacher, which embeds grid crops of a scene with
``encode_image``): held-out scenes cut into every cell of an m x m grid, each cell resized to the image
side (DeCLIP's teacher crops, magnified m times), embedded and classified among all classes; a cell
counts when ``purity`` of its pixels are one class (its label). Reported per grid: top-1 on
thing-labelled and on stuff-labelled cells, and how often a stuff cell is called a thing.

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

__all__ = ['object_images', 'zero_shot_figures', 'dense_zero_shot_figures', 'grid_cells',
           'crop_zero_shot_figures', 'segment_map', 'patch_segments', 'roc_auc',
           'correlation_agreement', 'format_zero_shot_table', 'format_dense_table',
           'format_crop_table',
           'format_correlation_table']


def object_images(classes: Sequence[str], seeds: Sequence[int], size: int,
                  with_masks: bool = False) -> Tuple[np.ndarray, ...]:
    """``render_object`` images: every class with every seed. Returns (N, size, size, 3) uint8 and
    (N,) class positions in ``classes`` (and, ``with_masks``, the (N, size, size) object masks)."""
    from .generator import render_object
    images, labels, masks = [], [], []
    for ci, name in enumerate(classes):
        for s in seeds:
            image, mask = render_object(name, int(s), size)
            images.append(image)
            masks.append(mask)
            labels.append(ci)
    if with_masks:
        return np.stack(images), np.asarray(labels), np.stack(masks)
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


def _mean_or_nan(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else float('nan')


@torch.no_grad()
def dense_zero_shot_figures(dense: Callable[[Tensor], Tensor], class_embeddings: Tensor,
                            seeds: Sequence[int], size: int = 64, patch: int = 8,
                            purity: float = 0.75,
                            to_input: Optional[Callable[[np.ndarray], Tensor]] = None,
                            batch_size: int = 128) -> Dict[str, Any]:
    """Patch-level zero-shot top-1 on ``render_object`` images of ``seeds`` (module docstring).

    Args:
        dense: (B, 3, H, W) model input -> (B, E, H / patch, W / patch) dense features.
        class_embeddings (Tensor): (len(ALL_CLASSES), E), rows in ``ALL_CLASSES`` order.
        purity (float): share of a patch's pixels that must lie on the object (thing images).

    Returns:
        dict: ``things`` (patches on thing objects), ``stuff`` (patches of stuff images), both
        classified among all classes (chance 1 / #classes), each ``{top1, chance, per_class, n}`` with
        ``n`` = number of patches and ``per_class`` the top-1 over the patches of each class.
    """
    from .classes import ALL_CLASSES, STUFF_CLASSES, THING_CLASSES
    if to_input is None:
        from .clip_trainer import to_model_input as to_input
    emb = F.normalize(class_embeddings.float(), dim=-1)
    if emb.shape[0] != len(ALL_CLASSES):
        raise ValueError(f'class_embeddings has {emb.shape[0]} rows, the world has '
                         f'{len(ALL_CLASSES)} classes')
    h = w = size // patch
    out = {}
    for kind, classes in (('things', THING_CLASSES), ('stuff', STUFF_CLASSES)):
        images, labels, masks = object_images(classes, seeds, size, with_masks=True)
        cover = masks[:, :h * patch, :w * patch].reshape(len(masks), h, patch, w, patch)
        keep = cover.mean(axis=(2, 4)) >= purity                          # (N, h, w)
        preds = []
        for i in range(0, len(images), batch_size):
            feats = dense(to_input(images[i:i + batch_size])).float()
            if tuple(feats.shape[-2:]) != (h, w):
                raise ValueError(f'dense features give a {tuple(feats.shape[-2:])} grid, expected '
                                 f'{(h, w)}')
            sims = torch.einsum('bchw,kc->bkhw', F.normalize(feats, dim=1), emb)
            preds.append(sims.argmax(1).numpy())
        pred = np.concatenate(preds)                                      # (N, h, w) class index
        target = np.asarray([ALL_CLASSES.index(classes[i]) for i in labels])
        target = np.broadcast_to(target[:, None, None], pred.shape)
        pred_k, target_k = pred[keep], target[keep]
        out[kind] = dict(
            top1=float(np.mean(pred_k == target_k)), chance=1.0 / len(ALL_CLASSES),
            per_class={c: _mean_or_nan(pred_k[target_k == ALL_CLASSES.index(c)]
                                       == ALL_CLASSES.index(c)) for c in classes},
            n=int(keep.sum()))
    return out


def grid_cells(side: int, grid: int) -> List[Tuple[int, int, int, int]]:
    """The cells (y0, y1, x0, x1) of a ``grid`` x ``grid`` split of a ``side`` x ``side`` image, row
    by row (edges rounded)."""
    edges = [int(round(side * i / grid)) for i in range(grid + 1)]
    return [(edges[i], edges[i + 1], edges[j], edges[j + 1]) for i in range(grid)
            for j in range(grid)]


@torch.no_grad()
def crop_zero_shot_figures(encode_image: Callable[[Tensor], Tensor], class_embeddings: Tensor,
                           seeds: Sequence[int], size: int = 64, grids: Sequence[int] = (1, 2, 3, 4, 6),
                           purity: float = 0.6,
                           to_input: Optional[Callable[[np.ndarray], Tensor]] = None,
                           batch_size: int = 256) -> Dict[str, Dict[str, float]]:
    """Crop zero-shot (module docstring) on scenes of ``seeds``.

    Returns:
        dict: ``'<g>x<g>'`` -> ``thing_top1``, ``stuff_top1``, ``stuff_called_thing`` (share of the
        stuff cells whose top class is a thing), ``n_thing``, ``n_stuff`` (NaN top-1 without cells).
    """
    import cv2

    from .classes import ALL_CLASSES, THING_CLASSES
    from .generator import render_scene
    if to_input is None:
        from .clip_trainer import to_model_input as to_input
    emb = F.normalize(class_embeddings.float(), dim=-1)
    if emb.shape[0] != len(ALL_CLASSES):
        raise ValueError(f'class_embeddings has {emb.shape[0]} rows, the world has '
                         f'{len(ALL_CLASSES)} classes')
    scenes = [render_scene(int(s), size, caption=False) for s in seeds]
    n_things = len(THING_CLASSES)
    out = {}
    for g in grids:
        crops, labels = [], []
        for sc in scenes:
            for y0, y1, x0, x1 in grid_cells(size, int(g)):
                vals, counts = np.unique(sc.label[y0:y1, x0:x1], return_counts=True)
                if counts.max() < purity * (y1 - y0) * (x1 - x0):
                    continue
                crops.append(cv2.resize(sc.image[y0:y1, x0:x1], (size, size),
                                        interpolation=cv2.INTER_LINEAR))
                labels.append(int(vals[counts.argmax()]))
        preds = []
        for i in range(0, len(crops), batch_size):
            feats = F.normalize(encode_image(to_input(np.stack(crops[i:i + batch_size]))).float(),
                                dim=-1)
            preds.append((feats @ emb.t()).argmax(1).numpy())
        pred = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
        lab = np.asarray(labels, dtype=np.int64)
        thing, stuff = lab < n_things, lab >= n_things
        out[f'{g}x{g}'] = dict(thing_top1=_mean_or_nan(pred[thing] == lab[thing]),
                               stuff_top1=_mean_or_nan(pred[stuff] == lab[stuff]),
                               stuff_called_thing=_mean_or_nan(pred[stuff] < n_things),
                               n_thing=int(thing.sum()), n_stuff=int(stuff.sum()))
    return out


def format_crop_table(crop: Dict[str, Dict[str, float]]) -> str:
    """Markdown table of :func:`crop_zero_shot_figures`."""
    lines = ['| grid (magnification) | thing cells top-1 (n) | stuff cells top-1 (n) | stuff cells '
             'called a thing |', '|---|---|---|---|']
    for g, r in crop.items():
        lines.append(f'| {g} | {r["thing_top1"]:.3f} ({r["n_thing"]}) | {r["stuff_top1"]:.3f} '
                     f'({r["n_stuff"]}) | {r["stuff_called_thing"]:.3f} |')
    return '\n'.join(lines)


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


def format_dense_table(dense: Dict[str, Dict[str, Any]]) -> str:
    """Markdown table of :func:`dense_zero_shot_figures` results keyed by attention mode."""
    lines = ['| mode | thing patches top-1 | stuff patches top-1 | chance | per class |',
             '|---|---|---|---|---|']
    for mode, fig in dense.items():
        per = ', '.join(f'{c} {a:.2f}' for k in ('things', 'stuff')
                        for c, a in fig[k]['per_class'].items())
        lines.append(f'| {mode} | {fig["things"]["top1"]:.3f} | {fig["stuff"]["top1"]:.3f} | '
                     f'{fig["things"]["chance"]:.3f} | {per} |')
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
