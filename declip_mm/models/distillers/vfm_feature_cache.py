"""On-disk cache of frozen VFM teacher features (docs/method.md §6, "VFM feature cache").

The VFM teacher of ``DeCLIPDistiller`` is frozen and its input (``DeCLIPLetterbox``: resize,
zero-pad, normalise) has no random part, so its features are a pure function of (teacher, image).
After the first epoch they can be read from disk instead of recomputed.

Layout (one file per image and teacher)::

    <cache_dir>/<arch>-<H>x<W>-<teacher key>/meta.json            what the teacher key hashes
    <cache_dir>/<arch>-<H>x<W>-<teacher key>/<ik[:2]>/<ik>.npy     ik = image key

Each ``.npy`` holds one numpy record ``(crc uint32, fp float32[12], feat float16[C, h, w])``, written
to a temporary file and moved into place with ``os.replace`` (atomic on POSIX: a reader sees the old
entry, no entry, or the whole new one) and read back with ``np.load(mmap_mode='r')``. One file per
entry rather than one memmap per teacher with an index: ranks / processes add entries without any
locking or shared index, the dataset size need not be known up front, a damaged entry costs one
image, and clearing a teacher is ``rm -r`` of its folder.

* teacher key: sha256 of the teacher class, arch, precision, module structure (``repr``), a hash of
  every state-dict tensor (so random, converted or re-downloaded weights all count, not just the file
  path), the weight file's (real path, size, mtime), the input side (H, W), the distiller's autocast
  dtype, the torch / timm versions and this file's format version. It is hashed once and re-hashed
  only when a tensor's storage or version counter changes (``load_state_dict`` bumps it) or the
  side / autocast changes.
* image key: sha1 of the real path, file size, mtime (ns) and the (h, w) of the image inside the
  letterbox. Stat-based rather than a content hash: the distiller only sees the path (the loader
  already decoded the bytes in a worker), and hashing every file each step would re-read the
  dataset. A file replaced with the same size and mtime is caught by the input fingerprint below.
* input fingerprint ``fp``: per channel, the mean, mean square and the means weighted by a row /
  column ramp in [-1, 1] of the teacher's *normalised input*, stored with the entry and compared at
  every hit (abs tol 1e-4 + rel 1e-4). It catches what the keys cannot see: a changed mean/std, a
  different resize, and augmentation of the VFM input (flip, crop, colour). A mismatch on an entry
  written earlier by the same cache object means the pipeline changes the input between epochs: that
  raises (the cache cannot be used with an augmented VFM input); otherwise (e.g. a changed
  normalisation) a warning and recomputation.
* validity: a missing, unreadable, truncated or wrong-shape/dtype entry, a crc32 mismatch or
  non-finite values give a warning and a recomputation; nothing non-finite (including fp16
  overflow) is written.

Precision: features are computed in fp32 (or the teacher's own precision) and, on a miss, used as
computed, so an epoch of misses gives exactly the uncached loss. Hits return the fp16-rounded
features (relative error <= 2^-11 per element).
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
import uuid
import warnings
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from mmengine.logging import print_log
from torch import Tensor

__all__ = ['VFMFeatureCache', 'input_fingerprint', 'vfm_pipeline_warnings', 'CACHE_FORMAT']

#: bump when the record layout or the teacher forward changes what a key means
CACHE_FORMAT = 1
FP_ATOL, FP_RTOL = 1e-4, 1e-4
#: transforms known to leave the VFM letterbox a pure function of the image file
DETERMINISTIC_TRANSFORMS = ('LoadImageOrSkip', 'LoadImageFromFile', 'DeCLIPGridCrops',
                            'DeCLIPLetterbox', 'PackDeCLIPInputs')


def vfm_pipeline_warnings(pipeline: Sequence[dict]) -> List[str]:
    """Warnings for transforms before a VFM letterbox (``key`` ``vfm_img*``) that are not known to
    be deterministic: they may augment the VFM input, which the cache cannot serve (the per-hit
    input fingerprint then stops the run at the second epoch)."""
    out, seen = [], []
    for t in pipeline:
        name = str(t.get('type', '')).split('.')[-1]
        if name == 'DeCLIPLetterbox' and str(t.get('key', '')).startswith('vfm_img'):
            out += [f"vfm_cache: transform {u!r} runs before the VFM letterbox {t.get('key')!r}; "
                    'if it is random, the cached VFM features are invalid (the cache checks an '
                    'input fingerprint at every hit and stops if the input changes)' for u in seen]
            seen = []
        elif name not in DETERMINISTIC_TRANSFORMS:
            seen.append(name)
    return out


def input_fingerprint(x: Tensor) -> Tensor:
    """(B, 3, H, W) normalised images -> (B, 12) fp32: per channel mean, mean square, mean x ramp_y,
    mean x ramp_x (ramps linear in [-1, 1]); a flip changes the sign of a ramp moment."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        ry = torch.linspace(-1, 1, x.shape[-2], device=x.device)[:, None]
        rx = torch.linspace(-1, 1, x.shape[-1], device=x.device)[None, :]
        moments = [x.mean((-2, -1)), (x * x).mean((-2, -1)), (x * ry).mean((-2, -1)),
                   (x * rx).mean((-2, -1))]
        return torch.stack(moments, 1).flatten(1).cpu()


