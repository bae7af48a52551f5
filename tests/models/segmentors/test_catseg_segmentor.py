"""DeCLIPCATSegSegmentor: the fine-tuned parameter set, the optimizer groups of the training config,
CAT-Seg's test scheme against a window-by-window reference, vocabulary changes, checkpoints and
bad input."""
import re

import pytest
import torch
import torch.nn.functional as F
from catseg_helpers import catseg_config, tiny_segmentor_cfg
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from declip_mm.registry import MODELS

pytestmark = pytest.mark.usefixtures('one_thread')

TRAIN_CFG = 'catseg_declip-eva02-b16_1xb4-80k_coco-stuff164k-384x384.py'


def build(family='eva02', **kw):
    torch.manual_seed(0)
    model = MODELS.build(tiny_segmentor_cfg(family, **kw))
    model.init_weights()
    return model


def samples(n=2, hw=(32, 32), ori=(40, 50), num_classes=5):
    out = []
    for _ in range(n):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, *hw)))
        s.set_metainfo(dict(img_shape=hw, ori_shape=ori, pad_shape=hw, padding_size=[0, 0, 0, 0]))
        out.append(s)
    return out


def intended(name, family):
    """The rule, written from docs/catseg.md: the image tower's Q/V projection weights, the text
    tower's in_proj_weight (all rows for EVA02, Q/V rows for OpenAI); no biases, no positions."""
    if name.startswith('decode_head.'):
        return True
    if name.startswith('text_encoder.'):
        return bool(re.fullmatch(r'text_encoder\.text\.transformer\.resblocks\.\d+\.attn\.in_proj_weight',
                                 name))
    if family == 'eva02':
        return bool(re.fullmatch(r'backbone\.visual\.trunk\.blocks\.\d+\.attn\.(q_proj|v_proj)\.weight',
                                 name))
    return bool(re.fullmatch(r'backbone\.visual\.transformer\.resblocks\.\d+\.attn\.in_proj_weight',
                             name))


def test_exactly_the_intended_parameters_get_gradients(family):
    model = build(family).train()
    model.loss(torch.randn(2, 3, 32, 32), samples())['loss_bce'].backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    want = {n for n, _ in model.named_parameters() if intended(n, family)}
    assert with_grad == want and trainable == want
    fused = [n for n in want if 'in_proj' in n]
    assert fused
    params = dict(model.named_parameters())
    for n in fused:  # K rows of fused Q/V-only tensors get no gradient; Q and V rows do
        g = params[n].grad
        d = g.shape[0] // 3
        k_frozen = family == 'openai' or not n.startswith('text_encoder.')
        assert (g[d:2 * d].abs().sum() == 0) == k_frozen, n
        assert g[:d].abs().sum() > 0 and g[2 * d:].abs().sum() > 0, n


def test_optimizer_groups_from_the_training_config():
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(catseg_config(TRAIN_CFG))
    model = build().train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm)
    norms = {f'{m}.{k}' for m, mod in model.named_modules() if isinstance(mod, norm_types)
             for k, _ in mod.named_parameters(recurse=False)}
    seen = set()
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            n = names[id(p)]
            seen.add(n)
            tower = n.startswith(('backbone.', 'text_encoder.'))
            assert group['lr'] == pytest.approx(2e-4 * (0.01 if tower else 1.0)), n
            assert group['weight_decay'] == pytest.approx(0.0 if n in norms else 1e-4), n
    assert {n for n, p in model.named_parameters() if p.requires_grad} <= seen
    assert wrapper.clip_grad_kwargs == dict(max_norm=0.01, norm_type=2)
    # one step (EVA02: the text tower's whole in_proj_weight trains, K rows included)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapper.update_params(model.loss(torch.randn(2, 3, 32, 32), samples())['loss_bce'])
    after = dict(model.named_parameters())
    name = 'text_encoder.text.transformer.resblocks.0.attn.in_proj_weight'
    d = before[name].shape[0] // 3
    assert not torch.equal(after[name][d:2 * d], before[name][d:2 * d])
    assert not torch.equal(after[name][:d], before[name][:d])
    for n, p in after.items():
        if not p.requires_grad:
            assert torch.equal(p, before[n]), n


