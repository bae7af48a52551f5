"""The paper's claims measured on the miniature world (issue 20 part 5, docs/miniworld.md): the phases
``training_free``, ``declip``, ``region_cls`` and ``catseg`` of ``tools/miniworld.py``, each run
through the project's own tools and configs:

* ``training_free``: ``tools/test.py`` on ``configs/miniworld/declip_tiny-clip_training-free_miniworld-64.py``
  (the world's ADE-layout benchmark) with the tiny CLIP in each attention mode;
* ``declip``: ``tools/train.py`` on ``configs/miniworld/declip_tiny-clip_tiny-vfm_miniworld*.py`` (the
  entry recipe scaled to the world; variants content only, context only, content + context, without
  decoupling) for every training seed, then ``tools/test.py`` on the training-free config with the
  exported alpha-merged tower (``declip_epoch_<E>.pth``) in the mode it was trained in (``csa``;
  ``vanilla`` for the undecoupled ablation);
* ``proxy``: ``tools/test.py`` on ``configs/miniworld/proxyclip_tiny-clip_tiny-vfm_miniworld-64.py``
  (ProxyCLIP's proxy attention with the tiny VFM, issue 23.5) with the plain tiny CLIP and with the
  ``content+context`` export of every seed (the training-free config with only the attention changed);
* ``region_cls``: ``tools/test.py`` on ``configs/miniworld/region-cls_tiny-clip_miniworld-64.py`` (the
  world's COCO-panoptic files) with the plain tiny CLIP (``vanilla`` and ``csa``) and with the
  exported towers: top-1 of the ``rois`` feature on things and on stuff;
* ``catseg``: ``tools/train.py`` then ``tools/test.py`` on ``configs/miniworld/catseg_*.py``: the
  CAT-Seg-style head fine-tuned on the seen classes from the plain tiny CLIP and from the DeCLIP
  tower of the same seed; mIoU over all, seen and unseen classes (``ClassGroupIoUMetric``).

Every run writes its own config file (``_base_`` = the repository config, plus the run's settings:
towers, world folder, seed, schedule) into its work folder, so any number can be reproduced with
``python tools/train.py <work>/run_config.py`` / ``python tools/test.py <work>/run_config.py [CKPT]``.

Results (``OUT/results.json``): lists over training seeds, in the order of ``seeds``::

    training_free.<mode>.mIoU           [x]        (no training: one evaluation, deterministic)
    declip.<variant>.mIoU               [x_s0, x_s1, ...]
    proxy.clip.mIoU                     [x]        (plain tiny CLIP + tiny VFM proxy, deterministic)
    proxy.declip.mIoU                   [x_s0, ...] (each seed's content+context export + proxy)
    region_cls.before.<mode>.{thing,stuff}       [x]
    region_cls.after.<variant>.{thing,stuff}     [x_s0, ...]
    catseg.<clip|declip>.{mIoU,mIoU.seen,mIoU.unseen}   [x_s0, ...]

:func:`format_table` prints them as one Markdown table (mean ± sample std over seeds).
"""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ['DECLIP_VARIANTS', 'TRAINING_FREE_MODES', 'CATSEG_VARIANTS', 'ExperimentSettings',
           'WorldInputs', 'run_tool', 'write_run_config', 'phase_training_free', 'phase_declip',
           'phase_proxy', 'phase_region_cls', 'phase_catseg', 'experiment_phases', 'mean_std', 'format_table']

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs', 'miniworld')
TF_CONFIG = osp.join(CONFIG_DIR, 'declip_tiny-clip_training-free_miniworld-64.py')
REGION_CONFIG = osp.join(CONFIG_DIR, 'region-cls_tiny-clip_miniworld-64.py')
PROXY_CONFIG = osp.join(CONFIG_DIR, 'proxyclip_tiny-clip_tiny-vfm_miniworld-64.py')

