"""What ``tools/`` share: building test runners, the CAT-Seg benchmark suite, lock-step evaluation.

Not the user API (that is :mod:`declip_mm.apis`: the inferencer, checkpoint inspection, vocabularies,
result files); these helpers exist for the command-line tools and may change with them.
"""
from .catseg_suite import CATSEG_BENCHMARKS, CATSEG_PUBLISHED, CATSEG_VARIANTS, catseg_config
from .shared_features import SharedFeatureCache, module_fingerprint, run_in_lockstep
from .test_runner import configure_cpu_distributed, drop_training_parts, fresh_visualizer, prepare_test_runner

__all__ = ['CATSEG_BENCHMARKS', 'CATSEG_PUBLISHED', 'CATSEG_VARIANTS', 'catseg_config',
           'SharedFeatureCache', 'module_fingerprint', 'run_in_lockstep',
           'configure_cpu_distributed', 'drop_training_parts', 'fresh_visualizer',
           'prepare_test_runner']