def test_catseg_test_scheme_matches_window_by_window_reference():
    model = build().eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        got = model.inference(x, [dict(img_shape=(40, 56))])
        img = F.interpolate(x, size=(48, 48), mode='bilinear', align_corners=False)
        acc, cnt = torch.zeros(1, 5, 48, 48), torch.zeros(1, 1, 48, 48)
        for y in (0, 16):
            for xx in (0, 16):
                acc[:, :, y:y + 32, xx:xx + 32] += model.encode_decode(img[:, :, y:y + 32, xx:xx + 32])
                cnt[:, :, y:y + 32, xx:xx + 32] += 1
        glob = model.encode_decode(F.interpolate(x, size=(32, 32), mode='bilinear', align_corners=False))
        ref = (acc / cnt + F.interpolate(glob, size=(48, 48), mode='bilinear', align_corners=False)) / 2
    assert got.shape == (1, 5, 48, 48)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # a padded batch: each image is resized from its own extent
    with torch.no_grad():
        padded = F.pad(x, (0, 8, 0, 24), value=3.0)
        torch.testing.assert_close(model.inference(padded, [dict(img_shape=(40, 56))]), got,
                                   atol=1e-5, rtol=1e-5)


def test_predict_postprocess_and_flip():
    model = build().eval()
    s = samples(1)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = model.predict(x, s)[0]
        # CAT-Seg's test scheme at test_size, then bilinear to the original size; labels = argmax
        want = F.interpolate(model.inference(x, [s[0].metainfo]), size=(40, 50), mode='bilinear',
                             align_corners=False)[0]
    torch.testing.assert_close(out.seg_logits.data, want)
    assert torch.equal(out.pred_sem_seg.data, want.argmax(0, keepdim=True))
    probs = torch.rand(1, 5, 48, 48)
    s = samples(1)
    s[0].set_metainfo(dict(flip=True, flip_direction='horizontal'))
    res = model.postprocess_result(probs, s)[0]
    ref = F.interpolate(probs.flip(3), size=(40, 50), mode='bilinear', align_corners=False)[0]
    torch.testing.assert_close(res.seg_logits.data, ref)
    assert torch.equal(res.pred_sem_seg.data, ref.argmax(0, keepdim=True))


def test_five_class_model_runs_on_seven_and_checkpoint_round_trips(tmp_path):
    five = build().eval()
    path = tmp_path / 'catseg.pth'
    torch.save({'state_dict': five.state_dict()}, path)
    sd = torch.load(path, weights_only=True)['state_dict']
    seven = build(class_names=['a', 'b', ['c', 'c2'], 'd', 'e', 'f', 'g']).eval()
    seven.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        probs = seven.inference(x)
        # nothing in the head depends on the class order: permuting the seven names (one with a
        # synonym) permutes the probabilities
        perm = [3, 0, 6, 2, 5, 1, 4]
        names = ['a', 'b', ['c', 'c2'], 'd', 'e', 'f', 'g']
        permuted = build(class_names=[names[i] for i in perm]).eval()
        permuted.load_state_dict(sd, strict=True)
        torch.testing.assert_close(permuted.inference(x), probs[:, perm], atol=1e-5, rtol=1e-5)
        assert (probs[:, 2] - probs[:, 3]).abs().max() > 1e-3  # the classes are told apart
        again = build().eval()
        torch.manual_seed(5)
        again.load_state_dict(sd, strict=True)
        torch.testing.assert_close(again.inference(x), five.inference(x))


def test_synonyms_are_averaged():
    model = build().eval()
    with torch.no_grad():
        emb = model.class_embeddings()
        names = model.text_encoder(['dog', 'puppy'], per_template=True)
    assert emb.shape == (5, 1, 32)
    torch.testing.assert_close(emb[1], F.normalize(names.mean(0), dim=-1))


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match='class_names is empty'):
        build(class_names=[])
    empty = tmp_path / 'empty.txt'
    empty.write_text('# nothing\n\n')
    with pytest.raises(ValueError, match='is empty'):
        build(class_names=str(empty))
    cfg = tiny_segmentor_cfg()
    cfg['backbone']['out_indices'] = (0, )
    with pytest.raises(ValueError, match='two intermediate blocks'):
        MODELS.build(cfg)
    with pytest.raises(ValueError, match="clip_finetune must be one of"):
        MODELS.build(tiny_segmentor_cfg(clip_finetune='lora'))
    # a backbone checkpoint of another decoupled mode
    model = build()
    ckpt = tmp_path / 'declip_csa.pth'
    sd = {'visual.' + k: v for k, v in model.backbone.visual.state_dict().items()}
    torch.save({'state_dict': sd, 'meta': {'attn_mode': 'csa'}}, ckpt)
    # refused on every version of the mode-pair table (csa -> qq drops the trained K branch)
    cfg = tiny_segmentor_cfg()
    cfg['backbone'].update(pretrained=str(ckpt), attn_mode='qq')
    with pytest.raises(ValueError, match="trained with attn_mode='csa'.*attn_mode='qq'"):
        MODELS.build(cfg).init_weights()
