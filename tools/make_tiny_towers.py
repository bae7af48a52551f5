#!/usr/bin/env python
"""Tiny towers with RANDOM weights, fixture datasets and configs, to try every tool without weights.

    python tools/make_tiny_towers.py --out work_dirs/tiny

writes into ``--out`` (a few seconds, a few MB):

* ``tiny_eva02.json`` + ``tiny_eva02.pt``: an open_clip model config of a tiny EVA02-style CLIP
  (width 64, depth 3, patch 8, 32 px; declip_mm/testing/tiny_models.py) and a full open_clip-layout
  state dict of it (``visual.*`` + ``text.*``, random weights), read by the same loaders as a real
  release (``model_name=<json>``, ``pretrained=<pt>``);
* ``tiny_eva02_det.json`` + ``.pt``: the same family with depth 4 and patch 16, for the detector;
* ``tiny_dinov2.pt``: a tiny DINOv2-style VFM teacher (timm key layout, which ``VFMTeacher`` reads as
  it reads the hub release) for ``configs/declip`` distillation;
* ``data/``: fixture datasets in the real layouts (``declip_mm.testing``): ADE20K (training-free and
  CAT-Seg evaluation), COCO-Stuff train (CAT-Seg training), COCO-panoptic (region classification),
  OV-COCO (detection), and a photo ``data/demo.jpg``;
* ``configs/``: children of the stock configs (DeCLIP distillation, training-free ADE20K, CAT-Seg,
  region classification, F-ViT detection) that point at the towers and the fixtures, with the
  small sizes a CPU runs in seconds;

and prints the commands that run each tool on them (the README section "Try every tool without
weights" lists the same commands). The weights are random: every number is plumbing, not quality.
"""
import argparse
import json
import os
import os.path as osp

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: written into --out: only a folder holding it (or an empty one) is written into
MARKER = '.declip_tiny_towers'
DEFAULT_OUT = 'work_dirs/tiny'
DEMO_CLASSES = 'sky; grass, lawn; road; person'

TF_CONFIG = 'configs/training_free/declip_eva02-b16_training-free_ade20k-448.py'
CATSEG_TRAIN = 'configs/catseg/catseg_declip-eva02-b16_1xb4-80k_coco-stuff164k-384x384.py'
CATSEG_TEST = 'configs/catseg/catseg_declip-eva02-b16_ade20k-640x640.py'
REGION_CONFIG = 'configs/region_cls/region-cls_eva02-b16_coco-panoptic-560.py'
FVIT_CONFIG = 'configs/detection/fvit_declip-eva02-b16_ov-coco.py'
DISTILL_CONFIG = 'configs/declip/declip_tiny-random_quickstart.py'
#: the tiny CAT-Seg head (every channel number, the window and the class length small)
TINY_CATSEG_HEAD = dict(embed_dims=16, appearance_guidance_dims=8, text_guidance_dims=8,
                        num_layers=2, num_heads=2, window_size=4, pad_len=0, pool_size=2,
                        decoder_channels=(16, 16), guidance_channels=(8, 8),
                        guidance_proj_channels=(4, 4))
#: the tiny DINOv2-style teacher (as configs/declip/declip_tiny-random_quickstart.py builds it)
TINY_DINOV2 = dict(arch='dinov2_vitb14_reg', arch_overrides=dict(embed_dim=48, depth=2, num_heads=2,
                                                                 img_size=56))


def write_tower(out: str, name: str, clip_cfg: dict, seed: int) -> tuple:
    """``<name>.json`` (open_clip config) and ``<name>.pt`` (open_clip-layout state dict)."""
    import torch

    from declip_mm.models import DeCLIPTextEncoder, DeCLIPVisionTransformer
    js = osp.join(out, f'{name}.json')
    with open(js, 'w') as f:
        json.dump(clip_cfg, f, indent=1)
    torch.manual_seed(seed)
    visual = DeCLIPVisionTransformer(js).visual
    text = DeCLIPTextEncoder(js).text
    sd = {f'visual.{k}': v for k, v in visual.state_dict().items()}
    sd.update({f'text.{k}': v for k, v in text.state_dict().items()})
    sd['logit_scale'] = torch.tensor(float(np.log(100.0)))
    pt = osp.join(out, f'{name}.pt')
    torch.save(sd, pt)
    return js, pt


