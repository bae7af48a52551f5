"""Let mmengine resume its own training checkpoints under ``torch.load(weights_only=True)``.

torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``. mmengine 0.10.7 pickles its message hub
into every training checkpoint: ``HistoryBuffer`` objects holding numpy arrays, plus the buffer's
statistics methods, which pickle as ``getattr(buffer, 'mean')``. Loading such a file with the safe
unpickler fails, and the usual advice (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``) disables the safety for
every file.

Instead we allow-list exactly the globals mmengine writes, and only while mmengine's own local
checkpoint loader runs (``resume``, ``load_from``, ``load_checkpoint``) inside
:func:`mmengine_checkpoint_loading`: for the duration of that block the scheme '' of
``mmengine.runner.CheckpointLoader`` is wrapped in ``torch.serialization.safe_globals``, and the
original loader is restored afterwards. ``import declip_mm`` changes nothing in mmengine or torch;
:func:`register_mmengine_safe_globals` is the explicit, process-wide opt-in. Plain weight
files read by :func:`declip_mm.utils.load_weight_file` never see this list (it retries with it only
for a file the plain unpickler refused, and keeps the result only if it is an mmengine training
checkpoint). Checkpoints whose weights hold NaN / Inf are refused by this loader.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, List

import numpy as np
import torch

__all__ = ['mmengine_checkpoint_globals', 'mmengine_checkpoint_loading',
           'register_mmengine_safe_globals', 'is_mmengine_training_checkpoint']

#: keys of a checkpoint written by mmengine's ``Runner.save_checkpoint``
TRAINING_KEYS = ('meta', 'state_dict', 'message_hub')


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


def _weights_only_local_loader(original: Callable) -> Callable:
    """mmengine's local loader ``original`` under the allow-list, refusing NaN / Inf weights."""

    def load_from_local_weights_only(filename, map_location):
        with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            checkpoint = original(filename, map_location)
        # NaN / Inf weights are refused here too (load_from, --resume, load_checkpoint)
        from .finite import check_finite
        weights = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) \
            else checkpoint
        check_finite(weights, f'checkpoint {filename!r}')
        return checkpoint

    load_from_local_weights_only.__doc__ = original.__doc__
    load_from_local_weights_only._declip_weights_only = True
    return load_from_local_weights_only


def _installed() -> bool:
    from mmengine.runner.checkpoint import CheckpointLoader
    return getattr(CheckpointLoader._schemes.get(''), '_declip_weights_only', False)


@contextlib.contextmanager
def mmengine_checkpoint_loading() -> Iterator[None]:
    """While the block runs, mmengine's local checkpoint loader reads training checkpoints.

    Scheme ``''`` of ``mmengine.runner.CheckpointLoader`` (``load_from``, ``resume``,
    ``load_checkpoint``) is replaced by the allow-listed, NaN-refusing loader and the previous loader
    is put back on exit, also when the block raises. Nested use (or an earlier
    :func:`register_mmengine_safe_globals`) is a no-op. The project's tools run ``runner.train()`` /
    ``runner.test()`` inside it; ``import declip_mm`` no longer changes the loader.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if _installed():
        yield
        return
    original = CheckpointLoader._schemes['']
    CheckpointLoader.register_scheme(prefixes='', loader=_weights_only_local_loader(original),
                                     force=True)
    try:
        yield
    finally:
        CheckpointLoader.register_scheme(prefixes='', loader=original, force=True)


def register_mmengine_safe_globals() -> None:
    """Opt in, for the whole process, to the loader of :func:`mmengine_checkpoint_loading`.

    For users who drive mmengine themselves (e.g. mmseg's ``tools/train.py --resume`` with
    ``custom_imports=['declip_mm']``) and want DeCLIP training checkpoints to load there: call it once
    (e.g. at the top of the config's imported module). Idempotent. ``import declip_mm`` does not call
    it.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if _installed():
        return
    original = CheckpointLoader._schemes['']
    CheckpointLoader.register_scheme(prefixes='', loader=_weights_only_local_loader(original),
                                     force=True)
