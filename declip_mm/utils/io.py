"""Loading weight files from local paths only.

Plain weight files are always read with ``torch.load(weights_only=True)``; TorchScript archives (the
original OpenAI CLIP ``.pt`` releases) are opened with ``torch.jit.load`` and only their tensors are
kept. Nothing here reaches the network: a missing file is a ``FileNotFoundError`` naming the path.
"""
from __future__ import annotations

import os
import zipfile
from typing import Any, Dict, Mapping

import torch

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

    Supports ``.safetensors``, TorchScript archives (OpenAI CLIP jit ``.pt``) and ordinary
    ``torch.save`` files (read with ``weights_only=True``).

    Args:
        path (str): local file path.
        what (str): used in error messages. Defaults to ``'checkpoint'``.

    Returns:
        dict: the loaded object (a state dict or a dict wrapping one).
    """
    path = check_local_file(path, what)
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return dict(load_file(path, device='cpu'))
    if _is_torchscript(path):
        module = torch.jit.load(path, map_location='cpu')
        return {k: v for k, v in module.state_dict().items()}
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # corrupt file, or a pickle with arbitrary objects
        raise RuntimeError(f'could not read {what} {path!r} as a weight file '
                           f'(torch.load weights_only=True): {e}') from e
    if not isinstance(obj, Mapping):
        raise TypeError(f'{what} {path!r} holds a {type(obj).__name__}, expected a state dict')
    return dict(obj)