def write_vfm(out: str, seed: int) -> str:
    import torch

    from declip_mm.models.backbones.vfm_teacher import VFMTeacher
    torch.manual_seed(seed)
    teacher = VFMTeacher(**TINY_DINOV2)
    path = osp.join(out, 'tiny_dinov2.pt')
    torch.save(teacher.model.state_dict(), path)
    return path


def write_data(out: str) -> dict:
    from PIL import Image

    from declip_mm.testing import (
        BENCHMARK_LAYOUTS,
        TRAIN_LAYOUTS,
        write_benchmark_fixture,
        write_ov_coco_fixture,
        write_panoptic_fixture,
    )
    data = osp.join(out, 'data')
    write_benchmark_fixture('ade20k', data, num_images=2)
    write_benchmark_fixture('coco_stuff164k_train', data, num_images=4,
                            sizes=[(48, 80), (72, 56)])
    roots = dict(ade20k=osp.join(data, BENCHMARK_LAYOUTS['ade20k']['data_root']),
                 coco_stuff_train=osp.join(data, TRAIN_LAYOUTS['coco_stuff164k_train']['data_root']),
                 panoptic=write_panoptic_fixture(osp.join(data, 'coco_panoptic')),
                 ov_coco=write_ov_coco_fixture(osp.join(data, 'ov_coco'), num_train=2, num_val=2))
    # a demo photo: a sky / grass / road picture with a little noise
    rng = np.random.default_rng(0)
    img = np.zeros((60, 90, 3), np.uint8)
    img[:20] = (110, 160, 230)
    img[20:40] = (60, 150, 50)
    img[40:] = (90, 90, 95)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    roots['photo'] = osp.join(data, 'demo.jpg')
    Image.fromarray(img).save(roots['photo'], quality=95)
    return roots


def _dump(cfg, path: str) -> str:
    cfg.dump(path)
    return path


