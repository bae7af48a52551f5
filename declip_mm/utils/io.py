"""Loading weight files from local paths only.

Plain weight files are always read with ``torch.load(weights_only=True)``; TorchScript archives (the
original OpenAI CLIP ``.pt`` releases) are opened with ``torch.jit.load`` and only their tensors are
kept. An mmengine training checkpoint (``epoch_N.pth``: pickled message hub) that the plain safe
unpickler refuses is read again with exactly the globals mmengine writes allowed
(:mod:`declip_mm.utils.safe_globals`, as ``--resume`` does), and kept only if it is one.
Nothing here reaches the network: a missing file is a ``FileNotFoundError`` naming the path, and a
file holding NaN / Inf weights is refused (``ValueError`` naming the file and the tensors).
"""
from __future__ import annotations

import os
import zipfile
from typing import Any, Dict, Mapping

import torch

from .finite import check_finite
from .safe_globals import is_mmengine_training_checkpoint, mmengine_checkpoint_globals

__all__ = ['load_weight_file', 'check_local_file']


def check_local_file(path: str | os.PathLike, what: str = 'checkpoint') -> str:
    """Return ``path`` as a string if it is an existing local file, else raise a clear error."""
    path = os.fspath(path)
    if '://' in path:
        raise ValueError(f'{what} must be a local file, got a URL: {path!r}. declip_mm never downloads '
                         'weights; fetch the file yourself and pass its path.')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path!r}')
    return path


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith('constants.pkl') or name.endswith('/code/__torch__.py')
                   or '/code/' in name for name in zf.namelist())


def load_weight_file(path: str | os.PathLike, what: str = 'checkpoint') -> Dict[str, Any]:
    """Read a local weight file into a (possibly nested) dict of tensors.

    Supports ``.safetensors``, TorchScript archives (OpenAI CLIP jit ``.pt``), ordinary
    ``torch.save`` files (read with ``weights_only=True``) and mmengine training checkpoints.
    Raises ``ValueError`` if a weight tensor holds NaN / Inf.

    Args:
        path (str): local file path.
        what (str): used in error messages. Defaults to ``'checkpoint'``.

    Returns:
        dict: the loaded object (a state dict or a dict wrapping one).
    """
    path = check_local_file(path, what)
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return _finite(dict(load_file(path, device='cpu')), path, what)
    if _is_torchscript(path):
        module = torch.jit.load(path, map_location='cpu')
        return _finite({k: v for k, v in module.state_dict().items()}, path, what)
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # corrupt file, a pickle with arbitrary objects, or an mmengine checkpoint
        obj = _load_training_checkpoint(path)
        if obj is None:
            raise RuntimeError(f'could not read {what} {path!r} as a weight file '
                               f'(torch.load weights_only=True): {e}') from e
    if not isinstance(obj, Mapping):
        raise TypeError(f'{what} {path!r} holds a {type(obj).__name__}, expected a state dict')
    return _finite(dict(obj), path, what)


def _load_training_checkpoint(path: str):
    """The file as an mmengine training checkpoint (safe unpickler + mmengine's globals), or None."""
    try:
        with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:
        return None
    return obj if is_mmengine_training_checkpoint(obj) else None


def _finite(obj: Dict[str, Any], path: str, what: str) -> Dict[str, Any]:
    """Refuse NaN / Inf weights (training checkpoints: their model weights, not optimizer state)."""
    weights = obj['state_dict'] if is_mmengine_training_checkpoint(obj) else obj
    check_finite(weights, f'{what} {path!r}')
    return obj
