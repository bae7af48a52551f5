"""The world towers a first-time user gets (README quick-start, ``DeCLIPInferencer()``, the web page):
the towers shipped in the repository when they fit this checkout's generator and trainers, else
towers trained briefly on first use and cached (docs/miniworld.md, "The quick-start").

Order of :func:`world_towers`:

1. ``declip_mm/miniworld/weights/world_{clip,vfm}.npz`` (``shipped.py``) whose training record was
   made by this checkout's ``WORLD_VERSION`` and trainer version for the world seed: unpacked into
   the cache (a folder named by the archive's hash, reused);
2. a brief training (:data:`BRIEF_CLIP_STEPS` CLIP steps, :data:`BRIEF_VFM_STEPS` VFM steps, the
   default recipe otherwise) cached by ``tower_cache.py`` under its key (versions, world seed,
   architecture, settings): trained once, reused afterwards; with ``train=False`` only an existing
   cache entry is taken (``None`` otherwise).

The cache is ``$DECLIP_MM_CACHE/miniworld`` (default ``~/.cache/declip_mm/miniworld``) unless given.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import time
from typing import Any, Callable, Dict, Optional

import numpy as np

__all__ = ['BRIEF_CLIP_STEPS', 'BRIEF_VFM_STEPS', 'default_cache_dir', 'shipped_fits',
           'brief_settings', 'world_towers']

#: the brief training used when no shipped tower fits (about 3 min on 2 idle cores for both)
BRIEF_CLIP_STEPS = 200
BRIEF_VFM_STEPS = 150


def default_cache_dir() -> str:
    root = os.environ.get('DECLIP_MM_CACHE') or osp.join(osp.expanduser('~'), '.cache', 'declip_mm')
    return osp.join(root, 'miniworld')


def _version_prefix(kind: str, world_seed: int) -> str:
    """The start of a ``tower_cache.tower_key``: kind, world version, trainer version, world seed."""
    from .classes import WORLD_VERSION
    from .tower_configs import CLIP_TRAINER_VERSION, VFM_TRAINER_VERSION
    version = CLIP_TRAINER_VERSION if kind == 'clip' else VFM_TRAINER_VERSION
    return f'{kind}-{WORLD_VERSION}-{version}-w{int(world_seed)}-'


def shipped_fits(kind: str, world_seed: int = 0, shipped_dir: Optional[str] = None) -> bool:
    """Whether the repository ships a ``kind`` tower trained by this checkout's generator and
    trainer versions on world ``world_seed`` (its record's key starts with those)."""
    from .shipped import SHIPPED_DIR
    archive = osp.join(shipped_dir or SHIPPED_DIR, f'world_{kind}.npz')
    if not osp.isfile(archive):
        return False
    with np.load(archive) as z:
        key = json.loads(bytes(z['__record']).decode()).get('key') or ''
    return key.startswith(_version_prefix(kind, world_seed))


def brief_settings(kind: str, world_seed: int = 0, threads: int = 2):
    """The default recipe of ``kind`` cut to the brief schedule (warm-up a tenth of the steps)."""
    if kind == 'clip':
        from .clip_trainer import CLIPTrainSettings
        s = CLIPTrainSettings(world_seed=world_seed, threads=threads)
        s.steps = BRIEF_CLIP_STEPS
    else:
        from .vfm_trainer import VFMTrainSettings
        s = VFMTrainSettings(world_seed=world_seed, threads=threads)
        s.steps = BRIEF_VFM_STEPS
    s.warmup = min(s.warmup, max(1, s.steps // 10))
    return s


def _one(kind: str, cache_dir: str, world_seed: int, train: bool, threads: int,
         shipped_dir: Optional[str], log: Optional[Callable[[str], None]]) -> Optional[Dict]:
    from .shipped import SHIPPED_DIR, unpack_tower
    from .tower_cache import get_world_clip, get_world_vfm, tower_key, tower_paths
    from .tower_configs import WORLD_CLIP_CONFIG, WORLD_VFM
    if shipped_fits(kind, world_seed, shipped_dir):
        archive = osp.join(shipped_dir or SHIPPED_DIR, f'world_{kind}.npz')
        got = unpack_tower(archive, cache_dir, kind)
        return dict(got, source='shipped', archive=archive)
    arch = dict(WORLD_CLIP_CONFIG if kind == 'clip' else WORLD_VFM)
    # the thread count is part of tower_cache's key but changes nothing else: any entry will do
    for n in dict.fromkeys((int(threads), 1, 2, 4)):
        key = tower_key(kind, arch, brief_settings(kind, world_seed, n))
        paths = tower_paths(cache_dir, kind, key)
        if osp.isfile(paths['record']):
            return dict(paths, key=key, source='cached')
    if not train:
        return None
    settings = brief_settings(kind, world_seed, threads)
    get = get_world_clip if kind == 'clip' else get_world_vfm
    got = get(cache_dir, settings, log=log)
    return dict(got, source='trained')


def world_towers(cache_dir: Optional[str] = None, world_seed: int = 0, train: bool = True,
                 threads: int = 2, shipped_dir: Optional[str] = None,
                 log: Optional[Callable[[str], None]] = print) -> Optional[Dict[str, Any]]:
    """``{'clip': {...}, 'vfm': {...}, 'seconds': s}`` with each tower's ``weights``, ``config``,
    ``record`` and ``source`` (``'shipped'``, ``'cached'`` or ``'trained'``); ``None`` when
    ``train=False`` and a tower is neither shipped nor cached."""
    cache_dir = osp.abspath(cache_dir or default_cache_dir())
    t0 = time.time()
    out: Dict[str, Any] = {}
    for kind in ('clip', 'vfm'):
        got = _one(kind, cache_dir, world_seed, train, threads, shipped_dir, log)
        if got is None:
            return None
        out[kind] = got
    out['seconds'] = time.time() - t0
    out['cache_dir'] = cache_dir
    return out
