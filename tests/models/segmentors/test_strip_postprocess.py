"""Post-processing in row strips and window-by-window accumulation (issue 14.7 / 15): the labels are
those of the full-image computation, and memory no longer grows with pixels x classes."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from mmseg.structures import SegDataSample

from declip_mm.models import DeCLIPZeroShotSegmentor
from declip_mm.models.segmentors.strip_postprocess import bilinear_rows, labels_in_strips
from declip_mm.models.segmentors.zero_shot_segmentor import center_pad_size, window_grid
from declip_mm.testing import tiny_clip_config

NAMES = [['sky', 'clouds'], 'grass', ['cat', 'kitten', 'kitty'], 'road']


def make_seg(**kw):
    torch.manual_seed(0)
    cfg = tiny_clip_config('eva02')
    test_cfg = dict(mode='slide', crop_size=32, stride=16, batch_size=16)
    test_cfg.update(kw.pop('test_cfg', {}))
    return DeCLIPZeroShotSegmentor(
        backbone=dict(type='DeCLIPVisionTransformer', model_name=cfg, attn_mode='csa'),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg, templates='single'),
        class_names=kw.pop('class_names', NAMES), test_cfg=test_cfg, **kw).eval()


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('shapes', [((45, 61), (331, 517)), ((28, 37), (375, 500)),
                                    ((64, 64), (127, 255)), ((50, 70), (30, 41)),
                                    ((40, 50), (40, 80)), ((9, 7), (1, 13))])
def test_bilinear_rows_equal_interpolate(shapes, align_corners):
    (h, w), (H, W) = shapes
    x = torch.randn(3, h, w)
    ref = F.interpolate(x[None], size=(H, W), mode='bilinear', align_corners=align_corners)[0]
    for step in (1, 7, H):
        out = torch.cat([bilinear_rows(x, (H, W), (y, min(y + step, H)), align_corners)
                         for y in range(0, H, step)], dim=1)
        assert out.shape == ref.shape
        assert (out - ref).abs().max() <= 1e-6  # the kernel's arithmetic (often bit for bit)


def old_slide(seg, inputs):
    """The segmentor's slide inference before issue 15: every window's logits held at once."""
    b, _, h, w = inputs.shape
    boxes = window_grid(h, w, seg.crop_size, seg.stride)
    crops = torch.stack([inputs[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in boxes], 1).flatten(0, 1)
    hc, wc = crops.shape[-2:]
    pad = center_pad_size(hc, wc, seg.backbone.patch_size)
    padded = F.pad(crops, pad)
    logits = torch.cat([seg.encode_decode(padded[i:i + seg.batch_size])
                        for i in range(0, padded.shape[0], seg.batch_size)])
    logits = logits[:, :, pad[2]:pad[2] + hc, pad[0]:pad[0] + wc].view(b, len(boxes), -1, hc, wc)
    preds = inputs.new_zeros((b, logits.shape[2], h, w))
    count = inputs.new_zeros((1, 1, h, w))
    for k, (y1, y2, x1, x2) in enumerate(boxes):
        preds[:, :, y1:y2, x1:x2] += logits[:, k]
        count[:, :, y1:y2, x1:x2] += 1
    return preds / count


@pytest.mark.parametrize('hw,bs', [((45, 77), 3), ((20, 28), 2)])
def test_window_accumulation_is_bit_identical(hw, bs):
    seg = make_seg(test_cfg=dict(batch_size=bs))
    img = torch.randn(2, 3, *hw)
    with torch.no_grad():
        assert torch.equal(seg.slide_inference(img), old_slide(seg, img))


def _sample(ori, flip=False):
    return SegDataSample(metainfo=dict(ori_shape=ori, img_shape=(40, 56), pad_shape=(40, 56),
                                       padding_size=[0, 0, 0, 0], flip=flip,
                                       flip_direction='horizontal'))


@pytest.mark.parametrize('prob_thd,area_thd', [(0.0, None), (0.3, None), (0.0, 0.2), (0.35, 0.1)])
@pytest.mark.parametrize('ori,flip', [((30, 42), False), ((40, 56), True), ((97, 131), False),
                                      ((150, 111), True)])
def test_strip_labels_equal_full_image_labels(prob_thd, area_thd, ori, flip):
    torch.manual_seed(1)
    full = make_seg(prob_thd=prob_thd, area_thd=area_thd, logit_scale=60.0,
                    test_cfg=dict(keep_seg_logits=True))
    strips = make_seg(prob_thd=prob_thd, area_thd=area_thd, logit_scale=60.0,
                      test_cfg=dict(postprocess_max_elems=7 * 13 * 3))  # many strips
    strips.load_state_dict(full.state_dict())
    # cosines with structure: smooth random fields plus noise (the tiny random tower's are flat)
    logits = F.interpolate(torch.randn(1, 7, 5, 7), size=(40, 56), mode='bilinear') * 0.05
    logits = logits + 0.01 * torch.randn(1, 7, 40, 56)
    with torch.no_grad():
        a = full.postprocess_result(logits, [_sample(ori, flip)])[0]
        b = strips.postprocess_result(logits, [_sample(ori, flip)])[0]
    assert 'seg_logits' not in b and 'seg_logits' in a
    assert b.pred_sem_seg.data.dtype == torch.long and b.pred_sem_seg.data.shape == (1, *ori)
    assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
    labels = set(a.pred_sem_seg.data.unique().tolist())
    assert len(labels) >= 2  # a non-trivial map (several classes present)


def test_labels_in_strips_thresholds_on_hand_built_logits():
    # names 0,1 -> class 0; name 2 -> class 1; name 3 -> class 2
    logits = torch.zeros(4, 2, 5)
    logits[2, :, :4] = 1.0      # class 1 on 8 pixels
    logits[3, :, 4] = 1.0       # class 2 on 2 pixels (20 % of the non-background)
    n2c = torch.tensor([0, 0, 1, 2])
    pred = labels_in_strips(logits, (2, 5), 10.0, n2c, 3, max_elems=4)
    assert pred.tolist() == [[[1, 1, 1, 1, 2]] * 2]
    pred = labels_in_strips(logits, (2, 5), 10.0, n2c, 3, area_thd=0.25, max_elems=4)
    assert pred.tolist() == [[[1, 1, 1, 1, 0]] * 2]  # class 2 suppressed -> background
    pred = labels_in_strips(logits, (2, 5), 1.0, n2c, 3, prob_thd=0.9, max_elems=4)
    assert (pred == 0).all()  # softmax(1.0 * logits) never reaches 0.9


def test_bad_strip_budget():
    with pytest.raises(ValueError, match='postprocess_max_elems'):
        make_seg(test_cfg=dict(postprocess_max_elems=0))


_MEM_SCRIPT = r'''
import json, resource, sys, torch
from mmseg.structures import SegDataSample
from declip_mm.models import DeCLIPZeroShotSegmentor
from declip_mm.testing import tiny_clip_config
cfg = tiny_clip_config('eva02')
seg = DeCLIPZeroShotSegmentor(
    backbone=dict(type='DeCLIPVisionTransformer', model_name=cfg, attn_mode='csa'),
    text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg, templates='single'),
    class_names=[f'class {i}' for i in range(150)],
    test_cfg=dict(mode='slide', crop_size=32, stride=16)).eval()
img = torch.randn(1, 3, 40, 56)
with torch.no_grad():
    logits = seg.inference(img)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ds = SegDataSample(metainfo=dict(ori_shape=(400, 600), img_shape=(40, 56), pad_shape=(40, 56),
                                     padding_size=[0, 0, 0, 0]))
    out = seg.postprocess_result(logits, [ds])[0]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(grew_mib=(after - before) / 1024, shape=list(out.pred_sem_seg.data.shape))))
'''


def test_postprocess_memory_grows_with_pixels_not_classes():
    """400 x 600 pixels, 150 classes: one (150, H, W) float tensor is 137 MiB, and the full-image
    post-processing holds several; the strips hold the (H, W) labels (2 MiB) and one strip."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([root, os.environ.get('PYTHONPATH', '')]))
    out = subprocess.run([sys.executable, '-c', _MEM_SCRIPT], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res['shape'] == [1, 400, 600]
    assert res['grew_mib'] < 80, res  # the full-image path grows by > 1 GiB


def test_keep_seg_logits_switched_on_by_out_and_tta():
    """``tools/test.py --out`` and the TTA wrapper need the probabilities: they turn the flag on."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
    import importlib.util
    spec = importlib.util.spec_from_file_location('declip_test_tool',
                                                  os.path.join(root, 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)  # not ``import test``: that name is the stdlib's
    cfg_path = os.path.join(root, 'configs', 'training_free',
                            'declip_eva02-b16_training-free_voc21-448.py')
    cfg = test_tool.build_cfg(test_tool.parse_args([cfg_path]))
    assert not cfg.model.test_cfg.get('keep_seg_logits', False)
    cfg = test_tool.build_cfg(test_tool.parse_args([cfg_path, '--out', 'somewhere']))
    assert cfg.model.test_cfg['keep_seg_logits'] is True
    assert cfg.model.test_cfg['crop_size'] == 336  # the rest of test_cfg kept

    from declip_mm.models.segmentors.seg_tta import DeCLIPSegTTAModel
    seg = make_seg()
    assert seg.keep_seg_logits is False
    DeCLIPSegTTAModel(module=seg)
    assert seg.keep_seg_logits is True
