"""Shared set-up of the region-classification tests: a hand-made panoptic fixture whose answers are
known, and a stub tower whose features are a known function of the pixel colours.

Layout (64x64 images, patch 8, letterbox 64 -> an 8x8 token grid aligned with the 8-px blocks):

image 139: sky rows 0-31, road rows 32-63; person (8,8)-(24,24); car (40,40)-(56,56);
           bottle 8x8 (32,16)-(40,24) (w*h = 64: kept); bottle 5x5 (0,56)-(5,61) (25 < 64: dropped);
           floor-wood 8x8 (48,8)-(56,16) (stuff: mask2box gives 7x7 = 49 < 64: dropped)
image 140: sky / road; person (16,8)-(32,24)

Class order (category ids sorted): person 0, car 1, dog 2 (never appears), bottle 3,
floor-wood 4, road 5, sky 6.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from declip_mm.datasets.transforms import CLIP_MEAN, CLIP_STD

PALETTE = {1: (230, 30, 30), 3: (30, 230, 30), 18: (30, 30, 230), 44: (230, 230, 30),
           118: (230, 30, 230), 149: (30, 230, 230), 187: (140, 140, 250)}
CAT_ORDER = (1, 3, 18, 44, 118, 149, 187)
PERSON, CAR, DOG, BOTTLE, FLOOR, ROAD, SKY = range(7)

IMAGES = [
    dict(size=(64, 64), segments=[(187, (0, 0, 64, 32)), (149, (0, 32, 64, 64)),
                                  (1, (8, 8, 24, 24)), (3, (40, 40, 56, 56)),
                                  (44, (32, 16, 40, 24)), (44, (0, 56, 5, 61)),
                                  (118, (48, 8, 56, 16))]),
    dict(size=(64, 64), segments=[(187, (0, 0, 64, 32)), (149, (0, 32, 64, 64)),
                                  (1, (16, 8, 32, 24))]),
]

# the stub's dense features: class c -> 10 e_{CONFUSE[c]} + R (R fixes the order of the rest)
CONFUSE = {PERSON: PERSON, CAR: DOG, DOG: DOG, BOTTLE: BOTTLE, FLOOR: FLOOR, ROAD: FLOOR, SKY: SKY}
R = torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0], dtype=torch.float64)


def write_fixture(data_dir):
    from declip_mm.testing import write_panoptic_fixture
    return write_panoptic_fixture(str(data_dir), images=IMAGES, palette=PALETTE, noise=4.0)


def pipeline(with_crops=True, size=64, patch=8, crop=32):
    return [dict(type='LoadPanopticRegions', image_size=size, patch_size=patch, crop_size=crop,
                 with_crops=with_crops),
            dict(type='DeCLIPLetterbox', size=size, key='img_tensor'),
            dict(type='PackRegionInputs')]


def pixel_classes(x):
    """(B, 3, H, W) CLIP-normalised -> (B, H, W) class index of the nearest colour, -1 for the
    black padding."""
    m = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    rgb = (x.float() * s + m) * 255.0
    cols = torch.tensor([PALETTE[c] for c in CAT_ORDER] + [(0, 0, 0)], dtype=torch.float32)
    d = ((rgb[:, None] - cols.view(1, -1, 3, 1, 1)) ** 2).sum(2)
    idx = d.argmin(1)
    idx[idx == len(CAT_ORDER)] = -1
    return idx


def class_vectors(idx, confuse=True):
    """(..., ) class indices -> (..., 7) float64 features; -1 -> 0."""
    out = torch.zeros(*idx.shape, 7, dtype=torch.float64)
    for c in range(7):
        v = R.clone()
        v[CONFUSE[c] if confuse else c] += 10.0
        out[idx == c] = v
    return out


class StubTower(nn.Module):
    """A 'tower' whose content map is the patch average of per-pixel class vectors (with the
    CONFUSE mistakes) and whose crop embedding is the majority class of the crop (padding ignored) if
    it covers >= 60% of the crop, else 'dog'."""

    embed_dim = 7

    def __init__(self, patch=8):
        super().__init__()
        self.patch = patch

    def forward(self, x):
        v = class_vectors(pixel_classes(x)).permute(0, 3, 1, 2)
        return {'content': F.avg_pool2d(v, self.patch).float()}

    def encode_image(self, crops, normalize=False):
        out = []
        for cls in pixel_classes(crops):
            valid = cls[cls >= 0]
            counts = torch.bincount(valid, minlength=7).double()
            top = int(counts.argmax())
            c = top if counts[top] >= 0.6 * valid.numel() else DOG
            v = R.clone()
            v[c] += 10.0
            out.append(v)
        out = torch.stack(out).float()
        return F.normalize(out, dim=-1) if normalize else out


def stub_classifier(features=('rois', 'maskpool', 'crops')):
    """A DeCLIPRegionClassifier with the stub tower and identity class embeddings."""
    from declip_mm.models import DeCLIPRegionClassifier
    from declip_mm.testing import tiny_clip_config
    model = DeCLIPRegionClassifier(
        backbone=None, features=features,
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=tiny_clip_config('openai'),
                          templates='single'))
    model.backbone = StubTower()
    model.class_embeddings = lambda names: torch.eye(len(names))
    return model.eval()


# hand-computed answers (%): per-class mean over the classes present in each split
# rois / maskpool: things person (2/2), car (0/1, rank 2 behind dog), bottle (1/1); dog absent.
#                  stuff sky (2/2), road (0/2, not even in the top 5)
# crops: things are cut with the 1.5x box -> the object covers (1/1.5)^2 = 44% < 60% -> 'dog'
#        (top-5 = dog, person, car, bottle, floor-wood holds every thing class); stuff crops are
#        tight -> correct.
EXPECTED = {
    'rois.thing.macc1': 100 * 2 / 3, 'rois.thing.macc5': 100.0,
    'rois.stuff.macc1': 50.0, 'rois.stuff.macc5': 50.0,
    'maskpool.thing.macc1': 100 * 2 / 3, 'maskpool.thing.macc5': 100.0,
    'maskpool.stuff.macc1': 50.0, 'maskpool.stuff.macc5': 50.0,
    'crops.thing.macc1': 0.0, 'crops.thing.macc5': 100.0,
    'crops.stuff.macc1': 100.0, 'crops.stuff.macc5': 100.0,
}


def run_classifier(model, dataset, batch_size=2):
    """Predictions of every image and the metric on them."""
    from mmengine.dataset import pseudo_collate

    from declip_mm.evaluation import RegionClassificationMetric
    metric = RegionClassificationMetric()
    metric.dataset_meta = dataset.metainfo
    for i in range(0, len(dataset), batch_size):
        batch = pseudo_collate([dataset[j] for j in range(i, min(i + batch_size, len(dataset)))])
        metric.process(batch, model.test_step(batch))
    res = metric.evaluate(len(dataset))
    return {k.split('/', 1)[1]: v for k, v in res.items()}


def np_int(x):
    return np.asarray(x, dtype=np.int64)


def constructed_results():
    """Predictions written by hand for the metric tests: 3 images, classes 0-4 (0-2 things).

    thing regions: class 0 x3 (top-1 right 2 of 3; the wrong one has it at rank 3), class 1 x1
    (wrong, not in the top 5), class 2 never appears; stuff: class 3 x2 (right, wrong at rank 5),
    class 4 x1 (right).
    """
    def t(x):
        return torch.tensor(x)

    return [
        dict(img_id=1, seg_ids=t([11, 12, 13]), labels=t([0, 1, 3]),
             is_thing=t([True, True, False]),
             pred_rois=t([[0, 1, 2, 3, 4], [2, 3, 4, 5, 6], [3, 0, 1, 2, 4]])),
        dict(img_id=2, seg_ids=t([21, 22]), labels=t([0, 3]), is_thing=t([True, False]),
             pred_rois=t([[1, 2, 0, 3, 4], [0, 1, 2, 4, 3]])),
        dict(img_id=3, seg_ids=t([31, 32]), labels=t([0, 4]), is_thing=t([True, False]),
             pred_rois=t([[0, 4, 3, 2, 1], [4, 0, 1, 2, 3]])),
    ]


# thing: class 0 top-1 2/3, top-5 3/3; class 1 0 and 0 -> macc1 = (2/3 + 0) / 2, macc5 = 1/2
# stuff: class 3 top-1 1/2, top-5 2/2; class 4 1 and 1 -> macc1 = (1/2 + 1) / 2, macc5 = 1
CONSTRUCTED_EXPECTED = {'rois.thing.macc1': 100 * (2 / 3) / 2, 'rois.thing.macc5': 50.0,
                        'rois.stuff.macc1': 75.0, 'rois.stuff.macc5': 100.0}


def ddp_metric_worker(rank, world, init_file, out_file):
    """One gloo process: the results of the images mmengine's DefaultSampler gives this rank (it
    pads rank 1 with a repeat of image 0), then the metric's all-gather."""
    import json

    import torch.distributed as dist
    from mmengine.dataset import DefaultSampler

    from declip_mm.evaluation import RegionClassificationMetric
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    results = constructed_results()
    sampler = DefaultSampler(list(range(len(results))), shuffle=False)
    metric = RegionClassificationMetric()
    mine = list(sampler)
    metric.process(None, [results[i] for i in mine])
    res = metric.evaluate(len(results))
    if rank == 0:
        with open(out_file, 'w') as f:
            json.dump(dict(res, indices=mine), f)
    dist.destroy_process_group()
