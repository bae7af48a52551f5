"""The world towers shipped in the repository (``declip_mm/miniworld/weights/``, docs/miniworld.md):
compact archives of the trained towers and their unpacking into ordinary checkpoint files.

An archive (``world_clip.npz`` / ``world_vfm.npz``, ``numpy.savez_compressed``) holds every tensor of
the checkpoint in float16, except the CLIP's token-embedding table, of which only the rows of tokens
seen in training are stored (``__token_ids`` and ``__token_rows``; the other rows are zero: they never
received a gradient and held only their random initialisation); ``__config`` holds the model config
(CLIP) or the ``VFMTeacher`` arguments (VFM) as JSON, ``__record`` the training record (settings,
seeds, versions, wall time, the cache key). Unpacking writes the float32 checkpoint and its JSON
config into a cache folder named by the archive's content hash: the checkpoint files load like any
release (``DeCLIPVisionTransformer(model_name=<json>, pretrained=<pt>)``, ``VFMTeacher``).
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

__all__ = ['SHIPPED_DIR', 'TOKEN_KEY', 'MANIFEST', 'zero_unseen_tokens', 'pack_tower',
           'unpack_tower', 'shipped_tower', 'shipped_figures', 'ship_towers', 'read_manifest']

SHIPPED_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'weights')
#: the CLIP text tower's token-embedding table (open_clip ``TextTransformer`` under ``text.``)
TOKEN_KEY = 'text.token_embedding.weight'
#: the file beside the archives: command, seeds, versions, keys and the figures of the archives
MANIFEST = 'manifest.json'
#: sizes of the figures recorded in the manifest (objects per class, correlation scenes)
SHIPPED_FIGURE_SIZES = dict(n_per_class=50, n_scenes=200)


def zero_unseen_tokens(sd: Dict[str, torch.Tensor], seen: Any) -> Dict[str, torch.Tensor]:
    """A copy of ``sd`` whose token-embedding rows outside ``seen`` (token ids) are zero."""
    out = dict(sd)
    if TOKEN_KEY in out:
        table = torch.zeros_like(out[TOKEN_KEY])
        ids = torch.as_tensor(sorted(int(i) for i in seen), dtype=torch.long)
        table[ids] = out[TOKEN_KEY][ids]
        out[TOKEN_KEY] = table
    return out


def pack_tower(weights: str, config: str, record: Union[str, Dict[str, Any]], out: str) -> str:
    """Archive a trained tower (checkpoint, JSON config, JSON record or the record itself, as an
    unpacked archive carries it) into ``out`` (.npz)."""
    sd = torch.load(weights, map_location='cpu', weights_only=True)
    if isinstance(record, dict):
        rec = record
    else:
        with open(record) as f:
            rec = json.load(f)
    with open(config) as f:
        cfg = json.load(f)
    arrays = {}
    for k, v in sd.items():
        if k == TOKEN_KEY:
            ids = np.asarray(sorted(int(i) for i in rec['seen_token_ids']), dtype=np.int64)
            arrays['__token_ids'] = ids
            arrays['__token_rows'] = v[torch.from_numpy(ids)].half().numpy()
            arrays['__token_shape'] = np.asarray(v.shape, dtype=np.int64)
        else:
            arrays[k] = v.half().numpy() if v.is_floating_point() else v.numpy()
    arrays['__config'] = np.frombuffer(json.dumps(cfg).encode(), dtype=np.uint8)
    arrays['__record'] = np.frombuffer(json.dumps(rec).encode(), dtype=np.uint8)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    np.savez_compressed(out, **arrays)
    return out


def _sha1(path: str) -> str:
    h = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def unpack_tower(archive: str, cache_dir: str, kind: str) -> Dict[str, Any]:
    """Write the archive's float32 checkpoint, config and record into
    ``<cache_dir>/shipped-<kind>-<sha1[:10]>/`` (reused when present). Returns their paths, the
    record's ``key`` and ``record``."""
    if kind not in ('clip', 'vfm'):
        raise ValueError(f"kind must be 'clip' or 'vfm', got {kind!r}")
    folder = osp.join(cache_dir, f'shipped-{kind}-{_sha1(archive)[:10]}')
    ext = '.pt' if kind == 'clip' else '.pth'
    paths = dict(folder=folder, weights=osp.join(folder, kind + ext),
                 config=osp.join(folder, kind + '.json'),
                 record=osp.join(folder, kind + '.record.json'))
    if not osp.isfile(paths['record']):
        with np.load(archive) as z:
            sd = {}
            for k in z.files:
                if k.startswith('__'):
                    continue
                a = z[k]
                t = torch.from_numpy(np.array(a))
                sd[k] = t.float() if t.is_floating_point() else t
            if '__token_ids' in z.files:
                table = torch.zeros(tuple(int(s) for s in z['__token_shape']))
                table[torch.from_numpy(z['__token_ids'])] = torch.from_numpy(
                    z['__token_rows']).float()
                sd[TOKEN_KEY] = table
            cfg = json.loads(bytes(z['__config']).decode())
            rec = json.loads(bytes(z['__record']).decode())
        os.makedirs(folder, exist_ok=True)
        torch.save(sd, paths['weights'])
        with open(paths['config'], 'w') as f:
            json.dump(cfg, f, indent=1)
        with open(paths['record'], 'w') as f:        # last: marks the folder complete
            json.dump(rec, f, indent=1)
    with open(paths['record']) as f:
        rec = json.load(f)
    return dict(paths, key=rec.get('key'), record=rec)


