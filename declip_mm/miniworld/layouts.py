"""Writers of the miniature world's on-disk layouts (docs/miniworld.md), each in the layout the project's
real datasets use (docs/datasets.md):

```
OUT/
├── world.json                         version, seeds, counts, seen / unseen classes
├── class_names/miniworld.txt          all classes (configs/class_names format), label order
├── class_names/miniworld_seen.txt     the classes of the CAT-Seg training split
├── pairs/images/*.jpg                 image-caption pairs (CLIP pre-training)
├── pairs/captions.csv                 open_clip CsvDataset: header "filepath<TAB>title", absolute paths
├── pairs/captions.jsonl               {"file": "images/....jpg", "caption": ...} (paths relative to pairs/)
├── coco/train2017/*.jpg               unlabeled images (the distillation configs' data_root='data/coco')
├── coco/val2017/*.jpg                 COCO-panoptic region classification (the benchmark's scenes)
├── coco/annotations/panoptic_val2017.json and panoptic_val2017/*.png
└── ade/ADEChallengeData2016/
    ├── images/validation/*.jpg, annotations/validation/*.png   the labelled benchmark
    └── images/training/*.jpg,   annotations/training/*.png     CAT-Seg training split (seen classes only)
```

ADE label convention (mmseg's ``ADE20KDataset``, ``reduce_zero_label=True``): a PNG pixel holds the
``ALL_CLASSES`` index + 1; 0 ("other", ignored) is never written since every pixel is labelled.
Panoptic categories: id = ``ALL_CLASSES`` index + 1, ``isthing`` 1 for things, 0 for stuff; one
segment per thing instance (its visible pixels) and one per stuff class (all its pixels).
Scene seeds: :func:`scene_seed` (world seed, split, index), so splits never share a scene.
"""
from __future__ import annotations

import csv
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

from .classes import ALL_CLASSES, CLASS_INDEX, STUFF_CLASSES, THING_CLASSES, WORLD_VERSION
from .generator import render_scene

#: split -> id in the scene seed; 'clip', 'vfm', 'zero_shot' are reserved for the tower trainers
SPLIT_IDS = {'pairs': 1, 'unlabeled': 2, 'bench': 3, 'catseg_train': 4, 'clip': 5, 'vfm': 6,
             'zero_shot': 7}
#: held out of the CAT-Seg training split by default (3 things, 1 stuff)
DEFAULT_UNSEEN = ('moon', 'kite', 'leaf', 'sand')
JPEG_QUALITY = 95   # with 4:4:4 chroma: 4:2:0 blurs the 3-6 px two-colour patterns (mean error 9 vs 2.6)


def scene_seed(world_seed: int, split: str, index: int) -> int:
    """The seed of scene ``index`` of ``split`` in world ``world_seed`` (distinct for every triple
    with index < 2**24)."""
    if split not in SPLIT_IDS:
        raise KeyError(f'unknown split {split!r}; known: {sorted(SPLIT_IDS)}')
    if not 0 <= index < 1 << 24 or world_seed < 0:
        raise ValueError(f'need world_seed >= 0 and 0 <= index < 2**24, got {world_seed}, {index}')
    return (int(world_seed) << 32) | (SPLIT_IDS[split] << 24) | int(index)


def write_class_names(path, classes) -> str:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(classes) + '\n')
    return path


def _save_jpg(path, image):
    Image.fromarray(image).save(path, quality=JPEG_QUALITY, subsampling=0)


def write_pairs(root, world_seed, n, size):
    img_dir = osp.join(root, 'images')
    os.makedirs(img_dir, exist_ok=True)
    rows = []
    for i in range(n):
        scene = render_scene(scene_seed(world_seed, 'pairs', i), size)
        name = f'{i:07d}.jpg'
        _save_jpg(osp.join(img_dir, name), scene.image)
        rows.append((name, scene.caption))
    with open(osp.join(root, 'captions.csv'), 'w', newline='') as f:
        w = csv.writer(f, delimiter='\t', lineterminator='\n', quoting=csv.QUOTE_MINIMAL)
        w.writerow(['filepath', 'title'])
        for name, cap in rows:
            w.writerow([osp.abspath(osp.join(img_dir, name)), cap])
    with open(osp.join(root, 'captions.jsonl'), 'w') as f:
        for name, cap in rows:
            f.write(json.dumps(dict(file=f'images/{name}', caption=cap)) + '\n')
    return dict(pairs_csv=osp.join(root, 'captions.csv'),
                pairs_jsonl=osp.join(root, 'captions.jsonl'), pairs_images=img_dir)