def _tensor_digest(sd: Dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(sd):
        t = sd[name].detach()
        h.update(f'{name}|{t.dtype}|{tuple(t.shape)}|'.encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class VFMFeatureCache:
    """Memory-mapped fp16 cache of VFM teacher features, keyed by teacher and image.

    Args:
        cache_dir (str): root folder (created if missing); several teachers and runs may share it.
        verify_input (bool): compare the stored input fingerprint at every hit. Defaults to True.
        write (bool): store misses (False = read-only use of an existing cache). Defaults to True.
    """

    def __init__(self, cache_dir: str, verify_input: bool = True, write: bool = True) -> None:
        if not cache_dir or not isinstance(cache_dir, str):
            raise ValueError(f'vfm_cache needs a cache_dir string, got {cache_dir!r}')
        self.cache_dir = cache_dir
        self.verify_input = bool(verify_input)
        self.write = bool(write)
        self.stats = dict(hit=0, miss=0, invalid=0, written=0, unkeyed=0)
        self._keys: Dict[tuple, Tuple[tuple, str, dict]] = {}  # (id, hw, autocast) -> key
        self._announced: Set[str] = set()
        self._written: Set[str] = set()  # entries this object wrote: a later mismatch = augmentation

    # keys --------------------------------------------------------------------------------------
    def teacher_key(self, teacher: torch.nn.Module, hw: Sequence[int],
                    autocast: Optional[str] = None) -> Tuple[str, dict]:
        """Folder name ``<arch>-<H>x<W>-<sha256[:16]>`` and the description it hashes."""
        sd = teacher.state_dict()
        hw = (int(hw[0]), int(hw[1]))
        stamp = tuple((k, v.data_ptr(), v._version) for k, v in sd.items())
        memo = self._keys.get((id(teacher), hw, autocast))
        if memo is not None and memo[0] == stamp:
            return memo[1], memo[2]
        try:
            import timm
            timm_version = timm.__version__
        except ImportError:  # pragma: no cover - timm is a requirement
            timm_version = None
        desc = dict(format=CACHE_FORMAT, cls=type(teacher).__name__,
                    arch=getattr(teacher, 'arch', None),
                    precision=getattr(teacher, 'precision', None), autocast=autocast,
                    input_hw=list(hw),
                    structure=hashlib.sha256(repr(teacher).encode()).hexdigest(),
                    weights=_tensor_digest(sd), torch=torch.__version__, timm=timm_version,
                    weights_file=self._file_stamp(getattr(teacher, 'pretrained', None)))
        key = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]
        name = f'{desc["arch"] or desc["cls"]}-{hw[0]}x{hw[1]}-{key}'
        self._keys[(id(teacher), hw, autocast)] = (stamp, name, desc)
        return name, desc

    @staticmethod
    def _file_stamp(path: Optional[str]) -> Optional[list]:
        if not path or not osp.isfile(path):
            return None
        st = os.stat(path)
        return [osp.realpath(path), st.st_size, st.st_mtime_ns]

    @staticmethod
    def image_key(path: str, valid_hw: Optional[Sequence[int]]) -> Optional[str]:
        """sha1 of (real path, size, mtime_ns, valid (h, w)); None if the file cannot be stat'ed."""
        try:
            st = os.stat(path)
        except (OSError, TypeError):
            return None
        hw = None if valid_hw is None else [int(v) for v in valid_hw]
        blob = json.dumps([osp.realpath(path), st.st_size, st.st_mtime_ns, hw])
        return hashlib.sha1(blob.encode()).hexdigest()

    # entries -----------------------------------------------------------------------------------
    @staticmethod
    def record_dtype(shape: Sequence[int]) -> np.dtype:
        return np.dtype([('crc', '<u4'), ('fp', '<f4', (12, )), ('feat', '<f2', tuple(shape))])

    def _entry(self, tdir: str, ikey: str) -> str:
        return osp.join(self.cache_dir, tdir, ikey[:2], ikey + '.npy')

    def _read(self, path: str, dtype: np.dtype) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(feat fp16 (C, h, w), fp (12,)) or None (missing; invalid ones warn)."""
        if not osp.exists(path):
            return None
        try:
            rec = np.load(path, mmap_mode='r', allow_pickle=False)
            if rec.dtype != dtype or rec.shape != ():
                raise ValueError(f'record {rec.dtype} {rec.shape}, expected {dtype} ()')
            feat, fp, crc = np.array(rec['feat']), np.array(rec['fp']), int(rec['crc'])
            del rec  # closes the map
            if zlib.crc32(feat.tobytes()) != crc:
                raise ValueError('crc32 mismatch')
            if not np.isfinite(feat).all():
                raise ValueError('non-finite values')
        except Exception as e:  # truncated, garbage header, wrong shape: recompute, never crash
            self.stats['invalid'] += 1
            warnings.warn(f'VFM feature cache: invalid entry {path} ({e}); recomputing',
                          stacklevel=3)
            return None
        return feat, fp

    def _store(self, path: str, feat: Tensor, fp: Tensor, dtype: np.dtype) -> bool:
        half = feat.detach().to('cpu', torch.float16).numpy()
        if not np.isfinite(half).all():  # NaN/Inf, or beyond fp16's range
            warnings.warn(f'VFM feature cache: non-finite features not stored ({path})',
                          stacklevel=3)
            return False
        rec = np.zeros((), dtype)
        rec['feat'], rec['fp'] = half, fp.numpy()
        rec['crc'] = zlib.crc32(np.ascontiguousarray(half).tobytes())
        tmp = f'{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp'
        try:
            os.makedirs(osp.dirname(path), exist_ok=True)
            with open(tmp, 'wb') as f:
                np.save(f, rec, allow_pickle=False)
            os.replace(tmp, path)
        except OSError as e:  # disk full, read-only: train on, uncached
            warnings.warn(f'VFM feature cache: could not write {path} ({e})', stacklevel=3)
            if osp.exists(tmp):
                os.remove(tmp)
            return False
        self.stats['written'] += 1
        return True

    def _announce(self, tdir: str, desc: dict) -> None:
        if tdir in self._announced:
            return
        self._announced.add(tdir)
        meta = osp.join(self.cache_dir, tdir, 'meta.json')
        if self.write and not osp.exists(meta):
            os.makedirs(osp.dirname(meta), exist_ok=True)
            tmp = f'{meta}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp'
            with open(tmp, 'w') as f:
                json.dump(desc, f, indent=1, sort_keys=True)
            os.replace(tmp, meta)
        print_log(f'VFM feature cache: {osp.join(self.cache_dir, tdir)}', logger='current')

    # lookup ------------------------------------------------------------------------------------
    def features(self, teacher: torch.nn.Module, x: Tensor, img_paths: Sequence[str],
                 valid_hw: Optional[Tensor], run: Callable[[Tensor], Tensor],
                 autocast: Optional[str] = None) -> Tensor:
        """Teacher features of a batch, from the cache where possible.

        Args:
            teacher (nn.Module): a ``VFMTeacher`` (``embed_dim``, ``patch_size``).
            x (Tensor): (B, 3, H, W) the teacher's normalised input.
            img_paths (list[str]): B image files (the image identity).
            valid_hw (Tensor, optional): (B, 2) image pixels inside the letterbox.
            run (callable): (m, 3, H, W) -> (m, C, h, w) fp32, the teacher forward for the misses.
            autocast (str, optional): the autocast dtype ``run`` uses (part of the teacher key).

        Returns:
            Tensor: (B, C, h, w) fp32 on ``x.device``: computed features for misses (exactly
            ``run(x)`` when the whole batch misses), fp16-rounded cached ones for hits.
        """
        b = x.shape[0]
        if len(img_paths) != b:
            raise ValueError(f'vfm_cache got {len(img_paths)} image paths for a batch of {b}')
        p = int(teacher.patch_size)
        shape = (int(teacher.embed_dim), x.shape[-2] // p, x.shape[-1] // p)
        dtype = self.record_dtype(shape)
        tdir, desc = self.teacher_key(teacher, x.shape[-2:], autocast)
        self._announce(tdir, desc)
        fps = input_fingerprint(x)
        hws = [None] * b if valid_hw is None else valid_hw.tolist()
        ikeys = [self.image_key(path, hw) for path, hw in zip(img_paths, hws)]
        hits: Dict[int, np.ndarray] = {}
        for i, ikey in enumerate(ikeys):
            if ikey is None:
                self.stats['unkeyed'] += 1
                continue
            entry = self._entry(tdir, ikey)
            got = self._read(entry, dtype)
            if got is None:
                continue
            feat, fp = got
            if self.verify_input and not np.allclose(fp, fps[i].numpy(), atol=FP_ATOL,
                                                     rtol=FP_RTOL):
                if entry in self._written:
                    raise RuntimeError(
                        f'VFM feature cache: the VFM input of {img_paths[i]} changed between '
                        'epochs, so the pipeline augments it; cached teacher features would be '
                        'wrong. Remove the augmentation of the VFM input or drop vfm_cache.')
                self.stats['invalid'] += 1
                warnings.warn(f'VFM feature cache: {entry} was made from a different VFM input '
                              '(normalisation / resize changed?); recomputing', stacklevel=2)
                continue
            hits[i] = feat
        misses: List[int] = [i for i in range(b) if i not in hits]
        self.stats['hit'] += len(hits)
        self.stats['miss'] += len(misses)
        computed = None
        if misses:
            sub = x if len(misses) == b else x[torch.tensor(misses, device=x.device)]
            computed = run(sub)
            if tuple(computed.shape[1:]) != shape:
                raise RuntimeError(f'VFM teacher gave {tuple(computed.shape[1:])}, the cache '
                                   f'expected {shape} (embed_dim, H/patch, W/patch)')
            if self.write:
                for j, i in enumerate(misses):
                    if ikeys[i] is not None:
                        entry = self._entry(tdir, ikeys[i])
                        if self._store(entry, computed[j], fps[i], dtype):
                            self._written.add(entry)
            if len(misses) == b:
                return computed  # the uncached result, bit for bit
        out = torch.empty((b, ) + shape, dtype=torch.float32, device=x.device)
        idx = sorted(hits)
        out[idx] = torch.from_numpy(np.stack([hits[i] for i in idx])).to(x.device, torch.float32)
        if computed is not None:
            out[misses] = computed.to(torch.float32)
        return out
