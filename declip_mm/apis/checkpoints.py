"""Routing a checkpoint given to ``tools/test.py`` to the right place of a config.

* a CLIP / DeCLIP image-tower checkpoint (any format, docs/method.md §1, e.g. the α-merged export written after
  each training epoch) becomes ``model.backbone.pretrained``; its stored ``attn_mode`` must match the
  config's or be a ``qq``/``kk`` checkpoint evaluated in ``csa`` (checked here, before anything is
  built; refused pairs raise a message naming both, see ``models/checkpoint_policy.py``);
* an mmengine checkpoint of a whole segmentor (keys ``backbone.*``) becomes ``load_from``;
* an mmengine *training* checkpoint of DeCLIP distillation (``epoch_N.pth``) is read through the
  same safe loader as ``--resume``; its student image tower becomes ``model.backbone.pretrained``
  (with the student's attn_mode checked like an export's), and the log names the alpha-merged
  ``declip_epoch_N.pth`` of that epoch, which is what DeCLIP evaluates.

A checkpoint whose weights hold NaN / Inf is refused with an error naming the file and tensors.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ..converters import to_open_clip_state_dict, unwrap_checkpoint
from ..converters.training_checkpoints import training_checkpoint_note
from ..models.checkpoint_policy import check_mode_pair
from ..utils import check_local_file
from ..utils.finite import check_finite
from ..utils.safe_globals import mmengine_checkpoint_globals

__all__ = ['mmengine_safe_torch_load', 'inspect_checkpoint', 'apply_test_checkpoint', 'unwrap_model']


def mmengine_safe_torch_load(path: str) -> Dict[str, Any]:
    """``torch.load(weights_only=True)`` that also accepts mmengine training checkpoints."""
    check_local_file(path, 'checkpoint')
    with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
        try:
            obj = torch.load(path, map_location='cpu', weights_only=True)
        except Exception:
            from ..utils import load_weight_file  # safetensors / TorchScript files (checked there)
            return load_weight_file(path)
    check_finite(obj.get('state_dict', obj) if isinstance(obj, dict) else obj, f'checkpoint {path!r}')
    return obj


def inspect_checkpoint(path: str) -> Tuple[str, Dict[str, Any]]:
    """Return (``'segmentor'`` | ``'clip'``, meta)."""
    obj = mmengine_safe_torch_load(path)
    sd, meta, _ = unwrap_checkpoint(obj)
    if any(k.startswith('backbone.visual.') for k in sd):
        return 'segmentor', meta
    _, _, meta = to_open_clip_state_dict(obj)  # raises a clear error for anything else
    return 'clip', meta


def apply_test_checkpoint(cfg: Config, path: str) -> str:
    """Put ``path`` where it belongs in ``cfg`` (see module doc). Returns the kind."""
    kind, meta = inspect_checkpoint(path)
    model_cfg = cfg.model.get('module', cfg.model)  # TTA wraps the segmentor
    if kind == 'segmentor':
        cfg.load_from = path
        return kind
    want = model_cfg.backbone.get('attn_mode', 'csa')
    if model_cfg.backbone.get('check_mode', True):
        # refused pairs fail here, before anything is built (the table: models/checkpoint_policy.py); the
        # info line of an accepted cross-mode pair is printed once, when the backbone loads it
        check_mode_pair(meta.get('attn_mode'), want, f'checkpoint {path}')
    if meta.get('training'):
        print_log(training_checkpoint_note(path, meta), logger='current', level=logging.WARNING)
    model_cfg.backbone.pretrained = path
    return kind


def unwrap_model(model):
    model = model.module if is_model_wrapper(model) else model
    return getattr(model, 'module', model) if type(model).__name__.endswith('TTAModel') else model
