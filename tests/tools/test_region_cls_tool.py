import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from region_cls_helpers import write_fixture
from tf_helpers import ROOT, load_tool

from declip_mm.models.backbones.clip_towers import resolve_clip_config
from declip_mm.testing import tiny_clip_config

test_tool = load_tool('test')
RC_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'region_cls', '*.py')))
KEYS = {f'region_cls/{f}.{s}.macc{k}' for f in ('rois', 'maskpool', 'crops')
        for s in ('thing', 'stuff') for k in (1, 5)}


def _tiny_options(tmp_path, root):
    js = tmp_path / 'tiny_eva02.json'
    js.write_text(json.dumps(tiny_clip_config('eva02')))
    return [f'model.backbone.model_name={js}', f'model.text_encoder.model_name={js}',
            'model.backbone.pretrained=None', 'model.text_encoder.pretrained=None',
            'model.text_encoder.templates=single', f'test_dataloader.dataset.data_root={root}',
            'test_dataloader.num_workers=0', 'test_dataloader.batch_size=2',
            'test_dataloader.dataset.pipeline.0.image_size=64',
            'test_dataloader.dataset.pipeline.0.patch_size=8',
            'test_dataloader.dataset.pipeline.0.crop_size=32',
            'test_dataloader.dataset.pipeline.1.size=64']


def test_three_configs_follow_the_protocol():
    assert [osp.basename(c) for c in RC_CONFIGS] == [
        'region-cls_eva02-b16_coco-panoptic-560.py', 'region-cls_eva02-l14-336_coco-panoptic-560.py',
        'region-cls_openai-vitb16_coco-panoptic-560.py']
    for path in RC_CONFIGS:
        cfg = Config.fromfile(path)
        vis = resolve_clip_config(cfg.model.backbone.model_name)['vision_cfg']
        load, box, _ = cfg.test_dataloader.dataset.pipeline
        patch = vis.get('patch_size') or (14 if '14' in cfg.model.backbone.model_name else 16)
        assert (load.image_size, box.size) == (560, 560)
        assert load.patch_size == patch and load.crop_size == vis['image_size']
        assert (load.min_size, load.max_size, load.thing_crop_scale) == (8, 1024, 1.5)
        assert cfg.model.text_encoder.templates == 'vild_hand_craft'
        assert cfg.model.text_encoder.model_name == cfg.model.backbone.model_name
        assert cfg.test_dataloader.dataset.ann_file == 'annotations/panoptic_val2017.json'