def write_configs(out: str, tower: tuple, det_tower: tuple, vfm: str, roots: dict) -> dict:
    """Children of the stock configs (dumped in full) pointing at the tiny towers and fixtures."""
    from mmengine.config import Config
    js, pt = tower
    cdir = osp.join(out, 'configs')
    os.makedirs(cdir, exist_ok=True)
    towers = {'model.backbone.model_name': js, 'model.text_encoder.model_name': js,
              'model.backbone.pretrained': pt, 'model.text_encoder.pretrained': pt}
    paths = {}

    cfg = Config.fromfile(osp.join(ROOT, TF_CONFIG))
    cfg.merge_from_dict({**towers, 'model.text_encoder.templates': 'single',
                         'model.test_cfg.crop_size': 64, 'model.test_cfg.stride': 48,
                         'test_pipeline.1.scale': (4096, 96),
                         'test_dataloader.dataset.pipeline.1.scale': (4096, 96),
                         'test_dataloader.dataset.data_root': roots['ade20k'],
                         'test_dataloader.num_workers': 0,
                         'test_dataloader.persistent_workers': False})
    paths['tf'] = _dump(cfg, osp.join(cdir, 'tiny_training-free_ade20k.py'))

    head = {f'model.decode_head.{k}': v for k, v in TINY_CATSEG_HEAD.items()}
    small = {**towers, **head, 'model.backbone.out_indices': (0, 1), 'model.test_cfg.size': 96,
             'model.test_cfg.crop_size': 64, 'model.test_cfg.stride': 32}
    cfg = Config.fromfile(osp.join(ROOT, CATSEG_TRAIN))
    cfg.merge_from_dict({**small, 'model.data_preprocessor.size': (64, 64),
                         'train_dataloader.dataset.data_root': roots['coco_stuff_train'],
                         'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
                         'train_dataloader.persistent_workers': False,
                         'train_dataloader.dataset.pipeline.2.scale': (200, 64),
                         'train_dataloader.dataset.pipeline.3.crop_size': (64, 64),
                         'train_cfg.max_iters': 3, 'train_cfg.val_interval': 1000,
                         'param_scheduler.0.end': 3, 'default_hooks.checkpoint.interval': 3,
                         'default_hooks.logger.interval': 1})
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None  # no validation in 3 iterations
    paths['catseg_train'] = _dump(cfg, osp.join(cdir, 'tiny_catseg_coco-stuff_train.py'))
    cfg = Config.fromfile(osp.join(ROOT, CATSEG_TEST))
    cfg.merge_from_dict({**small, 'test_dataloader.dataset.data_root': roots['ade20k'],
                         'test_dataloader.num_workers': 0,
                         'test_dataloader.persistent_workers': False,
                         'test_dataloader.dataset.pipeline.1.scale': (256, 96)})
    paths['catseg_test'] = _dump(cfg, osp.join(cdir, 'tiny_catseg_ade20k.py'))

    cfg = Config.fromfile(osp.join(ROOT, REGION_CONFIG))
    cfg.merge_from_dict({**towers, 'model.text_encoder.templates': 'single',
                         'test_dataloader.dataset.data_root': roots['panoptic'],
                         'test_dataloader.num_workers': 0, 'test_dataloader.batch_size': 2,
                         'test_dataloader.persistent_workers': False,
                         'test_dataloader.dataset.pipeline.0.image_size': 64,
                         'test_dataloader.dataset.pipeline.0.patch_size': 8,
                         'test_dataloader.dataset.pipeline.0.crop_size': 32,
                         'test_dataloader.dataset.pipeline.1.size': 64})
    paths['region'] = _dump(cfg, osp.join(cdir, 'tiny_region-cls_coco-panoptic.py'))

    cfg = Config.fromfile(osp.join(ROOT, DISTILL_CONFIG))
    cfg.merge_from_dict({'model.student.model_name': js, 'model.student.pretrained': pt,
                         'model.vfm_teacher.pretrained': vfm,
                         'train_dataloader.dataset.data_root': roots['ade20k'],
                         'train_dataloader.dataset.img_dir': 'images/validation',
                         'train_cfg.max_epochs': 1, 'param_scheduler.0.end': 1,
                         'default_hooks.logger.interval': 1})
    paths['distill'] = _dump(cfg, osp.join(cdir, 'tiny_declip_distill.py'))

    paths['det'] = osp.join(cdir, 'tiny_fvit_ov-coco.py')
    with open(paths['det'], 'w') as f:
        f.write(fvit_config_text(det_tower, roots['ov_coco']))
    return paths


def fvit_config_text(det_tower: tuple, data_root: str) -> str:
    """A child of the F-ViT config: the tiny tower (frozen, as released), small channels, 64 px."""
    from declip_mm.testing.fvit_config import tiny_fvit_config_text
    js, pt = det_tower
    return tiny_fvit_config_text(
        osp.join(ROOT, FVIT_CONFIG), js, pt, data_root,
        header='# tiny towers with RANDOM weights (tools/make_tiny_towers.py): numbers are plumbing only')


