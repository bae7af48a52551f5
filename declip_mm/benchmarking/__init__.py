"""Measuring declip_mm against the public code's way of computing (``tools/benchmark.py``)."""
from .reference import (explicit_attention, explicit_sdpa, reference_catseg_predict,
                        reference_predict, reference_slide_logits, reference_train_losses)
from .timing import (count_flops, matmul_rate, peak_memory_mib, peak_tensor_bytes, reset_peak, sync,
                     tensor_bytes, time_runs)

__all__ = ['explicit_attention', 'explicit_sdpa', 'reference_catseg_predict', 'reference_predict',
           'reference_slide_logits', 'reference_train_losses', 'count_flops', 'matmul_rate',
           'peak_memory_mib', 'peak_tensor_bytes', 'reset_peak', 'sync', 'tensor_bytes', 'time_runs']
