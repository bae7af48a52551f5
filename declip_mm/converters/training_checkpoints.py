"""The student image tower inside an mmengine training checkpoint of DeCLIP distillation.

``tools/train.py`` writes ``epoch_N.pth`` / ``iter_N.pth``: ``{'meta', 'state_dict', 'message_hub',
'optimizer', ...}`` where ``state_dict`` is the :class:`DeCLIPDistiller`'s (``student.visual.*``; the
teachers are left out). mmseg users pass such files where a model is expected; here they become the
open_clip-layout image tower (``visual.*``) with the meta a declip_mm export carries (architecture,
attn_mode, tau), taken from ``meta['declip_student']`` (written by ``DeCLIPMergeExportHook``) or,
for older files, from the training config stored in ``meta['cfg']``.

Note: the student is the tower *as trained*; DeCLIP evaluates the alpha-merged tower
``declip_epoch_N.pth`` written next to it (:func:`training_checkpoint_note` names it).
"""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional

from torch import Tensor

__all__ = ['STUDENT_PREFIX', 'is_distiller_state_dict', 'student_tower', 'training_checkpoint_note']

STUDENT_PREFIX = 'student.'


def is_distiller_state_dict(sd: Mapping[str, Tensor]) -> bool:
    """Whether ``sd`` is a :class:`DeCLIPDistiller` state dict (its student's image tower)."""
    return any(k.startswith(STUDENT_PREFIX + 'visual.') for k in sd)


def _student_from_cfg(cfg_text: str) -> Dict[str, Any]:
    """``model.student`` settings from the config text mmengine stores in ``meta['cfg']``."""
    try:
        from mmengine.config import Config
        student = Config.fromstring(cfg_text, file_format='.py').model.student
    except Exception:  # an unparsable / foreign config: the caller reports the mode as unknown
        return {}
    name = student.get('model_name', 'ViT-B-16')
    return dict(architecture=name.to_dict() if hasattr(name, 'to_dict') else name,
                attn_mode=student.get('attn_mode', 'csa'), attn_scale=student.get('attn_scale'))


def student_tower(sd: Mapping[str, Tensor], meta: Optional[Mapping[str, Any]] = None):
    """The student's image tower of a distiller state dict.

    Args:
        sd: flat distiller state dict (``student.visual.*`` keys).
        meta: the training checkpoint's ``meta`` (mmengine's, maybe with ``declip_student``).

    Returns:
        tuple: (``visual.*`` state dict, meta with ``architecture``, ``attn_mode``, ``attn_scale``
        when known, ``source``, ``epoch``, ``iter``).
    """
    meta = dict(meta or {})
    tower = OrderedDict((k[len(STUDENT_PREFIX):], v) for k, v in sd.items()
                        if k.startswith(STUDENT_PREFIX + 'visual.'))
    info = dict(meta.get('declip_student') or {}) or _student_from_cfg(meta.get('cfg') or '')
    out = {k: meta[k] for k in ('epoch', 'iter') if k in meta}
    out.update({k: info[k] for k in ('architecture', 'attn_mode', 'attn_scale') if k in info})
    out['source'] = 'mmengine training checkpoint (student)'
    out['training'] = dict(info, epoch=meta.get('epoch'))
    return tower, out


def training_checkpoint_note(path: str, meta: Mapping[str, Any]) -> str:
    """A sentence for the log: what was taken from training checkpoint ``path`` and which file
    holds the alpha-merged tower of the same epoch."""
    info = meta.get('training') or {}
    mode = meta.get('attn_mode')
    msg = (f'{path} is an mmengine training checkpoint: using its student image tower as trained '
           f'(attn_mode={mode!r}' + ('' if mode else ', unknown: the config decides') + ').')
    epoch = info.get('epoch')
    tmpl = info.get('export_tmpl') or 'declip_epoch_{}.pth'
    if epoch is not None:
        merged = osp.join(osp.dirname(osp.abspath(path)), tmpl.format(epoch))
        if not osp.isfile(merged) and info.get('export_dir'):
            merged = osp.join(info['export_dir'], tmpl.format(epoch))
        exists = osp.isfile(merged)
        msg += (f' DeCLIP evaluates the alpha-merged tower of that epoch instead: pass {merged}'
                + ('' if exists else ' (not found; it is written to the work dir of the run)') + '.')
    return msg
