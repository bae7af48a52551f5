"""F-ViT-style open-vocabulary detection through mmdet (issue 10 part 2).

The config under test is configs/detection/fvit_declip-eva02-b16_ov-coco.py with a tiny random
tower (a child config in tmp_path). The score ensemble is compared with a float64 reference written
from F-ViT's formula; the loss step must leave the CLIP tower and the text tower without gradients.
"""
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from fvit_helpers import FVIT_CONFIG, write_tiny_fvit_config
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from declip_mm.datasets.ov_coco_classes import OV_COCO_BASE_CLASSES, OV_COCO_CLASSES, OV_COCO_NOVEL_CLASSES
from declip_mm.testing import OV_COCO_TRAIN_ANN, OV_COCO_VAL_ANN, write_ov_coco_fixture


@pytest.fixture
def tiny_cfg(tmp_path):
    path = write_tiny_fvit_config(str(tmp_path / 'tiny_fvit.py'), str(tmp_path / 'coco'),
                                  str(tmp_path / 'work'))
    return Config.fromfile(path)


@pytest.fixture
def detector(tiny_cfg):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(tiny_cfg.model)
    model.init_weights()
    return model


def _batch(n=2, size=64):
    from mmdet.structures import DetDataSample
    samples = []
    for i in range(n):
        s = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(2 * size, 2 * size),
                                        scale_factor=(0.5, 0.5), img_id=i))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[4., 6., 40., 50.], [30., 8., 60., 30.]]),
                                      labels=torch.tensor([0, 10]))  # person, bird: base classes
        samples.append(s)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
                        for _ in range(n)], data_samples=samples)


def test_config_lists_equal_the_split():
    cfg = Config.fromfile(FVIT_CONFIG)
    assert tuple(cfg.classes) == OV_COCO_CLASSES and len(OV_COCO_CLASSES) == 65
    assert tuple(cfg.base_classes) == OV_COCO_BASE_CLASSES and len(OV_COCO_BASE_CLASSES) == 48
    assert tuple(cfg.novel_classes) == OV_COCO_NOVEL_CLASSES and len(OV_COCO_NOVEL_CLASSES) == 17
    assert not set(OV_COCO_BASE_CLASSES) & set(OV_COCO_NOVEL_CLASSES)
    assert cfg.default_scope == 'mmdet' and cfg.custom_imports.imports == ['declip_mm']
    head = cfg.model.roi_head.bbox_head
    assert (head.alpha, head.beta, head.clip_temperature) == (0.1, 0.8, 75.0)


def test_loss_step_grads_only_where_intended(detector):
    detector.train()
    tower, text = detector.backbone.visual, detector.roi_head.bbox_head.text_encoder
    assert not tower.training and not text.training  # frozen parts stay in eval mode
    data = detector.data_preprocessor(_batch(), True)
    losses = detector(**data, mode='loss')
    loss, _ = detector.parse_losses(losses)
    assert torch.isfinite(loss)
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox'} <= set(losses)
    loss.backward()
    frozen = {id(p) for p in list(tower.parameters()) + list(text.parameters())}
    assert all(p.grad is None and not p.requires_grad for p in tower.parameters())
    assert all(p.grad is None and not p.requires_grad for p in text.parameters())
    trained = [(n, p) for n, p in detector.named_parameters() if id(p) not in frozen]
    assert any(n.startswith('backbone.resampler.') for n, _ in trained)
    for n, p in trained:
        assert p.requires_grad and p.grad is not None and torch.isfinite(p.grad).all(), n
    assert detector.roi_head.bbox_head.logit_scale.grad.abs() > 0


def _ensemble_reference(head, region, clip, base_mask):
    """F-ViT (fvit_head.py): softmax(τ_det cos) ^ (1 - a) · softmax(τ_clip cos) ^ a, a = α / β."""
    text = head.class_embeddings().double()
    p_det = (F.normalize(region.double(), dim=-1) @ text.t() * float(head.logit_scale)).softmax(-1)
    p_clip = (F.normalize(clip.double(), dim=-1) @ text.t() * head.clip_temperature).softmax(-1)
    a = torch.where(base_mask, torch.tensor(head.alpha).double(), torch.tensor(head.beta).double())
    return p_det ** (1 - a) * p_clip ** a


