"""Issue 14.3 / 14.4: non-finite weights never reach a checkpoint or an evaluation, and mmengine
training checkpoints (``epoch_N.pth``) work where a model is expected."""
import os
import os.path as osp

import pytest
import torch
from tf_helpers import load_tool, tf_config, tiny_options, write_all_fixtures
from train_helpers import TINY_CFG, write_images

from declip_mm.testing import BENCHMARK_LAYOUTS

train_tool = load_tool('train')
test_tool = load_tool('test')


def _train_args(work_dir, data, epochs, *extra, config=TINY_CFG):
    return [str(config), '--work-dir', str(work_dir), '--cfg-options',
            f'train_dataloader.dataset.data_root={data}', f'train_cfg.max_epochs={epochs}',
            'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1', 'log_level=WARNING',
            *extra]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """One epoch of tiny DeCLIP distillation: (work dir, epoch_1.pth, declip_epoch_1.pth)."""
    from mmengine.registry import init_default_scope

    import declip_mm  # noqa: F401
    init_default_scope('mmseg')
    tmp = tmp_path_factory.mktemp('trained')
    data = write_images(tmp / 'imgs', n=4)
    train_tool.main(_train_args(tmp / 'wd', data, 1, 'param_scheduler.0.end=1'))
    return tmp / 'wd', tmp / 'wd' / 'epoch_1.pth', tmp / 'wd' / 'declip_epoch_1.pth'


def _student(ckpt):
    from declip_mm.apis import mmengine_safe_torch_load
    sd = mmengine_safe_torch_load(str(ckpt))['state_dict']
    return {k[len('student.visual.'):]: v for k, v in sd.items() if k.startswith('student.visual.')}


def _data_opt(data, name='ade20k'):
    return f'test_dataloader.dataset.data_root={osp.join(data, BENCHMARK_LAYOUTS[name]["data_root"])}'


# -- 14.3: non-finite weights ----------------------------------------------------------------------
def test_diverging_step_writes_no_checkpoint_and_names_the_last_good_one(tmp_path):
    """lr 1e-3 in epoch 1, 1e5 in epoch 2: the weights blow up, the losses stay finite (they are
    normalised), and the gradients of iteration 4 overflow, so that step leaves NaN in the weights.
    Before the fix epoch_2.pth and declip_epoch_2.pth were written with NaN/Inf."""
    data = write_images(tmp_path / 'imgs', n=4)   # 2 iterations per epoch
    cfg = tmp_path / 'diverge.py'
    cfg.write_text(f'_base_ = [{TINY_CFG!r}]\nparam_scheduler = [dict(type="MultiStepLR", '
                   'by_epoch=False, milestones=[2], gamma=1e8)]\n')
    wd = tmp_path / 'wd'
    with pytest.raises(FloatingPointError) as err:
        train_tool.main(_train_args(wd, data, 2, config=cfg))
    msg = str(err.value)
    assert 'non-finite weights after the optimizer step of iteration 4' in msg
    assert 'its loss was finite' in msg and 'student.visual.' in msg
    assert f'last good checkpoint is {wd / "epoch_1.pth"}' in msg
    assert sorted(f for f in os.listdir(wd) if f.endswith('.pth')) == ['declip_epoch_1.pth',
                                                                        'epoch_1.pth']
    assert (wd / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    from declip_mm.utils.finite import nonfinite_tensors
    assert nonfinite_tensors(_student(wd / 'epoch_1.pth')) == []
    from mmengine.runner import CheckpointLoader  # what --resume reads it with

    from declip_mm.utils import mmengine_checkpoint_loading
    with mmengine_checkpoint_loading():
        assert 'message_hub' in CheckpointLoader.load_checkpoint(str(wd / 'epoch_1.pth'), 'cpu')


def test_hook_refuses_a_nonfinite_checkpoint_and_export():
    """The last guards: CheckpointHook's checkpoint and the merged export are checked as well."""
    from types import SimpleNamespace

    from declip_mm.engine import DeCLIPFiniteWeightsHook, DeCLIPMergeExportHook
    from declip_mm.utils.finite import nonfinite_tensors
    runner = SimpleNamespace(work_dir='/nonexistent', iter=7, epoch=1)
    sd = {'a': torch.zeros(3), 'b': torch.tensor([1.0, float('inf')]),
          'mask.attn_mask': torch.tensor([0.0, float('-inf')]), 'ids': torch.arange(3)}
    assert nonfinite_tensors(sd) == ['b']   # -inf causal masks and integer tensors are fine
    with pytest.raises(FloatingPointError, match=r'in the checkpoint about to be written.*\(b\)'):
        DeCLIPFiniteWeightsHook().before_save_checkpoint(runner, {'state_dict': sd})
    student = SimpleNamespace(visual=torch.nn.Linear(2, 2), model_name='x', attn_mode='csa',
                              attn_scale=1.0)
    teacher = SimpleNamespace(visual=torch.nn.Linear(2, 2))
    with torch.no_grad():
        student.visual.weight[0, 0] = float('nan')
    model = SimpleNamespace(student=student, clip_teacher=teacher)
    runner = SimpleNamespace(model=model, work_dir='/nonexistent', epoch=0, iter=2,
                             logger=None)
    with pytest.raises(FloatingPointError, match=r'not exporting .*declip_epoch_1.pth.*weight'):
        DeCLIPMergeExportHook().after_train_epoch(runner)


def _nan_clip_checkpoint(tmp_path, opts):
    from declip_mm.converters import save_checkpoint
    from declip_mm.models import DeCLIPVisionTransformer
    bb = DeCLIPVisionTransformer(opts[0].split('=', 1)[1])
    sd = {'visual.' + k: v.clone() for k, v in bb.visual.state_dict().items()}
    sd['visual.trunk.blocks.1.attn.q_proj.weight'][0, 0] = float('nan')
    path = tmp_path / 'declip_nan.pth'
    save_checkpoint(str(path), sd, 'tiny', attn_mode='csa')
    return path, sd


def test_nan_checkpoints_are_refused_by_every_loader(tmp_path, trained):
    """Before: tools/test.py evaluated the NaN tower and printed an mIoU."""
    from declip_mm.utils import load_weight_file
    data = write_all_fixtures(tmp_path / 'data', num_images=1)
    opts = tiny_options(tmp_path)
    def base(ckpt):
        return [tf_config('ade20k'), str(ckpt), '--work-dir', str(tmp_path / 'wd')]
    path, sd = _nan_clip_checkpoint(tmp_path, opts)
    pattern = r"declip_nan\.pth' holds non-finite values.*visual\.trunk\.blocks\.1\.attn\.q_proj"
    with pytest.raises(ValueError, match=pattern):
        test_tool.main(base(path) + ['--cfg-options', *opts, _data_opt(data)])
    with pytest.raises(ValueError, match=pattern):
        load_weight_file(path)
    convert = load_tool('convert_checkpoint')
    with pytest.raises(ValueError, match=pattern):
        convert.main([str(path), str(tmp_path / 'out.pth')])
    # a whole-segmentor checkpoint (load_from) and a training checkpoint with a NaN weight
    seg = tmp_path / 'seg_nan.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in sd.items()}, 'meta': {}}, seg)
    with pytest.raises(ValueError, match=r"seg_nan\.pth' holds non-finite.*backbone\.visual"):
        test_tool.main(base(seg) + ['--cfg-options', *opts, _data_opt(data)])
    _, epoch_1, _ = trained
    from declip_mm.apis import mmengine_safe_torch_load
    ckpt = mmengine_safe_torch_load(str(epoch_1))
    key = next(k for k in ckpt['state_dict'] if k.startswith('student.visual.trunk.blocks.0.'))
    ckpt['state_dict'][key] = ckpt['state_dict'][key].clone().fill_(float('inf'))
    bad = tmp_path / 'epoch_9.pth'
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match=rf"epoch_9\.pth' holds non-finite.*{key}"):
        test_tool.main(base(bad) + ['--cfg-options', *opts, _data_opt(data)])
    from mmengine.runner import CheckpointLoader

    from declip_mm.utils import mmengine_checkpoint_loading
    with pytest.raises(ValueError, match=r"epoch_9\.pth' holds non-finite"):   # load_from/resume
        with mmengine_checkpoint_loading():
            CheckpointLoader.load_checkpoint(str(bad), map_location='cpu')


