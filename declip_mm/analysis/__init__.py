"""Analysis helpers: explicit attention weights of the towers and proxy-token scores."""
from .attention import AttentionTrace, attention_trace, block_attention, block_qkv
from .proxy_scores import (
                           attention_entropy,
                           keys_for_mass,
                           proxy_scores,
                           received_attention,
                           token_correlation,
                           topk_shared_mass,
)

__all__ = ['AttentionTrace', 'attention_trace', 'block_attention', 'block_qkv', 'attention_entropy',
           'keys_for_mass', 'proxy_scores', 'received_attention', 'token_correlation',
           'topk_shared_mass']
