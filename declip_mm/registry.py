"""declip_mm registers into mmseg's registries, so ``default_scope='mmseg'`` configs find everything
after ``custom_imports=dict(imports=['declip_mm'], allow_failed_imports=False)``.
The backbone is also registered into mmdet's ``MODELS`` when mmdet is importable (see ``__init__``).
"""
from mmseg.registry import DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS

__all__ = ['DATASETS', 'HOOKS', 'METRICS', 'MODELS', 'TRANSFORMS']