TRAINING_FREE_MODES = ('vanilla', 'maskclip', 'qq', 'kk', 'csa')
#: variant -> (training config, attention mode of the exported tower = its evaluation mode)
DECLIP_VARIANTS = ('content', 'context', 'content+context', 'no-decoupling')
DECLIP_CONFIGS = {
    'content': ('declip_tiny-clip_tiny-vfm_miniworld_content-only.py', 'csa'),
    'context': ('declip_tiny-clip_tiny-vfm_miniworld_context-only.py', 'csa'),
    'content+context': ('declip_tiny-clip_tiny-vfm_miniworld.py', 'csa'),
    'no-decoupling': ('declip_tiny-clip_tiny-vfm_miniworld_no-decouple.py', 'vanilla'),
}
#: CAT-Seg variant -> training config (the image tower: plain CLIP in maskclip, DeCLIP export in csa)
CATSEG_VARIANTS = ('clip', 'declip')
CATSEG_CONFIGS = {'clip': 'catseg_tiny-clip_miniworld-64.py',
                  'declip': 'catseg_declip-tiny-clip_miniworld-64.py'}
REGION_FEATURE = 'rois'   # the paper's region-classification feature (README: top-1 rois)


@dataclass
class ExperimentSettings:
    """What the phases run. ``None`` keeps the configs' values (the pre-registered recipe).

    Args:
        seeds: training seeds (``randomness.seed`` and the grid-crop draws of DeCLIP; the CAT-Seg
            training's seed).
        modes: training-free attention modes.
        variants: DeCLIP variants (keys of :data:`DECLIP_CONFIGS`).
        region_variants: DeCLIP variants whose exports ``region_cls`` evaluates.
        catseg_variants: subset of :data:`CATSEG_VARIANTS`.
        catseg_from: the DeCLIP variant whose export (same seed) starts the ``'declip'`` head and
            runs the proxy attention of the ``proxy`` phase.
        declip_epochs / declip_batch / declip_warmup: DeCLIP schedule overrides.
        declip_images / bench_images / region_images / catseg_images: use only the first N images
            of the unlabeled folder / benchmark / panoptic scenes / CAT-Seg training split.
        catseg_iters / catseg_batch: CAT-Seg schedule overrides.
        catseg_out_indices: the backbone blocks of the head's guidance (the config's (1, 2) fits a
            4-block tower).
        threads: torch intra-op threads.
    """
    seeds: Tuple[int, ...] = (0, 1, 2)
    modes: Tuple[str, ...] = TRAINING_FREE_MODES
    variants: Tuple[str, ...] = DECLIP_VARIANTS
    region_variants: Tuple[str, ...] = DECLIP_VARIANTS
    catseg_variants: Tuple[str, ...] = CATSEG_VARIANTS
    catseg_from: str = 'content+context'
    declip_epochs: Optional[int] = None
    declip_batch: Optional[int] = None
    declip_warmup: Optional[int] = None
    declip_images: Optional[int] = None
    bench_images: Optional[int] = None
    region_images: Optional[int] = None
    catseg_images: Optional[int] = None
    catseg_iters: Optional[int] = None
    catseg_batch: Optional[int] = None
    catseg_out_indices: Optional[Tuple[int, int]] = None
    threads: int = 2

    def check(self) -> None:
        bad = [m for m in self.modes if m not in TRAINING_FREE_MODES]
        bad += [v for v in tuple(self.variants) + tuple(self.region_variants) + (self.catseg_from, )
                if v not in DECLIP_CONFIGS]
        bad += [v for v in self.catseg_variants if v not in CATSEG_CONFIGS]
        if bad:
            raise ValueError(f'unknown modes / variants {bad}')
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f'seeds must be distinct and non-empty, got {self.seeds}')


@dataclass
class WorldInputs:
    """The world's folders (``write_world``'s paths) and the towers (``weights`` / ``config`` files)."""
    paths: Dict[str, Any]
    clip: Dict[str, str]
    vfm: Dict[str, str]
    out: str
    log: Callable[[str], None] = field(default=print)

    @property
    def seen_unseen(self) -> Tuple[List[str], List[str]]:
        with open(self.paths['manifest']) as f:
            man = json.load(f)
        return list(man['seen_classes']), list(man['unseen_classes'])

    def vfm_spec(self) -> Dict[str, Any]:
        with open(self.vfm['config']) as f:
            return json.load(f)


# running the tools ---------------------------------------------------------------------------------
def load_tool(name: str):
    """``tools/<name>.py`` of this repository as a module."""
    mod_name = f'_declip_tools_{name}'
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, osp.join(ROOT, 'tools', f'{name}.py'))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[mod_name]


