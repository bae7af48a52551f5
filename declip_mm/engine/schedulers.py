"""Learning-rate schedule of the DeCLIP / CLIPSelf training scripts (open_clip's ``cosine_lr``).

At optimiser step t (0-based) of T in all: ``lr = base * (t + 1) / W`` during the first W warm-up
steps, then ``lr = base * (1 + cos(pi * (t - W) / (T - W))) / 2``, reaching 0 at the end. With
``by_epoch=True, convert_to_iter_based=True`` the end is given in epochs and converted with the real
number of iterations per epoch; ``warmup_iters`` is always in iterations.
"""
from __future__ import annotations

import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmseg.registry import PARAM_SCHEDULERS

__all__ = ['DeCLIPWarmupCosineLR', 'warmup_cosine_factor']


def warmup_cosine_factor(t: int, total: int, warmup: int) -> float:
    if warmup > 0 and t < warmup:
        return (t + 1) / warmup
    span = max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(t - warmup, span) / span))


class _WarmupCosine(_ParamScheduler):

    def __init__(self, optimizer, param_name: str, warmup_iters: int = 1000, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = False,
                 verbose: bool = False) -> None:
        if end == INF:
            raise ValueError('DeCLIPWarmupCosineLR needs a finite end')
        self.warmup_iters = int(warmup_iters)
        super().__init__(optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, begin=0, end=INF, by_epoch=True, epoch_length=None,
                              **kwargs):
        assert by_epoch and epoch_length, 'convert_to_iter_based needs by_epoch=True'
        end = int(end * epoch_length) if end != INF else end
        return cls(*args, begin=int(begin * epoch_length), end=end, by_epoch=False, **kwargs)

    def _get_value(self) -> list:
        total = self.end - self.begin
        f = warmup_cosine_factor(self.last_step, total, self.warmup_iters)
        return [base * f for base in self.base_values]


@PARAM_SCHEDULERS.register_module()
class DeCLIPWarmupCosineLR(LRSchedulerMixin, _WarmupCosine):
    """Linear warm-up then cosine to 0 (see module doc)."""
