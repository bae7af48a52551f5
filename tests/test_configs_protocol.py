"""The configs are the contract with docs/method.md §3: every protocol number is checked here."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TF = {  # benchmark: (short side, long cap, logit scale, prob_thd, dataset type)
    'voc21': (448, 4096, 80.0, 0.4, 'PascalVOCDataset'),
    'context60': (448, 4096, 40.0, 0.15, 'DeCLIPPascalContext60Dataset'),
    'coco_object': (448, 2048, 40.0, 0.2, 'DeCLIPCOCOObjectDataset'),
    'voc20': (448, 4096, 40.0, 0.0, 'DeCLIPPascalVOC20Dataset'),
    'context59': (448, 4096, 40.0, 0.0, 'DeCLIPPascalContext59Dataset'),
    'coco_stuff164k': (448, 4096, 40.0, 0.0, 'COCOStuffDataset'),
    'cityscapes': (560, 4096, 40.0, 0.0, 'CityscapesDataset'),
    'ade20k': (448, 4096, 40.0, 0.0, 'ADE20KDataset'),
}


@pytest.mark.parametrize('name', sorted(TF))
def test_training_free_protocol(name):
    (path, ) = glob.glob(osp.join(ROOT, 'configs', 'training_free', f'*_{name}-*.py'))
    cfg = Config.fromfile(path)
    short, cap, scale, thd, typ = TF[name]
    assert osp.basename(path).endswith(f'_{name}-{short}.py')
    resize = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'Resize']
    assert resize == [dict(type='Resize', scale=(cap, short), keep_ratio=True)]
    assert cfg.test_dataloader.dataset.type == typ and cfg.test_dataloader.batch_size == 1
    m = cfg.model
    assert (m.logit_scale, m.prob_thd, m.area_thd) == (scale, thd, None)
    assert (m.test_cfg.mode, m.test_cfg.crop_size, m.test_cfg.stride) == ('slide', 336, 112)
    assert m.backbone.attn_mode == 'csa' and m.backbone.attn_scale is None  # tau = 1/sqrt(d)
    assert m.text_encoder.templates == 'imagenet80'
    assert m.class_names.endswith(f'class_names/{name}.txt') and osp.isfile(m.class_names)
    assert m.data_preprocessor.bgr_to_rgb
    assert m.data_preprocessor.mean == pytest.approx([122.7709383, 116.7460125, 104.09373615])
    assert m.data_preprocessor.std == pytest.approx([68.5005327, 66.6321579, 70.32316305])
    assert cfg.custom_imports == dict(imports=['declip_mm'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmseg'


def _pipeline(cfg, typ, key=None):
    return [t for t in cfg.train_dataloader.dataset.pipeline if t['type'] == typ
            and (key is None or t.get('key') == key)][0]


B16 = ('EVA02-B-16', 224, 4, 0.7)                 # student, teacher crop, batch per GPU, alpha
L14 = ('EVA02-L-14-336', 336, 2, 0.95)
OAI = ('ViT-B-16', 224, 4, 0.7)
EVA_ADAM = ((0.9, 0.999), 1e-8)
OPENAI_ADAM = ((0.9, 0.98), 1e-6)  # official params.py get_default_params for "vit" names
SCRIPT_B = 'declip_eva02-b16_dinov2-b_4xb4-6e_coco-560_'
# config: (student/crop/batch/alpha, VFM arch, VFM side, mode, tau, context weight, content weight,
#          head mode, Adam (betas, eps), VFM precision)
RECIPES = {
    # entry points
    'declip_vitb_dinov2': (B16, 'dinov2_vitb14_reg', 490, 'csa', 1.0, 0.25, 1.0, 'merged', EVA_ADAM,
                           None),
    'declip_vitl_dinov2': (L14, 'dinov2_vitl14_reg', 560, 'csa', 1.0, 0.1, 1.0, 'merged', EVA_ADAM,
                           None),
    # named reproductions (releases, public scripts, the main branch's csa loss)
    SCRIPT_B + 'csa-0.25-release-seg': (B16, 'dinov2_vitb14_reg', 490, 'csa', 1.0, 0.25, 1.0,
                                        'merged', EVA_ADAM, None),
    SCRIPT_B + 'csa-0.05-2.0-release-catseg': (B16, 'dinov2_vitb14_reg', 490, 'csa', 1.0, 0.05, 2.0,
                                               'merged', EVA_ADAM, None),
    SCRIPT_B + 'qq-0.1-script': (B16, 'dinov2_vitb14_reg', 490, 'qq', 1.0, 0.1, 1.0, 'merged',
                                 EVA_ADAM, None),
    'declip_eva02-l14-336_dinov2-l_4xb2-6e_coco-560_qq-0.1-script': (
        L14, 'dinov2_vitl14_reg', 560, 'qq', 1.0, 0.1, 1.0, 'merged', EVA_ADAM, None),
    SCRIPT_B + 'csa-per-head-0.1-main': (B16, 'dinov2_vitb14_reg', 490, 'csa', 1.0, 0.1, 1.0,
                                         'per_head', EVA_ADAM, None),
    # OpenAI tower and the VFM ablations (the public script with vfm_type=...)
    'declip_openai-vitb16_dinov2': (OAI, 'dinov2_vitb14_reg', 490, 'csa', None, 0.25, 1.0, 'merged',
                                    OPENAI_ADAM, None),
    'declip_vitb_dino-b16': (B16, 'dino_vitb16', 560, 'qq', 1.0, 0.1, 1.0, 'merged', EVA_ADAM, None),
    'declip_vitb_dino-b8': (B16, 'dino_vitb8', 280, 'qq', 1.0, 0.1, 1.0, 'merged', EVA_ADAM, None),
    'declip_vitb_sam-b': (B16, 'sam_vitb', 560, 'qq', 1.0, 0.1, 1.0, 'merged', EVA_ADAM, 'fp16'),
}


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_distillation_recipe(name):
    ((clip, crop, batch, alpha), vfm, vfm_side, mode, tau, ctx_w, content_w, head_mode,
     (betas, eps), precision) = RECIPES[name]
    path = osp.join(ROOT, 'configs', 'declip', name + '.py')
    cfg = Config.fromfile(path)
    m = cfg.model
    assert m.type == 'DeCLIPDistiller' and m.student.model_name == clip
    assert m.student.attn_mode == mode and m.student.attn_scale == tau
    assert m.vfm_teacher.arch == vfm and m.vfm_teacher.get('precision') == precision
    assert m.content_loss.loss_weight == content_w and m.context_loss.loss_weight == ctx_w
    assert m.context_loss.head_mode == head_mode and not m.context_loss.use_mask
    o = cfg.optim_wrapper
    # fused=True: torch's single-kernel AdamW (same update to float rounding; docs/performance.md)
    assert o.optimizer == dict(type='AdamW', lr=1e-5, betas=betas, eps=eps, weight_decay=0.1,
                               fused=True)
    assert o.constructor == 'DeCLIPOptimWrapperConstructor'
    (s, ) = cfg.param_scheduler
    assert (s.type, s.warmup_iters, s.end, s.by_epoch) == ('DeCLIPWarmupCosineLR', 1000, 6, True)
    assert cfg.train_cfg.max_epochs == 6 and cfg.train_dataloader.batch_size == batch
    assert cfg.auto_scale_lr.base_batch_size == batch * 4
    hooks = {h['type']: h for h in cfg.custom_hooks}
    assert hooks['DeCLIPMergeExportHook']['alpha'] == alpha and 'DeCLIPEpochHook' in hooks
    student = _pipeline(cfg, 'DeCLIPLetterbox', 'student_img')
    assert student['size'] == 560 and student['mean'] == (0.48145466, 0.4578275, 0.40821073)
    v = _pipeline(cfg, 'DeCLIPLetterbox', 'vfm_img')
    assert v['size'] == vfm_side and v['mean'] == (0.485, 0.456, 0.406)
    grid = _pipeline(cfg, 'DeCLIPGridCrops')
    assert grid['crop_size'] == crop and grid['max_crops'] == 20 and grid['student_size'] == 560
    assert grid['student_patch'] == (14 if 'L-14' in clip else 16)
    assert cfg.train_dataloader.dataset.type == 'UnlabeledImageDataset'
    assert not cfg.train_dataloader.persistent_workers
    # the header says what the config reproduces (or that no public script / release trains it)
    header = open(path).read().split('_base_')[0]
    assert any(w in header for w in ('Reproduces', 'entry point', 'No public script or release')), \
        name


def test_every_distillation_config_is_pinned():
    names = {osp.basename(p)[:-3] for p in glob.glob(osp.join(ROOT, 'configs', 'declip', '*.py'))}
    unpinned = names - set(RECIPES) - {'declip_tiny-random_quickstart', 'declip_vitb_dinov2_qq',
                                       'declip_vitb_dinov2_content-only',
                                       'declip_vitb_dinov2_no-decouple',
                                       # options beyond the paper: tests/test_configs_beyond.py
                                       'declip_vitb_dinov2_ml3', 'declip_vitb_dinov2+sam-b'}
    assert not unpinned, unpinned


def test_release_config_equals_entry_point():
    """The README's entry point is the eight-benchmark release recipe (docs/method.md)."""
    def load(n):
        return Config.fromfile(osp.join(ROOT, 'configs', 'declip', n + '.py'))
    entry, release = load('declip_vitb_dinov2'), load(SCRIPT_B + 'csa-0.25-release-seg')
    assert entry.model.to_dict() == release.model.to_dict()
    assert entry.train_dataloader.to_dict() == release.train_dataloader.to_dict()
    assert entry.optim_wrapper.to_dict() == release.optim_wrapper.to_dict()


def test_ablation_configs():
    def load(n):
        return Config.fromfile(osp.join(ROOT, 'configs', 'declip', n + '.py')).model
    m = load('declip_vitb_dinov2_content-only')
    assert m.vfm_teacher is None and m.context_loss is None
    m = load('declip_vitb_dinov2_no-decouple')
    assert m.student.attn_mode == 'vanilla' and m.context_source == 'content'
    assert load('declip_vitb_dinov2_qq').student.attn_mode == 'qq'


def test_train_tool_switches():
    from tf_helpers import load_tool
    train = load_tool('train')
    cfg = train.build_cfg(train.parse_args([osp.join(ROOT, 'configs', 'declip',
                                                     'declip_vitb_dinov2.py'),
                                            '--tensorboard', '--auto-scale-lr', '--resume']))
    assert {b['type'] for b in cfg.visualizer.vis_backends} == {'LocalVisBackend',
                                                               'TensorboardVisBackend'}
    assert cfg.auto_scale_lr.enable and cfg.resume and cfg.load_from is None
    assert cfg.work_dir.endswith('declip_vitb_dinov2')
