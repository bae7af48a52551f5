"""Issue 24.7: ``tools/train.py --resume`` (no path) resumes from the work dir's own checkpoints:
a copied work dir from its copy (not the absolute path its ``last_checkpoint`` file holds), and a
last checkpoint cut short falls back to the previous one with a warning naming both.

Before: mmengine's ``find_latest_checkpoint`` returned the original's absolute path, and a truncated
last checkpoint failed the resume."""
import shutil

import pytest
import torch
from mmengine.runner.checkpoint import find_latest_checkpoint
from tf_helpers import load_tool
from train_helpers import TINY_CFG

train_tool = load_tool('train')


def _work_dir(path, epochs=(1, 2)):
    """A work dir as mmengine's CheckpointHook leaves it: epoch_N.pth and last_checkpoint holding
    the absolute path of the last one."""
    path.mkdir(parents=True)
    for e in epochs:
        torch.save({'meta': {'epoch': e}, 'state_dict': {'w': torch.full((4, ), float(e))}},
                   path / f'epoch_{e}.pth')
    (path / 'last_checkpoint').write_text(str(path / f'epoch_{epochs[-1]}.pth'))
    (path / 'declip_epoch_2.pth').write_bytes(b'')   # an export, not a training checkpoint
    return path


def _resumed_from(work_dir):
    """What tools/train.py --resume loads: cfg.load_from, else mmengine's own choice."""
    args = train_tool.parse_args([TINY_CFG, '--work-dir', str(work_dir), '--resume'])
    cfg = train_tool.build_cfg(args)
    assert cfg.resume is True
    return cfg.load_from or find_latest_checkpoint(cfg.work_dir)


def test_copied_work_dir_resumes_from_its_own_checkpoint(tmp_path):
    orig = _work_dir(tmp_path / 'orig')
    copy = tmp_path / 'copy'
    shutil.copytree(orig, copy)
    assert _resumed_from(copy) == str(copy / 'epoch_2.pth')
    from declip_mm.engine.resume import resolve_auto_resume
    path, notes = resolve_auto_resume(str(copy))
    assert path == str(copy / 'epoch_2.pth')
    assert notes and f'names {orig / "epoch_2.pth"}, outside this work dir' in notes[0]
    shutil.rmtree(orig)                          # the original may be gone: nothing changes
    assert _resumed_from(copy) == str(copy / 'epoch_2.pth')


def test_truncated_last_checkpoint_falls_back_to_the_previous_one(tmp_path):
    wd = _work_dir(tmp_path / 'wd', epochs=(1, 2, 3))
    full = (wd / 'epoch_3.pth').read_bytes()
    (wd / 'epoch_3.pth').write_bytes(full[:len(full) // 2])     # killed while saving
    assert _resumed_from(wd) == str(wd / 'epoch_2.pth')
    from declip_mm.engine.resume import checkpoint_problem, resolve_auto_resume
    assert 'truncated' in checkpoint_problem(str(wd / 'epoch_3.pth'))
    assert checkpoint_problem(str(wd / 'epoch_2.pth')) is None
    path, notes = resolve_auto_resume(str(wd))
    assert path == str(wd / 'epoch_2.pth')
    assert str(wd / 'epoch_3.pth') in notes[-1] and notes[-1].endswith(str(wd / 'epoch_2.pth'))
    # the fallback is a real checkpoint of the previous epoch
    assert torch.load(path, weights_only=True)['meta']['epoch'] == 2
    (wd / 'epoch_2.pth').write_bytes(b'')                         # empty: one further back
    path, notes = resolve_auto_resume(str(wd))
    assert path == str(wd / 'epoch_1.pth') and 'empty file' in notes[-1]
    for e in (1, 2, 3):
        (wd / f'epoch_{e}.pth').write_bytes(b'')
    with pytest.raises(RuntimeError, match=r'no readable checkpoint in .*epoch_3\.pth: empty file'):
        resolve_auto_resume(str(wd))


def test_fresh_work_dir_still_starts_from_scratch(tmp_path):
    from declip_mm.engine.resume import resolve_auto_resume
    assert resolve_auto_resume(str(tmp_path / 'new')) == (None, [])
    assert _resumed_from(tmp_path / 'new') is None
