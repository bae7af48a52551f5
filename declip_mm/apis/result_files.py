"""Files of a segmentation result: the label map as a 16-bit PNG, the probabilities as ``.npz``.

Label PNG (issue 24, item 3): one 16-bit grey value per pixel (PNG bit depth 16, PIL mode ``I;16``),
the class index 0..65534 for any vocabulary up to 65,535 classes; :data:`UNLABELED_IN_FILE` (65535)
marks the unlabeled pixels (:data:`~declip_mm.apis.overlay.UNLABELED`, -1, in memory). A former
8-bit file (255 = unlabeled) could not hold class 255 or more: a winning class 299 came back as 43.
Read a file back with :func:`read_label_png` (or any 16-bit PNG reader, e.g.
``cv2.imread(path, cv2.IMREAD_UNCHANGED)``, and treat 65535 as unlabeled).

Probabilities (``<name>_probs.npz``, as ``np.savez_compressed`` would write it: ``probs`` float16
(num_classes, H, W), ``classes`` the class list with synonyms joined by ``;``) are written a few
classes at a time from :class:`~declip_mm.models.segmentors.probability_maps.ClassProbabilityMaps`,
so that the full-resolution maps of all classes never sit in memory at once.
"""
from __future__ import annotations

import io
import os
import zipfile
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .overlay import UNLABELED

__all__ = ['UNLABELED_IN_FILE', 'MAX_FILE_CLASSES', 'write_label_png', 'read_label_png',
           'write_probs_npz', 'probs_npz_bytes']

#: value of the unlabeled pixels in a label PNG
UNLABELED_IN_FILE = 65535
#: classes a label PNG can name (indices 0..65534)
MAX_FILE_CLASSES = 65535
#: float16 bytes of the class maps computed per pass by :func:`write_probs_npz`
PROBS_GROUP_BYTES = 512 << 20


def write_label_png(path: str, labels: np.ndarray) -> None:
    """Write an (H, W) integer label map (class indices, :data:`UNLABELED` = -1) as a 16-bit PNG."""
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f'labels must be an (H, W) integer array, got {lab.dtype} {lab.shape}')
    unl = lab == UNLABELED
    bad = ~unl & ((lab < 0) | (lab >= MAX_FILE_CLASSES))
    if bad.any():
        raise ValueError(f'label {int(lab[bad][0])} cannot be written to a label PNG: it holds '
                         f'class indices 0..{MAX_FILE_CLASSES - 1} and {UNLABELED} (unlabeled)')
    out = lab.astype(np.uint16)
    out[unl] = UNLABELED_IN_FILE
    Image.fromarray(out).save(path, format='PNG')


def read_label_png(path: str) -> np.ndarray:
    """(H, W) int64 labels of a file of :func:`write_label_png`; unlabeled pixels are -1."""
    with Image.open(path) as im:
        if im.mode not in ('I;16', 'I;16B', 'I'):
            raise ValueError(f'{path} is not a 16-bit label PNG (PIL mode {im.mode})')
        lab = np.asarray(im).astype(np.int64)
    lab[lab == UNLABELED_IN_FILE] = UNLABELED
    return lab


def write_probs_npz(path: str, maps, classes: Sequence[Sequence[str]],
                    group_bytes: int = PROBS_GROUP_BYTES) -> None:
    """Write ``probs`` (float16, (num_classes, H, W)) and ``classes`` to an ``.npz`` file.

    Args:
        path (str): output file.
        maps (ClassProbabilityMaps): the result's probabilities; computed ``group_bytes`` of
            float16 classes at a time, each group streamed into the compressed archive member.
        classes (list): the class list (one list of names per class).
        group_bytes (int): memory of one group of class maps (float16).
    """
    tmp = f'{path}.{os.getpid()}.tmp'
    _write_probs_archive(tmp, maps, classes, group_bytes)
    os.replace(tmp, path)


def probs_npz_bytes(maps, classes: Sequence[Sequence[str]],
                    group_bytes: int = PROBS_GROUP_BYTES) -> bytes:
    """The bytes :func:`write_probs_npz` writes to its file, built in memory (e.g. for a download)."""
    buf = io.BytesIO()
    _write_probs_archive(buf, maps, classes, group_bytes)
    return buf.getvalue()


def _write_probs_archive(file, maps, classes, group_bytes: int) -> None:
    c, (h, w) = maps.num_classes, maps.out_hw
    per_class = max(1, h * w * 2)
    step = max(1, min(c, int(group_bytes) // per_class))
    header = {'descr': np.lib.format.dtype_to_descr(np.dtype('<f2')), 'fortran_order': False,
              'shape': (c, h, w)}
    with zipfile.ZipFile(file, 'w', compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        with zf.open('probs.npy', 'w', force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, header)
            buf = torch.empty((step, h, w), dtype=torch.float16)
            for k0 in range(0, c, step):
                ks = list(range(k0, min(k0 + step, c)))
                block = maps.class_probabilities(ks, out=buf[:len(ks)])
                f.write(memoryview(block.numpy()).cast('B'))
        with zf.open('classes.npy', 'w') as f:
            np.lib.format.write_array(f, np.array([';'.join(n) for n in classes]),
                                      allow_pickle=False)
