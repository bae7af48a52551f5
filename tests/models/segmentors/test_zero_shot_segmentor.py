import pytest
import torch
import torch.nn.functional as F
from declip_reference import rel_err

from declip_mm.models import DeCLIPZeroShotSegmentor
from declip_mm.models.segmentors.zero_shot_segmentor import center_pad_size, window_grid
from declip_mm.testing import tiny_clip_config

NAMES = [['sky', 'clouds'], 'grass', ['cat', 'kitten', 'kitty'], 'road']


def make_seg(family='eva02', **kw):
    torch.manual_seed(0)
    cfg = tiny_clip_config(family)
    test_cfg = dict(mode='slide', crop_size=32, stride=16, batch_size=16)
    test_cfg.update(kw.pop('test_cfg', {}))
    seg = DeCLIPZeroShotSegmentor(
        backbone=dict(type='DeCLIPVisionTransformer', model_name=cfg, attn_mode='csa'),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg, templates='single'),
        class_names=kw.pop('class_names', NAMES), test_cfg=test_cfg, **kw)
    return seg.eval()


def reference_slide(seg, img, crop, stride):
    """One window at a time, mmseg/SCLIP formulas written out."""
    _, _, H, W = img.shape
    hc, wc = crop
    hs, ws = stride
    p = seg.backbone.patch_size[0]
    preds = torch.zeros(1, len(seg.name_to_class), H, W, dtype=torch.float64)
    count = torch.zeros(1, 1, H, W, dtype=torch.float64)
    for hi in range(max(H - hc + hs - 1, 0) // hs + 1):
        for wi in range(max(W - wc + ws - 1, 0) // ws + 1):
            y1, x1 = hi * hs, wi * ws
            y2, x2 = min(y1 + hc, H), min(x1 + wc, W)
            y1, x1 = max(y2 - hc, 0), max(x2 - wc, 0)
            c = img[:, :, y1:y2, x1:x2]
            h, w = c.shape[-2:]
            lr, tb = (p - w % p) % p, (p - h % p) % p
            pad = (lr // 2, lr - lr // 2, tb // 2, tb - tb // 2)
            logit = seg.encode_decode(F.pad(c, pad))
            logit = logit[:, :, pad[2]:pad[2] + h, pad[0]:pad[0] + w]
            preds[:, :, y1:y2, x1:x2] += logit.double()
            count[:, :, y1:y2, x1:x2] += 1
    assert (count > 0).all()
    return preds / count


@pytest.mark.parametrize('family', ['openai', 'eva02'])
@pytest.mark.parametrize('hw', [(45, 77), (32, 60), (20, 28)])
def test_slide_matches_reference_and_batching(family, hw):
    seg = make_seg(family)
    img = torch.randn(1, 3, *hw)
    with torch.no_grad():
        batched = seg.inference(img)
        seg.batch_size = 1
        sequential = seg.inference(img)
        ref = reference_slide(seg, img, (32, 32), (16, 16))
    assert batched.shape == (1, 5 + 2, *hw)  # 7 names
    assert rel_err(batched, ref) <= 1e-5
    assert rel_err(sequential, batched) <= 1e-5


def test_slide_with_covering_window_equals_whole():
    seg = make_seg(test_cfg=dict(crop_size=64, stride=32))
    img = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        slide = seg.inference(img)
        seg.mode = 'whole'
        whole = seg.inference(img)
    assert torch.allclose(slide, whole, atol=1e-6)


def test_batch_of_images_equals_one_by_one():
    seg = make_seg()
    imgs = torch.randn(3, 3, 40, 50)
    with torch.no_grad():
        together = seg.inference(imgs)
        alone = torch.cat([seg.inference(imgs[i:i + 1]) for i in range(3)])
    assert rel_err(together, alone) <= 1e-5


def test_window_grid_and_padding():
    boxes = window_grid(45, 77, (32, 32), (16, 16))
    assert boxes[0] == (0, 32, 0, 32) and boxes[-1] == (13, 45, 45, 77)
    assert len(boxes) == 2 * 4
    # an image smaller than the window is one window of its own size
    assert window_grid(20, 28, (32, 32), (16, 16)) == [(0, 20, 0, 28)]
    assert center_pad_size(20, 28, (8, 8)) == (2, 2, 2, 2)
    assert center_pad_size(21, 27, (8, 8)) == (2, 3, 1, 2)
    assert center_pad_size(16, 24, (8, 8)) == (0, 0, 0, 0)


def test_synonym_max_and_prob_thd_on_hand_built_logits():
    seg = make_seg(logit_scale=10.0, prob_thd=0.5)
    assert seg.name_to_class.tolist() == [0, 0, 1, 2, 2, 2, 3]
    logits = torch.tensor([0.9, 0.1, 0.2, 0.3, 0.8, 0.1, 0.0])[:, None, None].repeat(1, 2, 2)
    logits[:, 1, 1] = 0.0  # a pixel with uniform names -> low confidence
    probs = seg.class_probabilities(logits)
    names_p = torch.softmax(10.0 * logits[:, 0, 0].double(), 0)
    expect = torch.stack([names_p[0:2].max(), names_p[2], names_p[3:6].max(), names_p[6]])
    assert torch.allclose(probs[:, 0, 0].double(), expect, atol=1e-6)
    pred = seg.predict_from_probabilities(probs)
    assert pred.shape == (1, 2, 2)
    assert pred[0, 0, 0] == 0  # sky wins (0.9)
    assert pred[0, 1, 1] == 0 and probs[:, 1, 1].max() < 0.5  # below prob_thd -> class 0
    seg.prob_thd = 0.0
    logits2 = logits.clone()
    logits2[4] = 2.0  # 'kitten' dominates -> class 2 via its synonym
    assert seg.predict_from_probabilities(seg.class_probabilities(logits2))[0, 0, 0] == 2


def test_area_thd_suppresses_small_classes():
    seg = make_seg(area_thd=0.3)
    probs = torch.zeros(4, 1, 10)
    probs[1, 0, :8] = 0.9   # class 1 on 8 pixels
    probs[3, 0, 8:] = 0.8   # class 3 on 2 pixels (20 % of non-background)
    probs[0] = 0.1
    pred = seg.predict_from_probabilities(probs)
    assert (pred[0, 0, :8] == 1).all() and (pred[0, 0, 8:] == 0).all()


def test_predict_fills_data_samples():
    from mmseg.structures import SegDataSample
    seg = make_seg(test_cfg=dict(keep_seg_logits=True))
    img = torch.randn(1, 3, 40, 56)
    ds = SegDataSample(metainfo=dict(ori_shape=(30, 42), img_shape=(40, 56), pad_shape=(40, 56),
                                     padding_size=[0, 0, 0, 0]))
    out = seg.predict(img, [ds])[0]
    # the formula: window cosines resized bilinearly to the original size, softmax over the names of
    # logit_scale * cosine, max over each class's names, argmax (float64 from the logits)
    with torch.no_grad():
        cos = F.interpolate(seg.inference(img).double(), size=(30, 42), mode='bilinear',
                            align_corners=False)[0]
    names_p = (seg.logit_scale * cos).softmax(0)
    groups = [[0, 1], [2], [3, 4, 5], [6]]  # NAMES: sky+clouds, grass, cat+kitten+kitty, road
    ref = torch.stack([names_p[g].amax(0) for g in groups])
    assert (out.seg_logits.data.double() - ref).abs().max() <= 1e-5
    assert torch.equal(out.pred_sem_seg.data[0], ref.argmax(0))
    with pytest.raises(RuntimeError, match='training-free'):
        seg.loss(img, [ds])


def test_text_embeddings_are_lazy_non_persistent():
    seg = make_seg()
    assert seg.text_embeddings.numel() == 0
    assert not any('text_embeddings' in k or 'name_to_class' in k for k in seg.state_dict())
    emb = seg.class_embeddings()
    assert emb.shape == (7, 32) and seg.class_embeddings() is emb


def test_bad_class_names(tmp_path):
    with pytest.raises(FileNotFoundError, match='class-name file not found'):
        make_seg(class_names=str(tmp_path / 'none.txt'))
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n# only a comment\n')
    with pytest.raises(ValueError, match='empty'):
        make_seg(class_names=str(empty))
    with pytest.raises(ValueError, match="mode must be 'slide' or 'whole'"):
        make_seg(test_cfg=dict(mode='sliding'))
