#!/usr/bin/env python
"""The README's main job: the whole DeCLIP pipeline end to end on a fresh machine, in a few minutes.

    python tools/quickstart.py                      # the miniature world: trained tiny towers
    python tools/quickstart.py --random-towers      # tiny towers, RANDOM weights, sample photos
    python tools/quickstart.py --weights EVA02_CLIP_B_psz16_s8B.pt --vfm-weights dinov2_vitb14_reg4.pth

By default it runs a short version of the miniature world (docs/miniworld.md,
``declip_mm/miniworld/quickstart_world.py``): a small world, the tiny CLIP and VFM (shipped in the
repository, else trained briefly and cached), training-free evaluation before (``vanilla``, ``csa``)
through tools/test.py, DeCLIP distillation through tools/train.py, the evaluation after, the
before / after table, overlays side by side and proxy-token pictures.

With ``--random-towers`` (random weights) or ``--weights`` (real towers) it:

1. writes sample photos shipped by scikit-image as a small unlabeled training set and as a fixture
   benchmark in the ADE20K layout (labels: a colour quantisation of the photos);
2. trains DeCLIP (content + context distillation) for a few dozen iterations with tools/train.py's
   Runner and config (configs/declip/declip_tiny-random_quickstart.py, or declip_vitb_dinov2.py with
   --weights), printing how the two losses fall;
3. takes the alpha-merged image tower exported after the last epoch, evaluates it training-free on the
   fixture benchmark through tools/test.py's code path, prints the mIoU table, and writes overlay PNGs
   with tools/demo.py's drawing.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import time

import numpy as np
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_TRAIN = osp.join(ROOT, 'configs', 'declip', 'declip_tiny-random_quickstart.py')
REAL_TRAIN = osp.join(ROOT, 'configs', 'declip', 'declip_vitb_dinov2.py')
ADE_TEST = osp.join(ROOT, 'configs', 'training_free', 'declip_eva02-b16_training-free_ade20k-448.py')
#: written into --out-dir by the quick-start: only a folder holding it is ever cleared
MARKER = '.declip_quickstart'
#: what the quick-start writes into --out-dir; a rerun removes exactly these, nothing else
OUTPUTS = ('data', 'train', 'eval', 'overlays', 'arch.json', 'world', 'proxy_tokens',
           'results.json')
#: photo name -> the ``skimage.data`` function that returns it from the wheel (no download);
#: ``stereo_motorcycle`` returns (left, right, disparity): the left view is used
PHOTOS = {'astronaut': 'astronaut', 'chelsea': 'chelsea', 'coffee': 'coffee', 'rocket': 'rocket',
          'motorcycle': 'stereo_motorcycle'}
DEMO_CLASSES = 'person, astronaut; cat; cup, coffee; rocket; sky; motorcycle; flag; grass'


def load_tool(name: str):
    """tools/<name>.py as a module (the quick-start runs the real tools in-process)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'declip_tool_{name}',
                                                  osp.join(ROOT, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def prepare_out_dir(out: str) -> str:
    """Make ``out`` ready for a run without deleting anything the quick-start did not create.

    A missing or empty folder is used as it is. A folder holding :data:`MARKER` is an earlier
    quick-start output: only its :data:`OUTPUTS` are removed (other files stay). Any other non-empty
    folder (``--out-dir .`` in a checkout, a home folder, ...) is refused.
    """
    if osp.exists(out) and not osp.isdir(out):
        raise SystemExit(f'--out-dir {out} is a file, not a folder')
    if osp.isdir(out) and os.listdir(out):
        if not osp.isfile(osp.join(out, MARKER)):
            raise SystemExit(
                f'--out-dir {out} is not empty and is not a quick-start output (it has no {MARKER} '
                'file); the quick-start never deletes what it did not create. Pass a new or empty '
                'folder (default: work_dirs/quickstart), or remove an old output yourself.')
        for name in OUTPUTS:
            path = osp.join(out, name)
            if osp.islink(path) or osp.isfile(path):
                os.remove(path)
            elif osp.isdir(path):
                shutil.rmtree(path)
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, MARKER), 'w') as f:
        f.write('Written by declip_mm tools/quickstart.py. A rerun with this --out-dir replaces '
                f'{", ".join(OUTPUTS)} here and leaves everything else alone.\n')
    return out


