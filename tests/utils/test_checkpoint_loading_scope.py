"""Issue 22.7: the weights-only allow-list for mmengine training checkpoints applies inside
``mmengine_checkpoint_loading()`` (and after the explicit opt-in) only."""
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import CheckpointLoader

from declip_mm.utils import mmengine_checkpoint_loading, register_mmengine_safe_globals


def _training_checkpoint(path, value=1.0):
    """What Runner.save_checkpoint writes: meta, state_dict and a message hub of HistoryBuffers."""
    hub = MessageHub(f'scope_test_{path.name}')
    hub.update_scalar('train/loss', 0.5)
    torch.save({'meta': {'epoch': 1}, 'state_dict': {'w': torch.full((2, ), value)},
                'message_hub': hub.state_dict()}, path)
    return str(path)


def test_allow_list_only_inside_the_block(tmp_path):
    ckpt = _training_checkpoint(tmp_path / 'epoch_1.pth')
    original = CheckpointLoader._schemes['']
    with pytest.raises(Exception, match='Weights only load failed'):
        CheckpointLoader.load_checkpoint(ckpt, map_location='cpu')
    with mmengine_checkpoint_loading():
        assert CheckpointLoader._schemes[''] is not original
        with mmengine_checkpoint_loading():   # nested: a no-op
            pass
        got = CheckpointLoader.load_checkpoint(ckpt, map_location='cpu')
        assert torch.equal(got['state_dict']['w'], torch.ones(2)) and 'message_hub' in got
    assert CheckpointLoader._schemes[''] is original
    with pytest.raises(Exception, match='Weights only load failed'):
        CheckpointLoader.load_checkpoint(ckpt, map_location='cpu')
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = torch.serialization.get_safe_globals()
    assert HistoryBuffer not in allowed and getattr not in allowed


def test_loader_restored_when_the_block_raises(tmp_path):
    bad = _training_checkpoint(tmp_path / 'epoch_2.pth', value=float('nan'))
    original = CheckpointLoader._schemes['']
    with pytest.raises(ValueError, match=r"epoch_2\.pth' holds non-finite"):
        with mmengine_checkpoint_loading():
            CheckpointLoader.load_checkpoint(bad, map_location='cpu')
    assert CheckpointLoader._schemes[''] is original


def test_explicit_opt_in_is_process_wide_and_idempotent(tmp_path):
    ckpt = _training_checkpoint(tmp_path / 'epoch_3.pth')
    original = CheckpointLoader._schemes['']
    try:
        register_mmengine_safe_globals()
        wrapped = CheckpointLoader._schemes['']
        register_mmengine_safe_globals()
        assert CheckpointLoader._schemes[''] is wrapped is not original
        assert 'message_hub' in CheckpointLoader.load_checkpoint(ckpt, map_location='cpu')
        with mmengine_checkpoint_loading():   # inside the opt-in: leaves it in place
            pass
        assert CheckpointLoader._schemes[''] is wrapped
    finally:
        CheckpointLoader.register_scheme(prefixes='', loader=original, force=True)
