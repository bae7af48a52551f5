"""configs/proxyclip/ (docs/method.md §7): the ProxyCLIP per-data-set settings, one config per benchmark
per variant (what tools/eval_all.py --config-dir lists), and a tiny end-to-end eval_all run."""
import ast
import json
import os
import os.path as osp

import pytest
from mmengine.config import Config
from tf_helpers import ROOT, load_tool, run_file, tiny_options, write_all_fixtures

eval_all = load_tool('eval_all')
PROXY_DIR = osp.join(ROOT, 'configs', 'proxyclip')
VARIANTS = {'vitb16_dino-b8': ('ViT-B-16', 'dino_vitb8'),
            'vitb16_dinov2-b14reg': ('ViT-B-16', 'dinov2_vitb14_reg'),
            'vitb16_sam-b': ('ViT-B-16', 'sam_vitb'),
            'vitb16_mae-b16': ('ViT-B-16', 'mae_vitb16'),
            'declip-eva02-b16_dinov2-b14reg': ('EVA02-B-16', 'dinov2_vitb14_reg'),
            'declip-eva02-b16_dino-b8': ('EVA02-B-16', 'dino_vitb8')}
# mc-lan/ProxyCLIP configs/cfg_<name>.py: (public file, short side, crop, stride, prob_thd)
PUBLIC = {'voc21': ('cfg_voc21', 336, 336, 112, 0.2), 'voc20': ('cfg_voc20', 336, 336, 112, 0.0),
          'context60': ('cfg_context60', 336, 336, 112, 0.15),
          'context59': ('cfg_context59', 336, 336, 112, 0.0),
          'coco_object': ('cfg_coco_object', 336, 336, 112, 0.25),
          'coco_stuff164k': ('cfg_coco_stuff164k', 336, 336, 112, 0.0),
          'cityscapes': ('cfg_city_scapes', 448, 224, 112, 0.0),
          'ade20k': ('cfg_ade20k', 448, 336, 112, 0.0)}


def _resize_scale(cfg):
    (r, ) = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'Resize']
    return tuple(r['scale'])


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_configs_carry_the_public_settings(variant):
    d = osp.join(PROXY_DIR, variant)
    for name, (_, side, crop, stride, thd) in PUBLIC.items():
        cfg = Config.fromfile(eval_all.config_path(name, d))
        m = cfg.model
        assert m.type == 'DeCLIPProxySegmentor' and m.backbone.attn_mode == 'proxy'
        assert (m.backbone.proxy_beta, m.backbone.proxy_gamma) == (1.2, 3.0)
        assert (m.backbone.model_name, m.vfm.arch) == VARIANTS[variant]
        # OpenAI: the public open_clip's position-embedding resize; EVA02 (no public proxy code): §1
        assert m.backbone.pos_embed_offset == (0.1 if m.backbone.model_name == 'ViT-B-16' else 0.0)
        assert m.logit_scale == 40.0 and m.prob_thd == thd
        assert (m.test_cfg.crop_size, m.test_cfg.stride, m.test_cfg.mode) == (crop, stride, 'slide')
        assert _resize_scale(cfg) == (2048, side)
        assert cfg.val_dataloader.dataset.pipeline == cfg.test_dataloader.dataset.pipeline
        assert osp.isfile(m.class_names)
        assert m.vfm.pretrained.startswith('weights/') and m.vfm.precision is None


def _public_settings(root, name):
    """prob_thd / slide settings / resize of a public cfg file, read as text (its base imports the
    public segmentor), defaults from ProxyCLIPSegmentation.__init__."""
    src = open(osp.join(root, 'configs', f'{name}.py')).read()
    tree = ast.parse(src)
    model, scale = {}, None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'model':
            model = {k.arg: ast.literal_eval(k.value) for k in node.value.keywords}
        if isinstance(node, ast.Call) and any(k.arg == 'type' and getattr(k.value, 'value', '')
                                              == 'Resize' for k in node.keywords):
            scale = ast.literal_eval([k.value for k in node.keywords if k.arg == 'scale'][0])
    return (model.get('prob_thd', 0.0), model.get('slide_crop', 336), model.get('slide_stride', 112),
            tuple(scale), model['name_path'])


@pytest.mark.skipif(not os.environ.get('PROXYCLIP_ROOT'), reason='PROXYCLIP_ROOT not set')
def test_table_matches_the_public_config_files():
    root = os.environ['PROXYCLIP_ROOT']
    for name, (pub, side, crop, stride, thd) in PUBLIC.items():
        p_thd, p_crop, p_stride, p_scale, p_names = _public_settings(root, pub)
        assert (p_thd, p_crop, p_stride, p_scale) == (thd, crop, stride, (2048, side)), name
        ours = Config.fromfile(eval_all.config_path(name, osp.join(PROXY_DIR, 'vitb16_dino-b8')))
        pub_lines = [x.strip() for x in open(osp.join(root, p_names)).read().splitlines() if x]
        our_lines = [x.strip() for x in open(ours.model.class_names).read().splitlines() if x]
        assert pub_lines == our_lines, name


def test_eval_all_runs_a_proxy_config_dir(tmp_path):
    data = write_all_fixtures(tmp_path / 'data', num_images=1)
    opts = [*tiny_options(tmp_path, 'eva02'), 'model.vfm.pretrained=None',
            'model.vfm.arch_overrides.embed_dim=32', 'model.vfm.arch_overrides.depth=2',
            'model.vfm.arch_overrides.num_heads=2', 'model.vfm.arch_overrides.img_size=32']
    eval_all.main(['--data-root', data, '--work-dir', str(tmp_path / 'w'), '--text-cache-dir',
                   'none', '--config-dir', osp.join(PROXY_DIR, 'declip-eva02-b16_dino-b8'),
                   '--benchmarks', 'voc21', '--cfg-options', *opts])
    res = json.load(open(run_file(tmp_path / 'w', 'json')))
    assert not res['errors'] and sorted(res['mIoU']) == ['voc21']
