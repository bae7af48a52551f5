#!/usr/bin/env python
"""The miniature open-vocabulary world end to end (docs/miniworld.md).

    python tools/miniworld.py --world-seed 0 --out work_dirs/miniworld              # every phase
    python tools/miniworld.py --out work_dirs/miniworld --phases clip,figures       # some phases
    python tools/miniworld.py --out work_dirs/mw_quick --quick                      # reduced sizes

Phases (in this order; each prints a progress line and records its wall time):

* ``world``   writes every layout of the world (``write_world``) under ``OUT/world``;
* ``clip``    trains the tiny CLIP (``clip_trainer.py``), or reuses it from the cache;
* ``vfm``     trains the tiny VFM (``vfm_trainer.py``), or reuses it from the cache;
* ``figures`` the pre-registration figures: zero-shot top-1 per class of the CLIP, correlation
  agreement of the VFM / CLIP features and of random weights (``tower_figures.py``).

The towers are cached under ``--cache-dir`` (default ``OUT/towers``) in folders keyed by the
generator's version, the trainers' versions, the world seed, the architecture and the settings
(``tower_cache.py``). ``OUT/results.json`` gathers everything; later phases (DeCLIP distillation,
the evaluations of the issue's table) register in :data:`PHASES` and fill ``training_free``,
``declip``, ``region_cls`` and ``catseg`` (lists over training seeds), e.g.
``results['training_free']['csa']['mIoU'] == [..]`` and
``results['declip']['content+context']['mIoU'] == [..]``.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Any, Callable, Dict, List

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from declip_mm.miniworld.experiments import experiment_phases  # noqa: E402

#: the variants of the issue's table (``results['declip'][variant]``)
DECLIP_VARIANTS = ('content', 'context', 'content+context', 'no-decoupling')
TRAINING_FREE_MODES = ('vanilla', 'maskclip', 'qq', 'kk', 'csa')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--world-seed', type=int, default=0, help='seed of the world (default 0)')
    p.add_argument('--out', required=True, help='output folder (results.json, world, towers)')
    p.add_argument('--phases', default=None,
                   help=f'comma-separated subset of {",".join(PHASES)} (default: all)')
    p.add_argument('--cache-dir', default=None, help='tower cache (default OUT/towers)')
    p.add_argument('--retrain', action='store_true', help='train the towers even if cached')
    p.add_argument('--quick', action='store_true',
                   help='reduced sizes and steps (a smoke run, not the pre-registered towers)')
    p.add_argument('--clip-steps', type=int, default=None,
                   help='override the CLIP steps (warm-up: at most a tenth of them)')
    p.add_argument('--vfm-steps', type=int, default=None,
                   help='override the VFM steps (warm-up: at most a tenth of them)')
    p.add_argument('--threads', type=int, default=2, help='torch threads of the trainings')
    p.add_argument('--seeds', default=None,
                   help='training seeds of the experiment phases, comma-separated (default 0,1,2)')
    p.add_argument('--declip-epochs', type=int, default=None,
                   help='DeCLIP epochs (default: the configs\' 6)')
    p.add_argument('--declip-images', type=int, default=None,
                   help='use only the first N unlabeled images for DeCLIP (default: all)')
    p.add_argument('--catseg-iters', type=int, default=None,
                   help='CAT-Seg iterations (default: the configs\' 500)')
    p.add_argument('--catseg-images', type=int, default=None,
                   help='use only the first N images of the CAT-Seg training split (default: all)')
    p.add_argument('--ship', action='store_true',
                   help='after the phases, archive the clip / vfm towers of this run into '
                        'declip_mm/miniworld/weights/ with a manifest (command, seeds, versions, '
                        'figures of the archives)')
    return p.parse_args(argv)


class Context:
    """State shared by the phases: arguments, paths, results (written after every phase)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = osp.abspath(args.out)
        self.cache_dir = osp.abspath(args.cache_dir or osp.join(self.out, 'towers'))
        self.results_path = osp.join(self.out, 'results.json')
        self.results: Dict[str, Any] = dict(world_seed=args.world_seed, quick=bool(args.quick),
                                            towers={}, figures={}, training_free={}, declip={},
                                            region_cls={}, catseg={}, timings={})
        if osp.isfile(self.results_path):  # keep what earlier runs measured (same world seed only)
            with open(self.results_path) as f:
                old = json.load(f)
            if old.get('world_seed') == args.world_seed and old.get('quick') == bool(args.quick):
                self.results.update(old)

    def save(self) -> None:
        os.makedirs(self.out, exist_ok=True)
        tmp = self.results_path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.results, f, indent=1)
        os.replace(tmp, self.results_path)

    def log(self, msg: str) -> None:
        print(msg, flush=True)


