import os
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image
from seg_metric_helpers import check_tool_metrics
from tf_helpers import ROOT, load_tool, tf_config, tiny_options, write_all_fixtures

from declip_mm.testing import BENCHMARK_LAYOUTS

test_tool = load_tool('test')


def data_root_opt(data_dir, name):
    return f'test_dataloader.dataset.data_root={osp.join(data_dir, BENCHMARK_LAYOUTS[name]["data_root"])}'


@pytest.mark.parametrize('name', sorted(BENCHMARK_LAYOUTS))
def test_test_tool_end_to_end_with_show_dir(tmp_path, name):
    """Every one of the eight configs, through tools/test.py, on a fixture in the real layout: the
    printed aAcc / mIoU / mAcc are those of the written predictions and the fixture's labels under
    the benchmark's label rule (seg_metric_helpers)."""
    from declip_mm.testing import write_benchmark_fixture
    data = str(tmp_path / 'data')
    root = write_benchmark_fixture(name, data)
    show, out = tmp_path / 'show', tmp_path / 'preds'
    metrics = test_tool.main([tf_config(name), '--work-dir', str(tmp_path / 'wd'), '--show-dir',
                              str(show), '--out', str(out), '--cfg-options', *tiny_options(tmp_path),
                              data_root_opt(data, name)])
    check_tool_metrics(metrics, out, root, name)
    pngs = [f for _, _, fs in os.walk(show) for f in fs if f.endswith('.png')]
    assert len(pngs) == 2


def test_out_dir_and_tta(tmp_path):
    data = write_all_fixtures(tmp_path / 'data')
    out = tmp_path / 'preds'
    metrics = test_tool.main([tf_config('ade20k'), '--work-dir', str(tmp_path / 'wd'), '--tta',
                              '--out', str(out), '--cfg-options', *tiny_options(tmp_path),
                              data_root_opt(data, 'ade20k')])
    assert len(os.listdir(out)) == 2
    check_tool_metrics(metrics, out, osp.join(data, BENCHMARK_LAYOUTS['ade20k']['data_root']),
                       'ade20k')


def test_checkpoint_mode_pairs(tmp_path):
    """csa weights in a qq config are refused (without advising to leave csa); a qq export runs in
    the csa configs, as the official evaluator runs every checkpoint."""
    from declip_mm.models import DeCLIPVisionTransformer
    data = write_all_fixtures(tmp_path / 'data')
    opts = tiny_options(tmp_path)
    bb = DeCLIPVisionTransformer(opts[0].split('=', 1)[1])
    sd = {'visual.' + k: v for k, v in bb.visual.state_dict().items()}
    ckpts = {}
    for mode in ('qq', 'csa'):
        ckpts[mode] = tmp_path / f'declip_{mode}.pth'
        torch.save({'state_dict': sd, 'meta': {'attn_mode': mode}}, ckpts[mode])

    def args(mode):
        return [tf_config('voc20'), str(ckpts[mode]), '--work-dir', str(tmp_path / 'wd'),
                '--cfg-options', *opts, data_root_opt(data, 'voc20')]
    with pytest.raises(ValueError, match="trained with attn_mode='csa'.*attn_mode='qq'") as e:
        test_tool.main(args('csa') + ['model.backbone.attn_mode=qq'])
    assert "published protocol evaluates every DeCLIP checkpoint with attn_mode='csa'" in str(e.value)
    assert 'attn_mode=qq' not in str(e.value).replace("attn_mode='qq'", '')  # no switch advice
    metrics = test_tool.main(args('qq') + ['--out', str(tmp_path / 'preds')])
    check_tool_metrics(metrics, tmp_path / 'preds',
                       osp.join(data, BENCHMARK_LAYOUTS['voc20']['data_root']), 'voc20')


def test_class_names_must_fit_dataset(tmp_path):
    data = write_all_fixtures(tmp_path / 'data')
    bad = tmp_path / 'classes.txt'
    bad.write_text('\n'.join(['road', 'sky']) + '\n')
    base = [tf_config('cityscapes'), '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
            *tiny_options(tmp_path), data_root_opt(data, 'cityscapes')]
    with pytest.raises(ValueError, match='2 classes but the dataset has 19'):
        test_tool.main(base + [f'model.class_names={bad}'])
    with pytest.raises(FileNotFoundError, match='class-name file not found'):
        test_tool.main(base + [f'model.class_names={tmp_path / "missing.txt"}'])
    lines = open(osp.join(ROOT, 'configs', 'class_names', 'cityscapes.txt')).read().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    bad.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match='class order'):
        test_tool.main(base + [f'model.class_names={bad}'])


