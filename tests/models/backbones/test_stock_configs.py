"""The backbone inside the installed mmseg / mmdet packages' own configs (issue 14.1).

Each stock config is loaded from site-packages (``<pkg>/.mim/configs``); only the backbone (a tiny
random tower), the channel numbers and the input size change. One loss step (with backward) and one
prediction run through the stock neck and heads. The neck's inputs are checked against the tower's
dict outputs resampled by a float64 reference (``test_featmap_outputs``).
"""
import os.path as osp

import pytest
import torch
from declip_reference import rel_err
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData
from pyramid_reference import resample_ref as _resample_ref

from declip_mm.testing import tiny_clip_config


def _stock_config(package: str, rel_path: str) -> Config:
    mod = __import__(package)
    path = osp.join(osp.dirname(mod.__file__), '.mim', 'configs', rel_path)
    if not osp.isfile(path):
        pytest.fail(f'stock config not installed: {path}')
    return Config.fromfile(path)


def _capture_neck_inputs(model):
    seen = []
    model.neck.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    return seen


def _check_neck_inputs(model, maps, images):
    """The neck got the backbone's featmap tuple: block maps / content map, then resampled."""
    bb = model.backbone
    with torch.no_grad():
        d = bb._forward_dict(images)
    blocks = sorted(i for i in bb.out_indices if i != bb.depth - 1)
    src = {i: m for i, m in zip(blocks, d['intermediates'])}
    src[bb.depth - 1] = d['content']
    scales = bb.resampler.scales if bb.resampler is not None else [1.0] * len(bb.out_indices)
    ops = bb.resampler.ops if bb.resampler is not None else [None] * len(scales)
    assert isinstance(maps, tuple) and len(maps) == len(bb.out_indices)
    for m, i, op, s in zip(maps, bb.out_indices, ops, scales):
        assert rel_err(m, _resample_ref(op, src[i], s)) <= 1e-5


def _grads_ok(params, all_used=True):
    """Finite, non-zero gradients (on every parameter unless ``all_used`` is False: the decoupled
    last block drops its FFN, whose parameters then get none)."""
    grads = [p.grad for p in params if p.requires_grad]
    if all_used and any(g is None for g in grads):
        return False
    grads = [g for g in grads if g is not None]
    return bool(grads) and all(torch.isfinite(g).all() for g in grads) and \
        sum(float(g.abs().sum()) for g in grads) > 0


def _tower_grads_ok(backbone):
    stem = backbone._stem_params()
    return _grads_ok(stem) and _grads_ok(backbone.visual.parameters(), all_used=False)