def test_test_tool_runs_region_classification(tmp_path, monkeypatch):
    """tools/test.py with the config's classifier whose tower is the stub of region_cls_helpers
    (features a known function of the pixel colours) and identity class embeddings: the printed
    accuracies are the hand-derived answers of the fixture (region_cls_helpers.EXPECTED)."""
    from region_cls_helpers import EXPECTED, StubTower

    from declip_mm.models import DeCLIPRegionClassifier
    root = write_fixture(tmp_path / 'data')
    build = DeCLIPRegionClassifier.__init__

    def with_stub(self, *args, **kwargs):
        build(self, *args, **kwargs)
        self.backbone = StubTower()
        self.class_embeddings = lambda names: torch.eye(len(names))

    monkeypatch.setattr(DeCLIPRegionClassifier, '__init__', with_stub)
    monkeypatch.setattr(StubTower, 'init_weights', lambda self: None, raising=False)
    metrics = test_tool.main([RC_CONFIGS[0], '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                              *_tiny_options(tmp_path, root)])
    assert set(metrics) == KEYS
    for k, v in EXPECTED.items():
        assert metrics[f'region_cls/{k}'] == pytest.approx(v, abs=1e-9), k


def test_checkpoint_of_another_mode_is_refused(tmp_path):
    from declip_mm.models import DeCLIPVisionTransformer
    root = write_fixture(tmp_path / 'data')
    opts = _tiny_options(tmp_path, root)
    bb = DeCLIPVisionTransformer(tiny_clip_config('eva02'))
    ckpt = tmp_path / 'declip_csa.pth'
    sd = {'visual.' + k: v for k, v in bb.visual.state_dict().items()}
    torch.save({'state_dict': sd, 'meta': {'attn_mode': 'csa'}}, ckpt)
    args = [RC_CONFIGS[0], str(ckpt), '--work-dir', str(tmp_path / 'wd'), '--cfg-options', *opts]
    # a csa checkpoint run in qq drops its K branch: refused (docs/method.md, allowed mode pairs)
    with pytest.raises(ValueError, match="trained with attn_mode='csa'.*attn_mode='qq'"):
        test_tool.main(args + ['model.backbone.attn_mode=qq'])
    metrics = test_tool.main(args)
    assert set(metrics) == KEYS


def test_declip_training_validates_with_region_classification(tmp_path):
    """The tiny DeCLIP training config + configs/_base_/region_cls_val.py: after each epoch the
    student classifies the fixture's regions; checkpoints hold no region_eval weights."""
    from mmengine.runner import Runner
    from train_helpers import TINY_CFG, write_images

    from declip_mm.tools_support import fresh_visualizer
    imgs = write_images(tmp_path / 'imgs', n=4)
    root = write_fixture(tmp_path / 'data')
    cfg = Config.fromfile(TINY_CFG)
    cfg.merge_from_dict(Config.fromfile(
        osp.join(ROOT, 'configs', '_base_', 'region_cls_val.py')).to_dict())
    cfg.merge_from_dict({
        'work_dir': str(tmp_path / 'wd'), 'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1,
        'param_scheduler.0.end': 1, 'train_dataloader.dataset.data_root': imgs,
        'model.region_eval.text_encoder.templates': 'single',
        'val_dataloader.dataset.data_root': root, 'val_dataloader.num_workers': 0,
        'val_dataloader.dataset.pipeline.0.image_size': 64,
        'val_dataloader.dataset.pipeline.0.patch_size': 8,
        'val_dataloader.dataset.pipeline.0.crop_size': 32,
        'val_dataloader.dataset.pipeline.1.size': 64})
    runner = Runner.from_cfg(fresh_visualizer(cfg))
    runner.train()
    (scalars, ) = glob.glob(str(tmp_path / 'wd' / '*' / 'vis_data' / 'scalars.json'))
    val = [json.loads(line) for line in open(scalars) if 'region_cls/rois.thing.macc1' in line]
    assert len(val) == 1 and KEYS <= set(val[0])
    from declip_mm.apis import mmengine_safe_torch_load
    ckpt = mmengine_safe_torch_load(str(tmp_path / 'wd' / 'epoch_1.pth'))
    assert not any(k.startswith('region_eval.') for k in ckpt['state_dict'])
    # validation ran on the alpha-merged student, i.e. the tower exported after the epoch
    export = mmengine_safe_torch_load(str(tmp_path / 'wd' / 'declip_epoch_1.pth'))['state_dict']
    tower = runner.model.val_tower()
    assert tower is not runner.model.student
    for k, v in tower.visual.state_dict().items():
        assert torch.allclose(v, export['visual.' + k], atol=1e-6), k


def test_test_tool_under_a_ddp_wrapper(tmp_path, monkeypatch):
    """--launcher pytorch wraps the classifier in DistributedDataParallel (a one-process gloo group
    here, created in-process: cheap); DDP refuses a module with no trainable parameter."""
    import torch.distributed as dist
    root = write_fixture(tmp_path / 'data')
    for k, v in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1').items():
        monkeypatch.setenv(k, v)
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "pg"}', rank=0, world_size=1)
    try:
        metrics = test_tool.main([RC_CONFIGS[0], '--work-dir', str(tmp_path / 'wd'), '--launcher',
                                  'pytorch', '--cfg-options', *_tiny_options(tmp_path, root)])
    finally:
        dist.destroy_process_group()
    assert set(metrics) == KEYS
