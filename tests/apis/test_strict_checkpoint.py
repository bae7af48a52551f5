"""Issue 24.2: a whole-model checkpoint of another shape (or with missing / extra tensors) is refused
with the list of tensors, and a model with a trained head is not evaluated without its checkpoint
unless the user says so (tools/test.py, tools/eval_catseg.py, the inferencer).

Before: mmengine's ``load_from`` and ``load_checkpoint(strict=False)`` warned (70 size mismatches)
and an mIoU was printed; a CAT-Seg config without a checkpoint evaluated a random head."""
import os.path as osp

import pytest
import torch
from catseg_helpers import catseg_config, tiny_tool_options
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tf_helpers import load_tool

from declip_mm.apis import DeCLIPInferencer
from declip_mm.testing import BENCHMARK_LAYOUTS, write_benchmark_fixture

pytestmark = pytest.mark.usefixtures('one_thread')
test_tool = load_tool('test')
ADE = 'catseg_declip-eva02-b16_ade20k-*.py'


def _opts(tmp_path, data, allow=True):
    opts = [o for o in tiny_tool_options(tmp_path) if not o.startswith('allow_untrained_head')]
    root = osp.join(data, BENCHMARK_LAYOUTS['ade20k']['data_root'])
    return opts + [f'test_dataloader.dataset.data_root={root}'] + \
        (['allow_untrained_head=True'] if allow else [])


def _catseg_checkpoint(tmp_path, opts, name='catseg.pth', **head):
    """A whole-segmentor checkpoint of the tiny CAT-Seg model (``head``: other head sizes)."""
    from mmseg.registry import MODELS
    args = test_tool.parse_args([catseg_config(ADE), '--cfg-options', *opts,
                                 *[f'model.decode_head.{k}={v}' for k, v in head.items()]])
    cfg = test_tool.build_cfg(args)
    init_default_scope('mmseg')
    torch.manual_seed(3)
    model = MODELS.build(cfg.model)
    path = tmp_path / name
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path, model.state_dict()


@pytest.fixture
def data(tmp_path):
    write_benchmark_fixture('ade20k', str(tmp_path / 'data'), num_images=1)
    return str(tmp_path / 'data')


def test_head_of_another_size_is_refused_by_test_tool(tmp_path, data):
    opts = _opts(tmp_path, data)
    ckpt, _ = _catseg_checkpoint(tmp_path, opts, embed_dims=24)   # the config's head: 16 wide
    with pytest.raises(ValueError) as err:
        test_tool.main([catseg_config(ADE), str(ckpt), '--work-dir', str(tmp_path / 'wd'),
                        '--cfg-options', *opts])
    msg = str(err.value)
    assert 'DeCLIPCATSegSegmentor' in msg and 'catseg.pth' in msg and 'Refused' in msg
    assert 'shape mismatch(es)' in msg and 'checkpoint (24' in msg and 'vs model (16' in msg
    assert 'decode_head.' in msg


def test_missing_and_unexpected_tensors_are_refused_and_a_fitting_file_loads(tmp_path, data):
    opts = _opts(tmp_path, data)
    ckpt, sd = _catseg_checkpoint(tmp_path, opts)
    gone = sorted(k for k in sd if k.startswith('decode_head.'))[0]
    partial = {k: v for k, v in sd.items() if k != gone}
    torch.save({'state_dict': partial, 'meta': {}}, tmp_path / 'partial.pth')
    base = ['--work-dir', str(tmp_path / 'wd'), '--cfg-options', *opts]
    with pytest.raises(ValueError, match=rf'1 missing key\(s\): {gone}'):
        test_tool.main([catseg_config(ADE), str(tmp_path / 'partial.pth'), *base])
    extra = dict(sd, **{'decode_head.extra_layer.weight': torch.zeros(2)})
    torch.save({'state_dict': extra, 'meta': {}}, tmp_path / 'extra.pth')
    with pytest.raises(ValueError, match=r'1 unexpected key\(s\): decode_head\.extra_layer\.weight'):
        test_tool.main([catseg_config(ADE), str(tmp_path / 'extra.pth'), *base])
    # the exact file: every tensor loaded (DDP's 'module.' prefix stripped as mmengine does)
    torch.save({'state_dict': {'module.' + k: v for k, v in sd.items()}, 'meta': {}},
               tmp_path / 'ddp.pth')
    from declip_mm.apis import unwrap_model
    from declip_mm.tools_support import prepare_test_runner
    args = test_tool.parse_args([catseg_config(ADE), str(tmp_path / 'ddp.pth'), *base])
    runner = prepare_test_runner(test_tool.build_cfg(args), args.checkpoint, args.work_dir)
    metrics = runner.test()
    assert 0.0 <= metrics['mIoU'] <= 100.0
    for k, v in unwrap_model(runner.model).state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_untrained_head_needs_the_explicit_flag(tmp_path, data):
    opts = _opts(tmp_path, data, allow=False)
    base = [catseg_config(ADE), '--work-dir', str(tmp_path / 'wd')]
    with pytest.raises(ValueError, match=r'DeCLIPCATSegSegmentor has parts that are trained '
                       r'\(decode_head\).*--allow-untrained-head'):
        test_tool.main(base + ['--cfg-options', *opts])
    # an image-tower checkpoint gives the backbone only: the head is still untrained
    from declip_mm.models import DeCLIPVisionTransformer
    from declip_mm.testing import tiny_clip_config
    bb = DeCLIPVisionTransformer(tiny_clip_config('eva02'))
    tower = tmp_path / 'declip_epoch_1.pth'
    torch.save({'state_dict': {'visual.' + k: v for k, v in bb.visual.state_dict().items()},
                'meta': {'attn_mode': 'csa'}}, tower)
    with pytest.raises(ValueError, match='has parts that are trained'):
        test_tool.main(base[:1] + [str(tower)] + base[1:] + ['--cfg-options', *opts])
    metrics = test_tool.main(base + ['--allow-untrained-head', '--cfg-options', *opts])
    assert 0.0 <= metrics['mIoU'] <= 100.0


