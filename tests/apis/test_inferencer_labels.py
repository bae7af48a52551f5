"""DeCLIPInferencer with any vocabulary size (issue 24, item 3) and without full-resolution maps of all
classes (item 4): labels, legend, overlay, files and probabilities agree, and equal the former
full-resolution computation."""
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from PIL import Image

from declip_mm.apis import DeCLIPInferencer
from declip_mm.apis.overlay import UNLABELED, class_palette
from declip_mm.apis.result_files import read_label_png
from declip_mm.testing import tiny_clip_config

pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


def tiny_opts(**extra):
    tiny = dict(tiny_clip_config('eva02'), _delete_=True)
    opts = {'model.backbone.model_name': tiny, 'model.text_encoder.model_name': tiny,
            'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
            'model.text_encoder.templates': 'single', 'model.test_cfg.crop_size': 64,
            'model.test_cfg.stride': 48, 'test_pipeline.1.scale': (4096, 72)}
    opts.update(extra)
    return opts


def photo(h=60, w=80, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (40, 90, 220)
    img[h // 2:] = (60, 170, 40)
    return np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)


def former(inf, rgb, classes, thd, mode=None):
    """What the inferencer computed before: the segmentor's full-resolution class probabilities
    (``postprocess_result`` with ``keep_seg_logits``), argmax, low top probability -> the class
    named background, else unlabeled."""
    inf.set_classes(classes)
    with torch.no_grad(), inf._settings(mode, thd):
        probs = inf.model.test_step(pseudo_collate([inf._prepare(rgb)]))[0].seg_logits.data
    labels = probs.argmax(0)
    if thd > 0:
        bg = [i for i, c in enumerate(inf.classes) if 'background' in c]
        labels[probs.max(0)[0] < thd] = bg[0] if bg else UNLABELED
    return probs.numpy(), labels.numpy()


def test_300_classes_labels_legend_overlay_and_files_agree(tmp_path):
    """A winning class above 255 is reported, drawn and saved as itself; unlabeled pixels are never
    a class (today's code: unlabeled = 255 = a class index, files uint8: 299 saved as 43)."""
    torch.manual_seed(0)
    inf = DeCLIPInferencer(cfg_options=tiny_opts())
    img = photo(48, 64)
    names = [f'thing {i}' for i in range(300)]
    winners = list(np.unique(inf(img, classes=names, mode='whole').labels))
    # put the winners at the end of the list: they become classes above 255
    order = [i for i in range(300) if i not in winners] + winners
    names = [names[i] for i in order]
    probs, _ = former(inf, img, names, 0.0, 'whole')
    top = probs.max(0)
    thd = float(np.median(top))
    expected = probs.argmax(0)
    expected[top < thd] = UNLABELED
    assert (expected > 255).any() and (expected == UNLABELED).any()
    res = inf(img, classes=names, mode='whole', prob_thd=thd, out_dir=str(tmp_path))
    np.testing.assert_array_equal(res.labels, expected)
    # legend: one entry per class, areas of exactly those pixels; unlabeled apart (index -1)
    assert [e['index'] for e in res.legend[:300]] == list(range(300))
    for e in res.legend[:300]:
        assert e['area'] == pytest.approx((expected == e['index']).mean(), abs=1e-12)
        assert not e['unlabeled']
    unl = res.legend[300]
    assert unl['unlabeled'] and unl['index'] == UNLABELED and unl['name'] == 'unlabeled'
    assert unl['area'] == pytest.approx((expected == UNLABELED).mean(), abs=1e-12)
    assert len(res.legend) == 301
    # overlay: unlabeled pixels keep the photo, a class above 255 its own colour
    colors = class_palette(300).astype(np.float32)
    low = expected == UNLABELED
    np.testing.assert_array_equal(res.overlay[low], img[low])
    hi = expected > 255
    want = (img[hi].astype(np.float32) * 0.5 + colors[expected[hi]] * 0.5).clip(0, 255)
    np.testing.assert_array_equal(res.overlay[hi], want.astype(np.uint8))
    # files: the labels read back exactly; the probabilities of every class
    np.testing.assert_array_equal(read_label_png(res.files['labels']), expected)
    raw = np.asarray(Image.open(res.files['labels']))
    assert raw.max() == 65535 and set(np.unique(raw[hi])) == set(np.unique(expected[hi]))
    saved = np.load(res.files['probs'])
    assert saved['probs'].shape == (300, 48, 64) and len(saved['classes']) == 300
    assert saved['probs'].dtype == np.float16  # float16 rounding of every class's map
    np.testing.assert_allclose(saved['probs'].astype(np.float32), probs, rtol=2 ** -10, atol=1e-7)


@pytest.mark.parametrize('mode,classes,thd,size', [
    (None, 'sky, clouds; grass; cat, kitten, kitty; road', 0.0, (60, 80)),
    ('whole', 'sky; grass; background; road, street', 0.35, (61, 97)),
    (None, [['a'], ['b'], ['c'], ['d'], ['e'], ['f'], ['g']], 0.2, (45, 70))])
def test_labels_and_class_maps_equal_the_former_full_computation(mode, classes, thd, size):
    torch.manual_seed(0)
    inf = DeCLIPInferencer(cfg_options=tiny_opts(**{'model.test_cfg.postprocess_max_elems': 700}))
    img = photo(*size, seed=3)
    probs, labels = former(inf, img, classes, thd, mode)
    res = inf(img, classes=classes, mode=mode, prob_thd=thd)
    np.testing.assert_array_equal(res.labels, labels)
    for k in range(len(res.classes)):
        np.testing.assert_allclose(res.class_probability(k), probs[k], rtol=0, atol=5e-6)
    np.testing.assert_array_equal(res.probs, probs)


def test_catseg_labels_and_class_maps_equal_the_former_full_computation():
    from mmseg.registry import MODELS
    if MODELS.get('DeCLIPCATSegSegmentor') is None:
        pytest.skip('the CAT-Seg-style segmentor is not in this checkout')
    head = dict(embed_dims=16, appearance_guidance_dims=8, text_guidance_dims=8, num_layers=2,
                num_heads=2, window_size=4, pad_len=12, pool_size=2, decoder_channels=(16, 16),
                guidance_channels=(8, 8), guidance_proj_channels=(4, 4))
    tiny = dict(tiny_clip_config('eva02'), _delete_=True)
    opts = {'model.backbone.model_name': tiny, 'model.text_encoder.model_name': tiny,
            'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
            'model.backbone.out_indices': (0, 1), 'model.test_cfg.size': 96,
            'model.test_cfg.crop_size': 64, 'model.test_cfg.stride': 32,
            'test_pipeline.1.scale': (4096, 64),
            'allow_untrained_head': True}   # a random head on purpose: both computations share it
    opts.update({f'model.decode_head.{k}': v for k, v in head.items()})
    torch.manual_seed(0)
    inf = DeCLIPInferencer('catseg_declip-eva02-b16_ade20k-640x640', cfg_options=opts)
    img = photo(50, 75, seed=4)
    for mode, thd in ((None, 0.0), ('whole', 0.5)):
        probs, labels = former(inf, img, 'cat; grass, lawn; sky; road', thd, mode)
        res = inf(img, mode=mode, prob_thd=thd)
        np.testing.assert_array_equal(res.labels, labels)
        for k in range(4):
            np.testing.assert_array_equal(res.class_probability(k), probs[k])


def test_no_full_resolution_maps_of_all_classes():
    """The tensors alive during a call stay far below one (classes, H, W) float32 map (the former
    inferencer held several), and a class's map costs one (H, W) map."""
    from declip_mm.benchmarking import peak_tensor_bytes
    torch.manual_seed(0)
    inf = DeCLIPInferencer(cfg_options=tiny_opts(**{'model.test_cfg.postprocess_max_bytes': 1 << 16}))
    img = photo(240, 320)
    classes = [f'class {i}' for i in range(60)]
    inf(img, classes=classes, mode='whole')  # text embeddings computed once, outside the count
    full = 60 * 240 * 320 * 4
    out = {}
    peak = peak_tensor_bytes(lambda: out.update(res=inf(img, mode='whole', prob_thd=0.3)))
    assert peak < full / 4, (peak, full)
    res = out['res']
    peak_k = peak_tensor_bytes(lambda: res.class_probability(59))
    assert peak_k < full / 10, (peak_k, full)
    np.testing.assert_allclose(res.class_probability(59), res.probs[59], rtol=0, atol=5e-6)
