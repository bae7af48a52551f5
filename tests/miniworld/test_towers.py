"""The miniature world's tiny towers (declip_mm/miniworld/clip_trainer.py, vfm_trainer.py,
zero_shot.py, tower_cache.py): the saved CLIP loads through the project's towers and gives open_clip's
embeddings, the saved VFM loads through VFMTeacher, the losses are the formulas, the figures are
right on oracles, the cache is keyed by versions and settings."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from declip_mm.miniworld import ALL_CLASSES, STUFF_CLASSES, THING_CLASSES
from declip_mm.miniworld.clip_trainer import (
    CLIPTrainSettings,
    build_clip_model,
    clip_loss_step,
    cosine_lr,
    param_groups,
    render_caption_batch,
    render_training_batch,
    save_clip,
    stream_seeds,
    to_model_input,
    train_clip,
)
from declip_mm.miniworld.layouts import SPLIT_IDS, scene_seed
from declip_mm.miniworld.tower_configs import CLIP_MEAN, CLIP_STD, world_clip_config, world_vfm_spec
from declip_mm.miniworld.vfm_trainer import (
    VFMTrainSettings,
    dino_loss,
    ibot_loss,
    save_vfm,
    train_vfm,
    vit_tokens,
)
from declip_mm.miniworld.zero_shot import (
    correlation_agreement,
    crop_zero_shot_figures,
    dense_zero_shot_figures,
    grid_cells,
    patch_segments,
    roc_auc,
    segment_map,
    zero_shot_figures,
)

TINY_CLIP = world_clip_config(embed_dim=32, depth=2, num_heads=2)
TINY_CLIP['vision_cfg']['image_size'] = 32    # 4 x 4 tokens: seconds on a loaded CPU
TINY_VFM = world_vfm_spec(embed_dim=32, depth=2, num_heads=2)


def rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.fixture(scope='module')
def tiny_clip(tmp_path_factory):
    model, record = train_clip(TINY_CLIP, CLIPTrainSettings(steps=2, batch_size=8, warmup=1,
                                                            image_size=32, threads=1), log=None)
    path = str(tmp_path_factory.mktemp('clip') / 'clip.pt')
    paths = save_clip(model, TINY_CLIP, path, record)
    return model, record, paths


def test_saved_clip_is_an_open_clip_checkpoint_the_project_loads(tiny_clip):
    import open_clip

    from declip_mm.models.backbones.declip_vit import DeCLIPVisionTransformer
    from declip_mm.models.text.text_encoder import DeCLIPTextEncoder
    model, record, paths = tiny_clip
    # the file is the open_clip model's own state dict (strict load into a fresh model)
    fresh = build_clip_model(TINY_CLIP)
    fresh.load_state_dict(torch.load(paths['weights'], weights_only=True), strict=True)
    assert isinstance(fresh, open_clip.model.CustomTextCLIP)
    with open(paths['config']) as f:
        cfg_json = json.load(f)
    assert cfg_json == json.loads(json.dumps(TINY_CLIP))
    # the project's towers, from the JSON config and the file, through init_weights
    bb = DeCLIPVisionTransformer(paths['config'], pretrained=paths['weights'], attn_mode='csa')
    bb.init_weights()
    enc = DeCLIPTextEncoder(paths['config'], pretrained=paths['weights'], templates='single')
    enc.init_weights()
    bb.eval()
    images, captions = render_caption_batch(stream_seeds('zero_shot', 0, 0, 3), 32)
    x = to_model_input(images)
    with torch.no_grad():
        ref_img = model.encode_image(x)
        # timm is the reference of the EVA trunk (open_clip's TimmModel is head(trunk(x)))
        ref_trunk = fresh.visual.trunk(x)
        ref_txt = model.encode_text(open_clip.tokenizer.SimpleTokenizer(context_length=32)(captions))
        assert rel(bb.encode_image(x), ref_img) <= 1e-5
        assert rel(bb.encode_image(x), ref_trunk) <= 1e-5
        assert rel(enc.encode_text(captions, normalize=False), ref_txt) <= 1e-5
    assert record['trainer_version'] and record['world_version']
    assert record['seen_token_ids'] and 49407 in record['seen_token_ids']  # the EOT token


def test_model_input_is_clip_normalised():
    img = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = to_model_input(img).double()
    ref = (torch.from_numpy(img).double() / 255 - torch.tensor(CLIP_MEAN, dtype=torch.float64)) \
        / torch.tensor(CLIP_STD, dtype=torch.float64)
    assert torch.allclose(x, ref.permute(0, 3, 1, 2), atol=1e-6)


def test_cosine_lr_is_open_clips_schedule():
    assert cosine_lr(0, 1.0, 10, 110) == pytest.approx(0.1)
    assert cosine_lr(9, 1.0, 10, 110) == pytest.approx(1.0)
    assert cosine_lr(10, 1.0, 10, 110) == pytest.approx(1.0)
    assert cosine_lr(60, 1.0, 10, 110) == pytest.approx(0.5)
    assert cosine_lr(35, 1.0, 10, 110) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_clip_loss_learns_a_fixed_batch():
    """ClipLoss through the trainer's step falls well below chance (log B) on a fixed batch of 16
    world scenes: the gradient reaches both towers and the optimizer groups."""
    import open_clip
    torch.manual_seed(0)
    model = build_clip_model(TINY_CLIP).train()
    images, captions = render_caption_batch(stream_seeds('clip_train', 0, 0, 16), 32)
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=32)(captions)
    x = to_model_input(images)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=2e-3)
    loss_fn = open_clip.loss.ClipLoss()
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny ops: one thread is fastest, and robust on a loaded machine
    try:
        for _ in range(25):
            loss = clip_loss_step(model, x, tokens, loss_fn)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < math.log(16) - 0.8 < losses[0]


def test_training_batch_without_the_new_knobs_is_the_worlds_pairs():
    """object_fraction 0, shared_stuff_prob 0, caption_stuff_prob 0.6: the scenes of the stream
    with the world's own captions (the clip-trainer-1 recipe)."""
    s = CLIPTrainSettings(batch_size=12, image_size=32, object_fraction=0.0, shared_stuff_prob=0.0,
                          caption_stuff_prob=0.6, crop_fraction=0.0)
    images, captions, info = render_training_batch(3, s, np.random.default_rng(0))
    ref_images, ref_captions = render_caption_batch(stream_seeds('clip_train', 0, 36, 12), 32)
    np.testing.assert_array_equal(images, ref_images)
    assert captions == ref_captions and info['stuff'] is None and info['object_seeds'] == []


