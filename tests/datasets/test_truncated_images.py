"""Truncated JPEG / PNG files are named in a warning (issue 14, item 10).

The files are real encodings (cv2.imencode of a textured random image) cut inside their compressed
data; each test first checks that a decoder still accepts the cut file (``cv2.imread``), i.e. that it
is the silent case and not a file every decoder refuses.
"""
import os
import os.path as osp
import warnings

import cv2
import numpy as np
import pytest
from mmengine.logging import MMLogger

import declip_mm  # noqa: F401  (registers DeCLIPLoadImage)
from declip_mm.datasets import image_check
from declip_mm.datasets.image_check import TRUNCATED_JPEG, TRUNCATED_PNG, truncation_reason
from declip_mm.registry import TRANSFORMS


@pytest.fixture(autouse=True)
def _fresh_warn_once():
    image_check._WARNED.clear()
    yield
    image_check._WARNED.clear()


def textured(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    return cv2.GaussianBlur(img, (3, 3), 0)  # texture everywhere: scan data fills the file


def encode(img, ext='.jpg', **params):
    flags = [cv2.IMWRITE_JPEG_QUALITY, params.get('quality', 90)] if ext == '.jpg' else []
    ok, buf = cv2.imencode(ext, img, flags)
    assert ok
    return buf.tobytes()


def scan_start(jpeg: bytes) -> int:
    sos = jpeg.index(b'\xff\xda')
    return sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], 'big')


def write_cut_jpeg(path, img=None, keep=0.65):
    """A JPEG cut inside its scan data that cv2.imread still decodes (partly grey)."""
    data = encode(textured() if img is None else img)
    n = int(len(data) * keep)
    assert scan_start(data) < n < len(data) - 2, 'the cut must fall inside the scan data'
    with open(path, 'wb') as f:
        f.write(data[:n])
    assert cv2.imread(str(path)) is not None, 'cv2 must still decode the cut file (silent case)'
    return data