def write_run_config(path: str, base: str, overrides: Dict[str, Any], note: str = '') -> str:
    """Write a config file ``_base_ = [base]`` plus ``key = value`` for each override (merged by
    mmengine into the base as ``--cfg-options`` would be: dicts key by key, lists replaced)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    lines = ['# Written by declip_mm/miniworld/experiments.py (docs/miniworld.md). ' + note,
             f'_base_ = [{osp.abspath(base)!r}]']
    for key, value in overrides.items():
        lines.append(f'{key} = {value!r}')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def run_tool(tool: str, config: str, work_dir: str, checkpoint: Optional[str] = None):
    """``tools/<tool>.py``'s ``main`` on ``config`` (``'test'``: the metrics; ``'train'``: the
    runner)."""
    argv = [config] + ([checkpoint] if checkpoint else []) + ['--work-dir', work_dir]
    return load_tool(tool).main(argv)


def _text_options(inputs: WorldInputs) -> Dict[str, Any]:
    from .tower_configs import WORLD_TEMPLATES
    return dict(model_name=inputs.clip['config'], pretrained=inputs.clip['weights'],
                templates=list(WORLD_TEMPLATES))


def _subset(n: Optional[int]) -> Dict[str, Any]:
    return {} if n is None else dict(indices=int(n))


def _load_cfg(path: str):
    from mmengine.config import Config
    return Config.fromfile(path)


# the evaluations -----------------------------------------------------------------------------------
def evaluate_segmentation(inputs: WorldInputs, mode: str, work_dir: str, checkpoint: Optional[str],
                          settings: ExperimentSettings,
                          extra: Optional[Dict[str, Any]] = None) -> Dict[str, float]:
    """``tools/test.py`` on the training-free config: the tiny CLIP (or ``checkpoint``, an exported
    image tower) in ``mode`` on the world's benchmark (``extra``: more top-level config keys)."""
    overrides = dict(
        model=dict(backbone=dict(model_name=inputs.clip['config'], pretrained=inputs.clip['weights'],
                                 attn_mode=mode),
                   text_encoder=_text_options(inputs)),
        test_dataloader=dict(num_workers=0, dataset=dict(data_root=inputs.paths['ade_root'],
                                                         **_subset(settings.bench_images))))
    overrides.update(extra or {})
    cfg = write_run_config(osp.join(work_dir, 'run_config.py'), TF_CONFIG, overrides,
                           f'Training-free mIoU, attn_mode {mode}.')
    return run_tool('test', cfg, work_dir, checkpoint)


def evaluate_proxy(inputs: WorldInputs, work_dir: str, checkpoint: Optional[str],
                   settings: ExperimentSettings) -> Dict[str, float]:
    """``tools/test.py`` on the proxy config: the tiny CLIP (or ``checkpoint``) with the tiny VFM as
    ProxyCLIP's proxy, on the world's benchmark."""
    spec = inputs.vfm_spec()
    overrides = dict(
        model=dict(backbone=dict(model_name=inputs.clip['config'], pretrained=inputs.clip['weights']),
                   text_encoder=_text_options(inputs),
                   vfm=dict(arch=spec['arch'], arch_overrides=spec.get('arch_overrides'),
                            pretrained=inputs.vfm['weights'])),
        test_dataloader=dict(num_workers=0, dataset=dict(data_root=inputs.paths['ade_root'],
                                                         **_subset(settings.bench_images))))
    cfg = write_run_config(osp.join(work_dir, 'run_config.py'), PROXY_CONFIG, overrides,
                           'Proxy attention (tiny VFM).')
    return run_tool('test', cfg, work_dir, checkpoint)


def evaluate_regions(inputs: WorldInputs, mode: str, work_dir: str, checkpoint: Optional[str],
                     settings: ExperimentSettings) -> Dict[str, float]:
    overrides = dict(
        model=dict(backbone=dict(model_name=inputs.clip['config'], pretrained=inputs.clip['weights'],
                                 attn_mode=mode),
                   text_encoder=_text_options(inputs)),
        test_dataloader=dict(num_workers=0, dataset=dict(data_root=inputs.paths['coco_root'],
                                                         **_subset(settings.region_images))))
    cfg = write_run_config(osp.join(work_dir, 'run_config.py'), REGION_CONFIG, overrides,
                           f'Region classification, attn_mode {mode}.')
    return run_tool('test', cfg, work_dir, checkpoint)


def _region_entry(metrics: Dict[str, float]) -> Dict[str, float]:
    return {split: float(metrics[f'region_cls/{REGION_FEATURE}.{split}.macc1'])
            for split in ('thing', 'stuff')}


