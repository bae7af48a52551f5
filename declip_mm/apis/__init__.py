"""The user API: :class:`DeCLIPInferencer`, checkpoint inspection and routing, vocabularies, the
overlay / result files the inferencer writes. What only the command-line tools need lives in
:mod:`declip_mm.tools_support`."""
from .checkpoints import apply_test_checkpoint, inspect_checkpoint, mmengine_safe_torch_load, unwrap_model
from .inferencer import DeCLIPInferencer, SegResult
from .vocabulary import parse_classes, set_segmentor_classes

__all__ = ['apply_test_checkpoint', 'inspect_checkpoint', 'mmengine_safe_torch_load',
           'unwrap_model', 'DeCLIPInferencer', 'SegResult', 'parse_classes',
           'set_segmentor_classes']
