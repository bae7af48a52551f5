from .decoupled_attention import (
                                  ATTN_MODES,
                                  DECOUPLED_MODES,
                                  check_attn_mode,
                                  decoupled_attention,
                                  decoupled_attention_weights,
)
from .pos_embed import resize_pos_embed
from .proxy_attention import (
                                  BACKBONE_MODES,
                                  PROXY_MODE,
                                  check_backbone_mode,
                                  proxy_attention,
                                  proxy_attention_weights,
)
from .rope import apply_rope_interleaved, eva_rope_sincos, rope_patch_rows

__all__ = ['ATTN_MODES', 'DECOUPLED_MODES', 'check_attn_mode', 'decoupled_attention',
           'decoupled_attention_weights',
           'resize_pos_embed', 'eva_rope_sincos', 'apply_rope_interleaved', 'rope_patch_rows',
           'BACKBONE_MODES', 'PROXY_MODE', 'check_backbone_mode', 'proxy_attention',
           'proxy_attention_weights']