def test_training_batch_shared_stuff_and_single_objects():
    """Shared stuff: every scene is drawn on the batch's 1-2 stuff classes and its caption names no
    other; single objects: ``render_object`` of the stream's seeds, captioned by their class only."""
    import re

    from declip_mm.miniworld import PLURALS, render_object, render_scene
    from declip_mm.miniworld.classes import CLASS_INDEX
    plural_to_class = {p: c for c, p in PLURALS.items()}
    s = CLIPTrainSettings(batch_size=24, image_size=32, object_fraction=0.5, shared_stuff_prob=1.0,
                          caption_stuff_prob=0.0, object_thing_prob=0.7, crop_fraction=0.0)
    stuff_sets = set()
    for step in range(6):
        images, captions, info = render_training_batch(step, s, np.random.default_rng(step))
        assert len(images) == len(captions) == 24
        stuff = info['stuff']
        assert stuff is not None and 1 <= len(stuff) <= 2 and set(stuff) <= set(STUFF_CLASSES)
        stuff_sets.add(tuple(stuff))
        assert info['scene_seeds'] == stream_seeds('clip_train', 0, step * 24, 12)
        assert info['object_seeds'] == stream_seeds('clip_objects', 0, step * 24, 12)
        for i, seed in enumerate(info['scene_seeds']):
            sc = render_scene(seed, 32, classes=THING_CLASSES + tuple(stuff), n_stuff=len(stuff),
                              caption=False)
            np.testing.assert_array_equal(images[i], sc.image)
            present_stuff = {c for c in sc.present if c in STUFF_CLASSES}
            assert present_stuff <= set(stuff)
            words = set(re.findall(r'[a-z]+', captions[i]))
            named = {plural_to_class.get(w, w) for w in words} & set(CLASS_INDEX)
            assert named <= set(sc.present)
            if sc.objects:   # caption_stuff_prob 0: a caption of a scene with things names no stuff
                assert not named & set(STUFF_CLASSES), captions[i]
        for j, (seed, name) in enumerate(zip(info['object_seeds'], info['object_classes'])):
            np.testing.assert_array_equal(images[12 + j], render_object(name, seed, 32)[0])
            words = set(re.findall(r'[a-z]+', captions[12 + j]))
            assert {plural_to_class.get(w, w) for w in words} & set(CLASS_INDEX) == {name}
    assert len(stuff_sets) > 1          # the shared set changes between batches
    s.shared_stuff_prob, s.object_fraction = 0.0, 0.25
    _, _, info = render_training_batch(0, s, np.random.default_rng(0))
    assert info['stuff'] is None and len(info['object_seeds']) == 6


