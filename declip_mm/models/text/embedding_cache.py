"""Class-name embeddings kept on disk across runs (issue 15, item 3).

Same design as the region classifier's cache on main (``embedding_cache_dir``): one ``.pt`` file per
(model config, text weights file — real path, size, mtime —, templates, names), written aside and
renamed atomically so that concurrent processes never read half a file. Random text towers (no
``pretrained`` file, or weights that did not come from it) are never cached: nothing worth keeping,
and the key could not tell them apart.
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

__all__ = ['embedding_cache_file', 'cached_embeddings']


def embedding_cache_file(cache_dir: Optional[str], model_name, pretrained: Optional[str],
                         templates: Sequence[str], names: Sequence) -> Optional[str]:
    """The cache file of one vocabulary, or None when nothing may be cached."""
    if cache_dir is None or pretrained is None:
        return None
    st = os.stat(pretrained)
    key = json.dumps([model_name, osp.realpath(pretrained), st.st_size, st.st_mtime_ns,
                      list(templates), [list(n) if isinstance(n, (list, tuple)) else n
                                        for n in names]], sort_keys=True, default=str)
    return osp.join(cache_dir, f'class_emb_{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt')


def cached_embeddings(path: Optional[str], compute: Callable[[], Tensor]) -> Tensor:
    """Read the (num_names, E) embeddings from ``path`` or compute and write them there."""
    if path is not None and osp.isfile(path):
        return torch.load(path, map_location='cpu', weights_only=True)['embeddings']
    emb = compute()
    if path is not None:
        os.makedirs(osp.dirname(path), exist_ok=True)
        tmp = f'{path}.{os.getpid()}.tmp'
        torch.save({'embeddings': emb.detach().cpu()}, tmp)
        os.replace(tmp, path)
    return emb
