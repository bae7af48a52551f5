"""Pure dict -> dict checkpoint converters (``tools/convert_checkpoint.py`` wraps them)."""
from .clip_checkpoints import (
                               FLAVOURS,
                               convert_dinov2,
                               convert_eva_clip,
                               convert_openai_clip,
                               detect_flavour,
                               match_state_dict,
                               split_prefix,
                               summarize_keys,
                               text_state_dict,
                               to_open_clip_state_dict,
                               unwrap_checkpoint,
)
from .export import infer_model_name, make_checkpoint, save_checkpoint

__all__ = ['FLAVOURS', 'convert_dinov2', 'convert_eva_clip', 'convert_openai_clip', 'detect_flavour',
           'match_state_dict', 'split_prefix', 'summarize_keys', 'text_state_dict',
           'to_open_clip_state_dict', 'unwrap_checkpoint', 'infer_model_name', 'make_checkpoint',
           'save_checkpoint']