def sample_photos(max_side: int):
    """RGB photos bundled with scikit-image (no download)."""
    try:
        from skimage import data
    except ImportError as e:
        raise SystemExit('the quick-start needs scikit-image (requirements/optional.txt)') from e
    out = {}
    for name, loader in PHOTOS.items():
        try:
            img = getattr(data, loader)()
            if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
                img = img[0]
        except Exception as e:  # an image that this scikit-image would have to download: skip it
            print(f'   skipped sample photo {name!r}: scikit-image cannot provide it offline here '
                  f'({type(e).__name__}: {e})')
            continue
        img = np.asarray(Image.fromarray(img).convert('RGB'))
        scale = max_side / max(img.shape[:2])
        if scale < 1:
            img = np.asarray(Image.fromarray(img).resize(
                (round(img.shape[1] * scale), round(img.shape[0] * scale)), Image.BICUBIC))
        out[name] = img
    if len(out) < 2:
        raise SystemExit('scikit-image ships too few sample photos here')
    return out


def write_training_images(photos, folder):
    os.makedirs(folder, exist_ok=True)
    for name, img in photos.items():
        Image.fromarray(img).save(osp.join(folder, f'{name}.jpg'))
        Image.fromarray(img[:, ::-1]).save(osp.join(folder, f'{name}_flip.jpg'))
    return folder


def loss_table(work_dir):
    """Per-epoch means of the logged losses."""
    rows = []
    for d, _, files in os.walk(work_dir):
        if 'scalars.json' in files:
            rows = [json.loads(line) for line in open(osp.join(d, 'scalars.json'))]
    by_epoch = {}
    for r in rows:
        if 'loss' in r:
            by_epoch.setdefault(r['epoch'], []).append(r)
    lines = ['| epoch | loss_content | loss_context | loss |', '|---|---|---|---|']
    for e, rs in sorted(by_epoch.items()):
        mean = {k: sum(r.get(k, 0.0) for r in rs) / len(rs)
                for k in ('loss_content', 'loss_context', 'loss')}
        lines.append(f"| {e} | {mean['loss_content']:.4f} | {mean['loss_context']:.4f} | "
                     f"{mean['loss']:.4f} |")
    return '\n'.join(lines), by_epoch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--weights', help='local CLIP checkpoint (EVA02-CLIP-B/16 by default)')
    p.add_argument('--vfm-weights', help='local DINOv2-B/14 (registers) checkpoint')
    p.add_argument('--model-name', default='EVA02-B-16', help='architecture of --weights')
    p.add_argument('--random-towers', action='store_true',
                   help='random weights: tiny towers with RANDOM weights on sample photos (the '
                        'pipeline only, no learning to see)')
    p.add_argument('--out-dir', default='work_dirs/quickstart')
    p.add_argument('--epochs', type=int, default=None,
                   help='DeCLIP epochs (default 6)')
    p.add_argument('--world-seed', type=int, default=0, help='the world (miniature-world run)')
    p.add_argument('--unlabeled', type=int, default=None,
                   help='unlabeled world images DeCLIP distils on (default 400)')
    p.add_argument('--bench', type=int, default=None,
                   help='world benchmark scenes evaluated before and after (default 100)')
    p.add_argument('--cache-dir', default=None,
                   help='tower cache (default $DECLIP_MM_CACHE/miniworld or '
                        '~/.cache/declip_mm/miniworld)')
    p.add_argument('--threads', type=int, default=2, help='torch threads (miniature-world run)')
    p.add_argument('--max-side', type=int, default=256, help='photo size (longest side)')
    p.add_argument('--eval-short-side', type=int, default=None,
                   help='test resize short side (default 448 with weights, 96 without)')
    return p.parse_args(argv)