# DeCLIP ----------------------------------------------------------------------------------------------
def train_declip(inputs: WorldInputs, variant: str, seed: int, work_dir: str,
                 settings: ExperimentSettings, extra: Optional[Dict[str, Any]] = None) -> str:
    """``tools/train.py`` on the variant's config; returns the last exported tower (``extra``: more
    top-level config keys, e.g. ``log_level``)."""
    name, _ = DECLIP_CONFIGS[variant]
    base = osp.join(CONFIG_DIR, name)
    cfg0 = _load_cfg(base)
    pipeline = copy.deepcopy(cfg0.train_dataloader.dataset.pipeline)
    for t in pipeline:
        if t['type'] == 'DeCLIPGridCrops':
            t['seed'] = int(seed)
    epochs = int(settings.declip_epochs or cfg0.train_cfg.max_epochs)
    sched = [dict(s) for s in copy.deepcopy(cfg0.param_scheduler)]
    for s in sched:
        s['end'] = epochs
        if settings.declip_warmup is not None and 'warmup_iters' in s:
            s['warmup_iters'] = int(settings.declip_warmup)
            s['end'] = epochs
    model = dict(student=dict(model_name=inputs.clip['config'], pretrained=inputs.clip['weights']))
    if cfg0.model.get('vfm_teacher') is not None:
        spec = inputs.vfm_spec()
        model['vfm_teacher'] = dict(arch=spec['arch'], arch_overrides=spec.get('arch_overrides'),
                                    pretrained=inputs.vfm['weights'])
    loader = dict(dataset=dict(data_root=inputs.paths['coco_root'], img_dir='train2017',
                               pipeline=[dict(t) for t in pipeline],
                               **_subset(settings.declip_images)))
    if settings.declip_batch is not None:
        loader['batch_size'] = int(settings.declip_batch)
    overrides = dict(model=model, train_dataloader=loader, randomness=dict(seed=int(seed)),
                     train_cfg=dict(max_epochs=epochs), param_scheduler=sched)
    overrides.update(extra or {})
    cfg = write_run_config(osp.join(work_dir, 'run_config.py'), base, overrides,
                           f'DeCLIP variant {variant}, seed {seed}.')
    run_tool('train', cfg, work_dir)
    export = osp.join(work_dir, f'declip_epoch_{epochs}.pth')
    if not osp.isfile(export):
        raise RuntimeError(f'DeCLIP training of {variant} (seed {seed}) wrote no export {export}')
    return export


def phase_training_free(inputs: WorldInputs, results: Dict[str, Any],
                        settings: ExperimentSettings) -> None:
    """``results['training_free'][mode] = {'mIoU': [x], 'aAcc': [x]}`` (one deterministic run)."""
    tf = results.setdefault('training_free', {})
    for mode in settings.modes:
        wd = osp.join(inputs.out, 'experiments', 'training_free', mode)
        m = evaluate_segmentation(inputs, mode, wd, None, settings)
        tf[mode] = dict(mIoU=[float(m['mIoU'])], aAcc=[float(m['aAcc'])],
                        config=osp.join(wd, 'run_config.py'))
        inputs.log(f'[training_free] {mode}: mIoU {m["mIoU"]:.2f}')


def _safe(name: str) -> str:
    return name.replace('+', '_')


def phase_declip(inputs: WorldInputs, results: Dict[str, Any], settings: ExperimentSettings) -> None:
    """Train every variant for every seed, evaluate each export:
    ``results['declip'][variant] = {'mIoU': [per seed], 'seeds': [...], 'exports': [...]}``."""
    dc = results.setdefault('declip', {})
    for variant in settings.variants:
        _, mode = DECLIP_CONFIGS[variant]
        entry = dict(mIoU=[], aAcc=[], seeds=[], exports=[], attn_mode=mode)
        for seed in settings.seeds:
            root = osp.join(inputs.out, 'experiments', 'declip', _safe(variant), f'seed{seed}')
            export = train_declip(inputs, variant, seed, osp.join(root, 'train'), settings)
            m = evaluate_segmentation(inputs, mode, osp.join(root, 'test'), export, settings)
            entry['mIoU'].append(float(m['mIoU']))
            entry['aAcc'].append(float(m['aAcc']))
            entry['seeds'].append(int(seed))
            entry['exports'].append(export)
            inputs.log(f'[declip] {variant} seed {seed}: mIoU {m["mIoU"]:.2f}')
        dc[variant] = entry


