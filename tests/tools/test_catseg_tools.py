"""configs/catseg through tools/train.py and tools/test.py with tiny random towers and a tiny head on
fixture data in the benchmarks' real layouts."""
import os
import os.path as osp

import pytest
import torch
from catseg_helpers import catseg_config, tiny_tool_options
from seg_metric_helpers import check_tool_metrics
from tf_helpers import load_tool, run_file

from declip_mm.testing import BENCHMARK_LAYOUTS, TRAIN_LAYOUTS, write_benchmark_fixture

pytestmark = pytest.mark.usefixtures('one_thread')
train_tool = load_tool('train')
test_tool = load_tool('test')

VARIANTS = {'declip-eva02-b16': ('eva02', []),
            'declip-eva02-l14-336': ('eva02', ['model.clip_size=32']),
            'openai-vitb16': ('openai', [])}


def _root(data, name):
    return osp.join(data, {**BENCHMARK_LAYOUTS, **TRAIN_LAYOUTS}[name]['data_root'])


def test_training_config_runs_and_its_checkpoint_evaluates_on_another_vocabulary(tmp_path):
    data = str(tmp_path / 'data')
    write_benchmark_fixture('coco_stuff164k_train', data, num_images=4, sizes=[(48, 80), (72, 56)])
    write_benchmark_fixture('coco_stuff164k', data, num_images=1)
    write_benchmark_fixture('ade20k', data, num_images=2)
    wd = tmp_path / 'wd'
    opts = tiny_tool_options(tmp_path) + [
        'model.decode_head.pad_len=0',   # no class-length padding: a cheaper class step
        'model.data_preprocessor.size=(64,64)',
        f'train_dataloader.dataset.data_root={_root(data, "coco_stuff164k_train")}',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'train_dataloader.dataset.pipeline.2.scale=(200,64)',
        'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',
        f'val_dataloader.dataset.data_root={_root(data, "coco_stuff164k")}',
        'val_dataloader.num_workers=0', 'val_dataloader.dataset.pipeline.1.scale=(256,96)',
        'train_cfg.max_iters=3', 'train_cfg.val_interval=3', 'param_scheduler.0.end=3',
        'default_hooks.checkpoint.interval=3', 'default_hooks.logger.interval=1']
    runner = train_tool.main([catseg_config('catseg_declip-eva02-b16_1xb4-80k_*.py'), '--work-dir',
                              str(wd), '--cfg-options', *opts])
    assert runner.iter == 3
    ckpt = wd / 'iter_3.pth'
    assert ckpt.exists()
    lrs = runner.optim_wrapper.get_lr()['lr']
    assert max(lrs) == pytest.approx(2e-4 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 2 / 3))).item())
    # the 171-class checkpoint evaluates on ADE20K's 150 classes: every weight is loaded
    from declip_mm.apis import unwrap_model
    from declip_mm.tools_support import prepare_test_runner
    args = test_tool.parse_args([catseg_config('catseg_declip-eva02-b16_ade20k-*.py'), str(ckpt),
                                 '--work-dir', str(tmp_path / 'eval'), '--cfg-options',
                                 *tiny_tool_options(tmp_path), 'model.decode_head.pad_len=0',
                                 f'test_dataloader.dataset.data_root={_root(data, "ade20k")}'])
    cfg = test_tool.build_cfg(args)
    cfg.test_evaluator['output_dir'] = str(tmp_path / 'preds')  # what --out sets
    test_runner = prepare_test_runner(cfg, args.checkpoint, args.work_dir, args.config)
    from declip_mm.utils import mmengine_checkpoint_loading
    with mmengine_checkpoint_loading():   # as tools/test.py: load_from is a training checkpoint
        metrics = test_runner.test()
    check_tool_metrics(metrics, tmp_path / 'preds', _root(data, 'ade20k'), 'ade20k')
    from declip_mm.apis import mmengine_safe_torch_load
    saved = mmengine_safe_torch_load(str(ckpt))['state_dict']
    model = unwrap_model(test_runner.model)
    assert model.num_classes == 150
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