def main_world(args):
    """The default run: the miniature world (docs/miniworld.md)."""
    t0 = time.time()
    import warnings
    for msg in ('pkg_resources is deprecated', 'The draw is False'):  # mmengine / mmseg noise
        warnings.filterwarnings('ignore', message=msg)
    import declip_mm  # noqa: F401
    from declip_mm.miniworld.quickstart_world import QuickWorldSettings, run_world_quickstart
    out = prepare_out_dir(osp.abspath(args.out_dir))
    print(f'== declip_mm quick-start on the miniature world (docs/miniworld.md) -> {out}')
    s = QuickWorldSettings(world_seed=args.world_seed, threads=args.threads)
    for name, value in (('epochs', args.epochs), ('n_unlabeled', args.unlabeled),
                        ('n_bench', args.bench)):
        if value is not None:
            setattr(s, name, int(value))
    res = run_world_quickstart(out, s, args.cache_dir, log=lambda m: print(m, flush=True))
    print('\n' + res['table'])
    print(f'\nquick-start finished in {time.time() - t0:.0f} s. Outputs in {out}:')
    print('  world/         the miniature world (unlabeled images, ADE-layout benchmark)')
    print('  train/         DeCLIP logs and declip_epoch_*.pth (alpha-merged image towers)')
    print('  eval/          tools/test.py runs before (vanilla, csa) and after (DeCLIP csa)')
    print('  overlays/      before_after.png: ground truth | before | after, side by side')
    print('  proxy_tokens/  attention and context correlation, original vs DeCLIP tower')
    print('  results.json   the numbers')
    print('Next: the web page on these towers (python tools/web_demo.py), the full table '
          '(python tools/miniworld.py), real weights (README: "Train DeCLIP", "Evaluate").')
    return res


