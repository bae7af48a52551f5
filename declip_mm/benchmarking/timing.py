"""Timing, peak memory, FLOPs and the machine's matmul rate, for ``tools/benchmark.py``.

CPU and CUDA: on a GPU every timed region is bracketed by ``torch.cuda.synchronize`` and the peak is
``torch.cuda.max_memory_allocated``; on the CPU the peak is the process's resident high-water mark
(``ru_maxrss``), which is why the benchmark runs each measurement in its own process.
"""
from __future__ import annotations

import resource
import statistics
import time
from typing import Callable, List, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

__all__ = ['sync', 'reset_peak', 'peak_memory_mib', 'time_runs', 'count_flops', 'matmul_rate',
           'tensor_bytes', 'peak_tensor_bytes']

_aten = torch.ops.aten


def _register_cpu_sdpa_flops() -> None:
    """torch's FLOP counter knows the CUDA fused attention kernels but not the CPU flash kernel that
    ``F.scaled_dot_product_attention`` dispatches to here. Count the model's work, not the kernel's:
    2 matmuls of N x N x d per head forward and 4 backward (the flash kernel also recomputes the
    scores, which torch's CUDA formulas count as a 5th), so a fused step and an explicit
    softmax(Q Kᵀ) one report the same FLOPs."""
    fwd = _aten._scaled_dot_product_flash_attention_for_cpu
    bwd = _aten._scaled_dot_product_flash_attention_for_cpu_backward

    def _fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query.shape, key.shape, value.shape)

    def _bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return 2 * sdpa_flop_count(query.shape, key.shape, value.shape)

    try:
        register_flop_formula(fwd, get_raw=True)(_fwd)
        register_flop_formula(bwd, get_raw=True)(_bwd)
    except RuntimeError:  # registered already (module reloaded)
        pass


_register_cpu_sdpa_flops()


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: peak allocated memory since :func:`reset_peak`; CPU: the process's peak RSS."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_runs(fn: Callable[[], object], runs: int, warmup: int,
              device: torch.device) -> List[float]:
    """Seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (matmuls, convolutions, attention), by
    ``torch.utils.flop_counter``."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_rate(device: torch.device, n: int = 2048, runs: int = 7,
                warmup: int = 5) -> Tuple[float, List[float]]:
    """This machine's fp32 matmul rate in FLOP/s: median of ``runs`` (n x n) @ (n x n) products
    after ``warmup`` of them (the first large matmuls on a cold CPU can run at half speed)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    times = time_runs(lambda: a @ b, runs, warmup, device)
    return 2 * n ** 3 / statistics.median(times), times


def tensor_bytes(*objs) -> int:
    """Bytes of the distinct tensor storages held by modules (parameters, their gradients, buffers),
    optimizers (their state) and dicts / lists of tensors."""
    seen, total = set(), 0

    def add(t) -> None:
        nonlocal total
        if isinstance(t, torch.Tensor) and t.numel():
            st = t.untyped_storage()
            if st.data_ptr() not in seen:
                seen.add(st.data_ptr())
                total += st.nbytes()

    def walk(o) -> None:
        if isinstance(o, torch.Tensor):
            add(o)
        elif isinstance(o, torch.nn.Module):
            for p in o.parameters():
                add(p)
                add(p.grad)
            for b in o.buffers():
                add(b)
        elif isinstance(o, torch.optim.Optimizer):
            for state in o.state.values():
                walk(state)
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    for o in objs:
        walk(o)
    return total


def peak_tensor_bytes(fn: Callable[[], object]) -> int:
    """Peak of the tensor memory allocated during one call of ``fn`` above what was allocated before
    it (the CPU counterpart of ``torch.cuda.max_memory_allocated`` after a reset): the running sum of
    the allocations and frees that the PyTorch profiler records, in time order. Unlike the resident
    set size it does not depend on how the C allocator keeps freed memory."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == '[memory]' and e.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak
