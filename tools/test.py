#!/usr/bin/env python
"""Test (and evaluate) a segmentor: mmseg 1.x's tools/test.py, with the checkpoint optional.

    python tools/test.py CONFIG [CHECKPOINT] [--work-dir DIR] [--out DIR] [--show] [--show-dir DIR]
                         [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi] [--tta]
                         [--allow-untrained-head]

CHECKPOINT may be omitted for training-free configs (the config's local weights are used), be a
CLIP / DeCLIP image-tower checkpoint (it becomes ``model.backbone.pretrained``; its stored attn_mode
must fit the config's: the same mode, or a qq / kk checkpoint evaluated in csa as the official
evaluator does; the table is in docs/method.md), an mmengine checkpoint of the whole model
(``load_from``) or a training checkpoint of DeCLIP distillation (``epoch_N.pth``: its student tower).
``--tta`` wraps the model in the config's ``tta_model``, or in the right wrapper for declip_mm's
segmentors if it has none (or mmseg's ``SegTTAModel``). ``--show-dir DIR`` writes
``DIR/vis_data/vis_image/*.png``.

A whole-model checkpoint must fit the model tensor by tensor (shape mismatches, missing and
unexpected tensors are refused with their list), and a config whose head is trained (CAT-Seg, drop-in,
detection) is refused without a checkpoint unless ``--allow-untrained-head`` is given.
"""
import argparse
import os

from mmengine.config import Config, DictAction


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='declip_mm: test (and eval) a model')
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='checkpoint file (optional for training-free configs)')
    p.add_argument('--work-dir', help='directory for logs and the metric json')
    p.add_argument('--out', type=str, help='directory to save predictions for offline evaluation')
    p.add_argument('--show', action='store_true', help='show prediction results')
    p.add_argument('--show-dir', help='directory for painted images: they are written to '
                   'SHOW_DIR/vis_data/vis_image/test_<image name>_0.png (SHOW_DIR as given, not '
                   'under the work dir)')
    p.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    p.add_argument('--show-interval', type=int, default=1,
                   help='draw every N-th image with --show/--show-dir (mmseg draws every 50th)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value pairs (e.g. model.backbone.attn_mode=qq)')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                   help='job launcher')
    p.add_argument('--tta', action='store_true', help='test-time augmentation')
    p.add_argument('--allow-untrained-head', action='store_true',
                   help='evaluate a model with a trained head (CAT-Seg, drop-in, detection) without '
                   'its checkpoint, i.e. with a randomly initialised head (smoke tests only); '
                   'without it such a run is refused')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg, args):
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise RuntimeError('--show/--show-dir need a visualization hook in default_hooks, e.g. '
                           "visualization=dict(type='SegVisualizationHook')")
    hook = hooks['visualization']
    hook['draw'] = True
    hook['interval'] = args.show_interval
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        cfg.visualizer['save_dir'] = args.show_dir
    return cfg


def tta_pipeline_from(cfg):
    """TTA views of the config's own test pipeline: its loading and protocol resize, then
    ``tta_ratios`` rescales x (no flip, horizontal flip)."""
    pipe = [dict(t) for t in cfg.test_pipeline]
    head = [t for t in pipe if t['type'] not in ('LoadAnnotations', 'PackSegInputs')]
    ratios = cfg.get('tta_ratios', (0.75, 1.0, 1.25))
    return head + [dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])]


def build_cfg(args):
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if getattr(args, 'allow_untrained_head', False):
        cfg.allow_untrained_head = True
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.out is not None and cfg.model.get('type') == 'DeCLIPZeroShotSegmentor':
        # predictions are wanted: also keep the full-resolution class probabilities (seg_logits);
        # without it the segmentor returns only labels, computed in strips (memory ~ pixels)
        cfg.model.test_cfg = dict(cfg.model.get('test_cfg') or {}, keep_seg_logits=True)
    if args.tta:
        from declip_mm.models.segmentors.seg_tta import resolve_tta_model
        tta_model = resolve_tta_model(cfg.model, cfg.get('tta_model'))
        cfg.test_dataloader.dataset.pipeline = cfg.get('tta_pipeline') or tta_pipeline_from(cfg)
        tta_model['module'] = cfg.model
        cfg.tta_model = cfg.model = tta_model
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    return cfg


def main(argv=None):
    args = parse_args(argv)
    import declip_mm  # noqa: F401  (registers; the config's custom_imports does the same)
    from declip_mm.tools_support import prepare_test_runner
    from declip_mm.utils import mmengine_checkpoint_loading
    cfg = build_cfg(args)
    runner = prepare_test_runner(cfg, args.checkpoint, args.work_dir, args.config)
    with mmengine_checkpoint_loading():   # load_from may be an mmengine training checkpoint
        return runner.test()


if __name__ == '__main__':
    main()