def main(argv=None):
    args = parse_args(argv)
    if bool(args.weights) != bool(args.vfm_weights):
        raise SystemExit('--weights and --vfm-weights go together')
    real = bool(args.weights)
    if real and args.random_towers:
        raise SystemExit('--random-towers and --weights exclude each other')
    if not real and not args.random_towers:
        return main_world(args)
    if args.epochs is None:
        args.epochs = 6
    t0 = time.time()
    from mmengine.config import Config

    import declip_mm  # noqa: F401
    from declip_mm.testing import write_benchmark_fixture
    from declip_mm.tools_support import prepare_test_runner
    from declip_mm.utils import mmengine_checkpoint_loading

    out = prepare_out_dir(osp.abspath(args.out_dir))
    print(f'== declip_mm quick-start -> {out}')
    if not real:
        print('   --random-towers: tiny EVA02-style towers with RANDOM weights. The numbers show '
              'the pipeline running, not DeCLIP quality.')
    photos = sample_photos(args.max_side)
    train_imgs = write_training_images(photos, osp.join(out, 'data', 'train_images'))
    data_dir = osp.join(out, 'data')
    bench_root = write_benchmark_fixture('ade20k', data_dir, num_images=len(photos),
                                         sizes=[p.shape[:2] for p in photos.values()],
                                         images=list(photos.values()))
    print(f'[1/3] {2 * len(photos)} training images and a {len(photos)}-image fixture benchmark '
          f'(ADE20K layout) from scikit-image photos: {", ".join(photos)}')

    # -- 2. distillation through tools/train.py --------------------------------------------------
    train_tool = load_tool('train')
    train_dir = osp.join(out, 'train')
    opts = [f'train_dataloader.dataset.data_root={train_imgs}', 'train_dataloader.dataset.img_dir=.',
            f'train_cfg.max_epochs={args.epochs}', f'param_scheduler.0.end={args.epochs}',
            'default_hooks.logger.interval=1', 'train_dataloader.num_workers=0',
            'log_level=WARNING']
    if real:
        opts += [f'model.student.pretrained={args.weights}',
                 f'model.student.model_name={args.model_name}',
                 f'model.vfm_teacher.pretrained={args.vfm_weights}',
                 'train_dataloader.batch_size=2', 'param_scheduler.0.warmup_iters=5']
    config = REAL_TRAIN if real else TINY_TRAIN
    print(f'[2/3] DeCLIP distillation: {osp.relpath(config, ROOT)}, {args.epochs} epochs')
    runner = train_tool.main([config, '--work-dir', train_dir, '--cfg-options', *opts])
    table, by_epoch = loss_table(train_dir)
    print(table)
    n_iter = sum(len(v) for v in by_epoch.values())
    export = osp.join(train_dir, f'declip_epoch_{args.epochs}.pth')
    print(f'      {n_iter} iterations; alpha-merged image tower exported to {export}')

    # -- 3. training-free evaluation through tools/test.py's path, and overlays -------------------
    cfg = Config.fromfile(ADE_TEST)
    student = runner.model.student
    arch_json = osp.join(out, 'arch.json')
    if real:
        arch = args.model_name
        text_weights = args.weights
    else:
        with open(arch_json, 'w') as f:
            json.dump(json.loads(json.dumps(student.model_name)), f)
        arch, text_weights = arch_json, None
    short = args.eval_short_side or (448 if real else 96)
    cfg.merge_from_dict({
        'model.backbone.model_name': arch, 'model.text_encoder.model_name': arch,
        'model.text_encoder.pretrained': text_weights,
        'model.text_encoder.templates': 'imagenet80' if real else 'single',
        'test_dataloader.dataset.data_root': bench_root, 'test_dataloader.num_workers': 0,
        'log_level': 'WARNING'})
    cfg.test_dataloader.dataset.pipeline[1]['scale'] = (4096, short)
    if not real:
        cfg.model.test_cfg.update(crop_size=64, stride=32)
    print(f'[3/3] training-free evaluation on the fixture benchmark ({osp.relpath(ADE_TEST, ROOT)})')
    test_runner = prepare_test_runner(cfg, export, osp.join(out, 'eval'), ADE_TEST)
    with mmengine_checkpoint_loading():
        metrics = test_runner.test()
    print('| benchmark | aAcc | mIoU | mAcc |\n|---|---|---|---|\n'
          f"| fixture ADE20K ({len(photos)} images) | {metrics['aAcc']:.1f} | "
          f"{metrics['mIoU']:.1f} | {metrics['mAcc']:.1f} |")

    demo = load_tool('demo')
    overlay_dir = osp.join(out, 'overlays')
    demo_opts = ['model.backbone.model_name=' + str(arch), 'model.text_encoder.model_name=' + str(arch),
                 f'model.text_encoder.pretrained={text_weights}',
                 'model.text_encoder.templates=' + ('imagenet80' if real else 'single'),
                 f'test_pipeline.1.scale=(4096,{short})']
    if not real:
        demo_opts += ['model.test_cfg.crop_size=64', 'model.test_cfg.stride=32']
    for name in photos:
        img = osp.join(train_imgs, f'{name}.jpg')
        demo.main([img, '--classes', DEMO_CLASSES, '--weights', export,
                   '--out', osp.join(overlay_dir, f'{name}_overlay.png'), '--cfg-options', *demo_opts])
    print(f'\nquick-start finished in {time.time() - t0:.0f} s. Outputs in {out}:')
    print('  train/       logs, checkpoints, declip_epoch_*.pth (alpha-merged image towers)')
    print('  eval/        test logs and metrics')
    print(f'  overlays/    {len(photos)} overlay PNGs (classes: {DEMO_CLASSES})')
    print('Next: real weights and data, see README.md ("Train DeCLIP", "Evaluate").')
    return metrics


if __name__ == '__main__':
    main()
