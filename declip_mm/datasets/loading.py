"""``DeCLIPLoadImage``: mmcv's ``LoadImageFromFile`` that reports truncated JPEG / PNG files.

The benchmark dataset configs (``configs/_base_/datasets/tf_*.py``, ``catseg_*.py``) load images with
it, so ``tools/test.py``, ``tools/eval_all.py`` and ``tools/eval_catseg.py`` name every image that
ends early (see :mod:`declip_mm.datasets.image_check`) instead of scoring grey pixels silently or
stopping on a bare ``AssertionError``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio

from ..registry import TRANSFORMS
from .image_check import decode_image_bytes

__all__ = ['DeCLIPLoadImage']


@TRANSFORMS.register_module()
class DeCLIPLoadImage(LoadImageFromFile):
    """Load ``results['img_path']`` like mmcv's ``LoadImageFromFile``, checking that it is complete.

    Same arguments and outputs (``img`` (H, W, 3) uint8 BGR for ``color_type='color'``,
    ``img_shape``, ``ori_shape``). In addition, a JPEG without its end-of-image marker gives, once per
    file, ``UserWarning("<path>: JPEG is truncated (no end-of-image marker); decoded pixels may be
    partly grey")`` (also in the mmengine log) and is decoded as ``cv2.imread`` decodes it; a PNG without
    its ``IEND`` chunk is reported likewise. A file that does not decode raises ``ValueError`` naming
    it (mmcv: a bare ``AssertionError``), unless ``ignore_empty=True`` (then the sample is skipped).
    """

    def _fetch(self, filename: str) -> bytes:
        if self.file_client_args is not None:
            client = fileio.FileClient.infer_client(self.file_client_args, filename)
            return client.get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            img = decode_image_bytes(self._fetch(filename), str(filename), flag=self.color_type,
                                     backend=self.imdecode_backend)
        except Exception:
            if self.ignore_empty:
                return None
            raise
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results