# all three benchmarks for the B/16 configs; one each for the L and the plain-CLIP variants (they
# differ from B only in the model variables: clip_size, out_indices, attn_mode) to keep the suite fast
@pytest.mark.parametrize('variant,bench', [('declip-eva02-b16', 'ade20k'),
                                           ('declip-eva02-b16', 'context59'),
                                           ('declip-eva02-b16', 'cityscapes'),
                                           ('declip-eva02-l14-336', 'ade20k'),
                                           ('openai-vitb16', 'context59')])
def test_evaluation_configs_run(tmp_path, variant, bench):
    family, extra = VARIANTS[variant]
    data = str(tmp_path / 'data')
    write_benchmark_fixture(bench, data, num_images=2)
    args = [catseg_config(f'catseg_{variant}_{bench}-640x640.py'), '--work-dir', str(tmp_path / 'wd')]
    show = tmp_path / 'show'
    if variant == 'declip-eva02-b16':
        args += ['--show-dir', str(show)]
    if variant == 'openai-vitb16':
        args += ['--tta']
    out = tmp_path / 'preds'
    metrics = test_tool.main(args + ['--out', str(out), '--cfg-options',
                                     *tiny_tool_options(tmp_path, family), *extra,
                                     f'test_dataloader.dataset.data_root={_root(data, bench)}'])
    check_tool_metrics(metrics, out, _root(data, bench), bench)
    if variant == 'declip-eva02-b16':
        assert len([f for _, _, fs in os.walk(show) for f in fs if f.endswith('.png')]) == 2


def test_bad_class_file_and_checkpoint_mode(tmp_path):
    data = str(tmp_path / 'data')
    write_benchmark_fixture('cityscapes', data, num_images=1)
    base = [catseg_config('catseg_declip-eva02-b16_cityscapes-*.py'), '--work-dir',
            str(tmp_path / 'wd'), '--cfg-options', *tiny_tool_options(tmp_path),
            f'test_dataloader.dataset.data_root={_root(data, "cityscapes")}']
    bad = tmp_path / 'classes.txt'
    bad.write_text('road\nsky\n')
    with pytest.raises(ValueError, match='2 classes but the dataset has 19'):
        test_tool.main(base + [f'model.class_names={bad}'])
    from declip_mm.models import DeCLIPVisionTransformer
    from declip_mm.testing import tiny_clip_config
    bb = DeCLIPVisionTransformer(tiny_clip_config('eva02'))
    ckpt = tmp_path / 'declip_epoch_1.pth'
    torch.save({'state_dict': {'visual.' + k: v for k, v in bb.visual.state_dict().items()},
                'meta': {'attn_mode': 'csa'}}, ckpt)
    # csa weights run in qq drop their trained K branch: refused (qq -> csa is allowed)
    with pytest.raises(ValueError, match="trained with attn_mode='csa'.*attn_mode='qq'"):
        test_tool.main(base[:1] + [str(ckpt)] + base[1:] + ['model.backbone.attn_mode=qq'])


def test_eval_catseg_prints_table_next_to_published(tmp_path, capsys):
    data = str(tmp_path / 'data')
    write_benchmark_fixture('context59', data, num_images=1)
    tool = load_tool('eval_catseg')
    res = tool.main(['--data-root', data, '--benchmarks', 'context59', '--work-dir',
                     str(tmp_path / 'wd'), '--cfg-options', *tiny_tool_options(tmp_path)])
    out = capsys.readouterr().out
    assert set(res) == {'context59'}
    assert '| CAT-Seg ViT-B (published) | 31.8 | 57.5 | - |' in out
    assert '| DeCLIP + CAT-Seg ViT-B (published) | 36.3 | 60.6 | - |' in out
    assert f'| declip-eva02-b16 (this run) | - | {res["context59"]:.1f} | - |' in out
    assert '(this run)' in open(run_file(tmp_path / 'wd', 'md')).read()
