"""Issue 22.8: ``run_in_lockstep`` drives each runner through its own public ``Runner.test()`` and
interleaves them batch by batch, round robin, clearing the shared cache after every round."""
import threading

import pytest

from declip_mm.tools_support import run_in_lockstep


class FakeRunner:
    """Stands in for an mmengine Runner: ``test()`` runs ``n`` batches, calling every registered
    hook's ``after_test_iter`` after each, then 'evaluates' (as mmengine's TestLoop does)."""

    def __init__(self, name, n, log, fail_at=None):
        self.name, self.n, self.log, self.fail_at = name, n, log, fail_at
        self.hooks = []
        self.threads = set()

    def register_hook(self, hook, priority='NORMAL'):
        self.hooks.append(hook)

    def test(self):
        self.threads.add(threading.current_thread().name)
        for i in range(self.n):
            if i == self.fail_at:
                raise RuntimeError(f'{self.name} broke at batch {i}')
            self.log.append((self.name, i))
            for hook in self.hooks:
                hook.after_test_iter(self, i)
        self.log.append((self.name, 'eval'))
        return {'mIoU': float(self.n)}


class Cache:
    def __init__(self, log):
        self.log = log

    def clear(self):
        self.log.append('clear')


def reference_order(lengths, fail_at=None):
    """The round-robin schedule written out: round r runs batch r of every live runner, a runner
    whose batches are done evaluates in the next round, a failing one drops out; clear after each."""
    fail_at = fail_at or {}
    live = list(lengths)
    step = {k: 0 for k in lengths}
    out = []
    while live:
        for k in list(live):
            if step[k] == fail_at.get(k, -1):
                live.remove(k)
            elif step[k] == lengths[k]:
                out.append((k, 'eval'))
                live.remove(k)
            else:
                out.append((k, step[k]))
                step[k] += 1
        out.append('clear')
    return out


def test_round_robin_order_and_cache_clears():
    log = []
    lengths = {'a': 3, 'b': 1, 'c': 2}
    runners = [FakeRunner(k, n, log) for k, n in lengths.items()]
    done = []
    results = run_in_lockstep(runners, Cache(log), lambda i, m, e: done.append((i, m, e)))
    assert log == reference_order(lengths)
    assert results == [({'mIoU': 3.0}, None), ({'mIoU': 1.0}, None), ({'mIoU': 2.0}, None)]
    assert [d[0] for d in done] == [1, 2, 0]   # in the order they finished
    # every runner ran its own test() in its own worker thread
    assert len({t for r in runners for t in r.threads}) == 3


def test_a_failing_runner_is_dropped_and_the_others_finish():
    log = []
    lengths = {'a': 2, 'b': 3, 'c': 1}
    runners = [FakeRunner('a', 2, log), FakeRunner('b', 3, log, fail_at=1), FakeRunner('c', 1, log)]
    errors = []
    results = run_in_lockstep(runners, Cache(log), lambda i, m, e: errors.append((i, e)))
    assert log == reference_order(lengths, fail_at={'b': 1})
    assert results[0] == ({'mIoU': 2.0}, None) and results[2] == ({'mIoU': 1.0}, None)
    assert results[1][0] is None and 'b broke at batch 1' in str(results[1][1])
    assert [i for i, e in errors if e is not None] == [1]


def test_an_error_in_the_callback_reaches_the_caller():
    runners = [FakeRunner('a', 1, []), FakeRunner('b', 2, [])]

    def on_done(i, metrics, err):
        raise KeyError(f'callback {i}')

    with pytest.raises(KeyError, match='callback'):
        run_in_lockstep(runners, None, on_done)
    assert run_in_lockstep([], None) == []