def test_grayscale_rgba_and_tiny_images(tmp_path):
    """Grayscale and RGBA inputs are read as 3-channel; images smaller than a window still work."""
    data = tmp_path / 'data'
    from declip_mm.testing import write_benchmark_fixture
    root = write_benchmark_fixture('ade20k', str(data), num_images=3,
                                   sizes=[(48, 64), (64, 40), (20, 24)])
    img_dir = osp.join(root, 'images', 'validation')
    files = sorted(os.listdir(img_dir))
    rgb = np.asarray(Image.open(osp.join(img_dir, files[0])))
    Image.fromarray(rgb.mean(-1).astype(np.uint8), mode='L').save(osp.join(img_dir, files[0]))
    rgba = np.concatenate([np.asarray(Image.open(osp.join(img_dir, files[1]))),
                           np.full((64, 40, 1), 128, np.uint8)], -1)
    # a PNG with alpha behind a .jpg name: decoders go by content
    Image.fromarray(rgba, mode='RGBA').save(osp.join(img_dir, files[1]), format='PNG')
    opts = tiny_options(tmp_path) + [f'test_dataloader.dataset.data_root={root}',
                                     'test_dataloader.dataset.pipeline.1.scale=(256,24)']
    metrics = test_tool.main([tf_config('ade20k'), '--work-dir', str(tmp_path / 'wd'),
                              '--out', str(tmp_path / 'preds'), '--cfg-options', *opts])
    check_tool_metrics(metrics, tmp_path / 'preds', root, 'ade20k')


def test_distributed_test_on_cpu_processes(tmp_path):
    """tools/test.py --launcher pytorch with two gloo CPU processes gives the one-process metrics."""
    import json
    import socket
    import subprocess
    import sys

    from tf_helpers import ROOT

    from declip_mm.testing import write_benchmark_fixture
    data = str(tmp_path / 'data')
    write_benchmark_fixture('ade20k', data, num_images=4)
    # the same seed in both runs: random towers must be the same towers
    opts = tiny_options(tmp_path) + [data_root_opt(data, 'ade20k'), 'randomness.seed=0']
    one = test_tool.main([tf_config('ade20k'), '--work-dir', str(tmp_path / 'one'),
                          '--cfg-options', *opts])
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    res = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
                          '--master_port', str(port), 'tools/test.py', tf_config('ade20k'),
                          '--work-dir', str(tmp_path / 'two'), '--launcher', 'pytorch',
                          '--cfg-options', *opts], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (js, ) = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / 'two') for f in fs
              if f.endswith('.json') and 'vis_data' not in d and f[:8].isdigit()]
    two = json.load(open(js))
    assert two['mIoU'] == pytest.approx(float(one['mIoU']), abs=1e-6)


@pytest.mark.parametrize('tta_model', ['None', 'dict(type="SegTTAModel")'])
def test_tta_without_a_fitting_tta_model(tmp_path, tta_model):
    """Issue 14.5: --tta on a config without tta_model (or with mmseg's SegTTAModel, which our
    segmentor cannot use: 'no attribute out_channels') gets DeCLIPSegTTAModel."""
    from declip_mm.testing import write_benchmark_fixture
    data = str(tmp_path / 'data')
    write_benchmark_fixture('ade20k', data, num_images=1)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(f'_base_ = [{tf_config("ade20k")!r}]\ntta_model = {tta_model}\n')
    argv = [str(cfg), '--work-dir', str(tmp_path / 'wd'), '--tta', '--cfg-options',
            *tiny_options(tmp_path), data_root_opt(data, 'ade20k'), 'test_pipeline.1.scale=(256,64)']
    built = test_tool.build_cfg(test_tool.parse_args(argv))
    assert built.model.type == 'DeCLIPSegTTAModel'
    assert built.model.module.type == 'DeCLIPZeroShotSegmentor'
    assert [t['type'] for t in built.test_dataloader.dataset.pipeline][-1] == 'TestTimeAug'
    if tta_model == 'None':   # the run itself once (the crash was mmseg's SegTTAModel merging)
        return
    metrics = test_tool.main(argv + ['--out', str(tmp_path / 'preds')])
    check_tool_metrics(metrics, tmp_path / 'preds', osp.join(data, BENCHMARK_LAYOUTS['ade20k']['data_root']),
                       'ade20k')