def test_eval_catseg_refuses_an_untrained_head(tmp_path, data, capsys):
    tool = load_tool('eval_catseg')
    args = ['--data-root', data, '--benchmarks', 'ade20k', '--work-dir', str(tmp_path / 'wd'),
            '--cfg-options', *_opts(tmp_path, data, allow=False)]
    assert tool.main(args) == {}
    assert 'ade20k: FAILED (ValueError: DeCLIPCATSegSegmentor has parts that are trained' in \
        capsys.readouterr().out
    assert set(tool.main(args + ['--allow-untrained-head'])) == {'ade20k'}


def _inferencer_opts():
    from catseg_helpers import TINY_HEAD

    from declip_mm.testing import tiny_clip_config
    tiny = dict(tiny_clip_config('eva02'), _delete_=True)
    opts = {'model.backbone.model_name': tiny, 'model.text_encoder.model_name': tiny,
            'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
            'model.backbone.out_indices': (0, 1), 'model.test_cfg.size': 96,
            'model.test_cfg.crop_size': 64, 'model.test_cfg.stride': 32}
    opts.update({f'model.decode_head.{k}': v for k, v in TINY_HEAD.items() if k != 'type'})
    return opts


def test_inferencer_refuses_other_shapes_and_an_untrained_head(tmp_path):
    CONFIG = 'catseg_declip-eva02-b16_ade20k-640x640'
    opts = _inferencer_opts()
    with pytest.raises(ValueError, match=r"has parts that are trained.*allow_untrained_head=True"):
        DeCLIPInferencer(CONFIG, cfg_options=opts)
    ok = DeCLIPInferencer(CONFIG, cfg_options={**opts, 'allow_untrained_head': True})
    sd = ok.model.state_dict()
    ckpt = tmp_path / 'seg.pth'
    torch.save({'state_dict': sd, 'meta': {}}, ckpt)
    torch.manual_seed(11)
    again = DeCLIPInferencer(CONFIG, cfg_options=opts, checkpoint=str(ckpt))   # fits: loads
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    with pytest.raises(ValueError, match=r'(?s)shape mismatch.*Refused'):
        DeCLIPInferencer(CONFIG, checkpoint=str(ckpt),
                         cfg_options={**opts, 'model.decode_head.embed_dims': 24})
    # a config naming its checkpoint (load_from) is a checkpoint too
    cfg = Config.fromfile(ok.cfg.filename)
    cfg.merge_from_dict(opts)
    cfg.load_from = str(ckpt)
    from_cfg = DeCLIPInferencer(cfg)
    for k, v in from_cfg.model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_distiller_checkpoint_leaves_teachers_out_and_checks_the_rest(tmp_path):
    """What a model's checkpoints hold is what its state_dict() holds: the distiller drops its frozen
    teachers (they are rebuilt from their own files), so they are not 'missing'."""
    from mmseg.registry import MODELS
    from train_helpers import TINY_CFG

    from declip_mm.apis.strict_checkpoint import check_whole_model_state_dict, whole_model_state_dict
    init_default_scope('mmseg')
    model = MODELS.build(Config.fromfile(TINY_CFG).model)
    sd = whole_model_state_dict({'state_dict': model.state_dict()})
    assert sd and not any(k.startswith(('clip_teacher.', 'vfm_teacher')) for k in sd)
    assert any(n.startswith('clip_teacher') for n, _ in model.named_parameters())
    check_whole_model_state_dict(model, sd, 'epoch_1.pth')   # passes
    key = next(k for k in sd if k.startswith('student.visual.'))
    with pytest.raises(ValueError, match=rf'1 missing key\(s\): {key}'):
        check_whole_model_state_dict(model, {k: v for k, v in sd.items() if k != key}, 'x.pth')