def _export(results: Dict[str, Any], variant: str, seed: int) -> str:
    entry = results.get('declip', {}).get(variant)
    if not entry or seed not in entry.get('seeds', []):
        raise SystemExit(f'no DeCLIP export of variant {variant!r} for seed {seed}: run the '
                         'declip phase first (with this variant and seed)')
    path = entry['exports'][entry['seeds'].index(seed)]
    if not osp.isfile(path):
        raise SystemExit(f'the DeCLIP export {path} is gone: run the declip phase again')
    return path


def phase_proxy(inputs: WorldInputs, results: Dict[str, Any], settings: ExperimentSettings) -> None:
    """``results['proxy']['clip']`` (the plain tiny CLIP: one deterministic run) and
    ``results['proxy']['declip']`` (the ``settings.catseg_from`` export of every seed), each
    ``{'mIoU': [...], 'aAcc': [...]}``."""
    px = results.setdefault('proxy', {})
    wd = osp.join(inputs.out, 'experiments', 'proxy', 'clip')
    m = evaluate_proxy(inputs, wd, None, settings)
    px['clip'] = dict(mIoU=[float(m['mIoU'])], aAcc=[float(m['aAcc'])],
                      config=osp.join(wd, 'run_config.py'))
    inputs.log(f'[proxy] plain CLIP: mIoU {m["mIoU"]:.2f}')
    entry = dict(mIoU=[], aAcc=[], seeds=[], source=settings.catseg_from)
    for seed in settings.seeds:
        wd = osp.join(inputs.out, 'experiments', 'proxy', 'declip', f'seed{seed}')
        m = evaluate_proxy(inputs, wd, _export(results, settings.catseg_from, seed), settings)
        entry['mIoU'].append(float(m['mIoU']))
        entry['aAcc'].append(float(m['aAcc']))
        entry['seeds'].append(int(seed))
        inputs.log(f'[proxy] DeCLIP {settings.catseg_from} seed {seed}: mIoU {m["mIoU"]:.2f}')
    px['declip'] = entry


def phase_region_cls(inputs: WorldInputs, results: Dict[str, Any],
                     settings: ExperimentSettings) -> None:
    """Top-1 (``rois``) on things and stuff: the plain CLIP in ``vanilla`` and ``csa`` (before) and
    every export of ``settings.region_variants`` (after)."""
    rc = results.setdefault('region_cls', {})
    before = rc.setdefault('before', {})
    for mode in ('vanilla', 'csa'):
        m = evaluate_regions(inputs, mode, osp.join(inputs.out, 'experiments', 'region_cls',
                                                    'before', mode), None, settings)
        before[mode] = {k: [v] for k, v in _region_entry(m).items()}
        inputs.log(f'[region_cls] before ({mode}): things {before[mode]["thing"][0]:.1f}, '
                   f'stuff {before[mode]["stuff"][0]:.1f}')
    after = rc.setdefault('after', {})
    for variant in settings.region_variants:
        mode = DECLIP_CONFIGS[variant][1]
        entry = dict(thing=[], stuff=[], seeds=[], attn_mode=mode)
        for seed in settings.seeds:
            wd = osp.join(inputs.out, 'experiments', 'region_cls', 'after', _safe(variant),
                          f'seed{seed}')
            m = _region_entry(evaluate_regions(inputs, mode, wd, _export(results, variant, seed),
                                               settings))
            entry['thing'].append(m['thing'])
            entry['stuff'].append(m['stuff'])
            entry['seeds'].append(int(seed))
        after[variant] = entry
        inputs.log(f'[region_cls] after {variant}: things {entry["thing"]}, stuff {entry["stuff"]}')


