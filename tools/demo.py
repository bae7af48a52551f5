#!/usr/bin/env python
"""Open-vocabulary segmentation of your images with your class names, written as overlays.

    python tools/demo.py IMAGE [IMAGE ...] (--classes "cat; grass, lawn; sky" | --classes-file FILE)
                         [--config CONFIG]
                         [--weights CKPT] [--out overlay.png | --out-dir DIR] [--mode whole]
                         [--prob-thd 0.3] [--device cpu] [--cfg-options k=v ...]

Classes are separated by ';', synonyms of a class by ','; ``--classes`` is always names (a file name
there is the name of one class). ``--classes-file`` reads a class file: one class per line, synonyms
separated by ';' or ','. A thin wrapper over
``declip_mm.apis.DeCLIPInferencer`` (the config's test pipeline and segmentor, e.g. the benchmark
protocol of ``DeCLIPZeroShotSegmentor``). Pixels whose top probability is below ``--prob-thd`` are
drawn as "unlabeled" unless the list has a class named "background", which then receives them.
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join(ROOT, 'configs', 'training_free',
                          'declip_eva02-b16_training-free_ade20k-448.py')


def parse_classes(text: str = None, file: str = None):
    """``"cat; grass, lawn"`` -> ``[['cat'], ['grass', 'lawn']]``, or the classes of ``file``; a bad
    list exits with the reason."""
    from pathlib import Path

    from declip_mm.apis import parse_classes as _parse
    try:
        if file is not None:
            return _parse(Path(file))
        names = _parse(text)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'--classes{"-file" if file is not None else ""}: {e}') from e
    if len(names) == 1 and osp.isfile(text.strip()):
        print(f'note: --classes is class names, so {text.strip()!r} is one class; to read that '
              'file, use --classes-file')
    return names


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('images', nargs='+', help='input image(s)')
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument('--classes', help='class names: "cat; grass, lawn; sky" (never read as a file)')
    group.add_argument('--classes-file', metavar='FILE',
                       help="class-name file: one class per line, synonyms split by ';' or ','")
    p.add_argument('--config', default=DEFAULT_CONFIG, help='a config file or name')
    p.add_argument('--weights', default=None,
                   help='CLIP / DeCLIP image-tower checkpoint, or a whole segmentor checkpoint')
    p.add_argument('--text-weights', default=None, help='CLIP checkpoint of the text tower')
    p.add_argument('--out', default='overlay.png', help='output PNG (one image)')
    p.add_argument('--out-dir', default=None,
                   help='write <name>_overlay.png, _labels.png, _probs.npz per image here')
    p.add_argument('--mode', default='benchmark', choices=['benchmark', 'whole'],
                   help="'benchmark': the config's test protocol (sliding windows for the "
                        "training-free configs); 'whole': the resized image in one forward (quick)")
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--device', default='cpu')
    p.add_argument('--prob-thd', type=float, default=None, help='override the config prob_thd')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None):
    """Returns the (H, W) label map of one image, or a list of them for several."""
    args = parse_args(argv)
    missing = [i for i in args.images if not osp.isfile(i)]
    if missing:
        raise SystemExit(f'image not found: {", ".join(missing)}')
    if len(args.images) > 1 and args.out_dir is None:
        raise SystemExit('several images need --out-dir (one --out file would be overwritten)')
    classes = parse_classes(args.classes, args.classes_file)
    from declip_mm.apis import DeCLIPInferencer
    inferencer = DeCLIPInferencer(args.config, checkpoint=args.weights, device=args.device,
                                  cfg_options=args.cfg_options, text_checkpoint=args.text_weights,
                                  prob_thd=args.prob_thd)
    results = inferencer(list(args.images), classes=classes,
                         mode=None if args.mode == 'benchmark' else args.mode,
                         batch_size=args.batch_size, out_dir=args.out_dir)
    for res in results:
        if args.out_dir is None:
            os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
            res.visualization().save(args.out)
            res.files = dict(overlay=args.out)
        share = ', '.join(f"{e['name']} {e['area']:.1%}" for e in res.legend)
        print(f'{res.name}: pixel share: {share}')
        print(f"wrote {res.files['overlay']}")
    preds = [r.labels for r in results]
    return preds[0] if len(preds) == 1 else preds


if __name__ == '__main__':
    main()
