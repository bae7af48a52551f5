"""Let mmengine resume its own training checkpoints under ``torch.load(weights_only=True)``.

torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``. mmengine 0.10.7 pickles its message hub
into every training checkpoint: ``HistoryBuffer`` objects holding numpy arrays, plus the buffer's
statistics methods, which pickle as ``getattr(buffer, 'mean')``. Loading such a file with the safe
unpickler fails, and the usual advice (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) disables the safety for
every file.

Instead we allow-list exactly the globals mmengine writes, and only while mmengine's own local
checkpoint loader runs (``resume``, ``load_from``, ``load_checkpoint``): the scheme '' of
``mmengine.runner.CheckpointLoader`` is wrapped in ``torch.serialization.safe_globals``. Plain weight
files read by :func:`declip_mm.utils.load_weight_file` never see this list (it retries with it only
for a file the plain unpickler refused, and keeps the result only if it is an mmengine training
checkpoint). Checkpoints whose weights hold NaN / Inf are refused by this loader.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch

__all__ = ['mmengine_checkpoint_globals', 'register_mmengine_safe_globals',
           'is_mmengine_training_checkpoint']

#: keys of a checkpoint written by mmengine's ``Runner.save_checkpoint``
TRAINING_KEYS = ('meta', 'state_dict', 'message_hub')

_REGISTERED = False


def mmengine_checkpoint_globals() -> List[object]:
    """The exact objects that mmengine 0.10.x pickles into a training checkpoint."""
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = getattr(np, '_core', None)
    multiarray = multiarray.multiarray if multiarray is not None else np.core.multiarray
    allowed: List[object] = [
        HistoryBuffer,
        multiarray._reconstruct,
        multiarray.scalar,
        np.ndarray,
        np.dtype,
        # HistoryBuffer keeps bound statistics methods, pickled as getattr(buffer, name). The unpickler
        # still refuses to *call* anything that is not allow-listed, so this only builds attributes.
        getattr,
    ]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25 pickles dtype instances by their class
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType')]
    return allowed


def is_mmengine_training_checkpoint(obj: object) -> bool:
    """Whether ``obj`` (a loaded file) is an mmengine training checkpoint (``epoch_N.pth``)."""
    return isinstance(obj, dict) and all(k in obj for k in TRAINING_KEYS) \
        and isinstance(obj['state_dict'], dict)


def register_mmengine_safe_globals() -> None:
    """Wrap mmengine's local checkpoint loader so its training checkpoints load with weights_only.

    Idempotent. Called by ``import declip_mm``.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_local

    def load_from_local_weights_only(filename, map_location):
        with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            checkpoint = load_from_local(filename, map_location)
        # NaN / Inf weights are refused here too (load_from, --resume, load_checkpoint)
        from .finite import check_finite
        weights = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) \
            else checkpoint
        check_finite(weights, f'checkpoint {filename!r}')
        return checkpoint

    load_from_local_weights_only.__doc__ = load_from_local.__doc__
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local_weights_only)
    _REGISTERED = True