def test_ensemble_and_training_mask_match_formula(detector):
    from mmdet.models.roi_heads.bbox_heads import ConvFCBBoxHead
    head = detector.roi_head.bbox_head
    with torch.no_grad():
        head.logit_scale.fill_(7.0)
    x = torch.randn(5, 32, 7, 7)
    clip = torch.randn(5, head.embed_dim)
    for vocab, base in [(None, None), (['zebra', 'cat', ['dog', 'puppy'], 'cup'], OV_COCO_BASE_CLASSES)]:
        if vocab is not None:
            head.set_vocabulary(vocab, base)
        head.eval()
        with torch.no_grad():
            region, _ = ConvFCBBoxHead.forward(head, x)
            scores, deltas = head(x, clip)
            det_only, _ = head(x)
        mask = head.base_mask
        assert scores.shape == (5, head.num_classes + 1) and deltas.shape == (5, 4)
        ref = _ensemble_reference(head, region, clip, mask)
        assert torch.allclose(scores.double(), ref, rtol=1e-5, atol=1e-7)
        assert torch.allclose(det_only.sum(-1), torch.ones(5))  # no CLIP map: the detector's softmax
        head.train()
        logits, _ = head(x)
        assert torch.isinf(logits[:, ~mask]).all() and torch.isfinite(logits[:, mask]).all()
    # vocabulary 2: zebra base, cat / dog / cup novel, background base; synonyms averaged
    assert mask.tolist() == [True, False, False, False, True]
    te = head.text_encoder
    dog = F.normalize(te([['dog', 'puppy']]).mean(0), dim=0)
    assert torch.allclose(head.class_embeddings()[2], dog, atol=1e-6)


def test_predict_with_a_test_time_vocabulary(detector):
    vocab = ['zebra', 'cat', ['dog', 'puppy']]
    detector.set_vocabulary(vocab, base_classes=OV_COCO_BASE_CLASSES)
    assert detector.vocabulary == ['zebra', 'cat', 'dog']
    detector.eval()
    seen = []
    head = detector.roi_head.bbox_head
    head.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    preds = detector.test_step(_batch())
    assert seen and seen[0] is not None and seen[0].shape[1] == head.embed_dim  # CLIP RoI feats
    for p in preds:
        inst = p.pred_instances
        assert len(inst) > 0
        assert int(inst.labels.max()) < 3 and int(inst.labels.min()) >= 0
        assert inst.label_names == [vocab[i] if isinstance(vocab[i], str) else vocab[i][0]
                                    for i in inst.labels.tolist()]
        assert float(inst.scores.min()) >= 0 and float(inst.scores.max()) <= 1
        assert float(inst.bboxes.min()) >= 0 and float(inst.bboxes.max()) <= 128  # rescaled


@pytest.mark.parametrize('kwargs, match', [
    (dict(reg_class_agnostic=False), 'reg_class_agnostic=True'),
    (dict(num_classes=3), 'contradicts'),
    (dict(alpha=1.5), 'alpha must be in'),
    (dict(classes=[]), 'non-empty'),
    (dict(classes=['cat', '']), 'non-empty name'),
    (dict(base_classes=['not a class']), 'none of base_classes'),
])
def test_bbox_head_bad_config(tiny_cfg, kwargs, match):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = dict(tiny_cfg.model.roi_head.bbox_head)
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MODELS.build(cfg)


def test_ov_coco_fixture_layout(tmp_path):
    root = write_ov_coco_fixture(str(tmp_path / 'coco'), num_train=3, num_val=2)
    train = json.load(open(osp.join(root, OV_COCO_TRAIN_ANN)))
    val = json.load(open(osp.join(root, OV_COCO_VAL_ANN)))
    id2name = {c['id']: c['name'] for c in val['categories']}
    assert len(train['categories']) == len(val['categories']) == 65
    assert {id2name[a['category_id']] for a in train['annotations']} <= set(OV_COCO_BASE_CLASSES)
    assert {id2name[a['category_id']] for a in val['annotations']} & set(OV_COCO_NOVEL_CLASSES)
    for split, js in (('train2017', train), ('val2017', val)):
        for im in js['images']:
            from PIL import Image
            with Image.open(osp.join(root, split, im['file_name'])) as img:
                assert img.size == (im['width'], im['height'])
    with pytest.raises(ValueError, match='not OV-COCO classes'):
        write_ov_coco_fixture(str(tmp_path / 'bad'), val_classes=['traffic light'])