def write_unlabeled(img_dir, world_seed, n, size):
    os.makedirs(img_dir, exist_ok=True)
    for i in range(n):
        scene = render_scene(scene_seed(world_seed, 'unlabeled', i), size, caption=False)
        _save_jpg(osp.join(img_dir, f'{i + 1:012d}.jpg'), scene.image)
    return img_dir


def write_ade_split(ade_root, split, world_seed, seed_split, n, size, classes=None):
    """ADE layout ``images/<split>/ADE_<tag>_XXXXXXXX.jpg`` + ``annotations/<split>/*.png`` (index + 1)."""
    img_dir = osp.join(ade_root, 'images', split)
    ann_dir = osp.join(ade_root, 'annotations', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    tag = 'val' if split == 'validation' else 'train'
    scenes = []
    for i in range(n):
        scene = render_scene(scene_seed(world_seed, seed_split, i), size, classes=classes,
                             caption=False)
        stem = f'ADE_{tag}_{i + 1:08d}'
        _save_jpg(osp.join(img_dir, stem + '.jpg'), scene.image)
        Image.fromarray((scene.label + 1).astype(np.uint8)).save(osp.join(ann_dir, stem + '.png'))
        scenes.append(scene)
    return img_dir, ann_dir, scenes


def panoptic_ids(scene):
    """(ids (H, W) int64, segments_info) of a scene: things first (paint order), then stuff.

    Segment ids are ``1000 * (category id) + k`` (k = 1, 2, ...: the k-th segment of that category),
    stored in the PNG as ``R + 256 G + 256² B`` like COCO's."""
    h, w = scene.label.shape
    ids = np.zeros((h, w), dtype=np.int64)
    segs = []
    per_cat = {}

    def add(cat_name, mask, isthing):
        cat = CLASS_INDEX[cat_name] + 1
        per_cat[cat] = per_cat.get(cat, 0) + 1
        seg_id = 1000 * cat + per_cat[cat]
        ids[mask] = seg_id
        ys, xs = np.nonzero(mask)
        segs.append(dict(id=int(seg_id), category_id=int(cat), iscrowd=0, area=int(mask.sum()),
                         bbox=[int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                               int(ys.max() - ys.min() + 1)], isthing=isthing))

    for name, mask in scene.objects:
        add(name, mask, 1)
    thing_pixels = np.zeros((h, w), dtype=bool)
    for _, mask in scene.objects:
        thing_pixels |= mask
    for name in STUFF_CLASSES:
        mask = (scene.label == CLASS_INDEX[name]) & ~thing_pixels
        if mask.any():
            add(name, mask, 0)
    for s in segs:
        s.pop('isthing')
    return ids, segs


def write_panoptic(coco_root, scenes, split='val2017'):
    img_dir = osp.join(coco_root, split)
    ann_dir = osp.join(coco_root, 'annotations')
    png_dir = osp.join(ann_dir, f'panoptic_{split}')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(png_dir, exist_ok=True)
    js_images, js_anns = [], []
    for i, scene in enumerate(scenes):
        img_id = i + 1
        stem = f'{img_id:012d}'
        ids, segs = panoptic_ids(scene)
        rgb = np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], -1).astype(np.uint8)
        Image.fromarray(rgb).save(osp.join(png_dir, stem + '.png'))
        _save_jpg(osp.join(img_dir, stem + '.jpg'), scene.image)
        h, w = scene.label.shape
        js_images.append(dict(id=img_id, file_name=stem + '.jpg', height=h, width=w))
        js_anns.append(dict(image_id=img_id, file_name=stem + '.png', segments_info=segs))
    cats = [dict(id=CLASS_INDEX[c] + 1, name=c, isthing=int(c in THING_CLASSES),
                 supercategory='thing' if c in THING_CLASSES else 'stuff') for c in ALL_CLASSES]
    path = osp.join(ann_dir, f'panoptic_{split}.json')
    with open(path, 'w') as f:
        json.dump(dict(images=js_images, annotations=js_anns, categories=cats), f)
    return path, png_dir, img_dir


