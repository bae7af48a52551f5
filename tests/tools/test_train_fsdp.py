"""FSDP (DeCLIPFSDPStrategy + FlexibleRunner) on two CPU processes (gloo) against DDP."""
import json
import os
import shutil
import socket
import subprocess
import sys

import torch
from train_helpers import ROOT, assert_same_weights, student_weights, train_args, write_images


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _torchrun(work_dir, data, *extra, epochs=2):
    args = train_args(work_dir, data, epochs=epochs, batch=2)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', str(_free_port()), 'tools/train.py', *args[:1], *extra, *args[1:],
           '--launcher', 'pytorch']
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _losses(work_dir):
    (path, ) = [os.path.join(d, f) for d, _, fs in os.walk(work_dir) for f in fs
                if f == 'scalars.json']
    rows = [json.loads(line) for line in open(path)]
    return [r['loss'] for r in rows if 'loss' in r], [r['step'] for r in rows if 'loss' in r]


def test_fsdp_matches_ddp_resumes_and_exports_the_same_tower(tmp_path):
    data = write_images(tmp_path / 'imgs', n=8)
    _torchrun(tmp_path / 'ddp', data)
    r = _torchrun(tmp_path / 'fsdp', data, '--strategy', 'fsdp')
    assert 'FlexibleRunner' in r.stdout + r.stderr or (tmp_path / 'fsdp' / 'epoch_2.pth').exists()
    # the same loss curve (4 iterations, 2 x 2 images per step)
    ddp_loss, ddp_steps = _losses(tmp_path / 'ddp')
    fsdp_loss, fsdp_steps = _losses(tmp_path / 'fsdp')
    assert ddp_steps == fsdp_steps == [1, 2, 3, 4]
    assert torch.allclose(torch.tensor(fsdp_loss), torch.tensor(ddp_loss), rtol=1e-4, atol=1e-6)
    # an ordinary full checkpoint, the same student as DDP's
    a = student_weights(tmp_path / 'ddp' / 'epoch_2.pth')
    b = student_weights(tmp_path / 'fsdp' / 'epoch_2.pth')
    assert_same_weights(a, b, rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(a[k], student_weights(tmp_path / 'ddp' / 'epoch_1.pth')[k])
               for k in a)  # training moved the weights
    # the merge/export hook gathered the full tower under FSDP
    ea = torch.load(tmp_path / 'ddp' / 'declip_epoch_2.pth', weights_only=True)
    eb = torch.load(tmp_path / 'fsdp' / 'declip_epoch_2.pth', weights_only=True)
    assert ea['meta']['attn_mode'] == eb['meta']['attn_mode'] == 'csa'
    assert_same_weights(ea['state_dict'], eb['state_dict'], rtol=1e-4, atol=1e-6)
    # resume: FSDP from its own epoch-1 checkpoint (optimizer and scheduler state) to epoch 2
    cut = tmp_path / 'cut'
    cut.mkdir()
    shutil.copy(tmp_path / 'fsdp' / 'epoch_1.pth', cut / 'epoch_1.pth')
    (cut / 'last_checkpoint').write_text(str(cut / 'epoch_1.pth'))
    _torchrun(cut, data, '--strategy', 'fsdp', '--resume')
    assert_same_weights(b, student_weights(cut / 'epoch_2.pth'), atol=1e-7)


def test_strategy_flag_builds_a_flexible_runner_config():
    from tf_helpers import load_tool
    train = load_tool('train')
    cfg_path = os.path.join(ROOT, 'configs', 'declip', 'declip_vitb_dinov2.py')
    cfg = train.build_cfg(train.parse_args([cfg_path, '--strategy', 'fsdp']))
    assert cfg.runner_type == 'FlexibleRunner' and cfg.strategy.type == 'DeCLIPFSDPStrategy'
    assert 'model_wrapper_cfg' not in cfg
    cfg = train.build_cfg(train.parse_args([cfg_path]))
    assert 'strategy' not in cfg and cfg.get('runner_type') is None


def test_fsdp_refuses_frozen_rows_of_fused_projection():
    import pytest

    from declip_mm.engine import DeCLIPFSDPStrategy
    s = DeCLIPFSDPStrategy()
    model = torch.nn.Linear(2, 2)
    model.frozen_slices = [('w', slice(0, 1))]
    with pytest.raises(NotImplementedError, match='fused in_proj'):
        s._wrap_model(model)
