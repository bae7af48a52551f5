"""Backbone features shared by benchmarks that see the same images (issue 15, item 3).

VOC21/VOC20, Context60/Context59 and COCO-Object/COCO-Stuff read the same image files through the
same resize, so the windows their segmentors feed to the backbone are identical tensors, and so are
the content features; only the classifier (class names, logit scale, thresholds) differs.
:func:`run_in_lockstep` runs the test loops of such benchmarks image by image, side by side, and a
:class:`SharedFeatureCache` attached to their segmentors hands the first one's features to the
others. A cache entry is used only when the input tensor is *bit-identical* (a hash of its bytes,
then an exact comparison), so every benchmark's numbers are exactly those of a separate run; a
different image order or preprocessing merely costs a recomputation.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook
from torch import Tensor

__all__ = ['SharedFeatureCache', 'module_fingerprint', 'run_in_lockstep']


class SharedFeatureCache:
    """Content features of identical backbone inputs, computed once.

    Entries live until :meth:`clear` (the lock-step driver clears after every round, so the cache
    holds one image's windows per group at most).

    Attributes:
        computed (int): backbone passes run through the cache.
        reused (int): passes saved (an identical input was found).
    """

    def __init__(self) -> None:
        self._store: Dict[Tuple, Tuple[Tensor, Tensor]] = {}
        self._fingerprints: Dict[int, str] = {}
        self.computed = 0
        self.reused = 0

    @staticmethod
    def _key(x: Tensor) -> Tuple:
        data = x.detach().contiguous().cpu().numpy().tobytes()
        return (tuple(x.shape), str(x.dtype), str(x.device), hashlib.blake2b(data).hexdigest())

    def get(self, inputs: Tensor, compute: Callable[[Tensor], Tensor],
            model: Optional[torch.nn.Module] = None) -> Tensor:
        """``compute(inputs)``, or the stored result of an earlier bit-identical ``inputs`` given to
        a ``model`` with the same :func:`module_fingerprint` (taken once per model, at its first
        call: weights are loaded by then and do not change during a test)."""
        fp = ''
        if model is not None:
            if id(model) not in self._fingerprints:
                self._fingerprints[id(model)] = module_fingerprint(model)
            fp = self._fingerprints[id(model)]
        key = (fp, ) + self._key(inputs)
        hit = self._store.get(key)
        if hit is not None and torch.equal(hit[0], inputs):
            self.reused += 1
            return hit[1]
        out = compute(inputs)
        self.computed += 1
        self._store[key] = (inputs.detach().clone(), out.detach())
        return out

    def clear(self) -> None:
        self._store.clear()


def module_fingerprint(module: torch.nn.Module) -> str:
    """Hash of a module's state (every tensor's name, dtype, shape and bytes) and of its plain
    settings (int/float/str/bool/tuple attributes of every submodule, e.g. ``attn_mode``): two
    backbones with the same fingerprint compute the same features."""
    h = hashlib.blake2b()
    for name, t in module.state_dict().items():
        h.update(f'{name}|{t.dtype}|{tuple(t.shape)}'.encode())
        h.update(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    for name, sub in module.named_modules():
        plain = {k: v for k, v in vars(sub).items() if not k.startswith('_')
                 and isinstance(v, (int, float, str, bool, tuple, type(None)))}
        h.update(f'{name}|{type(sub).__name__}|{sorted(plain.items(), key=str)}'.encode())
    return h.hexdigest()


class _PassTurnHook(Hook):
    """After every test batch, hand the turn to the next runner (see :func:`run_in_lockstep`)."""

    priority = 'LOWEST'

    def __init__(self, pass_turn: Callable[[], None]) -> None:
        self._pass_turn = pass_turn

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._pass_turn()


def run_in_lockstep(runners: Sequence, cache: Optional[SharedFeatureCache] = None,
                    on_done: Optional[Callable[[int, Optional[dict], Optional[BaseException]], None]]
                    = None) -> List[Tuple[Optional[dict], Optional[BaseException]]]:
    """Run several runners' ``Runner.test()`` batch by batch in turn (round robin).

    Each runner's own, unchanged ``Runner.test()`` (mmengine's public API: ``before_run``, the
    checkpoint load, its test loop, ``after_run``) runs in a worker thread; a hook registered on the
    runner (``after_test_iter``) hands the turn to the next runner after every batch, and only the
    runner holding the turn runs, so the order is deterministic: round r runs batch r of every runner
    still going (or its evaluation, once its batches are done), then clears ``cache``. Threads only
    take turns here, they never compute at the same time. The whole run is inside
    :func:`declip_mm.utils.mmengine_checkpoint_loading`, as ``tools/test.py``'s ``Runner.test()`` is.

    Args:
        runners: mmengine Runners with a test loop (their segmentors share ``cache``).
        cache: cleared after every round.
        on_done: called as ``on_done(i, metrics, error)`` when runner ``i`` finishes or fails
            (while it still holds the turn); a failing runner is dropped and the others carry on.

    Returns:
        list: ``(metrics, None)`` or ``(None, error)`` per runner.
    """
    results: List[Tuple[Optional[dict], Optional[BaseException]]] = [(None, None)] * len(runners)
    cond = threading.Condition()
    live = list(range(len(runners)))
    turn = [live[0] if live else None]
    callback_errors: List[BaseException] = []

    def pass_turn(i: int, finished: bool) -> None:
        with cond:
            pos = live.index(i)
            if finished:
                live.remove(i)
            else:
                pos += 1
            if pos >= len(live):   # the round is over
                pos = 0
                if cache is not None:
                    cache.clear()
            turn[0] = live[pos] if live else None
            cond.notify_all()

    def wait_turn(i: int) -> None:
        with cond:
            cond.wait_for(lambda: turn[0] == i)

    def work(i: int) -> None:
        wait_turn(i)
        try:
            metrics = runners[i].test()
        except BaseException as err:  # noqa: BLE001  (reported, the others carry on)
            results[i] = (None, err)
        else:
            results[i] = (metrics, None)
        try:
            if on_done is not None:
                on_done(i, *results[i])
        except BaseException as err:  # noqa: BLE001  (re-raised by the caller's thread)
            callback_errors.append(err)
        finally:
            pass_turn(i, finished=True)

    for i, runner in enumerate(runners):
        def after_batch(i=i):
            pass_turn(i, finished=False)
            wait_turn(i)
        runner.register_hook(_PassTurnHook(after_batch))
    from ..utils.safe_globals import mmengine_checkpoint_loading
    with mmengine_checkpoint_loading():
        threads = [threading.Thread(target=work, args=(i, ), daemon=True,
                                    name=f'lockstep-runner-{i}') for i in range(len(runners))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if callback_errors:
        raise callback_errors[0]
    return results
