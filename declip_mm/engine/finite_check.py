"""Stop a run whose weights became non-finite, before they reach a checkpoint.

The distiller refuses a non-finite *loss* before the optimizer step; this hook covers the other way
a run diverges: a step whose loss was finite but whose update left NaN / Inf in the weights (a huge
learning rate, an overflow in the optimizer). Without it the bad weights are written to the next
``epoch_N.pth`` / ``declip_epoch_N.pth`` and the following step fails with a non-finite loss, after
the damage is on disk.

Parameters are checked (not gradients: with AMP's dynamic loss scaling, Inf gradients are normal and
the step is skipped).
"""
from __future__ import annotations

from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS
from ..utils.finite import last_checkpoint_note, nonfinite_tensors

__all__ = ['DeCLIPFiniteWeightsHook']


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class DeCLIPFiniteWeightsHook(Hook):
    """Check the trainable weights after every ``interval``-th optimizer step, and every checkpoint
    before mmengine writes it.

    On NaN / Inf the run stops with a ``FloatingPointError`` naming the tensors and the last good
    checkpoint (``work_dir/last_checkpoint``); nothing from the bad step is saved. Runs before
    mmengine's ``CheckpointHook`` and declip_mm's merge/export hook (priority ``ABOVE_NORMAL``).

    Args:
        interval (int): check the parameters every N iterations. Checkpoints are always checked.
            Defaults to 1 (the check is one reduction per tensor, small next to a training step).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if int(interval) < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = int(interval)

    def before_train(self, runner) -> None:
        # the distiller names the last good checkpoint in its non-finite-loss message
        _unwrap(runner.model).last_checkpoint_dir = runner.work_dir

    def _fail(self, runner, bad, when: str) -> None:
        shown = ', '.join(bad[:8]) + (f' ... (+{len(bad) - 8} more)' if len(bad) > 8 else '')
        raise FloatingPointError(
            f'non-finite weights {when}: {len(bad)} tensor(s) hold NaN/Inf ({shown}). The update '
            'diverged (the learning rate is likely too high for this run); nothing from this step '
            f'was saved. {last_checkpoint_note(runner.work_dir)}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        model = _unwrap(runner.model)
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        bad = nonfinite_tensors(params)
        if bad:
            self._fail(runner, bad, f'after the optimizer step of iteration {runner.iter + 1} '
                       f'(epoch {runner.epoch + 1}; its loss was finite)')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = nonfinite_tensors(checkpoint.get('state_dict', {}))
        if bad:
            self._fail(runner, bad, f'in the checkpoint about to be written at iteration '
                       f'{runner.iter}')