def clip_settings(ctx: Context):
    from declip_mm.miniworld.clip_trainer import CLIPTrainSettings
    s = CLIPTrainSettings(world_seed=ctx.args.world_seed, threads=ctx.args.threads)
    if ctx.args.quick:
        s.steps, s.batch_size, s.warmup = 30, 32, 5
    if ctx.args.clip_steps is not None:
        s.steps = ctx.args.clip_steps
        s.warmup = min(s.warmup, max(1, s.steps // 10))
    return s


def vfm_settings(ctx: Context):
    from declip_mm.miniworld.vfm_trainer import VFMTrainSettings
    s = VFMTrainSettings(world_seed=ctx.args.world_seed, threads=ctx.args.threads)
    if ctx.args.quick:
        s.steps, s.batch_size, s.warmup = 20, 16, 3
    if ctx.args.vfm_steps is not None:
        s.steps = ctx.args.vfm_steps
        s.warmup = min(s.warmup, max(1, s.steps // 10))
    return s


def phase_world(ctx: Context) -> None:
    from declip_mm.miniworld import WORLD_VERSION, write_world
    kwargs = dict(n_caption=200, n_unlabeled=200, n_bench=50, n_catseg_train=100) \
        if ctx.args.quick else {}
    paths = write_world(osp.join(ctx.out, 'world'), ctx.args.world_seed, **kwargs)
    ctx.results['world'] = dict(version=WORLD_VERSION, seed=ctx.args.world_seed,
                                paths={k: v for k, v in paths.items()
                                       if isinstance(v, str)})


def phase_clip(ctx: Context) -> None:
    from declip_mm.miniworld.tower_cache import get_world_clip
    got = get_world_clip(ctx.cache_dir, clip_settings(ctx), retrain=ctx.args.retrain, log=ctx.log)
    ctx.results['towers']['clip'] = got


def phase_vfm(ctx: Context) -> None:
    from declip_mm.miniworld.tower_cache import get_world_vfm
    got = get_world_vfm(ctx.cache_dir, vfm_settings(ctx), retrain=ctx.args.retrain, log=ctx.log)
    ctx.results['towers']['vfm'] = got


def phase_figures(ctx: Context) -> None:
    from declip_mm.miniworld.tower_figures import clip_figures, correlation_figures, crop_figures, dense_figures
    from declip_mm.miniworld.zero_shot import (
        format_correlation_table,
        format_crop_table,
        format_dense_table,
        format_zero_shot_table,
    )
    towers = ctx.results['towers']
    if 'clip' not in towers or 'vfm' not in towers:
        raise SystemExit('the figures phase needs the clip and vfm phases (run them first)')
    with open(towers['clip']['config']) as f:
        clip_cfg = json.load(f)
    with open(towers['vfm']['config']) as f:
        vfm_spec = json.load(f)
    n_obj, n_scenes = (10, 40) if ctx.args.quick else (50, 200)
    zs = clip_figures(clip_cfg, towers['clip']['weights'], ctx.args.world_seed, n_obj)
    ctx.log(format_zero_shot_table(zs))
    dense = dense_figures(clip_cfg, towers['clip']['weights'], ctx.args.world_seed, n_obj // 2 or 1)
    ctx.log(format_dense_table(dense))
    crop = crop_figures(clip_cfg, towers['clip']['weights'], ctx.args.world_seed, n_scenes * 3 // 4)
    ctx.log(format_crop_table(crop))
    corr = correlation_figures(clip_cfg, towers['clip']['weights'], vfm_spec,
                               towers['vfm']['weights'], ctx.args.world_seed, n_scenes)
    ctx.log(format_correlation_table(corr))
    ctx.results['figures'] = dict(zero_shot=zs, dense=dense, crop=crop, correlation=corr)


#: name -> phase; later phases (distillation, evaluation) are appended here
PHASES: Dict[str, Callable[[Context], None]] = dict(world=phase_world, clip=phase_clip,
                                                     vfm=phase_vfm, figures=phase_figures)
PHASES.update(experiment_phases())  # training_free, declip, region_cls, catseg (experiments.py)


def select_phases(spec: str | None) -> List[str]:
    if spec is None:
        return list(PHASES)
    names = [s.strip() for s in spec.split(',') if s.strip()]
    bad = [n for n in names if n not in PHASES]
    if bad or not names:
        raise SystemExit(f'unknown phase(s) {bad or spec!r}; choose from {",".join(PHASES)}')
    return [n for n in PHASES if n in names]


def main(argv=None) -> Dict[str, Any]:
    args = parse_args(argv)
    if not 0 <= args.world_seed < 1 << 20:
        raise SystemExit(f'--world-seed must be in [0, 2**20), got {args.world_seed}')
    phases = select_phases(args.phases)
    ctx = Context(args)
    for i, name in enumerate(phases, 1):
        t0 = time.time()
        ctx.log(f'[{i}/{len(phases)}] {name} ...')
        PHASES[name](ctx)
        ctx.results['timings'][name] = round(time.time() - t0, 1)
        ctx.save()
        ctx.log(f'[{i}/{len(phases)}] {name} done in {time.time() - t0:.0f}s')
    if args.ship:
        from declip_mm.miniworld.shipped import SHIPPED_DIR, ship_towers
        towers = ctx.results['towers']
        if 'clip' not in towers or 'vfm' not in towers:
            raise SystemExit('--ship needs the clip and vfm phases in this run')
        command = 'python tools/miniworld.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
        manifest = ship_towers(towers['clip'], towers['vfm'], args.world_seed, command,
                               ctx.cache_dir)
        ctx.results['shipped'] = manifest
        ctx.save()
        ctx.log(f'shipped the towers into {SHIPPED_DIR}: ' + ', '.join(
            f'{t["file"]} {t["bytes"] / 1e6:.2f} MB' for t in manifest['towers'].values()))
    ctx.log(f'results: {ctx.results_path}')
    return ctx.results


if __name__ == '__main__':
    main()
