"""Tiny model configs and generated fixture datasets, for tests, the quick-start and bug reports.

Nothing here downloads anything: towers are randomly initialised, datasets are written to a folder
in the real layouts of the benchmarks.
"""
from .fixtures import BENCHMARK_LAYOUTS, TRAIN_LAYOUTS, write_benchmark_fixture
from .tiny_models import TINY_EVA02_CLIP, TINY_OPENAI_CLIP, tiny_clip_config

__all__ = ['BENCHMARK_LAYOUTS', 'TRAIN_LAYOUTS', 'write_benchmark_fixture', 'TINY_EVA02_CLIP',
           'TINY_OPENAI_CLIP', 'tiny_clip_config']