# -- 14.4: training checkpoints where a model is expected --------------------------------------------
def test_training_checkpoint_in_test_tool(tmp_path, trained):
    """epoch_N.pth to tools/test.py: its student tower is evaluated, its mode checked.
    Before: 'Weights only load failed ... if you trust the source'."""
    import declip_mm  # noqa: F401
    from declip_mm.apis import unwrap_model
    from declip_mm.tools_support import prepare_test_runner
    wd, epoch_1, _ = trained
    data = write_all_fixtures(tmp_path / 'data', num_images=1)
    opts = tiny_options(tmp_path) + [_data_opt(data)]
    args = test_tool.parse_args([tf_config('ade20k'), str(epoch_1), '--work-dir',
                                 str(tmp_path / 'wd'), '--cfg-options', *opts])
    cfg = test_tool.build_cfg(args)
    cfg.test_evaluator['output_dir'] = str(tmp_path / 'preds')  # what --out sets
    runner = prepare_test_runner(cfg, args.checkpoint, args.work_dir)
    loaded = unwrap_model(runner.model).backbone.visual.state_dict()
    student = _student(epoch_1)
    assert loaded.keys() == student.keys()
    assert all(torch.equal(loaded[k], student[k]) for k in student)
    assert unwrap_model(runner.model).backbone.checkpoint_meta['attn_mode'] == 'csa'
    from seg_metric_helpers import check_tool_metrics
    check_tool_metrics(runner.test(), tmp_path / 'preds',
                       osp.join(data, BENCHMARK_LAYOUTS['ade20k']['data_root']), 'ade20k')
    with pytest.raises(ValueError, match=r"epoch_1\.pth was trained with attn_mode='csa'"):
        test_tool.main([tf_config('ade20k'), str(epoch_1), '--work-dir', str(tmp_path / 'wd2'),
                        '--cfg-options', *opts, 'model.backbone.attn_mode=qq'])
    from declip_mm.converters import to_open_clip_state_dict
    from declip_mm.converters.training_checkpoints import training_checkpoint_note
    from declip_mm.utils import load_weight_file
    _, flavour, meta = to_open_clip_state_dict(load_weight_file(epoch_1))
    assert flavour == 'training:open_clip' and meta['attn_mode'] == 'csa'
    note = training_checkpoint_note(str(epoch_1), meta)
    assert f'pass {wd / "declip_epoch_1.pth"}' in note and 'not found' not in note


def test_training_checkpoint_in_demo_and_converter(tmp_path, trained):
    import json

    from declip_mm.testing import tiny_clip_config
    _, epoch_1, _ = trained
    demo = load_tool('demo')
    img = write_images(tmp_path / 'img', n=1) + '/000000.jpg'
    js = tmp_path / 'tiny.json'
    js.write_text(json.dumps(tiny_clip_config('eva02')))
    pred = demo.main([img, '--classes', 'cat; sky', '--weights', str(epoch_1), '--out',
                      str(tmp_path / 'o.png'), '--cfg-options', f'model.backbone.model_name={js}',
                      f'model.text_encoder.model_name={js}', 'model.text_encoder.pretrained=None',
                      'model.text_encoder.templates=single', 'model.test_cfg.crop_size=64',
                      'model.test_cfg.stride=32', 'test_pipeline.1.scale=(4096,64)'])
    assert pred.ndim == 2 and (tmp_path / 'o.png').is_file()
    convert = load_tool('convert_checkpoint')
    out = tmp_path / 'student.pth'
    convert.main([str(epoch_1), str(out)])
    ckpt = torch.load(out, weights_only=True)
    assert ckpt['meta']['attn_mode'] == 'csa' and ckpt['meta']['architecture'] == tiny_clip_config()
    student = _student(epoch_1)
    assert {k[len('visual.'):] for k in ckpt['state_dict']} == set(student)
    assert all(torch.equal(ckpt['state_dict']['visual.' + k], v) for k, v in student.items())


def test_training_checkpoint_mode_from_config_text():
    """Files written before meta['declip_student'] existed: the mode comes from meta['cfg']."""
    from declip_mm.converters.training_checkpoints import student_tower
    cfg = ("model = dict(type='DeCLIPDistiller', student=dict(type='DeCLIPVisionTransformer', "
           "model_name='EVA02-B-16', attn_mode='qq', attn_scale=1.0))\n")
    sd = {'student.visual.trunk.pos_embed': torch.zeros(1)}
    tower, meta = student_tower(sd, {'cfg': cfg, 'epoch': 3})
    assert list(tower) == ['visual.trunk.pos_embed']
    assert (meta['architecture'], meta['attn_mode'], meta['attn_scale'], meta['epoch']) == \
        ('EVA02-B-16', 'qq', 1.0, 3)
    _, meta = student_tower(sd, {'cfg': 'not python ('})
    assert 'attn_mode' not in meta