def test_train_and_test_tools_on_fixture(tmp_path):
    """tools/train.py (training iterations + OV-COCO evaluation) and tools/test.py on its checkpoint."""
    import importlib.util
    root = write_ov_coco_fixture(str(tmp_path / 'coco'), num_train=2, num_val=1)
    cfg_path = write_tiny_fvit_config(str(tmp_path / 'tiny_fvit.py'), root, str(tmp_path / 'work'))
    tools = osp.join(osp.dirname(FVIT_CONFIG), '..', '..', 'tools')

    def load(name):
        spec = importlib.util.spec_from_file_location(f'declip_tool_{name}', osp.join(tools, f'{name}.py'))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    runner = load('train').main([cfg_path])
    assert type(runner.model).__name__ == 'DeCLIPFViT' and runner.iter == 1
    ckpt = osp.join(str(tmp_path / 'work'), 'epoch_1.pth')
    assert osp.isfile(ckpt)
    from declip_mm.apis.checkpoints import apply_test_checkpoint
    cfg = Config.fromfile(cfg_path)
    assert apply_test_checkpoint(cfg, ckpt) == 'segmentor' and cfg.load_from == ckpt  # whole model
    metrics = load('test').main([cfg_path, ckpt, '--work-dir', str(tmp_path / 'test')])
    # the trained detector with another vocabulary, given in the config at test time (only the
    # class list changes; no weight depends on it, so the checkpoint loads strictly)
    from mmdet.registry import MODELS
    from mmengine.runner import load_checkpoint
    init_default_scope('mmdet')
    vocab = ['zebra', 'traffic cone', ['dog', 'puppy']]
    cfg.merge_from_dict({'model.roi_head.bbox_head.classes': vocab,
                         'model.roi_head.bbox_head.base_classes': list(OV_COCO_BASE_CLASSES)})
    model = MODELS.build(cfg.model)
    from declip_mm.utils import mmengine_checkpoint_loading
    with mmengine_checkpoint_loading():   # a training checkpoint (message hub): the tools' loader
        load_checkpoint(model, ckpt, map_location='cpu', strict=True)
    assert model.roi_head.bbox_head.base_mask.tolist() == [True, False, False, True]
    inst = model.eval().test_step(_batch(n=1))[0].pred_instances
    assert len(inst) > 0 and int(inst.labels.max()) < 3
    assert set(inst.label_names) <= {'zebra', 'traffic cone', 'dog'}
    # the values of these numbers are pinned on oracle detections below
    assert {'coco/base_ap50', 'coco/novel_ap50', 'coco/bbox_mAP_50'} <= set(metrics)


def test_test_tool_ov_coco_numbers_on_oracle_detections(tmp_path, monkeypatch):
    """tools/test.py's OV-COCO numbers on detections whose answers are known by hand: the GT boxes
    of the val json with their own classes give AP50 = 1 for base and novel classes; the same boxes
    with every novel box relabelled to a base class (at a lower score) give novel AP50 = 0 and still
    base AP50 = 1 (the relabelled boxes rank below every true box of that class)."""
    import importlib.util

    from declip_mm.models.detectors.fvit_detector import DeCLIPFViT
    root = write_ov_coco_fixture(str(tmp_path / 'coco'), num_train=1, num_val=2)
    cfg_path = write_tiny_fvit_config(str(tmp_path / 'tiny_fvit.py'), root, str(tmp_path / 'work'))
    val = json.load(open(osp.join(root, OV_COCO_VAL_ANN)))
    names = {c['id']: c['name'] for c in val['categories']}
    # the dataset's label order: the json's categories that are OV-COCO classes, in json order
    label_of = {c['id']: i for i, c in enumerate(cat for cat in val['categories']
                                                if cat['name'] in OV_COCO_CLASSES)}
    novel = {i for cid, i in label_of.items() if names[cid] in OV_COCO_NOVEL_CLASSES}
    assert novel & {label_of[a['category_id']] for a in val['annotations']}  # novel GT present
    a_base = min(i for i in label_of.values() if i not in novel)

    def oracle(relabel_novel):
        def predict(self, batch_inputs, batch_data_samples, rescale=True):
            for ds in batch_data_samples:
                anns = [a for a in val['annotations'] if a['image_id'] == ds.img_id]
                boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in
                                      (a['bbox'] for a in anns)], dtype=torch.float32)
                labels = torch.tensor([label_of[a['category_id']] for a in anns])
                scores = torch.ones(len(anns))
                if relabel_novel:
                    moved = torch.tensor([int(v) in novel for v in labels], dtype=torch.bool)
                    labels[moved] = a_base
                    scores[moved] = 0.5
                ds.pred_instances = InstanceData(bboxes=boxes, labels=labels, scores=scores)
            return batch_data_samples
        return predict

    spec = importlib.util.spec_from_file_location(
        'declip_tool_test', osp.join(osp.dirname(FVIT_CONFIG), '..', '..', 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    for relabel, (base, nov) in ((False, (1.0, 1.0)), (True, (1.0, 0.0))):
        monkeypatch.setattr(DeCLIPFViT, 'predict', oracle(relabel))
        metrics = test_tool.main([cfg_path, '--work-dir', str(tmp_path / f'test_{relabel}'),
                                  '--allow-untrained-head'])   # predict is the oracle
        assert metrics['coco/base_ap50'] == pytest.approx(base, abs=1e-3), relabel
        assert metrics['coco/novel_ap50'] == pytest.approx(nov, abs=1e-3), relabel


def test_detection_parts_registered_in_mmdet_without_clash():
    import mmdet.models  # noqa: F401  (mmdet's own names first)
    from mmdet.registry import MODELS

    import declip_mm
    assert declip_mm.MMDET_REGISTERED
    for name in ('DeCLIPFViT', 'DeCLIPOVRoIHead', 'DeCLIPOVBBoxHead', 'DeCLIPVisionTransformer',
                 'SimplePyramidResampler'):
        assert MODELS.get(name).__module__.startswith('declip_mm'), name
    for stock in ('FPN', 'StandardRoIHead', 'ConvFCBBoxHead', 'TwoStageDetector', 'FasterRCNN'):
        assert MODELS.get(stock).__module__.startswith('mmdet'), stock
