"""Issue 24.6: no output replaces an existing file without being asked to.

Before: convert_checkpoint.py wrote over its own input or any file (README.md was overwritten);
eval_all.py / eval_catseg.py wrote over an earlier run's results table; eval_catseg.py lost the first
benchmark's result when the second one's data was missing; the inferencer's out_dir let x/a.jpg,
y/a.jpg and a_1.jpg overwrite each other's outputs."""
import glob
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from catseg_helpers import tiny_tool_options
from PIL import Image
from tf_helpers import load_tool, run_file, tiny_options

from declip_mm.testing import tiny_clip_config, write_benchmark_fixture

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def tower_file(tmp_path):
    from declip_mm.converters import save_checkpoint
    from declip_mm.models import DeCLIPVisionTransformer
    tiny = tiny_clip_config('eva02')
    bb = DeCLIPVisionTransformer(tiny)
    path = tmp_path / 'tower.pth'
    save_checkpoint(str(path), {'visual.' + k: v for k, v in bb.visual.state_dict().items()}, tiny,
                    attn_mode='csa')
    return path


def test_convert_checkpoint_never_writes_over_its_input_or_an_existing_file(tmp_path, tower_file,
                                                                            capsys):
    convert = load_tool('convert_checkpoint')
    src_bytes = tower_file.read_bytes()
    for dst, extra in ((tower_file, []), (tower_file, ['--overwrite']),
                       (tmp_path / 'sub' / '..' / 'tower.pth', ['--overwrite'])):
        (tmp_path / 'sub').mkdir(exist_ok=True)
        with pytest.raises(SystemExit, match='is the input .*refusing to overwrite the input'):
            convert.main([str(tower_file), str(dst), *extra])
        assert tower_file.read_bytes() == src_bytes
    readme = tmp_path / 'README.md'
    readme.write_text('# my notes\n')
    with pytest.raises(SystemExit, match=r'README\.md already exists.*--overwrite'):
        convert.main([str(tower_file), str(readme)])
    assert readme.read_text() == '# my notes\n'
    convert.main([str(tower_file), str(readme), '--overwrite'])   # asked for: replaced
    ckpt = torch.load(readme, weights_only=True)
    src = torch.load(tower_file, weights_only=True)['state_dict']
    assert ckpt['state_dict'].keys() == src.keys()
    assert all(torch.equal(ckpt['state_dict'][k], v) for k, v in src.items())
    assert not glob.glob(str(tmp_path / '*.tmp-*'))


def test_reserved_names_never_collide(tmp_path):
    from declip_mm.utils.output_files import reserve_free_stem, reserve_run_prefix
    a = reserve_run_prefix(str(tmp_path), 'results', ('md', 'json'), now=0.0)
    b = reserve_run_prefix(str(tmp_path), 'results', ('md', 'json'), now=0.0)
    assert b == a + '_1' and osp.isfile(a + '.md') and osp.isfile(b + '.md')
    (tmp_path / 'x_probs.npz').write_bytes(b'')           # any of the stem's files blocks it
    assert reserve_free_stem(str(tmp_path), 'x', ('_overlay.png', '_probs.npz')) == 'x_1'
    assert reserve_free_stem(str(tmp_path), 'x', ('_overlay.png', '_probs.npz')) == 'x_2'


def test_eval_all_keeps_an_earlier_runs_table(tmp_path):
    eval_all = load_tool('eval_all')
    data = str(tmp_path / 'data')
    write_benchmark_fixture('voc21', data, num_images=1)
    work = tmp_path / 'shared'
    work.mkdir()
    earlier = {work / f'results.{e}': f'an earlier run ({e})\n' for e in ('md', 'csv', 'json')}
    earlier[work / 'results_20260101-000000.md'] = 'another earlier run\n'
    for path, text in earlier.items():
        path.write_text(text)
    res = eval_all.main(['--data-root', data, '--benchmarks', 'voc21', '--work-dir', str(work),
                         '--text-cache-dir', 'none', '--cfg-options', *tiny_options(tmp_path)])
    for path, text in earlier.items():
        assert path.read_text() == text, path
    saved = json.load(open(_newest(work, 'json')))
    assert saved['mIoU'] == pytest.approx(res)
    assert len(glob.glob(str(work / 'results_*.md'))) == 2


def _newest(work, ext):
    (path, ) = [p for p in glob.glob(str(work / f'results_*.{ext}')) if '20260101' not in p]
    return path


def test_eval_catseg_keeps_the_finished_benchmark_when_another_has_no_data(tmp_path, capsys):
    tool = load_tool('eval_catseg')
    data = str(tmp_path / 'data')
    write_benchmark_fixture('context59', data, num_images=1)       # no Cityscapes on disk
    work = tmp_path / 'wd'
    work.mkdir()
    (work / 'results.md').write_text('an earlier table\n')
    res = tool.main(['--data-root', data, '--benchmarks', 'context59', 'cityscapes',
                     '--work-dir', str(work), '--cfg-options', *tiny_tool_options(tmp_path)])
    out = capsys.readouterr().out
    assert set(res) == {'context59'}
    assert '[2/2] cityscapes: FAILED' in out and 'carrying on' in out
    saved = json.load(open(run_file(work, 'json')))
    assert saved['mIoU'] == pytest.approx(res) and set(saved['errors']) == {'cityscapes'}
    table = open(run_file(work, 'md')).read()
    assert f'| declip-eva02-b16 (this run) | - | {res["context59"]:.1f} | - |' in table
    assert '- City19 not evaluated: ' in table and table.strip() in out
    assert (work / 'results.md').read_text() == 'an earlier table\n'


def test_inferencer_out_dir_gives_every_image_its_own_files(tmp_path):
    from declip_mm.apis import DeCLIPInferencer
    tiny = dict(tiny_clip_config('eva02'), _delete_=True)
    inf = DeCLIPInferencer(cfg_options={
        'model.backbone.model_name': tiny, 'model.text_encoder.model_name': tiny,
        'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
        'model.text_encoder.templates': 'single', 'model.test_cfg.crop_size': 64,
        'model.test_cfg.stride': 48, 'test_pipeline.1.scale': (4096, 48)}, device='cpu')
    rng = np.random.default_rng(0)
    paths = [tmp_path / 'x' / 'a.png', tmp_path / 'y' / 'a.png', tmp_path / 'a_1.png']
    for i, p in enumerate(paths):
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 56, 3), dtype=np.uint8)).save(p)
    out = str(tmp_path / 'out')
    res = inf([str(p) for p in paths], classes='sky; grass; road', out_dir=out)
    overlays = [r.files['overlay'] for r in res]
    assert len(set(overlays)) == 3 and len(os.listdir(out)) == 9
    for r in res:
        np.testing.assert_array_equal(np.asarray(Image.open(r.files['labels'])), r.labels)
        assert np.load(r.files['probs'])['probs'].shape == r.probs.shape
    before = {f: open(osp.join(out, f), 'rb').read() for f in os.listdir(out)}
    again = inf(str(paths[0]), out_dir=out)                     # a later call, same folder
    assert again.files['overlay'] not in overlays and len(os.listdir(out)) == 12
    for f, content in before.items():
        assert open(osp.join(out, f), 'rb').read() == content, f