def commands(out: str) -> list:
    """(title, command) pairs, the same text the README shows for ``--out work_dirs/tiny``."""
    c = osp.join(out, 'configs')
    w = osp.join(out, 'work')
    photo = osp.join(out, 'data', 'demo.jpg')
    tf = osp.join(c, 'tiny_training-free_ade20k.py')
    api = (f"python -c \"from declip_mm.apis import DeCLIPInferencer; "
           f"res = DeCLIPInferencer('{tf}')('{photo}', classes='{DEMO_CLASSES}'); "
           f"print(res.classes, res.labels.shape)\"")
    return [
        ('inferencer (Python API)', api),
        ('tools/demo.py', f"python tools/demo.py {photo} --config {tf} --classes '{DEMO_CLASSES}' "
                          f"--out {osp.join(w, 'demo_overlay.png')}"),
        ('tools/web_demo.py (open http://127.0.0.1:7860)', f'python tools/web_demo.py --config {tf}'),
        ('tools/test.py, training-free (fixture ADE20K)',
         f"python tools/test.py {tf} --work-dir {osp.join(w, 'tf')}"),
        ('DeCLIP distillation: tools/train.py (1 epoch, tiny EVA02 student + tiny DINOv2 teacher)',
         f"python tools/train.py {osp.join(c, 'tiny_declip_distill.py')} "
         f"--work-dir {osp.join(w, 'declip')}"),
        ('CAT-Seg: tools/train.py (3 iterations)',
         f"python tools/train.py {osp.join(c, 'tiny_catseg_coco-stuff_train.py')} "
         f"--work-dir {osp.join(w, 'catseg')}"),
        ('CAT-Seg: tools/test.py with the trained head (fixture ADE20K)',
         f"python tools/test.py {osp.join(c, 'tiny_catseg_ade20k.py')} "
         f"{osp.join(w, 'catseg', 'iter_3.pth')} --work-dir {osp.join(w, 'catseg_test')}"),
        ('region classification: tools/test.py (fixture COCO-panoptic)',
         f"python tools/test.py {osp.join(c, 'tiny_region-cls_coco-panoptic.py')} "
         f"--work-dir {osp.join(w, 'region_cls')}"),
        ('detection: tools/train.py (1 epoch)',
         f"python tools/train.py {osp.join(c, 'tiny_fvit_ov-coco.py')} "
         f"--work-dir {osp.join(w, 'fvit')}"),
        ('detection: tools/test.py with the trained heads (fixture OV-COCO)',
         f"python tools/test.py {osp.join(c, 'tiny_fvit_ov-coco.py')} "
         f"{osp.join(w, 'fvit', 'epoch_1.pth')} --work-dir {osp.join(w, 'fvit_test')}"),
    ]


def prepare_out(out: str) -> str:
    if osp.exists(out) and not osp.isdir(out):
        raise SystemExit(f'--out {out} is a file, not a folder')
    if osp.isdir(out) and os.listdir(out) and not osp.isfile(osp.join(out, MARKER)):
        raise SystemExit(f'--out {out} is not empty and was not written by this tool (no {MARKER} '
                         'file): pass a new or empty folder')
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, MARKER), 'w') as f:
        f.write('Written by declip_mm tools/make_tiny_towers.py (random weights).\n')
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default=DEFAULT_OUT, help=f'output folder (default {DEFAULT_OUT})')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    import declip_mm  # noqa: F401  (registers the components)
    from declip_mm.testing import tiny_clip_config
    out = prepare_out(osp.abspath(args.out))   # the configs hold absolute paths: any cwd works
    tower = write_tower(out, 'tiny_eva02', tiny_clip_config('eva02'), args.seed)
    det = write_tower(out, 'tiny_eva02_det', tiny_clip_config('eva02', depth=4, patch_size=16),
                      args.seed + 1)
    vfm = write_vfm(out, args.seed + 2)
    roots = write_data(out)
    write_configs(out, tower, det, vfm, roots)
    print(f'tiny towers with RANDOM weights in {out}: {osp.basename(tower[1])}, '
          f'{osp.basename(det[1])} (open_clip layout), {osp.basename(vfm)} (DINOv2-style VFM; '
          f'{json.dumps(TINY_DINOV2)}); fixture data in {osp.join(out, "data")}.')
    print('Every number these give is plumbing, not quality. Try (from the repository root, '
          '.venv active):\n')
    for title, cmd in commands(args.out):   # as typed (README: --out work_dirs/tiny)
        print(f'# {title}\n{cmd}\n')
    return out


if __name__ == '__main__':
    main()
