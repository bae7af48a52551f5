"""Shared steps of ``tools/test.py``, ``tools/eval_all.py``, ``tools/eval_catseg.py`` and the quick-start:
building a test Runner from a config and a checkpoint."""
from __future__ import annotations

import os.path as osp
import uuid
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner

from ..apis.checkpoints import apply_test_checkpoint, unwrap_model
from ..apis.strict_checkpoint import ALLOW_UNTRAINED_KEY, StrictLoadCheckHook, check_trained_head
from ..datasets.class_names import check_class_names

__all__ = ['prepare_test_runner', 'fresh_visualizer', 'configure_cpu_distributed',
           'drop_training_parts']


def configure_cpu_distributed(cfg: Config, launcher: str) -> Config:
    """Distributed runs on CPU processes (gloo).

    mmengine's pytorch launcher calls ``torch.cuda.set_device`` and gives DDP ``device_ids``; without
    CUDA we create the gloo process group ourselves (the Runner then skips its own) and wrap the model
    without device ids. Does nothing when CUDA is available.
    """
    if torch.cuda.is_available():
        return cfg
    if cfg.get('env_cfg', {}).get('dist_cfg'):
        cfg.env_cfg.dist_cfg.backend = 'gloo'
    if launcher == 'none':
        return cfg
    import torch.distributed as dist
    if not dist.is_initialized():
        if launcher != 'pytorch':
            raise SystemExit(f'--launcher {launcher} without CUDA is not supported; use pytorch '
                             '(torchrun, tools/dist_train.sh, tools/dist_test.sh) for CPU processes')
        dist.init_process_group(backend='gloo')
    wrapper = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return cfg


def fresh_visualizer(cfg: Config) -> Config:
    """Give the config's visualizer a unique name.

    mmengine keeps visualizers by name: with the fixed name of mmseg's configs a second Runner in the
    same process (eval_all, the quick-start, tests) would reuse the first one and its save_dir.
    """
    if cfg.get('visualizer') is not None:
        base = cfg.visualizer.get('name', 'visualizer')
        cfg.visualizer['name'] = f'{base}_{uuid.uuid4().hex[:8]}'
    return cfg


#: the parts of a config that only training uses (all or none must be set for mmengine's Runner)
TRAINING_PARTS = ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler')


def drop_training_parts(cfg: Config) -> Config:
    """Remove the training loop's settings from a config that is only tested.

    mmseg's ``SegVisualizationHook`` draws with ``step=runner.iter``, and ``Runner.iter`` builds the
    training loop, with its dataset, when the config has one: a stock mmseg config whose training
    data is not on disk fails at the first drawn image (mmseg's own test tool at image 50, the hook's
    default interval). A test run never needs them.
    """
    for key in TRAINING_PARTS:
        if cfg.get(key) is not None:
            cfg[key] = None
    return cfg


def prepare_test_runner(cfg: Config, checkpoint: Optional[str] = None, work_dir: Optional[str] = None,
                        config_path: Optional[str] = None) -> Runner:
    """Route the checkpoint, build the Runner, load weights and check the class names.

    The class-name list (if the model has one) is checked against the test dataset (count and order)
    before any image is processed; weights are loaded (from local files only) before the first batch.
    A whole-model checkpoint (``load_from``) must fit the model tensor by tensor, and a model with a
    trained head is refused without one unless ``cfg.allow_untrained_head`` is set
    (:mod:`declip_mm.apis.strict_checkpoint`).
    """
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(config_path or 'declip'))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    configure_cpu_distributed(cfg, cfg.get('launcher', 'none'))
    drop_training_parts(cfg)
    kind = apply_test_checkpoint(cfg, checkpoint) if checkpoint else None
    fresh_visualizer(cfg)
    runner = Runner.from_cfg(cfg)
    seg = unwrap_model(runner.model)
    # a model with a trained head needs its checkpoint; that checkpoint must fit tensor by tensor
    check_trained_head(seg, bool(cfg.get('load_from')), bool(cfg.get(ALLOW_UNTRAINED_KEY, False)))
    if cfg.get('load_from'):
        runner.register_hook(StrictLoadCheckHook(cfg.load_from))
    ds_cfg = cfg.test_dataloader.dataset
    folder = osp.join(ds_cfg.get('data_root') or '', (ds_cfg.get('data_prefix') or {}).get(
        'img_path', ''))
    empty = (f'the test dataset holds no images: nothing found in {folder!r} (with the split file '
             'and suffix the config sets); check data_root (docs/datasets.md)')
    try:
        dataset = runner.test_loop.dataloader.dataset
    except ValueError as e:  # mmengine serialises the (empty) image list with np.concatenate
        if 'need at least one array' in str(e):
            raise ValueError(empty) from e
        raise
    if len(dataset) == 0:
        raise ValueError(empty)
    if hasattr(seg, 'class_names'):
        check_class_names(seg.class_names, dataset.metainfo.get('classes'),
                          source='model.class_names')
    elif hasattr(seg, 'set_dataset_classes') and dataset.metainfo.get('classes') is not None:
        # a detector's test-time vocabulary is scored against the dataset's categories by name
        label_map = seg.set_dataset_classes(dataset.metainfo['classes'])
        if label_map is not None:
            extra = [n for n, j in zip(seg.vocabulary, label_map) if j < 0]
            print_log(f'vocabulary of {len(label_map)} classes mapped by name onto the dataset\'s '
                      f'{len(dataset.metainfo["classes"])} categories'
                      + (f'; boxes of {len(extra)} other name(s) are not scored: '
                         f'{", ".join(extra[:10])}' if extra else ''), logger='current')
    # models with a text tower (segmentor, region classifier) load their local weights here (the
    # Runner initialises weights only when training); a whole-model checkpoint is loaded by test()
    if hasattr(seg, 'text_encoder') and kind != 'segmentor':
        seg.init_weights()
    return runner
