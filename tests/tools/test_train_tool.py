import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from tf_helpers import load_tool
from train_helpers import ROOT, assert_same_weights, latest, student_weights, train_args, write_images

train_tool = load_tool('train')


def _scalars(work_dir):
    (path, ) = [os.path.join(d, f) for d, _, fs in os.walk(work_dir) for f in fs
                if f == 'scalars.json']
    return [json.loads(line) for line in open(path)]


def _content_cos(model, dataset):
    """Mean cosine between student region features and teacher crop embeddings on images 0, 1."""
    from mmengine.dataset import pseudo_collate
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]))['inputs']
        return 1 - model.loss(data)['loss_content'].item()


def test_thirty_iterations_lower_the_loss_and_export(tmp_path):
    from mmengine.runner import Runner
    data = write_images(tmp_path / 'imgs', n=10)
    args = train_tool.parse_args(train_args(tmp_path / 'wd', data, epochs=6))
    import declip_mm  # noqa: F401
    from declip_mm.tools_support import fresh_visualizer
    runner = Runner.from_cfg(fresh_visualizer(train_tool.build_cfg(args)))
    model = runner.model
    model.init_weights()
    dataset = runner.train_dataloader.dataset
    before = _content_cos(model, dataset)
    runner.train()
    assert runner.iter == 30
    after = _content_cos(model, dataset)
    assert after > before + 0.02, (before, after)   # region features moved towards the teacher
    logs = [r for r in _scalars(tmp_path / 'wd') if 'loss' in r]
    assert len(logs) == 30 and {'loss_content', 'loss_context'} <= set(logs[0])
    first = sum(r['loss'] for r in logs[:5]) / 5
    last = sum(r['loss'] for r in logs[-5:]) / 5
    assert last < first * 0.9, (first, last)
    # warm-up + cosine schedule: iteration t uses base * factor(t)
    from declip_mm.engine.schedulers import warmup_cosine_factor
    lrs = [r['lr'] for r in logs]
    for t, lr in enumerate(lrs):
        assert lr == pytest.approx(1e-3 * warmup_cosine_factor(t, 30, 3), rel=1e-6, abs=1e-12)
    # after each epoch: alpha-merged export = 0.7 * student + 0.3 * original
    export = torch.load(tmp_path / 'wd' / 'declip_epoch_6.pth', weights_only=True)
    assert export['meta']['attn_mode'] == 'csa' and export['meta']['alpha'] == 0.7
    student = model.student.visual.state_dict()
    original = model.clip_teacher.visual.state_dict()
    for k, v in export['state_dict'].items():
        name = k[len('visual.'):]
        assert torch.allclose(v, 0.7 * student[name] + 0.3 * original[name], atol=1e-7), k
    exports = sorted(f for f in os.listdir(tmp_path / 'wd') if f.startswith('declip_epoch_'))
    assert exports == [f'declip_epoch_{e}.pth' for e in range(1, 7)]
    # training continued from the unmerged student: it is not the export
    assert not torch.allclose(export['state_dict']['visual.trunk.blocks.0.attn.q_proj.weight'],
                              student['trunk.blocks.0.attn.q_proj.weight'])


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, **kw)


def test_ddp_two_processes_equal_one_process(tmp_path):
    data = write_images(tmp_path / 'imgs', n=8)
    one = _run([sys.executable, 'tools/train.py',
                *train_args(tmp_path / 'one', data, epochs=2, batch=4)])
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                '--master_port', str(_free_port()), 'tools/train.py',
                *train_args(tmp_path / 'two', data, epochs=2, batch=2), '--launcher', 'pytorch'])
    assert two.returncode == 0, two.stderr[-3000:]
    a = student_weights(tmp_path / 'one' / 'epoch_2.pth')
    b = student_weights(tmp_path / 'two' / 'epoch_2.pth')
    assert_same_weights(a, b, rtol=1e-4, atol=1e-6)
    # and training really moved the weights (the comparison is not between two initialisations)
    c = student_weights(tmp_path / 'one' / 'epoch_1.pth')
    assert any(not torch.allclose(a[k], c[k]) for k in a)


def test_kill_and_resume_reaches_same_weights(tmp_path):
    data = write_images(tmp_path / 'imgs', n=8)
    full = _run([sys.executable, 'tools/train.py', *train_args(tmp_path / 'full', data, epochs=4)])
    assert full.returncode == 0, full.stderr[-3000:]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, 'tools/train.py',
                             *train_args(tmp_path / 'cut', data, epochs=4)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / 'cut' / 'last_checkpoint'
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if marker.exists() and 'epoch_' in marker.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest(tmp_path / 'cut') is not None
    assert not (tmp_path / 'cut' / 'epoch_4.pth').exists(), 'killed too late to test a resume'
    resumed = _run([sys.executable, 'tools/train.py',
                    *train_args(tmp_path / 'cut', data, epochs=4)[:1], '--resume',
                    *train_args(tmp_path / 'cut', data, epochs=4)[1:]])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(student_weights(tmp_path / 'full' / 'epoch_4.pth'),
                        student_weights(tmp_path / 'cut' / 'epoch_4.pth'), atol=1e-7)


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    data = write_images(tmp_path / 'imgs', n=4)
    train_tool.main(train_args(tmp_path / 'wd', data, epochs=1))
    ckpt = tmp_path / 'wd' / 'epoch_1.pth'
    before = ckpt.read_bytes()
    with pytest.raises(FloatingPointError, match='non-finite DeCLIP loss') as err:
        train_tool.main(train_args(tmp_path / 'wd', data, 'model.content_loss.loss_weight=nan',
                                   epochs=2)[:1] + ['--resume']
                        + train_args(tmp_path / 'wd', data, 'model.content_loss.loss_weight=nan',
                                     epochs=2)[1:])
    assert f'The last good checkpoint is {ckpt}' in str(err.value)  # issue 14.3: named, and true
    assert ckpt.read_bytes() == before
    assert not (tmp_path / 'wd' / 'epoch_2.pth').exists()
    assert 'epoch_1.pth' in (tmp_path / 'wd' / 'last_checkpoint').read_text()