def test_structure_walk_on_jpeg_and_png_cuts():
    jpeg = encode(textured())
    assert truncation_reason(jpeg) is None
    start = scan_start(jpeg)
    for n in np.linspace(start + 1, len(jpeg) - 1, 9).astype(int):  # inside the scan, EOI's 2nd byte
        assert truncation_reason(jpeg[:n]) == TRUNCATED_JPEG, n
    for n in (3, 20, start - 1):  # inside the headers
        assert truncation_reason(jpeg[:n]) == TRUNCATED_JPEG, n
    # bytes after EOI (zero padding, a camera trailer, an appended video) are not truncation
    assert truncation_reason(jpeg + b'\0' * 4096) is None
    assert truncation_reason(jpeg + b'\xff\xd8' + os.urandom(3000)) is None
    # progressive and restart-marker JPEGs: several scans / RSTn inside the scan data
    for flags in ([cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2]):
        ok, buf = cv2.imencode('.jpg', textured(), flags)
        data = buf.tobytes()
        assert truncation_reason(data) is None
        assert truncation_reason(data[:int(len(data) * 0.7)]) == TRUNCATED_JPEG
    png = encode(textured(), '.png')
    assert truncation_reason(png) is None
    for n in (len(png) - 12, len(png) - 1, len(png) // 2, 20):
        assert truncation_reason(png[:n]) == TRUNCATED_PNG, n
    assert truncation_reason(png + b'\0' * 100) is None
    assert truncation_reason(b'BM' + bytes(100)) is None  # other formats: left to the decoder


def test_embedded_thumbnail_eoi_does_not_hide_a_cut(tmp_path):
    """An EXIF-style APP1 segment holding a whole JPEG (with its own FF D9) near the end of a small
    cut file: a search of the file's tail for FF D9 would call it complete, the walk does not."""
    main = encode(textured(32, 32, seed=1))
    thumb = encode(textured(8, 8, seed=2))
    payload = b'Exif\0\0' + thumb
    app1 = b'\xff\xe1' + (len(payload) + 2).to_bytes(2, 'big') + payload
    data = main[:2] + app1 + main[2:]
    assert truncation_reason(data) is None
    cut = data[:len(data) - 40]
    assert b'\xff\xd9' in cut[-2048:]
    assert truncation_reason(cut) == TRUNCATED_JPEG


def test_load_transform_warns_once_and_decodes_like_cv2_imread(tmp_path):
    path = tmp_path / 'cut.jpg'
    write_cut_jpeg(path)
    load = TRANSFORMS.build(dict(type='DeCLIPLoadImage'))
    expected = f'{path}: JPEG is truncated (no end-of-image marker); decoded pixels may be partly grey'
    with pytest.warns(UserWarning) as rec:
        out = load(dict(img_path=str(path)))
    assert [str(w.message) for w in rec if 'truncated' in str(w.message)] == [expected]
    ref = cv2.imread(str(path))
    assert out['img'].shape == (64, 96, 3) and out['ori_shape'] == (64, 96)
    np.testing.assert_array_equal(out['img'], ref)
    assert (out['img'][-1] == 128).all()  # the bottom blocks are grey: the cut is real
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # once per file: the second load (next epoch / TTA) is quiet
        load(dict(img_path=str(path)))


def test_intact_files_are_quiet_and_unchanged(tmp_path):
    from mmcv.transforms import LoadImageFromFile
    ours, mmcv_load = TRANSFORMS.build(dict(type='DeCLIPLoadImage')), LoadImageFromFile()
    for ext in ('.jpg', '.png'):
        path = tmp_path / f'ok{ext}'
        path.write_bytes(encode(textured(), ext) + (b'\0' * 64 if ext == '.jpg' else b''))
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            out = ours(dict(img_path=str(path)))
        np.testing.assert_array_equal(out['img'], mmcv_load(dict(img_path=str(path)))['img'])


def test_truncated_png_is_named_and_fails_clearly(tmp_path):
    path = tmp_path / 'cut.png'
    data = encode(textured(), '.png')
    path.write_bytes(data[:len(data) // 2])
    load = TRANSFORMS.build(dict(type='DeCLIPLoadImage'))
    with pytest.warns(UserWarning, match=f'{path}: PNG is truncated'):
        with pytest.raises(ValueError, match=rf'failed to load image {path}: PNG is truncated'):
            load(dict(img_path=str(path)))
    assert TRANSFORMS.build(dict(type='DeCLIPLoadImage', ignore_empty=True))(
        dict(img_path=str(path))) is None


def test_warning_reaches_the_mmengine_log(tmp_path):
    path = tmp_path / 'cut.jpg'
    write_cut_jpeg(path)
    log = tmp_path / 'run.log'
    logger = MMLogger.get_instance('truncated_test', log_file=str(log))
    with pytest.warns(UserWarning):
        TRANSFORMS.build(dict(type='DeCLIPLoadImage'))(dict(img_path=str(path)))
    for h in logger.handlers:
        h.flush()
    assert f'{path}: JPEG is truncated (no end-of-image marker)' in log.read_text()


def test_training_loader_skips_a_cut_jpeg_even_if_pillow_would_decode_it(tmp_path, monkeypatch):
    from PIL import ImageFile
    monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', True)  # as some libraries set it
    path = tmp_path / 'cut.jpg'
    write_cut_jpeg(path)
    load = TRANSFORMS.build(dict(type='LoadImageOrSkip'))
    with pytest.warns(UserWarning, match=f'{path}: JPEG is truncated .*; image skipped'):
        assert load(dict(img_path=str(path))) is None
    good = tmp_path / 'ok.jpg'
    good.write_bytes(encode(textured()))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert load(dict(img_path=str(good)))['img'].shape == (64, 96, 3)


def test_inferencer_paths_warn_and_decode(tmp_path):
    from declip_mm.apis.inferencer import DeCLIPInferencer
    path = tmp_path / 'cut.jpg'
    write_cut_jpeg(path)
    with pytest.warns(UserWarning, match=f'{path}: JPEG is truncated'):
        rgb, name = DeCLIPInferencer._load(str(path), 0)
    np.testing.assert_array_equal(rgb, cv2.imread(str(path))[..., ::-1])
    assert name == 'cut'


def test_region_loader_warns_on_a_cut_image(tmp_path):
    from declip_mm.datasets.panoptic_regions import LoadPanopticRegions
    path = tmp_path / 'cut.jpg'
    write_cut_jpeg(path)
    with pytest.warns(UserWarning, match=f'{path}: JPEG is truncated'):
        img = LoadPanopticRegions._read(str(path), 'image', 'RGB')
    assert img.shape == (64, 96, 3)


def test_benchmark_configs_load_with_the_checking_transform():
    from mmengine.config import Config
    from tf_helpers import ROOT
    base = osp.join(ROOT, 'configs', '_base_', 'datasets')
    for f in sorted(os.listdir(base)):
        if f.startswith(('tf_', 'catseg_')) and f != 'tf_common.py':
            cfg = Config.fromfile(osp.join(base, f))
            assert cfg.test_dataloader.dataset.pipeline[0]['type'] == 'DeCLIPLoadImage', f


def test_tools_test_names_a_cut_benchmark_image(tmp_path):
    """tools/test.py on the ADE20K fixture with one image cut: the run finishes, the log names it."""
    from tf_helpers import load_tool, tf_config, tiny_options

    from declip_mm.testing import BENCHMARK_LAYOUTS, write_benchmark_fixture
    root = write_benchmark_fixture('ade20k', str(tmp_path / 'data'), sizes=[(64, 96)])
    img_dir = osp.join(root, BENCHMARK_LAYOUTS['ade20k']['img_dir'])
    name = sorted(os.listdir(img_dir))[0]
    cut = osp.join(img_dir, name)
    photo = cv2.imread(cut)
    noisy = np.clip(photo.astype(int) + textured() // 4 - 32, 0, 255).astype(np.uint8)
    write_cut_jpeg(cut, img=noisy)
    wd = tmp_path / 'wd'
    with pytest.warns(UserWarning, match=f'{cut}: JPEG is truncated'):
        metrics = load_tool('test').main([
            tf_config('ade20k'), '--work-dir', str(wd), '--out', str(tmp_path / 'preds'),
            '--cfg-options', *tiny_options(tmp_path), f'test_dataloader.dataset.data_root={root}'])
    from seg_metric_helpers import check_tool_metrics
    check_tool_metrics(metrics, tmp_path / 'preds', root, 'ade20k')  # the cut image is evaluated
    logs = [osp.join(d, f) for d, _, fs in os.walk(wd) for f in fs if f.endswith('.log')]
    assert any(f'{cut}: JPEG is truncated' in open(p).read() for p in logs)
