"""Build-or-reuse of the world's tiny towers, cached under a key made of the generator's and the
trainers' versions, the world seed, the architecture and the training settings (docs/miniworld.md).

A cache entry is a folder ``<cache_dir>/<key>/`` holding ``clip.pt`` / ``clip.json`` /
``clip.record.json`` (or ``vfm.*``), written by the trainers; a folder is complete once its record
file exists (written last), so an interrupted training is redone, never reused. A tower the repository ships
(``shipped.py``) whose training key is the requested one is unpacked instead of trained.
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
import shutil
from dataclasses import asdict
from typing import Any, Callable, Dict, Optional

from .clip_trainer import CLIPTrainSettings, save_clip, train_clip
from .shipped import shipped_tower
from .tower_configs import CLIP_TRAINER_VERSION, VFM_TRAINER_VERSION, WORLD_CLIP_CONFIG, WORLD_VFM
from .vfm_trainer import VFMTrainSettings, save_vfm, train_vfm

__all__ = ['tower_key', 'tower_paths', 'get_world_clip', 'get_world_vfm']


#: knobs added to the settings after towers were keyed, with the value that reproduces the recipe
#: from before them: at that value they are left out of the hash, so earlier keys stay valid
NEUTRAL_LATE_KNOBS = {'crop_fraction': 0.0}


def tower_key(kind: str, arch: Dict[str, Any], settings: Any) -> str:
    """``<kind>-<world version>-<trainer version>-w<world seed>-<sha1 of arch + settings>``; the
    settings' ``threads`` (how many cores train, not what is trained) and the knobs of
    :data:`NEUTRAL_LATE_KNOBS` at their neutral value are left out of the hash."""
    from .classes import WORLD_VERSION
    if kind not in ('clip', 'vfm'):
        raise ValueError(f"kind must be 'clip' or 'vfm', got {kind!r}")
    version = CLIP_TRAINER_VERSION if kind == 'clip' else VFM_TRAINER_VERSION
    recipe = {k: v for k, v in asdict(settings).items() if k != 'threads'
              and not (k in NEUTRAL_LATE_KNOBS and v == NEUTRAL_LATE_KNOBS[k])}
    blob = json.dumps(dict(arch=arch, settings=recipe), sort_keys=True)
    digest = hashlib.sha1(blob.encode()).hexdigest()[:10]
    return f'{kind}-{WORLD_VERSION}-{version}-w{settings.world_seed}-{digest}'


def tower_paths(cache_dir: str, kind: str, key: str) -> Dict[str, str]:
    folder = osp.join(cache_dir, key)
    ext = '.pt' if kind == 'clip' else '.pth'
    return dict(folder=folder, weights=osp.join(folder, kind + ext),
                config=osp.join(folder, kind + '.json'),
                record=osp.join(folder, kind + '.record.json'))


def _get(kind: str, cache_dir: str, arch: Dict[str, Any], settings: Any, retrain: bool,
         log: Optional[Callable[[str], None]]) -> Dict[str, Any]:
    key = tower_key(kind, arch, settings)
    paths = tower_paths(cache_dir, kind, key)
    if osp.isfile(paths['record']) and not retrain:
        if log is not None:
            log(f'[{kind}] reusing cached tower {paths["folder"]}')
        return dict(paths, key=key, cached=True)
    if not retrain:
        shipped = shipped_tower(kind, cache_dir, key)
        if shipped is not None:
            if log is not None:
                log(f'[{kind}] using the tower shipped in the repository ({key})')
            return dict({k: shipped[k] for k in ('folder', 'weights', 'config', 'record')},
                        key=key, cached=True, shipped=True)
    if osp.isdir(paths['folder']):
        shutil.rmtree(paths['folder'])  # incomplete or to be retrained: our own cache folder
    os.makedirs(paths['folder'])
    if kind == 'clip':
        model, record = train_clip(arch, settings, log=log)
        save_clip(model, arch, paths['weights'], record=None)
    else:
        model, record = train_vfm(arch, settings, log=log)
        save_vfm(model, arch, paths['weights'], record=None)
    record['key'] = key
    with open(paths['record'], 'w') as f:       # last: marks the entry complete
        json.dump(record, f, indent=1)
    return dict(paths, key=key, cached=False)


def get_world_clip(cache_dir: str, settings: Optional[CLIPTrainSettings] = None,
                   config: Optional[Dict[str, Any]] = None, retrain: bool = False,
                   log: Optional[Callable[[str], None]] = print) -> Dict[str, Any]:
    """Paths (``weights``, ``config``, ``record``, ``key``, ``cached``) of the tiny CLIP trained with
    ``settings`` on the world, trained now unless cached."""
    return _get('clip', cache_dir, dict(config or WORLD_CLIP_CONFIG),
                settings or CLIPTrainSettings(), retrain, log)


def get_world_vfm(cache_dir: str, settings: Optional[VFMTrainSettings] = None,
                  spec: Optional[Dict[str, Any]] = None, retrain: bool = False,
                  log: Optional[Callable[[str], None]] = print) -> Dict[str, Any]:
    """As :func:`get_world_clip` for the tiny VFM."""
    return _get('vfm', cache_dir, dict(spec or WORLD_VFM), settings or VFMTrainSettings(),
                retrain, log)
