"""Tiny model configs and generated fixture datasets, for tests, the quick-start and bug reports.

Nothing here downloads anything: towers are randomly initialised, datasets are written to a folder
in the real layouts of the benchmarks.
"""
from .fixtures import BENCHMARK_LAYOUTS, TRAIN_LAYOUTS, write_benchmark_fixture
from .ov_coco_fixture import OV_COCO_TRAIN_ANN, OV_COCO_VAL_ANN, write_ov_coco_fixture
from .panoptic_fixture import PANOPTIC_FIXTURE_CATEGORIES, default_panoptic_images, write_panoptic_fixture
from .tiny_models import TINY_EVA02_CLIP, TINY_OPENAI_CLIP, tiny_clip_config

__all__ = ['BENCHMARK_LAYOUTS', 'TRAIN_LAYOUTS', 'write_benchmark_fixture', 'TINY_EVA02_CLIP',
           'TINY_OPENAI_CLIP', 'tiny_clip_config', 'PANOPTIC_FIXTURE_CATEGORIES',
           'default_panoptic_images', 'write_panoptic_fixture', 'write_ov_coco_fixture',
           'OV_COCO_TRAIN_ANN', 'OV_COCO_VAL_ANN']
