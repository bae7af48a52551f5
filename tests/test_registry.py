import importlib

from mmengine.config import Config
from mmengine.registry import init_default_scope


def test_bare_import_registers_everything():
    from mmseg.registry import MODELS

    import declip_mm
    for name in ('DeCLIPVisionTransformer', 'DeCLIPTextEncoder'):
        assert MODELS.get(name) is getattr(declip_mm, name)
    # mmdet sees the backbone too (mmdet is part of the tested stack)
    assert declip_mm.MMDET_REGISTERED
    from mmdet.registry import MODELS as DET_MODELS
    assert DET_MODELS.get('DeCLIPVisionTransformer') is declip_mm.DeCLIPVisionTransformer


def test_registered_component_names():
    from mmseg.registry import DATASETS, HOOKS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, PARAM_SCHEDULERS, TRANSFORMS

    import declip_mm  # noqa: F401
    expect = {
        MODELS: ['DeCLIPVisionTransformer', 'DeCLIPTextEncoder', 'DeCLIPZeroShotSegmentor',
                 'DeCLIPSegTTAModel', 'VFMTeacher', 'DeCLIPDistiller', 'DeCLIPDataPreprocessor',
                 'ContentDistillLoss', 'ContextDistillLoss', 'DeCLIPCATSegHead',
                 'DeCLIPCATSegSegmentor'],
        DATASETS: ['DeCLIPPascalVOC20Dataset', 'DeCLIPCOCOObjectDataset',
                   'DeCLIPPascalContext60Dataset', 'DeCLIPPascalContext59Dataset',
                   'UnlabeledImageDataset'],
        TRANSFORMS: ['LoadImageOrSkip', 'DeCLIPGridCrops', 'DeCLIPLetterbox', 'PackDeCLIPInputs'],
        HOOKS: ['DeCLIPEpochHook', 'DeCLIPMergeExportHook'],
        PARAM_SCHEDULERS: ['DeCLIPWarmupCosineLR'],
        OPTIM_WRAPPER_CONSTRUCTORS: ['DeCLIPOptimWrapperConstructor',
                                     'DeCLIPCATSegOptimWrapperConstructor'],
    }
    for registry, names in expect.items():
        for name in names:
            cls = registry.get(name)
            assert cls is not None and cls.__module__.startswith('declip_mm'), (registry.name, name)


def test_names_do_not_clash_with_mmseg():
    """Our names must not shadow anything mmseg itself registers."""
    import mmseg.models  # noqa: F401
    from mmseg.registry import MODELS

    import declip_mm  # noqa: F401
    ours = {'DeCLIPVisionTransformer', 'DeCLIPTextEncoder', 'DeCLIPCATSegHead',
            'DeCLIPCATSegSegmentor'}
    # the names of mmseg's own CAT-Seg port (projects/CAT-Seg) are not taken
    for name in ('CATSegHead', 'CATSegAggregator', 'CATSeg'):
        assert MODELS.get(name) is None or not MODELS.get(name).__module__.startswith('declip_mm')
    for name in ours:
        assert MODELS.get(name).__module__.startswith('declip_mm'), name


def test_custom_imports_builds_through_config(tmp_path):
    from declip_mm.testing import tiny_clip_config
    cfg = Config(dict(
        default_scope='mmseg',
        custom_imports=dict(imports=['declip_mm'], allow_failed_imports=False),
        model=dict(type='DeCLIPVisionTransformer', model_name=tiny_clip_config('openai'),
                   attn_mode='qq')))
    importlib.import_module(cfg.custom_imports['imports'][0])
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    assert model.attn_mode == 'qq'
    # the same component through mmdet's scope
    init_default_scope('mmdet')
    from mmdet.registry import MODELS as DET_MODELS
    assert DET_MODELS.build(cfg.model).attn_mode == 'qq'


def test_disk_cache_is_not_a_registered_model():
    """Issue 22.8: the VFM feature cache is a disk cache the distiller constructs, not a model."""
    from mmseg.registry import MODELS

    import declip_mm  # noqa: F401
    assert 'VFMFeatureCache' not in MODELS.module_dict and MODELS.get('VFMFeatureCache') is None