def test_training_batch_scene_crops_are_resized_regions_captioned_by_their_content():
    """crop_fraction: square crops (side size / g, g in CROP_GRIDS) of the 'clip_crops' stream's
    scenes, resized as DeCLIP's teacher crops; the caption names exactly the classes covering at
    least CROP_NAME_FRACTION of the crop (the largest when none does), no number or colour word
    (crop_fraction 0 is the earlier recipe: test_training_batch_without_the_new_knobs...)."""
    import re

    import cv2

    from declip_mm.miniworld import render_scene
    from declip_mm.miniworld.captions import CROP_NAME_FRACTION
    from declip_mm.miniworld.classes import CLASS_INDEX
    from declip_mm.miniworld.clip_trainer import CROP_GRIDS
    s = CLIPTrainSettings(batch_size=32, image_size=64, object_fraction=0.25, crop_fraction=0.5)
    sides = set()
    for step in range(3):
        images, captions, info = render_training_batch(step, s, np.random.default_rng(step))
        assert len(images) == len(captions) == 32 and len(info['scene_seeds']) == 8
        assert info['crop_seeds'] == stream_seeds('clip_crops', 0, step * 32, 16)
        for k, (seed, (y0, y1, x0, x1)) in enumerate(zip(info['crop_seeds'], info['crop_boxes'])):
            side = y1 - y0
            assert side == x1 - x0 and side in {int(round(64 / g)) for g in CROP_GRIDS}
            assert 0 <= y0 and y1 <= 64 and 0 <= x0 and x1 <= 64
            sides.add(side)
            sc = render_scene(seed, 64, caption=False)
            np.testing.assert_array_equal(images[16 + k], cv2.resize(
                sc.image[y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_LINEAR))
            frac = np.bincount(sc.label[y0:y1, x0:x1].ravel(), minlength=len(ALL_CLASSES)) / side ** 2
            want = {ALL_CLASSES[i] for i in np.flatnonzero(frac >= CROP_NAME_FRACTION)}
            if len(want) > 2:
                want = {ALL_CLASSES[i] for i in np.argsort(-frac, kind='stable')[:2]}
            want = want or {ALL_CLASSES[int(np.argmax(frac))]}
            words = re.findall(r'[a-z]+', captions[16 + k])
            assert set(words) & set(CLASS_INDEX) == want, (captions[16 + k], want)
            assert not set(words) & {'one', 'two', 'three', 'some', 'several', 'red', 'blue'}
    assert len(sides) >= 4
    # the default recipe (clip-trainer-4): 72 objects, 12 crops, 12 scenes per batch of 96
    _, _, info = render_training_batch(0, CLIPTrainSettings(), np.random.default_rng(0))
    assert (len(info['object_seeds']), len(info['crop_seeds']), len(info['scene_seeds'])) == \
        (72, 12, 12)
    with pytest.raises(ValueError, match='exceed 1'):
        render_training_batch(0, CLIPTrainSettings(object_fraction=0.75, crop_fraction=0.5),
                              np.random.default_rng(0))


def test_param_groups_decay_only_matrices():
    model = build_clip_model(TINY_CLIP)
    no_decay, decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert no_decay['weight_decay'] == 0.0 and decay['weight_decay'] == 0.1
    assert all(p.ndim >= 2 for p in decay['params'])
    nd = {names[id(p)] for p in no_decay['params']}
    assert {'logit_scale', 'visual.trunk.cls_token', 'visual.trunk.pos_embed'} <= nd
    assert len(no_decay['params']) + len(decay['params']) == len(list(model.parameters()))


def test_streams_are_disjoint_from_the_world_layouts():
    used = {scene_seed(w, split, i) for w in (0, 1) for split in ('pairs', 'unlabeled', 'bench',
                                                                     'catseg_train')
            for i in range(50)}
    streams = {name: set(stream_seeds(name, w, 0, 50)) for w in (0, 1)
               for name in ('clip_train', 'clip_crops', 'clip_objects', 'vfm_train', 'zero_shot',
                            'correlation')}
    for name, seeds in streams.items():
        assert not seeds & used, name
    from declip_mm.miniworld.clip_trainer import STREAM_SPAN, STREAMS
    clip_streams = sorted(first for split, first in STREAMS.values() if split == 'clip')
    assert all(b - a >= STREAM_SPAN for a, b in zip(clip_streams, clip_streams[1:]))
    assert clip_streams[-1] + STREAM_SPAN <= 1 << 24          # the split's index range
    assert not set(stream_seeds('clip_train', 0, 0, 50)) & set(stream_seeds('clip_objects', 0, 0, 50))
    assert not set(stream_seeds('clip_crops', 0, 0, 50)) & set(stream_seeds('clip_train', 0, 0, 50))
    assert not set(stream_seeds('zero_shot', 0, 0, 50)) & set(stream_seeds('correlation', 0, 0, 50))
    assert stream_seeds('clip_train', 0, 5, 2) == [scene_seed(0, 'clip', 5), scene_seed(0, 'clip', 6)]
    assert 'clip' in SPLIT_IDS
    with pytest.raises(ValueError, match='unknown seed stream'):
        stream_seeds('bench', 0, 0, 1)


# --------------------------------------------------------------------------------------- VFM
def test_saved_vfm_loads_through_vfm_teacher(tmp_path):
    from declip_mm.models.backbones.vfm_teacher import VFMTeacher
    backbone, record = train_vfm(TINY_VFM, VFMTrainSettings(steps=2, batch_size=4, warmup=1,
                                                            n_local=2, threads=1), log=None)
    paths = save_vfm(backbone, TINY_VFM, str(tmp_path / 'vfm.pth'), record)
    with open(paths['config']) as f:
        spec = json.load(f)
    teacher = VFMTeacher(arch=spec['arch'], arch_overrides=spec['arch_overrides'],
                         pretrained=paths['weights'])
    teacher.init_weights()
    for k, v in backbone.state_dict().items():
        assert torch.equal(teacher.model.state_dict()[k], v), k
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tok = vit_tokens(backbone, x, spec['arch'])[:, 1:]
        ref = tok.transpose(1, 2).reshape(2, -1, 8, 8)
        assert rel(teacher(x), ref) <= 1e-5
        # a local-crop size: the trainer resizes the position embedding by the teacher's rule
        x32 = torch.randn(1, 3, 32, 32)
        ref32 = vit_tokens(backbone, x32, spec['arch'])[:, 1:].transpose(1, 2).reshape(1, -1, 4, 4)
        assert rel(teacher(x32), ref32) <= 1e-5
    assert record['trainer_version'] and len(record['loss_curve']) == 1


def _ce(q, logp):
    return -(q * logp).sum(-1).mean()


def test_dino_and_ibot_losses_match_the_formulas():
    g = torch.Generator().manual_seed(0)
    k, b = 7, 5
    student = [torch.randn(b, k, generator=g, dtype=torch.float64) for _ in range(4)]
    teacher = [torch.randn(b, k, generator=g, dtype=torch.float64) for _ in range(2)]
    center = torch.randn(k, generator=g, dtype=torch.float64)
    ts, tt = 0.1, 0.04
    terms = []
    for i in range(2):
        q = np.exp((teacher[i] - center).numpy() / tt)
        q /= q.sum(1, keepdims=True)
        for v in range(4):
            if v != i:
                s = student[v].numpy() / ts
                logp = s - np.log(np.exp(s).sum(1, keepdims=True))
                terms.append(-(q * logp).sum(1).mean())
    assert dino_loss(student, teacher, center, ts, tt).item() == pytest.approx(np.mean(terms),
                                                                                rel=1e-10)
    # iBOT: masked patches only
    sp = torch.randn(2, 6, k, generator=g, dtype=torch.float64)
    tp = torch.randn(2, 6, k, generator=g, dtype=torch.float64)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, [1, 4]] = True
    mask[1, 5] = True
    rows = [(0, 1), (0, 4), (1, 5)]
    ref = np.mean([_ce(F.softmax((tp[i, j] - center) / tt, -1),
                       F.log_softmax(sp[i, j] / ts, -1)).item() for i, j in rows])
    assert ibot_loss(sp, tp, mask, center, ts, tt).item() == pytest.approx(ref, rel=1e-10)
    assert ibot_loss(sp, tp, torch.zeros_like(mask), center, ts, tt).item() == 0.0


