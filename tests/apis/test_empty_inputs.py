"""Issue 24.7: an empty image is a clear error naming the input.

Before: a 0-byte file gave a raw ``cv2.error`` (an OpenCV assertion, no file name) in the inferencer
and in the benchmark loader; a 0x0 array a ``ZeroDivisionError`` inside the resize."""
import numpy as np
import pytest
import torch
from PIL import Image

import declip_mm  # noqa: F401  (registers DeCLIPLoadImage)
from declip_mm.apis import DeCLIPInferencer
from declip_mm.registry import TRANSFORMS
from declip_mm.testing import tiny_clip_config


@pytest.fixture(scope='module')
def inferencer():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    tiny = dict(tiny_clip_config('eva02'), _delete_=True)
    yield DeCLIPInferencer(cfg_options={
        'model.backbone.model_name': tiny, 'model.text_encoder.model_name': tiny,
        'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
        'model.text_encoder.templates': 'single', 'model.test_cfg.crop_size': 64,
        'model.test_cfg.stride': 48, 'test_pipeline.1.scale': (4096, 48)}, device='cpu')
    torch.set_num_threads(n)


def test_zero_byte_file_names_the_file(tmp_path, inferencer):
    path = tmp_path / 'photo.jpg'
    path.write_bytes(b'')
    pattern = rf'failed to load image {path}: the file is empty \(0 bytes\)'
    with pytest.raises(ValueError, match=pattern):
        inferencer(str(path), classes='cat; sky')
    with pytest.raises(ValueError, match=pattern):
        TRANSFORMS.build(dict(type='DeCLIPLoadImage'))(dict(img_path=str(path)))
    assert TRANSFORMS.build(dict(type='DeCLIPLoadImage', ignore_empty=True))(
        dict(img_path=str(path))) is None
    path.write_bytes(b'not an image at all')   # bytes that do not decode: named as well
    with pytest.raises(ValueError, match=rf'failed to load image {path}'):
        inferencer(str(path), classes='cat; sky')


@pytest.mark.parametrize('shape', [(0, 0, 3), (0, 0), (7, 0, 3), (0, 5, 4)])
def test_empty_array_names_the_input(inferencer, shape):
    img = np.zeros(shape, np.uint8)
    w, h = shape[1], shape[0]
    with pytest.raises(ValueError, match=rf'image 1 \(array\) is empty: {w}x{h} pixels'):
        inferencer([np.zeros((8, 8, 3), np.uint8), img], classes='cat; sky')
    with pytest.raises(ValueError, match=rf'image 0 \(PIL\) is empty: {w}x{h} pixels'):
        inferencer(Image.new('RGB', (w, h)), classes='cat; sky')