def train_and_test_catseg(inputs: WorldInputs, variant: str, seed: int, work_dir: str,
                          settings: ExperimentSettings, tower: Optional[str]) -> Dict[str, float]:
    """``tools/train.py`` then ``tools/test.py`` on the CAT-Seg config of ``variant``; ``tower`` = the
    image tower's weights (the DeCLIP export; ``None``: the plain CLIP)."""
    base = osp.join(CONFIG_DIR, CATSEG_CONFIGS[variant])
    cfg0 = _load_cfg(base)
    seen, unseen = inputs.seen_unseen
    iters = int(settings.catseg_iters or cfg0.train_cfg.max_iters)
    sched = [dict(s, end=iters) for s in copy.deepcopy(cfg0.param_scheduler)]
    backbone = dict(model_name=inputs.clip['config'], pretrained=tower or inputs.clip['weights'])
    if settings.catseg_out_indices is not None:
        backbone['out_indices'] = tuple(int(i) for i in settings.catseg_out_indices)
    ade = inputs.paths['ade_root']
    train_loader = dict(dataset=dict(data_root=ade, metainfo=dict(classes=seen),
                                     **_subset(settings.catseg_images)))
    if settings.catseg_batch is not None:
        train_loader['batch_size'] = int(settings.catseg_batch)
    overrides = dict(
        model=dict(backbone=backbone, text_encoder=dict(model_name=inputs.clip['config'],
                                                        pretrained=inputs.clip['weights'])),
        train_dataloader=train_loader,
        test_dataloader=dict(dataset=dict(data_root=ade, **_subset(settings.bench_images))),
        test_evaluator=dict(class_groups=dict(seen=seen, unseen=unseen)),
        randomness=dict(seed=int(seed)),
        train_cfg=dict(max_iters=iters, val_interval=iters + 1),
        param_scheduler=sched,
        default_hooks=dict(checkpoint=dict(interval=iters)))
    # training sees only the seen names (the class-name list of the model = the dataset's classes)
    train_overrides = copy.deepcopy(overrides)
    train_overrides['model']['class_names'] = inputs.paths['seen_class_names']
    train_cfg = write_run_config(osp.join(work_dir, 'train', 'run_config.py'), base, train_overrides,
                                 f'CAT-Seg head from {variant}, seed {seed}: training (seen classes).')
    run_tool('train', train_cfg, osp.join(work_dir, 'train'))
    ckpt = osp.join(work_dir, 'train', f'iter_{iters}.pth')
    if not osp.isfile(ckpt):
        raise RuntimeError(f'CAT-Seg training wrote no checkpoint {ckpt}')
    overrides['model']['class_names'] = inputs.paths['class_names']
    test_cfg = write_run_config(osp.join(work_dir, 'test', 'run_config.py'), base, overrides,
                                f'CAT-Seg head from {variant}, seed {seed}: all classes.')
    return run_tool('test', test_cfg, osp.join(work_dir, 'test'), ckpt)


def phase_catseg(inputs: WorldInputs, results: Dict[str, Any], settings: ExperimentSettings) -> None:
    """``results['catseg'][variant] = {'mIoU', 'mIoU.seen', 'mIoU.unseen': [per seed]}``."""
    cs = results.setdefault('catseg', {})
    for variant in settings.catseg_variants:
        entry = {'mIoU': [], 'mIoU.seen': [], 'mIoU.unseen': [], 'seeds': []}
        for seed in settings.seeds:
            tower = _export(results, settings.catseg_from, seed) if variant == 'declip' else None
            wd = osp.join(inputs.out, 'experiments', 'catseg', variant, f'seed{seed}')
            m = train_and_test_catseg(inputs, variant, seed, wd, settings, tower)
            for k in ('mIoU', 'mIoU.seen', 'mIoU.unseen'):
                entry[k].append(float(m[k]))
            entry['seeds'].append(int(seed))
            inputs.log(f'[catseg] {variant} seed {seed}: mIoU {m["mIoU"]:.2f} (seen '
                       f'{m["mIoU.seen"]:.2f}, unseen {m["mIoU.unseen"]:.2f})')
        if variant == 'declip':
            entry['from'] = settings.catseg_from
        cs[variant] = entry


# the table -------------------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value) of ``values``."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError('no values')
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def _cell(values: Optional[Sequence[float]]) -> str:
    if not values:
        return '—'
    m, s = mean_std(values)
    if len(values) == 1:
        return f'{m:.2f}'
    return f'{m:.2f} ± {s:.2f} (n={len(values)})'