# ----------------------------------------------------------------------------------- figures
def test_roc_auc_is_the_pairwise_count():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=60), 1)           # ties
    pos = rng.random(60) < 0.4
    p, n = scores[pos], scores[~pos]
    ref = ((p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()) / (len(p) * len(n))
    assert roc_auc(scores, pos) == pytest.approx(ref, abs=1e-12)


def test_patch_segments_purity():
    seg = np.zeros((8, 8), dtype=np.int64)
    seg[:4, :4] = 1          # patch 0: pure 1
    seg[4:, :4] = 2
    seg[4:, 1] = 3           # patch 2: 2 holds 12/16 = 0.75
    seg[:4, 4:6] = 5         # patch 1: 8/16 -> mixed
    assert patch_segments(seg, 4, 0.75).tolist() == [1, -1, 2, 0]
    assert patch_segments(seg, 4, 0.8).tolist() == [1, -1, -1, 0]


def test_correlation_agreement_on_oracle_and_constant_features():
    from declip_mm.miniworld.generator import render_scene
    seeds = stream_seeds('correlation', 0, 0, 6)
    scenes = {render_scene(s, 64, caption=False).image.tobytes(): render_scene(s, 64, caption=False)
              for s in seeds}

    def oracle(images):
        out = []
        for im in images:
            ids = patch_segments(segment_map(scenes[im.tobytes()]), 8, 0.5)
            onehot = (ids[:, None] == np.unique(ids)[None, :]).astype(np.float32)
            out.append(torch.from_numpy(onehot.T.reshape(-1, 8, 8)))
        width = max(o.shape[0] for o in out)
        return torch.stack([F.pad(o, (0, 0, 0, 0, 0, width - o.shape[0])) for o in out])

    res = correlation_agreement(oracle, seeds, 64, 8)
    for r in res.values():
        assert r['auc'] == pytest.approx(1.0) and r['same_mean'] == pytest.approx(1.0)
        assert r['diff_mean'] == pytest.approx(0.0) and r['n_same'] > 0 and r['n_diff'] > 0
    assert res['things']['n_same'] + res['things']['n_diff'] < \
        res['all']['n_same'] + res['all']['n_diff']
    const = correlation_agreement(lambda im: torch.ones(len(im), 4, 8, 8), seeds, 64, 8)
    assert const['all']['auc'] == pytest.approx(0.5) and const['things']['auc'] == pytest.approx(0.5)


def test_zero_shot_figures_per_class_on_a_constant_encoder():
    emb = torch.eye(len(ALL_CLASSES))
    target = THING_CLASSES.index('heart')

    def encode(x):       # every image looks like 'heart' and, among stuff, like the 2nd stuff
        out = torch.zeros(x.shape[0], len(ALL_CLASSES))
        out[:, target] = 1.0
        out[:, len(THING_CLASSES) + 1] = 0.5
        return out

    fig = zero_shot_figures(encode, emb, stream_seeds('zero_shot', 0, 0, 2), 32)
    assert fig['things']['per_class'] == {c: float(c == 'heart') for c in THING_CLASSES}
    assert fig['things']['top1'] == pytest.approx(1 / len(THING_CLASSES))
    assert fig['things']['chance'] == pytest.approx(1 / len(THING_CLASSES))
    assert fig['things_all']['top1'] == pytest.approx(1 / len(THING_CLASSES))
    assert fig['stuff']['per_class'] == {c: float(i == 1) for i, c in enumerate(STUFF_CLASSES)}
    assert fig['stuff']['n'] == 2 * len(STUFF_CLASSES)


def test_dense_zero_shot_figures_equal_a_per_patch_loop():
    """Dense alignment against a plain loop over images and patches (float64, a fixed random patch
    projection as the dense features), and on a constant 'heart' map."""
    from declip_mm.miniworld.generator import render_object
    torch.manual_seed(0)
    proj = torch.randn(len(ALL_CLASSES), 3, 8, 8, dtype=torch.float64)
    emb = torch.randn(len(ALL_CLASSES), len(ALL_CLASSES), dtype=torch.float64)

    def dense(x):
        return F.conv2d(x.double(), proj, stride=8)

    seeds = stream_seeds('zero_shot', 0, 0, 3)
    got = dense_zero_shot_figures(dense, emb, seeds, 64, 8, purity=0.75)
    from declip_mm.miniworld.clip_trainer import to_model_input
    e = F.normalize(emb, dim=-1)
    for kind, classes in (('things', THING_CLASSES), ('stuff', STUFF_CLASSES)):
        hits = {c: [] for c in classes}
        for c in classes:
            for sd in seeds:
                image, mask = render_object(c, int(sd), 64)
                f = dense(to_model_input(image[None]))[0]
                for i in range(8):
                    for j in range(8):
                        if mask[8 * i:8 * i + 8, 8 * j:8 * j + 8].mean() < 0.75:
                            continue
                        v = F.normalize(f[:, i, j], dim=0)
                        hits[c].append(int(torch.argmax(e @ v)) == ALL_CLASSES.index(c))
        allhits = sum(hits.values(), [])
        assert got[kind]['n'] == len(allhits) and all(hits.values())
        assert got[kind]['top1'] == pytest.approx(np.mean(allhits))
        assert got[kind]['per_class'] == pytest.approx({c: np.mean(h) for c, h in hits.items()})
    heart = torch.zeros(1, len(ALL_CLASSES), 1, 1)
    heart[0, ALL_CLASSES.index('heart')] = 1.0
    const = dense_zero_shot_figures(lambda x: heart.expand(len(x), -1, 8, 8),
                                    torch.eye(len(ALL_CLASSES)), seeds, 64, 8)
    assert const['things']['per_class'] == {c: float(c == 'heart') for c in THING_CLASSES}
    assert const['stuff']['top1'] == 0.0 and const['stuff']['n'] == 3 * 64 * len(STUFF_CLASSES)


@pytest.mark.parametrize('side,grid', [(64, 3), (64, 6), (30, 4)])
def test_grid_cells_tile_the_image(side, grid):
    cover = np.zeros((side, side), dtype=np.int64)
    cells = grid_cells(side, grid)
    assert len(cells) == grid * grid
    for y0, y1, x0, x1 in cells:
        assert y1 > y0 and x1 > x0
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()


def test_crop_zero_shot_figures_equal_a_per_cell_loop():
    """Crop zero-shot against a plain loop (cells of every grid, majority label with the purity
    rule, magnified with OpenCV as DeCLIP's teacher crops), with a fixed random encoder; and a
    constant 'heart' encoder calls every stuff cell a thing."""
    import cv2

    from declip_mm.miniworld.clip_trainer import to_model_input
    from declip_mm.miniworld.generator import render_scene
    torch.manual_seed(1)
    proj = torch.randn(8, 3, 4, 4, dtype=torch.float64)
    mix = torch.randn(8 * 16 * 16, len(ALL_CLASSES), dtype=torch.float64)

    def encode(x):        # depends on every pixel's neighbourhood (the resize matters)
        return torch.tanh(F.conv2d(x.double(), proj, stride=4)).flatten(1) @ mix

    emb = torch.eye(len(ALL_CLASSES), dtype=torch.float64)
    seeds = stream_seeds('correlation', 0, 0, 4)
    got = crop_zero_shot_figures(encode, emb, seeds, 64, grids=(2, 4), purity=0.6)
    n_things = len(THING_CLASSES)
    for g in (2, 4):
        hit_t, hit_s, called = [], [], []
        for sd in seeds:
            sc = render_scene(int(sd), 64, caption=False)
            for y0, y1, x0, x1 in grid_cells(64, g):
                cell = sc.label[y0:y1, x0:x1]
                counts = np.bincount(cell.ravel(), minlength=len(ALL_CLASSES))
                if counts.max() < 0.6 * cell.size:
                    continue
                lab = int(counts.argmax())
                crop = cv2.resize(sc.image[y0:y1, x0:x1], (64, 64), interpolation=cv2.INTER_LINEAR)
                pred = int(torch.argmax(encode(to_model_input(crop[None]))[0]))
                if lab < n_things:
                    hit_t.append(pred == lab)
                else:
                    hit_s.append(pred == lab)
                    called.append(pred < n_things)
        r = got[f'{g}x{g}']
        assert (r['n_thing'], r['n_stuff']) == (len(hit_t), len(hit_s)) and hit_s
        assert r['stuff_top1'] == pytest.approx(np.mean(hit_s))
        assert r['stuff_called_thing'] == pytest.approx(np.mean(called))
        if hit_t:
            assert r['thing_top1'] == pytest.approx(np.mean(hit_t))
    heart = torch.zeros(len(ALL_CLASSES))
    heart[ALL_CLASSES.index('heart')] = 1.0
    const = crop_zero_shot_figures(lambda x: heart.expand(len(x), -1), torch.eye(len(ALL_CLASSES)),
                                   seeds, 64, grids=(1, ))
    assert const['1x1']['stuff_called_thing'] == 1.0 and const['1x1']['stuff_top1'] == 0.0


def test_clip_figures_through_the_project_equal_open_clip(tiny_clip):
    """The figure the CLIP is chosen on, measured through DeCLIPVisionTransformer /
    DeCLIPTextEncoder from the saved files, equals the same figure computed with the open_clip model
    itself (prompt ensembles over WORLD_TEMPLATES, CLIP paper)."""
    import open_clip

    from declip_mm.miniworld.tower_configs import WORLD_TEMPLATES
    from declip_mm.miniworld.tower_figures import clip_figures
    from declip_mm.models.text.templates import fill_template
    model, _, paths = tiny_clip
    with open(paths['config']) as f:
        cfg = json.load(f)
    got = clip_figures(cfg, paths['weights'], world_seed=0, n_per_class=3, size=32)
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=32)
    with torch.no_grad():
        rows = []
        for c in ALL_CLASSES:
            e = F.normalize(model.encode_text(tok([fill_template(t, c) for t in WORLD_TEMPLATES])),
                            dim=-1)
            rows.append(F.normalize(e.mean(0), dim=0))
        ref = zero_shot_figures(model.encode_image, torch.stack(rows),
                                stream_seeds('zero_shot', 0, 0, 3), 32)
    assert got == ref
