"""Measuring declip_mm against the public code's way of computing (``tools/benchmark.py``)."""
from .reference import (
                        explicit_attention,
                        explicit_sdpa,
                        reference_catseg_predict,
                        reference_predict,
                        reference_slide_logits,
                        reference_train_losses,
)
from .reference_heads import literal_heads
from .reference_towers import full_last_block, literal_rope, plain_mlps
from .timing import (
                        count_flops,
                        matmul_rate,
                        peak_memory_mib,
                        peak_tensor_bytes,
                        reset_peak,
                        sync,
                        tensor_bytes,
                        time_runs,
)

__all__ = ['explicit_attention', 'explicit_sdpa', 'reference_catseg_predict', 'reference_predict',
           'reference_slide_logits', 'reference_train_losses', 'literal_heads', 'literal_rope',
           'plain_mlps', 'full_last_block', 'count_flops', 'matmul_rate',
           'peak_memory_mib', 'peak_tensor_bytes', 'reset_peak', 'sync', 'tensor_bytes', 'time_runs']
