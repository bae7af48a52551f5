"""Detect JPEG / PNG files that end early, warn once per file, and decode them reproducibly.

A JPEG cut inside its compressed (scan) data has no end-of-image marker. Decoders disagree about such
a file: ``cv2.imread`` (libjpeg's file reader) and OpenCV 4's ``cv2.imdecode`` return the image with
the missing blocks filled grey, with only a libjpeg line on stderr; OpenCV 5's ``cv2.imdecode`` (what
mmcv's ``LoadImageFromFile`` calls) returns ``None``, which mmcv reports as a bare
``AssertionError: failed to load image``; Pillow raises ``image file is truncated``. Either way a
benchmark image could be scored on grey pixels, or a run could stop, with nothing that says why.

The check here walks the file's own structure, so bytes after the end (camera trailers, motion-photo
videos, zero padding) never count as truncation:

* JPEG (starts with ``FF D8``): marker segments are skipped by their length fields; after each
  start-of-scan the compressed data runs to the next marker (in scan data every ``FF`` is followed by
  ``00`` (byte stuffing) or a restart marker ``D0``-``D7``, ISO/IEC 10918-1 B.1.1.5); the file is
  complete when an end-of-image marker ``FF D9`` is reached, truncated when the data ends first.
* PNG (8-byte signature): chunks are skipped by their length fields; complete when the ``IEND`` chunk
  is reached whole (PNG specification, section 5.3).

Other formats, and JPEG / PNG files whose structure cannot be followed, are left to the decoder.

A truncated JPEG is decoded with an end-of-image marker appended: libjpeg then fills the missing
blocks grey, exactly what ``cv2.imread`` of the file gives, whatever the OpenCV version. A truncated
PNG cannot be decoded by libpng; it is reported and the load fails with a ``ValueError`` naming it.
"""
from __future__ import annotations

import logging
import re
import warnings
from typing import Optional, Set, Tuple

import numpy as np

__all__ = ['TRUNCATED_JPEG', 'TRUNCATED_PNG', 'truncation_reason', 'warn_truncated',
           'checked_bytes', 'decode_image_bytes']

TRUNCATED_JPEG = 'JPEG is truncated (no end-of-image marker)'
TRUNCATED_PNG = 'PNG is truncated (no IEND chunk)'

_JPEG_SOI = b'\xff\xd8'
_JPEG_EOI = b'\xff\xd9'
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# in entropy-coded data, FF is followed by 00 (stuffing) or D0-D7 (restart); anything else is a marker
_SCAN_END = re.compile(rb'\xff[^\x00\xd0-\xd7]')
# markers without a length field: TEM, RST0-7, SOI, EOI
_STANDALONE = {0x01, *range(0xD0, 0xD8), 0xD8}

#: paths already reported in this process (one warning per file, not one per epoch / TTA view)
_WARNED: Set[str] = set()


def _jpeg_truncated(data: bytes) -> Optional[bool]:
    """True: ends before EOI; False: EOI reached; None: structure not followed (leave it alone)."""
    n, pos = len(data), 2
    while True:
        while pos + 1 < n and data[pos] == 0xFF and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 2 > n:
            return True
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xD9:
            return False
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 4 > n:
            return True
        seg_end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], 'big')
        if seg_end > n:
            return True
        if marker == 0xDA:  # start of scan: compressed data up to the next marker
            m = _SCAN_END.search(data, seg_end)
            if m is None:
                return True
            pos = m.start()
        else:
            pos = seg_end


def _png_truncated(data: bytes) -> bool:
    n, pos = len(data), len(_PNG_SIGNATURE)
    while pos + 8 <= n:
        end = pos + 12 + int.from_bytes(data[pos:pos + 4], 'big')  # length, type, data, CRC
        if end > n:
            return True
        if data[pos + 4:pos + 8] == b'IEND':
            return False
        pos = end
    return True


def truncation_reason(data: bytes) -> Optional[str]:
    """:data:`TRUNCATED_JPEG` / :data:`TRUNCATED_PNG` if the file's bytes end early, else ``None``.

    Args:
        data (bytes): the whole file.
    """
    if data[:2] == _JPEG_SOI:
        return TRUNCATED_JPEG if _jpeg_truncated(data) else None
    if data[:8] == _PNG_SIGNATURE:
        return TRUNCATED_PNG if _png_truncated(data) else None
    return None


def warn_truncated(path: str, message: str) -> None:
    """``"<path>: <message>"`` as a ``UserWarning`` and a warning in mmengine's current logger, once
    per path in this process."""
    if path in _WARNED:
        return
    _WARNED.add(path)
    text = f'{path}: {message}'
    warnings.warn(text, UserWarning, stacklevel=3)
    from mmengine.logging import print_log
    print_log(text, logger='current', level=logging.WARNING)


def checked_bytes(data: bytes, path: str) -> Tuple[bytes, Optional[str]]:
    """Report (once) a truncated JPEG / PNG; returns the bytes to decode and the reason (or None).

    A truncated JPEG comes back with an end-of-image marker appended, so that any libjpeg-based
    decoder (OpenCV, Pillow) fills the missing blocks grey, as ``cv2.imread`` does, instead of failing.
    """
    reason = truncation_reason(data)
    if reason == TRUNCATED_JPEG:
        warn_truncated(path, f'{reason}; decoded pixels may be partly grey')
        data = data + _JPEG_EOI
    elif reason is not None:
        warn_truncated(path, f'{reason}; the image may not decode')
    return data, reason


def decode_image_bytes(data: bytes, path: str, flag: str = 'color', channel_order: str = 'bgr',
                       backend: Optional[str] = None) -> np.ndarray:
    """Decode a file's bytes as ``mmcv.imfrombytes`` does, reporting (once) a truncated JPEG / PNG.

    Args:
        data (bytes): the file's bytes.
        path (str): its name, used in the messages only.
        flag, channel_order, backend: as ``mmcv.imfrombytes``.

    Returns:
        np.ndarray: (H, W, 3) uint8 for ``flag='color'``. A truncated JPEG gives the decodable part with
        the rest grey (the pixels of ``cv2.imread``).

    Raises:
        ValueError: the bytes do not decode; the message names ``path`` and, if known, why.
    """
    import mmcv
    if len(data) == 0:  # cv2.imdecode raises a bare cv2.error (an assertion) without the name
        raise ValueError(f'failed to load image {path}: the file is empty (0 bytes)')
    data, reason = checked_bytes(data, path)
    try:
        img = mmcv.imfrombytes(data, flag=flag, channel_order=channel_order, backend=backend)
    except Exception as err:  # cv2.error / PIL errors: name the file
        raise ValueError(f'failed to load image {path}: {type(err).__name__}: '
                         f'{str(err).strip().splitlines()[-1] if str(err).strip() else err!r}'
                         ) from err
    if img is None or img.size == 0:
        raise ValueError(f'failed to load image {path}' + (f': {reason}' if reason else
                                                           ' (not a decodable image)'))
    return img