def format_table(results: Dict[str, Any]) -> str:
    """One Markdown table of every measured number: mean ± sample std over the training seeds
    (training-free rows and the "before" region rows are single deterministic runs)."""
    rows = ['| what | measure | value |', '|---|---|---|']
    for mode in TRAINING_FREE_MODES:
        e = results.get('training_free', {}).get(mode)
        if e:
            rows.append(f'| training-free, `{mode}` | mIoU | {_cell(e["mIoU"])} |')
    names = {'content': 'content only', 'context': 'context only',
             'content+context': 'content + context', 'no-decoupling': 'without decoupling'}
    for variant in DECLIP_VARIANTS:
        e = results.get('declip', {}).get(variant)
        if e:
            rows.append(f'| DeCLIP, {names[variant]} (`{e.get("attn_mode", "csa")}`) | mIoU | '
                        f'{_cell(e["mIoU"])} |')
    px = results.get('proxy', {})
    for tower, label in (('clip', 'plain CLIP'), ('declip', 'DeCLIP tower (content + context)')):
        if px.get(tower):
            rows.append(f'| proxy attention (tiny VFM), {label} | mIoU | {_cell(px[tower]["mIoU"])} |')
    rc = results.get('region_cls', {})
    for mode, e in rc.get('before', {}).items():
        rows.append(f'| region top-1, plain CLIP (`{mode}`) | things / stuff | '
                    f'{_cell(e["thing"])} / {_cell(e["stuff"])} |')
    for variant in DECLIP_VARIANTS:
        e = rc.get('after', {}).get(variant)
        if e:
            rows.append(f'| region top-1, DeCLIP {names[variant]} | things / stuff | '
                        f'{_cell(e["thing"])} / {_cell(e["stuff"])} |')
    labels = {'clip': 'plain CLIP', 'declip': 'DeCLIP tower'}
    for variant in CATSEG_VARIANTS:
        e = results.get('catseg', {}).get(variant)
        if e:
            rows.append(f'| CAT-Seg head from the {labels[variant]} | mIoU seen / unseen (all) | '
                        f'{_cell(e["mIoU.seen"])} / {_cell(e["mIoU.unseen"])} '
                        f'({_cell(e["mIoU"])}) |')
    return '\n'.join(rows)


# tools/miniworld.py's phases -------------------------------------------------------------------------
def settings_from_context(ctx) -> ExperimentSettings:
    """The settings of a ``tools/miniworld.py`` run: ``ctx.experiment_settings`` if set (tests),
    else the configs' recipe (``--quick``: 1 seed, 1 epoch, short CAT-Seg), with the schedule
    options ``--seeds``, ``--declip-epochs``, ``--declip-images``, ``--catseg-iters``,
    ``--catseg-images`` applied."""
    s = getattr(ctx, 'experiment_settings', None)
    if s is None:
        s = ExperimentSettings(threads=getattr(ctx.args, 'threads', 2))
        seeds = getattr(ctx.args, 'seeds', None)
        if seeds:
            s.seeds = tuple(int(x) for x in str(seeds).split(','))
        if getattr(ctx.args, 'quick', False):
            if not seeds:
                s.seeds = (0, )
            s.declip_epochs, s.catseg_iters = 1, 50
        for name in ('declip_epochs', 'declip_images', 'catseg_iters', 'catseg_images'):
            value = getattr(ctx.args, name, None)       # tools/miniworld.py's schedule options
            if value is not None:
                setattr(s, name, int(value))
    s.check()
    return s


def inputs_from_context(ctx) -> WorldInputs:
    world = ctx.results.get('world', {}).get('paths')
    towers = ctx.results.get('towers', {})
    if not world or 'clip' not in towers or 'vfm' not in towers:
        raise SystemExit('the experiment phases need the world, clip and vfm phases (run them first)')
    return WorldInputs(paths=dict(world, seen_class_names=world.get('seen_class_names')),
                       clip=towers['clip'], vfm=towers['vfm'], out=ctx.out, log=ctx.log)


def _context_phase(fn):
    def phase(ctx) -> None:
        import torch
        settings = settings_from_context(ctx)
        torch.set_num_threads(int(settings.threads))
        fn(inputs_from_context(ctx), ctx.results, settings)
        ctx.log(format_table(ctx.results))
    phase.__name__ = fn.__name__
    phase.__doc__ = fn.__doc__
    return phase


def experiment_phases() -> Dict[str, Callable]:
    """The phases ``tools/miniworld.py`` registers, in their order."""
    return dict(training_free=_context_phase(phase_training_free),
                declip=_context_phase(phase_declip),
                proxy=_context_phase(phase_proxy),
                region_cls=_context_phase(phase_region_cls),
                catseg=_context_phase(phase_catseg))
