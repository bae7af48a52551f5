import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from runner_toys import toy_runner_cfg

from declip_mm.testing import tiny_clip_config
from declip_mm.utils import mmengine_checkpoint_loading


def _assert_not_globally_allowed():
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = torch.serialization.get_safe_globals()
    assert HistoryBuffer not in allowed and getattr not in allowed


def _run(cfg_dict, **overrides):
    cfg = Config(copy.deepcopy(cfg_dict))
    cfg.merge_from_dict(overrides)
    runner = Runner.from_cfg(cfg)
    with mmengine_checkpoint_loading():   # what tools/train.py runs runner.train() in
        runner.train()
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}, runner


def test_resume_after_interrupt_reaches_same_weights(tmp_path):
    backbone = dict(type='DeCLIPVisionTransformer', model_name=tiny_clip_config('eva02'),
                    attn_mode='csa')
    full_cfg = toy_runner_cfg(tmp_path / 'full', backbone, max_iters=8, interval=4)
    full, _ = _run(full_cfg, experiment_name='full')
    ckpt = tmp_path / 'full' / 'iter_4.pth'
    assert ckpt.exists()

    # the training checkpoint really needs the allow-list: plain torch.load stays strict
    with pytest.raises(Exception, match='Weights only load failed'):
        torch.load(ckpt)
    _assert_not_globally_allowed()

    # "interrupted" run: same config, resumed from the iteration-4 checkpoint
    resumed_cfg = toy_runner_cfg(tmp_path / 'resumed', backbone, max_iters=8, interval=4)
    resumed, runner = _run(resumed_cfg, experiment_name='resumed', load_from=str(ckpt),
                           resume=True)
    assert runner.iter == 8
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    # and it really trained: weights moved away from the iteration-4 checkpoint
    from mmengine.runner import load_checkpoint  # noqa: F401  (same loader path)
    mid = torch.load(ckpt, weights_only=False)['state_dict']
    assert any(not torch.equal(mid[k], full[k]) for k in full)
    _assert_not_globally_allowed()


def test_load_checkpoint_weights_only_api(tmp_path):
    """mmengine's load_checkpoint (used by load_from / init_model) reads training checkpoints."""
    from mmengine.runner import load_checkpoint
    backbone = dict(type='DeCLIPVisionTransformer', model_name=tiny_clip_config('openai'))
    _, runner = _run(toy_runner_cfg(tmp_path, backbone, max_iters=4, interval=2),
                     experiment_name='lc')
    model = runner.model
    with pytest.raises(Exception, match='Weights only load failed'):   # outside the block: strict
        load_checkpoint(model, str(tmp_path / 'iter_2.pth'), map_location='cpu')
    with mmengine_checkpoint_loading():
        ckpt = load_checkpoint(model, str(tmp_path / 'iter_2.pth'), map_location='cpu')
    assert 'message_hub' in ckpt and 'optimizer' in ckpt
