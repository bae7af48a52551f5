"""DeCLIPInferencer: runtime vocabularies, unlabeled pixels, inputs, batching, outputs, checkpoints."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from declip_mm.apis import DeCLIPInferencer, parse_classes
from declip_mm.apis.inferencer import resolve_config
from declip_mm.testing import tiny_clip_config

pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py



def tiny_opts(family='eva02'):
    tiny = dict(tiny_clip_config(family), _delete_=True)
    return {'model.backbone.model_name': tiny, 'model.text_encoder.model_name': tiny,
            'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
            'model.text_encoder.templates': 'single', 'model.test_cfg.crop_size': 64,
            'model.test_cfg.stride': 48, 'test_pipeline.1.scale': (4096, 72)}


def photo(h=60, w=80, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (40, 90, 220)
    img[h // 2:] = (60, 170, 40)
    return np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def inferencer():
    torch.manual_seed(0)
    return DeCLIPInferencer(cfg_options=tiny_opts(), device='cpu')


def reference_probs(inf, img_path, classes, mode='slide'):
    """The pre-inferencer path of tools/demo.py: a segmentor built with this class list in its config
    (same weights), run through mmseg's inference_model."""
    from mmengine.config import Config
    from mmseg.apis import inference_model, init_model
    cfg = Config.fromfile(resolve_config(None).filename)
    cfg.merge_from_dict(tiny_opts())
    cfg.model.class_names = classes
    cfg.model.test_cfg.mode = mode
    cfg.model.test_cfg.keep_seg_logits = True
    model = init_model(cfg, None, device='cpu')
    model.load_state_dict(inf.model.state_dict(), strict=False)
    return inference_model(model, img_path).seg_logits.data.numpy()


def test_changing_classes_changes_the_classifier(inferencer, tmp_path):
    img_path = str(tmp_path / 'p.png')
    Image.fromarray(photo()).save(img_path)
    calls = []
    enc = inferencer.model.text_encoder
    orig = enc.encode_text
    enc.encode_text = lambda texts, **kw: (calls.append(list(texts)), orig(texts, **kw))[1]
    a = [['sky', 'clouds'], ['grass']]
    b = [['water'], ['tree', 'forest'], ['road']]
    ra = inferencer(img_path, classes=a)
    rb = inferencer(img_path, classes='water; tree, forest; road')
    ra2 = inferencer(img_path, classes=a)
    assert ra.probs.shape == (2, 60, 80) and rb.probs.shape == (3, 60, 80)
    assert [e['name'] for e in rb.legend[:3]] == ['water', 'tree', 'road']
    # the probabilities of each vocabulary equal a segmentor built with that vocabulary
    np.testing.assert_allclose(rb.probs, reference_probs(inferencer, img_path, b), atol=1e-5)
    np.testing.assert_allclose(ra.probs, reference_probs(inferencer, img_path, a), atol=1e-5)
    # switching back reuses the cached text embeddings: the text tower ran once per vocabulary
    assert len(calls) == 2 and calls[1] == ['a photo of a water.', 'a photo of a tree.',
                                            'a photo of a forest.', 'a photo of a road.']
    np.testing.assert_array_equal(ra2.probs, ra.probs)
    assert inferencer.model.num_classes == 2 and inferencer.model.name_to_class.tolist() == [0, 0, 1]


def test_quick_mode_is_the_whole_image_protocol(inferencer, tmp_path):
    img_path = str(tmp_path / 'p.png')
    Image.fromarray(photo(60, 100)).save(img_path)
    classes = [['sky'], ['grass']]
    slide = inferencer(img_path, classes=classes)
    whole = inferencer(img_path, classes=classes, mode='whole')
    np.testing.assert_allclose(whole.probs, reference_probs(inferencer, img_path, classes, 'whole'),
                               atol=1e-5)
    assert not np.allclose(whole.probs, slide.probs)
    assert inferencer.model.mode == 'slide'  # restored after the call
    with pytest.raises(ValueError, match="mode must be one of"):
        inferencer(img_path, classes=classes, mode='catseg')


def test_prob_thd_unlabeled_unless_background(tmp_path):
    """Issue 14 item 9: low-confidence pixels are unlabeled (-1), not the user's first class;
    a class named 'background' (anywhere in the list) receives them."""
    from tf_helpers import load_tool

    from declip_mm.testing import write_benchmark_fixture
    demo = load_tool('demo')
    root = write_benchmark_fixture('ade20k', str(tmp_path / 'data'), num_images=1, sizes=[(60, 80)])
    img = osp.join(root, 'images', 'validation', 'ADE_val_00000001.jpg')
    js = tmp_path / 'tiny.json'
    js.write_text(json.dumps(tiny_clip_config('eva02')))
    opts = [f'{k}={v}' for k, v in tiny_opts().items() if '.model_name' not in k
            and not k.startswith('test_pipeline')]
    opts += [f'model.backbone.model_name={js}', f'model.text_encoder.model_name={js}',
             'test_pipeline.1.scale=(4096,72)']

    def probs_of(classes):
        torch.manual_seed(0)  # the same random tower in every build
        return DeCLIPInferencer(cfg_options=tiny_opts())(img, classes=classes).probs

    def run(classes, thd, out):
        torch.manual_seed(0)
        return demo.main([img, '--classes', classes, '--prob-thd', str(thd), '--out',
                          str(tmp_path / out), '--cfg-options', *opts])

    for classes, unlabeled in (('cat; grass, lawn; sky', -1),
                               ('cat; background; grass, lawn; sky', 1)):
        probs = probs_of(classes)
        top = probs.max(0)
        thd = float(np.median(top))
        low = top < thd
        assert 0 < low.sum() < low.size
        pred = run(classes, thd, 'b.png')
        assert (pred[low] == unlabeled).all(), \
            f'low-confidence pixels must become {unlabeled}, not the first class'
        np.testing.assert_array_equal(pred[~low], probs.argmax(0)[~low])
    legend = Image.open(tmp_path / 'b.png')
    assert legend.width > 80