def test_mmseg_vit_upernet_config_with_declip_backbone():
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    init_default_scope('mmseg')
    cfg = _stock_config('mmseg', 'vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py')
    m = cfg.model
    m.pretrained = None  # the stock ImageNet ViT file; our tower reads its own `pretrained`
    m.data_preprocessor.size = (64, 64)
    m.backbone = dict(type='DeCLIPVisionTransformer', model_name=tiny_clip_config('eva02', depth=4),
                      attn_mode='csa', out_type='featmap', out_indices=(0, 1, 2, -1))
    m.neck.in_channels = [64, 64, 64, 32]  # three blocks (width 64) and the content map (32)
    m.neck.out_channels = 32
    m.decode_head.in_channels = [32] * 4
    m.decode_head.channels = 16
    m.auxiliary_head.in_channels = 32
    m.auxiliary_head.channels = 16
    model = MODELS.build(m)
    model.init_weights()
    seen = _capture_neck_inputs(model)

    def batch():
        samples = []
        for _ in range(2):
            s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))
            s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 64, 64)))
            samples.append(s)
        return dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                            for _ in range(2)], data_samples=samples)

    model.train()
    data = model.data_preprocessor(batch(), True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss) and {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    loss.backward()
    assert _tower_grads_ok(model.backbone)
    model.eval()
    _check_neck_inputs(model, seen[0], data['inputs'])
    preds = model.test_step(batch())
    assert len(preds) == 2 and preds[0].pred_sem_seg.data.shape == (1, 64, 64)
    assert 0 <= int(preds[0].pred_sem_seg.data.min()) and int(preds[0].pred_sem_seg.data.max()) < 150


def test_mmdet_faster_rcnn_fpn_config_with_declip_backbone():
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    init_default_scope('mmdet')
    cfg = _stock_config('mmdet', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    m = cfg.model
    # a /16 tower: out_scales (4, 2, 1, 1/2) give the strides 4..32 the stock FPN / anchors expect
    m.backbone = dict(type='DeCLIPVisionTransformer',
                      model_name=tiny_clip_config('eva02', depth=4, patch_size=16),
                      attn_mode='csa', out_type='featmap', out_indices=(0, 1, 2, 3),
                      out_scales=(4.0, 2.0, 1.0, 0.5))
    m.neck.in_channels = [64, 64, 64, 32]
    m.neck.out_channels = 32
    m.rpn_head.in_channels = 32
    m.rpn_head.feat_channels = 32
    m.roi_head.bbox_roi_extractor.out_channels = 32
    m.roi_head.bbox_head.in_channels = 32
    m.roi_head.bbox_head.fc_out_channels = 64
    model = MODELS.build(m)
    model.init_weights()
    seen = _capture_neck_inputs(model)

    def batch():
        samples = []
        for _ in range(2):
            s = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(128, 128),
                                            scale_factor=(0.5, 0.5), img_id=0))
            s.gt_instances = InstanceData(bboxes=torch.tensor([[4., 6., 40., 50.], [30., 8., 60., 30.]]),
                                          labels=torch.tensor([3, 17]))
            samples.append(s)
        return dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
                            for _ in range(2)], data_samples=samples)

    model.train()
    data = model.data_preprocessor(batch(), True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox'} <= set(losses)
    loss.backward()
    assert _tower_grads_ok(model.backbone)
    assert _grads_ok(model.backbone.resampler.parameters())
    assert [tuple(x.shape[-2:]) for x in seen[0]] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    model.eval()
    _check_neck_inputs(model, seen[0], data['inputs'])
    model.roi_head.test_cfg.score_thr = 0.0  # random weights: keep every box to check them
    preds = model.test_step(batch())
    inst = preds[0].pred_instances
    assert len(inst) > 0 and inst.bboxes.shape[1] == 4
    # rescaled to the original 128 px image, labels among the 80 COCO classes
    assert float(inst.bboxes.min()) >= 0 and float(inst.bboxes.max()) <= 128
    assert int(inst.labels.max()) < 80


@pytest.mark.parametrize('package, stock, in_channels', [
    ('mmseg', 'vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py', [64, 64, 64, 32]),
    ('mmdet', 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', [64, 64, 64, 32]),
])
def test_stock_config_with_dict_backbone_names_the_fix(package, stock, in_channels):
    """Only the backbone swapped, ``out_type`` left at its default: the stock neck indexes the dict
    like a tuple. Before: a bare ``KeyError: 0`` deep in the neck; now an error naming the option."""
    init_default_scope(package)
    reg = __import__(f'{package}.registry', fromlist=['MODELS']).MODELS
    cfg = _stock_config(package, stock)
    m = cfg.model
    m.pop('pretrained', None)
    m.backbone = dict(type='DeCLIPVisionTransformer', attn_mode='csa',
                      model_name=tiny_clip_config('eva02', depth=4, patch_size=16))
    m.neck.in_channels = in_channels  # csa: 4 named outputs, so the neck's length check passes
    model = reg.build(m)
    with pytest.raises(TypeError, match=r"indexed with 0 like a tuple.*out_type='featmap'"):
        model.extract_feat(torch.randn(1, 3, 64, 64))
    out = model.backbone(torch.randn(1, 3, 32, 32))  # the dict itself is unchanged
    assert list(out) == ['content', 'context_q', 'context_k', 'intermediates']
    with pytest.raises(KeyError):
        out['not an output']


def test_resampler_registered_in_both_registries_and_not_clashing():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG

    import declip_mm
    for reg in (SEG, DET):
        assert reg.get('SimplePyramidResampler') is declip_mm.SimplePyramidResampler
    with pytest.raises(ValueError, match='not supported'):
        DET.build(dict(type='SimplePyramidResampler', in_channels=[8], scales=[3]))


def _strip_scope(v):
    """mmengine tags everything inherited through ``pkg::`` with ``_scope_``: not a change."""
    if isinstance(v, dict):
        return {k: _strip_scope(x) for k, x in v.items() if k != '_scope_'}
    if isinstance(v, (list, tuple)):
        return type(v)(_strip_scope(x) for x in v)
    return v


def _flat(d, prefix=''):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


@pytest.mark.parametrize('ours, package, stock, scope', [
    ('configs/drop_in/upernet_declip-eva02-b16_mln_8xb2-80k_ade20k-512x512.py', 'mmseg',
     'vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512.py', 'mmseg'),
    ('configs/drop_in/faster-rcnn_declip-eva02-b16_fpn_1x_coco.py', 'mmdet',
     'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', 'mmdet'),
])
def test_readme_drop_in_configs_change_only_the_backbone(ours, package, stock, scope):
    """The README's configs inherit the installed stock file (``mmseg::`` / ``mmdet::``) and change
    only the backbone, the neck's in_channels, CLIP's normalisation and the patch padding."""
    root = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    cfg = Config.fromfile(osp.join(root, ours))
    base = _stock_config(package, stock)
    a, b = _flat(_strip_scope(cfg.to_dict())), _flat(_strip_scope(base.to_dict()))
    changed = {k for k in set(a) | set(b) if a.get(k, '<missing>') != b.get(k, '<missing>')}
    allowed = ('model.backbone.', 'data_preprocessor.', 'model.data_preprocessor.mean',
               'model.data_preprocessor.std', 'model.data_preprocessor.test_cfg',
               'model.neck.in_channels', 'model.pretrained', 'custom_imports.')
    assert changed and all(k.startswith(allowed) for k in changed), \
        sorted(k for k in changed if not k.startswith(allowed))
    # the neck's in_channels are the backbone's out_channels (E for the content map, D otherwise)
    init_default_scope(scope)
    reg = __import__(f'{package}.registry', fromlist=['MODELS']).MODELS
    bb_cfg = dict(cfg.model.backbone, model_name=tiny_clip_config('eva02', depth=9, patch_size=16),
                  pretrained=None)
    bb = reg.build(bb_cfg)
    assert [bb.width if c == 768 else bb.embed_dim if c == 512 else -1
            for c in cfg.model.neck.in_channels] == bb.out_channels
    maps = bb(torch.randn(1, 3, 64, 64))
    strides = [64 // m.shape[-1] for m in maps]
    assert strides == ([4, 8, 16, 32] if package == 'mmdet' else [16] * 4)
    if package == 'mmseg':
        # test images of any size: the config pads them to the patch size, mmseg crops it back
        from mmseg.structures import SegDataSample
        m = cfg.model
        m.backbone = bb_cfg
        m.neck.in_channels, m.neck.out_channels = bb.out_channels, 16
        m.decode_head.in_channels, m.decode_head.channels = [16] * 4, 8
        m.auxiliary_head.in_channels, m.auxiliary_head.channels = 16, 8
        model = reg.build(m).eval()
        s = SegDataSample(metainfo=dict(img_shape=(70, 50), ori_shape=(70, 50)))
        out = model.test_step(dict(inputs=[torch.randint(0, 256, (3, 70, 50), dtype=torch.uint8)],
                                   data_samples=[s]))
        assert out[0].pred_sem_seg.data.shape == (1, 70, 50)
