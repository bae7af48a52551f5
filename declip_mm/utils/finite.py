"""Non-finite weights: find them, refuse them, and name the last good checkpoint.

A training step whose loss is finite can still leave NaN / Inf in the weights (a huge update, an
overflow in the optimizer). Such weights must never reach a checkpoint, an export or an evaluation:
a NaN tower evaluated as if it were a weak model gives a plausible-looking mIoU. Every loader of
declip_mm calls :func:`check_finite` on what it read, the training hooks call it before anything is
written.

Buffers that legitimately hold ``-inf`` (causal attention masks: keys containing ``attn_mask``) are
not checked.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Iterable, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['nonfinite_tensors', 'check_finite', 'last_checkpoint_note']

#: key fragments of tensors whose non-finite values are by design (additive -inf masks)
EXEMPT = ('attn_mask', )


def _tensors(obj: Any, prefix: str = '') -> Iterable[Tuple[str, Tensor]]:
    if isinstance(obj, Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _tensors(v, f'{prefix}.{k}' if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f'{prefix}.{i}' if prefix else str(i))


def nonfinite_tensors(obj: Any) -> List[str]:
    """Names (dotted paths) of the floating tensors in ``obj`` that hold NaN or +-Inf.

    Args:
        obj: a tensor, or (nested) mappings / sequences of tensors (a state dict, a checkpoint).

    Returns:
        list[str]: the offending names, in traversal order; empty if all are finite.
    """
    named = [(k, t) for k, t in _tensors(obj)
             if (t.is_floating_point() or t.is_complex()) and t.numel()
             and not any(e in k for e in EXEMPT)]
    if not named:
        return []
    with torch.no_grad():
        # one reduction per tensor and a single host sync for the common all-finite case
        ok = torch.stack([torch.isfinite(t.detach()).all().to('cpu') for _, t in named])
    if bool(ok.all()):
        return []
    return [k for (k, _), good in zip(named, ok.tolist()) if not good]


def _short(names: List[str], limit: int = 8) -> str:
    more = f' ... (+{len(names) - limit} more)' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def check_finite(obj: Any, what: str, advice: str = '') -> None:
    """Raise ``ValueError`` naming ``what`` and the tensors if any floating tensor is NaN / Inf.

    Args:
        obj: what was loaded (tensor, state dict or nested checkpoint).
        what: names the source in the message, e.g. ``"checkpoint 'work_dirs/x/epoch_2.pth'"``.
        advice: an extra sentence for the message.
    """
    bad = nonfinite_tensors(obj)
    if bad:
        raise ValueError(f'{what} holds non-finite values (NaN/Inf) in {len(bad)} tensor(s): '
                         f'{_short(bad)}. Weights like these come from a diverged training step and '
                         'would give meaningless results; refusing to use them. '
                         + (advice or 'Use an earlier checkpoint of the run.'))


def last_checkpoint_note(work_dir: Optional[str]) -> str:
    """A sentence naming the newest checkpoint mmengine's CheckpointHook recorded in ``work_dir``
    (its ``last_checkpoint`` file), for error messages."""
    if not work_dir:
        return 'No checkpoint location is known.'
    record = osp.join(work_dir, 'last_checkpoint')
    path = None
    if osp.isfile(record):
        with open(record) as f:
            path = f.read().strip() or None
    if path and osp.isfile(path):
        return (f'The last good checkpoint is {path} (every checkpoint is checked before it is '
                f'written); continue from it with --resume {path} after lowering the learning rate.')
    return (f'No checkpoint has been written to {work_dir} yet; start again with a lower learning '
            'rate.')
