"""A whole-model checkpoint loads completely or not at all; an untrained head runs only on request.

mmengine's ``load_from`` (``Runner.load_checkpoint(strict=False)``) and ``load_checkpoint(...,
strict=False)`` only *warn* about tensors of another shape or missing from the file, and the model is
then evaluated with those tensors left at their random initialisation. Here:

* :func:`check_whole_model_state_dict` compares a checkpoint's state dict with the model's own
  ``state_dict()`` (the same check as the image-tower loader, :func:`match_state_dict`) and refuses
  shape mismatches, missing and unexpected tensors with a list of them. "Expected" is what the
  model's ``state_dict()`` holds, i.e. what mmengine's ``CheckpointHook`` writes for this model:
  parts a model deliberately leaves out of its checkpoints (the frozen teachers of
  :class:`DeCLIPDistiller`, non-persistent text-embedding buffers) are not expected.
* :class:`StrictLoadCheckHook` runs that check in a Runner's ``after_load_checkpoint`` (before
  mmengine copies any tensor), so ``tools/test.py`` / ``eval_*`` stop before the first image.
* :func:`check_trained_head` refuses to evaluate a model that has trained parts (a CAT-Seg head, the
  head and neck of a drop-in or detection config) when no whole-model checkpoint is given, unless
  ``allow_untrained_head=True`` is set (``tools/test.py --allow-untrained-head``). Models whose
  weights all come from their towers' pretrained files declare ``training_free = True``
  (:class:`DeCLIPZeroShotSegmentor`, :class:`DeCLIPRegionClassifier`).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Dict, Mapping

from mmengine.hooks import Hook
from torch import Tensor, nn

from ..converters import match_state_dict, summarize_keys
from .checkpoints import mmengine_safe_torch_load, unwrap_model

__all__ = ['whole_model_state_dict', 'check_whole_model_state_dict', 'load_whole_model_checkpoint',
           'StrictLoadCheckHook', 'check_trained_head', 'ALLOW_UNTRAINED_KEY']

#: config key (and ``--allow-untrained-head``) that lets a model with an untrained head run
ALLOW_UNTRAINED_KEY = 'allow_untrained_head'


def whole_model_state_dict(checkpoint: Mapping[str, Any]) -> Dict[str, Tensor]:
    """The model state dict of an mmengine checkpoint, ``module.`` prefixes stripped (what
    mmengine's ``load_checkpoint`` loads with its default ``revise_keys``)."""
    sd = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    if not isinstance(sd, Mapping):
        raise ValueError(f'a model checkpoint holds a state dict, got {type(sd).__name__}')
    return OrderedDict((re.sub(r'^module\.', '', k), v) for k, v in sd.items())


def check_whole_model_state_dict(model: nn.Module, sd: Mapping[str, Tensor], source: str) -> None:
    """Raise ``ValueError`` listing every tensor of ``sd`` that does not fit ``model`` exactly:
    shape mismatches, tensors the model has and the file lacks, tensors the file has and the model
    lacks."""
    model = unwrap_model(model)
    what = f'{type(model).__name__} (checkpoint {source})'
    refuse = ('  Refused: a partial load would evaluate the tensors above at their random '
              'initialisation. Use the config the checkpoint was trained with (head and tower '
              'sizes, model_name).')
    try:
        _, _, unexpected = match_state_dict(model, sd, what)
    except ValueError as err:
        raise ValueError(f'{err}\n{refuse}') from None
    if unexpected:
        raise ValueError(f'checkpoint does not fit the {what}:\n  {len(unexpected)} unexpected '
                         f'key(s): {summarize_keys(unexpected)}\n{refuse}')


def load_whole_model_checkpoint(model: nn.Module, path: str) -> Dict[str, Any]:
    """Load an mmengine checkpoint of the whole ``model`` strictly (see
    :func:`check_whole_model_state_dict`); returns the checkpoint."""
    ckpt = mmengine_safe_torch_load(path)
    sd = whole_model_state_dict(ckpt)
    check_whole_model_state_dict(model, sd, path)
    unwrap_model(model).load_state_dict(sd, strict=True)
    return ckpt


class StrictLoadCheckHook(Hook):
    """Refuse a ``load_from`` checkpoint that does not fit the model (before mmengine loads it)."""

    priority = 'VERY_HIGH'

    def __init__(self, source: str) -> None:
        self.source = source

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        check_whole_model_state_dict(runner.model, whole_model_state_dict(checkpoint), self.source)


def check_trained_head(model: nn.Module, has_checkpoint: bool, allow: bool) -> None:
    """Raise ``ValueError`` when ``model`` has trained parts but no whole-model checkpoint is given
    (nothing but random values for them), unless ``allow``."""
    model = unwrap_model(model)
    if has_checkpoint or allow or getattr(model, 'training_free', False):
        return
    skip = ('backbone', 'text_encoder', 'data_preprocessor')
    parts = [n for n, m in model.named_children()
             if n not in skip and any(True for _ in m.parameters())]
    raise ValueError(
        f'{type(model).__name__} has parts that are trained ({", ".join(parts) or "its head"}) and '
        'no checkpoint of the whole model was given: they would be evaluated at their random '
        'initialisation. Pass the trained checkpoint (tools/test.py CONFIG CHECKPOINT, load_from, '
        "or the inferencer's checkpoint=), or run the untrained model on purpose with "
        f'--allow-untrained-head (config key {ALLOW_UNTRAINED_KEY}=True).')
