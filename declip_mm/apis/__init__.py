from .checkpoints import (apply_test_checkpoint, inspect_checkpoint, mmengine_safe_torch_load,
                          unwrap_model)
from .evaluation import configure_cpu_distributed, fresh_visualizer, prepare_test_runner
from .inferencer import DeCLIPInferencer, SegResult
from .shared_features import SharedFeatureCache, module_fingerprint, run_in_lockstep
from .vocabulary import parse_classes, set_segmentor_classes

__all__ = ['apply_test_checkpoint', 'inspect_checkpoint', 'mmengine_safe_torch_load',
           'unwrap_model', 'prepare_test_runner', 'fresh_visualizer',
           'configure_cpu_distributed', 'DeCLIPInferencer', 'SegResult', 'parse_classes',
           'set_segmentor_classes', 'SharedFeatureCache', 'module_fingerprint', 'run_in_lockstep']