def shipped_tower(kind: str, cache_dir: str, key: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The shipped ``kind`` tower unpacked into ``cache_dir``, or ``None`` when the repository ships
    none or (given ``key``) when its training key differs (another world version, trainer version,
    world seed or settings)."""
    archive = osp.join(SHIPPED_DIR, f'world_{kind}.npz')
    if not osp.isfile(archive):
        return None
    if key is not None:
        with np.load(archive) as z:
            if json.loads(bytes(z['__record']).decode()).get('key') != key:
                return None
    return unpack_tower(archive, cache_dir, kind)


def shipped_figures(clip: Dict[str, Any], vfm: Dict[str, Any], world_seed: int,
                    n_per_class: int = SHIPPED_FIGURE_SIZES['n_per_class'],
                    n_scenes: int = SHIPPED_FIGURE_SIZES['n_scenes']) -> Dict[str, Any]:
    """The figures of unpacked towers (``clip`` / ``vfm``: dicts with ``config`` and ``weights``
    paths): zero-shot top-1 per class of the CLIP, its dense alignment (``n_per_class // 2`` objects
    per class), its crop zero-shot (``3 n_scenes / 4`` scenes) and the correlation agreement of the VFM (trained
    and random weights), as ``tower_figures.py`` measures them."""
    from .clip_trainer import stream_seeds
    from .tower_figures import _imagenet_input, clip_figures, crop_figures, dense_figures, load_world_vfm
    from .zero_shot import correlation_agreement
    with open(clip['config']) as f:
        clip_cfg = json.load(f)
    with open(vfm['config']) as f:
        spec = json.load(f)
    zs = clip_figures(clip_cfg, clip['weights'], world_seed, n_per_class)
    dense = dense_figures(clip_cfg, clip['weights'], world_seed, n_per_class // 2 or 1)
    crop = crop_figures(clip_cfg, clip['weights'], world_seed, n_scenes * 3 // 4)
    seeds = stream_seeds('correlation', world_seed, 0, n_scenes)
    corr = {}
    for tag, w in (('trained', vfm['weights']), ('random', None)):
        torch.manual_seed(0)
        teacher = load_world_vfm(spec, w)
        corr[f'vfm_{tag}'] = correlation_agreement(
            lambda im, t=teacher: t(_imagenet_input(im)), seeds, 64, teacher.patch_size)
    return dict(zero_shot=zs, dense=dense, crop=crop, correlation=corr, n_per_class=n_per_class,
                n_scenes=n_scenes)


def ship_towers(clip: Dict[str, Any], vfm: Dict[str, Any], world_seed: int, command: str,
                cache_dir: str, out_dir: Optional[str] = None) -> Dict[str, Any]:
    """Archive the trained ``clip`` / ``vfm`` towers (dicts with ``weights``, ``config``,
    ``record`` paths, as ``tower_cache`` returns them) into ``out_dir`` (default
    :data:`SHIPPED_DIR`), unpack the archives into ``cache_dir`` and measure their figures
    (:func:`shipped_figures`), and write :data:`MANIFEST`: the command, world seed, versions, keys,
    training settings and wall times, the archives' sizes and SHA-1, and the figures (of the
    float16 archives as unpacked, so evaluating the shipped towers reproduces them exactly)."""
    from .classes import WORLD_VERSION
    out_dir = out_dir or SHIPPED_DIR
    unpacked, records, files = {}, {}, {}
    for kind, paths in (('clip', clip), ('vfm', vfm)):
        archive = pack_tower(paths['weights'], paths['config'], paths['record'],
                             osp.join(out_dir, f'world_{kind}.npz'))
        unpacked[kind] = unpack_tower(archive, cache_dir, kind)
        records[kind] = unpacked[kind]['record']
        files[kind] = dict(file=osp.basename(archive), bytes=osp.getsize(archive),
                           sha1=_sha1(archive))
    manifest = dict(
        command=command, world_seed=int(world_seed), world_version=WORLD_VERSION,
        towers={kind: dict(files[kind], key=rec.get('key'),
                           trainer_version=rec.get('trainer_version'),
                           settings=rec.get('settings'), wall_time_s=rec.get('wall_time_s'),
                           loss_curve_end=(rec.get('loss_curve') or [None])[-1])
                for kind, rec in records.items()},
        figures=shipped_figures(unpacked['clip'], unpacked['vfm'], world_seed),
        torch=torch.__version__)
    with open(osp.join(out_dir, MANIFEST), 'w') as f:
        json.dump(manifest, f, indent=1)
    return manifest


def read_manifest(out_dir: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The shipped towers' manifest, or ``None`` when nothing is shipped."""
    path = osp.join(out_dir or SHIPPED_DIR, MANIFEST)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)