def test_tta_keeps_other_wrappers_and_defaults_mmseg_models():
    from declip_mm.models.segmentors.seg_tta import resolve_tta_model
    mine = dict(type='MyTTA', foo=1)
    assert resolve_tta_model(dict(type='DeCLIPZeroShotSegmentor'), mine) == mine
    assert resolve_tta_model(dict(type='EncoderDecoder'), None) == dict(type='SegTTAModel')
    assert resolve_tta_model(dict(type='EncoderDecoder'), dict(type='SegTTAModel')) == \
        dict(type='SegTTAModel')


def test_show_dir_in_a_stock_mmseg_config(tmp_path):
    """Issue 14.5: mmseg's SegFormer config, only the data root changed (no training data on disk):
    --show-dir used to fail at the first drawn image (SegVisualizationHook's step=runner.iter builds
    the training loop and its dataset). The help text names the folder the images land in."""
    from declip_mm.testing import write_benchmark_fixture
    root = write_benchmark_fixture('ade20k', str(tmp_path / 'data'), num_images=2,
                                   sizes=[(48, 64), (40, 56)])
    cfg = tmp_path / 'segformer.py'
    cfg.write_text("_base_ = 'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py'\n"
                   "model = dict(pretrained=None, backbone=dict(init_cfg=None))\n"
                   "test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', "
                   "scale=(128, 64), keep_ratio=True), dict(type='LoadAnnotations', "
                   "reduce_zero_label=True), dict(type='PackSegInputs')]\n"
                   f"test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict("
                   f"data_root={root!r}, pipeline=test_pipeline))\n")
    show = tmp_path / 'show'
    metrics = test_tool.main([str(cfg), '--work-dir', str(tmp_path / 'wd'), '--show-dir', str(show),
                              '--out', str(tmp_path / 'preds'),
                              '--allow-untrained-head'])   # a random SegFormer head on purpose
    check_tool_metrics(metrics, tmp_path / 'preds', root, 'ade20k')
    pngs = sorted(os.listdir(show / 'vis_data' / 'vis_image'))
    assert pngs == ['test_ADE_val_00000001.jpg_0.png', 'test_ADE_val_00000002.jpg_0.png']
    import io
    from contextlib import redirect_stdout
    buf = io.StringIO()
    with redirect_stdout(buf), pytest.raises(SystemExit):
        test_tool.parse_args(['--help'])
    assert 'SHOW_DIR/vis_data/vis_image/' in ' '.join(buf.getvalue().split())


def test_empty_image_folder_is_a_clear_error(tmp_path):
    """Issue 14.10: before, the run ended in 'need at least one array to concatenate'."""
    import shutil

    from declip_mm.testing import write_benchmark_fixture
    root = write_benchmark_fixture('ade20k', str(tmp_path / 'data'), num_images=1)
    img_dir = osp.join(root, 'images', 'validation')
    shutil.rmtree(img_dir)
    os.makedirs(img_dir)
    with pytest.raises(ValueError, match=r"no images: nothing found in '.*images/validation'"):
        test_tool.main([tf_config('ade20k'), '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                        *tiny_options(tmp_path), f'test_dataloader.dataset.data_root={root}'])


def test_text_tower_file_messages_name_the_text_tower(tmp_path):
    from declip_mm.models import DeCLIPTextEncoder
    from declip_mm.testing import tiny_clip_config
    with pytest.raises(FileNotFoundError, match=r'text encoder checkpoint .*text_encoder\.pretrained'):
        DeCLIPTextEncoder(tiny_clip_config(), pretrained=str(tmp_path / 'missing.pt'))


def test_checkpoint_with_extra_blocks_is_an_error(tmp_path):
    """Issue 14.10: a deeper checkpoint loaded with only a warning; RoPE buffers stay fine."""
    from declip_mm.models import DeCLIPVisionTransformer
    from declip_mm.testing import tiny_clip_config
    deep = DeCLIPVisionTransformer(tiny_clip_config(depth=4))
    sd = {'visual.' + k: v for k, v in deep.visual.state_dict().items()}
    shallow = DeCLIPVisionTransformer(tiny_clip_config())
    with pytest.raises(ValueError, match=r'\d+ unexpected key\(s\): trunk\.blocks\.3\.'):
        shallow.load_open_clip_state_dict(sd, source='deep.pth')
    ok = {k: v for k, v in sd.items() if '.blocks.3.' not in k}
    ok['visual.trunk.rope.freqs_cos'] = torch.zeros(3)
    shallow.load_open_clip_state_dict(ok, source='release.pth')
    assert torch.equal(shallow.visual.trunk.blocks[0].attn.q_proj.weight,
                       deep.visual.trunk.blocks[0].attn.q_proj.weight)