def write_world(out_dir, world_seed: int = 0, *, n_caption: int = 2000, n_unlabeled: int = 2000,
                n_bench: int = 200, n_catseg_train: int = 1000,
                unseen_classes=DEFAULT_UNSEEN, size: int = 64, bench_size=None) -> dict:
    """Write every layout of world ``world_seed`` under ``out_dir`` (see the module docstring).

    Args:
        out_dir: output folder (created).
        world_seed: seed of the world; scene seeds follow :func:`scene_seed`.
        n_caption / n_unlabeled / n_bench / n_catseg_train: images per layout (the panoptic split
            holds the benchmark's scenes).
        unseen_classes: classes the CAT-Seg training split never contains (at least one stuff class
            must stay seen).
        size: side of the square images; bench_size: of the benchmark / panoptic images (default
            ``size``).

    Returns:
        dict: paths of every layout (keys in docs/miniworld.md) and ``seen_classes`` /
        ``unseen_classes``.
    """
    unseen = tuple(unseen_classes)
    bad = [c for c in unseen if c not in CLASS_INDEX]
    if bad:
        raise ValueError(f'unseen_classes {bad} are not miniworld classes {ALL_CLASSES}')
    seen = tuple(c for c in ALL_CLASSES if c not in unseen)
    if not any(c in STUFF_CLASSES for c in seen):
        raise ValueError('at least one stuff class must stay seen (stuff labels every pixel)')
    bench_size = int(bench_size or size)
    out = osp.abspath(out_dir)
    os.makedirs(out, exist_ok=True)
    paths = dict(root=out)
    paths['class_names'] = write_class_names(osp.join(out, 'class_names', 'miniworld.txt'),
                                             ALL_CLASSES)
    paths['seen_class_names'] = write_class_names(
        osp.join(out, 'class_names', 'miniworld_seen.txt'), seen)
    paths.update(write_pairs(osp.join(out, 'pairs'), world_seed, n_caption, size))
    coco = osp.join(out, 'coco')
    paths['coco_root'] = coco
    paths['unlabeled_dir'] = write_unlabeled(osp.join(coco, 'train2017'), world_seed, n_unlabeled,
                                             size)
    ade = osp.join(out, 'ade', 'ADEChallengeData2016')
    paths['ade_root'] = ade
    paths['bench_images'], paths['bench_annotations'], bench = write_ade_split(
        ade, 'validation', world_seed, 'bench', n_bench, bench_size)
    paths['panoptic_json'], paths['panoptic_pngs'], paths['panoptic_images'] = write_panoptic(
        coco, bench)
    paths['catseg_images'], paths['catseg_annotations'], _ = write_ade_split(
        ade, 'training', world_seed, 'catseg_train', n_catseg_train, size, classes=seen)
    paths['seen_classes'], paths['unseen_classes'] = seen, unseen
    manifest = dict(world_version=WORLD_VERSION, world_seed=int(world_seed), size=int(size),
                    bench_size=bench_size, counts=dict(pairs=n_caption, unlabeled=n_unlabeled,
                                                       bench=n_bench, catseg_train=n_catseg_train),
                    classes=list(ALL_CLASSES), things=list(THING_CLASSES),
                    stuff=list(STUFF_CLASSES), seen_classes=list(seen), unseen_classes=list(unseen),
                    seed_scheme='scene_seed(world_seed, split, i) = world_seed<<32 | split_id<<24 | i',
                    split_ids=SPLIT_IDS)
    paths['manifest'] = osp.join(out, 'world.json')
    with open(paths['manifest'], 'w') as f:
        json.dump(manifest, f, indent=1)
    return paths
