#!/usr/bin/env python
"""Open-vocabulary segmentation of one image, written as a colour overlay with a legend.

    python tools/demo.py IMAGE --classes "cat; grass, lawn; sky" [--config CONFIG] [--weights CKPT]
                         [--out overlay.png] [--device cpu] [--cfg-options k=v ...]

Classes are separated by ';', synonyms of a class by ','. Runs the same inference path as
tools/test.py (mmseg's ``init_model`` / ``inference_model`` with the config's test pipeline and
``DeCLIPZeroShotSegmentor``).
"""
import argparse
import os
import os.path as osp

import numpy as np
from mmengine.config import Config, DictAction
from PIL import Image, ImageDraw, ImageFont

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join(ROOT, 'configs', 'training_free',
                          'declip_eva02-b16_training-free_ade20k-448.py')


def parse_classes(text: str):
    classes = [[n.strip() for n in c.split(',') if n.strip()] for c in text.split(';')]
    classes = [c for c in classes if c]
    if not classes:
        raise SystemExit('--classes is empty; e.g. --classes "cat; grass, lawn; sky"')
    return classes


def palette(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(40, 256, size=(n, 3)).astype(np.uint8)


def draw_overlay(image: np.ndarray, pred: np.ndarray, classes, alpha: float = 0.5) -> Image.Image:
    """RGB image (H, W, 3) + labels (H, W) -> overlay with a legend of the classes present."""
    colors = palette(len(classes))
    blend = (image.astype(np.float32) * (1 - alpha) + colors[pred].astype(np.float32) * alpha)
    out = Image.fromarray(blend.clip(0, 255).astype(np.uint8))
    present = [i for i in range(len(classes)) if (pred == i).any()]
    font = ImageFont.load_default()
    row = 14
    legend = Image.new('RGB', (max(160, out.width // 3), row * len(classes) + 6), (255, 255, 255))
    d = ImageDraw.Draw(legend)
    for k, i in enumerate(range(len(classes))):
        y = 3 + k * row
        d.rectangle([4, y + 1, 14, y + 11], fill=tuple(int(c) for c in colors[i]))
        label = classes[i][0] + ('' if i in present else ' (absent)')
        d.text((20, y), label, fill=(0, 0, 0), font=font)
    canvas = Image.new('RGB', (out.width + legend.width, max(out.height, legend.height)), 'white')
    canvas.paste(out, (0, 0))
    canvas.paste(legend, (out.width, 0))
    return canvas


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('image', help='input image')
    p.add_argument('--classes', required=True, help='"cat; grass, lawn; sky"')
    p.add_argument('--config', default=DEFAULT_CONFIG, help='a training-free config')
    p.add_argument('--weights', default=None, help='CLIP / DeCLIP image-tower checkpoint')
    p.add_argument('--out', default='overlay.png', help='output PNG')
    p.add_argument('--device', default='cpu')
    p.add_argument('--prob-thd', type=float, default=None, help='override the config prob_thd')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import declip_mm  # noqa: F401
    from mmseg.apis import inference_model, init_model

    from declip_mm.apis import apply_test_checkpoint
    if not osp.isfile(args.image):
        raise SystemExit(f'image not found: {args.image}')
    classes = parse_classes(args.classes)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.model.class_names = classes
    if args.prob_thd is not None:
        cfg.model.prob_thd = args.prob_thd
    checkpoint = None
    if args.weights:
        if apply_test_checkpoint(cfg, args.weights) == 'segmentor':
            checkpoint = args.weights
    model = init_model(cfg, checkpoint, device=args.device)
    model.dataset_meta = dict(classes=[c[0] for c in classes],
                              palette=palette(len(classes)).tolist())
    result = inference_model(model, args.image)
    pred = result.pred_sem_seg.data[0].cpu().numpy()
    image = np.asarray(Image.open(args.image).convert('RGB'))
    overlay = draw_overlay(image, pred, classes)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    overlay.save(args.out)
    share = {classes[i][0]: float((pred == i).mean()) for i in range(len(classes))}
    print('pixel share: ' + ', '.join(f'{k} {v:.1%}' for k, v in share.items()))
    print(f'wrote {args.out}')
    return pred


if __name__ == '__main__':
    main()