def test_inputs_batching_and_outputs(inferencer, tmp_path, monkeypatch):
    a, b, c = photo(60, 80, 0), photo(60, 80, 1), photo(48, 96, 2)
    Image.fromarray(a).save(tmp_path / 'a.png')
    classes = 'sky; grass'
    one = [inferencer(x, classes=classes) for x in (a, b, c)]
    # a path, an array and a PIL image of the same pixels give the same result
    for x in (str(tmp_path / 'a.png'), Image.fromarray(a)):
        np.testing.assert_array_equal(inferencer(x).probs, one[0].probs)
    # batches hold only equally sized images, so they equal the one-by-one results
    import mmengine.utils
    ticks = []

    class Bar:  # records mmengine's progress bar use
        def __init__(self, n):
            ticks.append(n)

        def update(self):
            ticks.append('tick')

    monkeypatch.setattr(mmengine.utils, 'ProgressBar', Bar)
    batch = inferencer([a, b, c], batch_size=3, out_dir=str(tmp_path / 'out'), show_progress=True)
    assert ticks == [3, 'tick', 'tick', 'tick']
    for r1, rb in zip(one, batch):
        np.testing.assert_allclose(rb.probs, r1.probs, atol=1e-6)
        assert rb.overlay.shape == rb.image.shape and rb.labels.shape == rb.image.shape[:2]
    files = batch[2].files
    np.testing.assert_array_equal(np.asarray(Image.open(files['labels'])), batch[2].labels)
    saved = np.load(files['probs'])
    np.testing.assert_allclose(saved['probs'], batch[2].probs, atol=1e-3)
    assert saved['classes'].tolist() == ['sky', 'grass']
    assert Image.open(files['overlay']).width > 96  # image + legend
    areas = sum(e['area'] for e in batch[0].legend)
    assert areas == pytest.approx(1.0)


def test_segmentor_and_tower_checkpoints(inferencer, tmp_path):
    img = photo()
    ref = inferencer(img, classes='sky; grass').probs
    seg_ckpt = tmp_path / 'seg.pth'
    torch.save({'state_dict': inferencer.model.state_dict(), 'meta': {}}, seg_ckpt)
    torch.manual_seed(123)  # different random init: the weights must come from the file
    other = DeCLIPInferencer(cfg_options=tiny_opts(), checkpoint=str(seg_ckpt))
    np.testing.assert_allclose(other(img, classes='sky; grass').probs, ref, atol=1e-6)
    # an image-tower export: the backbone comes from the file, the text tower from the config
    tower = tmp_path / 'tower.pth'
    vis = {f'visual.{k}': v for k, v in inferencer.model.backbone.visual.state_dict().items()}
    torch.save({'state_dict': vis, 'meta': {'attn_mode': 'csa'}}, tower)
    torch.manual_seed(0)
    third = DeCLIPInferencer(cfg_options=tiny_opts(), checkpoint=str(tower))
    torch.testing.assert_close(third.model.backbone.state_dict(),
                               inferencer.model.backbone.state_dict())


def test_bad_input_is_a_clear_error(inferencer, tmp_path):
    assert parse_classes('a; b, c ;') == [['a'], ['b', 'c']]
    assert parse_classes([['person', 'man'], 'sky']) == [['person', 'man'], ['sky']]
    with pytest.raises(ValueError, match='no class names'):
        parse_classes(' ; ,')
    with pytest.raises(ValueError, match='give classes'):
        inferencer(photo())
    with pytest.raises(FileNotFoundError, match='image not found'):
        inferencer(str(tmp_path / 'missing.jpg'), classes='a')
    with pytest.raises(TypeError, match='paths, numpy arrays or PIL'):
        inferencer(3, classes='a')
    with pytest.raises(ValueError, match='uint8 RGB'):
        inferencer(photo().astype(np.float32), classes='a')
    with pytest.raises(FileNotFoundError, match='text-tower weights not found.*text_checkpoint'):
        DeCLIPInferencer(cfg_options={**tiny_opts(),
                                      'model.text_encoder.pretrained': str(tmp_path / 'no.pt')})
    with pytest.raises(FileNotFoundError, match='neither a file nor a config name'):
        DeCLIPInferencer('no_such_config')
    assert resolve_config('declip_eva02-b16_training-free_voc21-448').model.prob_thd == 0.4
