"""tools/eval_all.py (issues 14.8 / 15.3): shared backbone features give exactly the numbers of
separate runs with fewer backbone passes; results survive a failing benchmark; class embeddings are
cached on disk."""
import json
import shutil

import pytest
import torch
from tf_helpers import load_tool, run_file, tiny_options, write_all_fixtures

from declip_mm.models import DeCLIPVisionTransformer

eval_all = load_tool('eval_all')


@pytest.fixture
def count_passes(monkeypatch):
    calls = []
    orig = DeCLIPVisionTransformer.forward

    def counted(self, x, *a, **k):
        calls.append(x.shape[0])
        return orig(self, x, *a, **k)

    monkeypatch.setattr(DeCLIPVisionTransformer, 'forward', counted)
    return calls


def test_shared_features_equal_separate_runs(tmp_path, count_passes):
    torch.set_num_threads(1)
    data = write_all_fixtures(tmp_path / 'data', num_images=2)
    # all windows of an image in one backbone call: a pass is one image's backbone computation
    opts = [*tiny_options(tmp_path, 'eva02'), 'randomness.seed=0', 'model.test_cfg.batch_size=512']
    outs = {}
    passes = {}
    for mode, extra in (('separate', ['--no-share']), ('shared', [])):
        count_passes.clear()
        work = tmp_path / mode
        eval_all.main(['--data-root', data, '--work-dir', str(work), '--text-cache-dir', 'none',
                       *extra, '--cfg-options', *opts])
        passes[mode] = len(count_passes)
        outs[mode] = json.load(open(run_file(work, 'json')))
    sep, sh = outs['separate'], outs['shared']
    assert list(sep['mIoU']) and sorted(sep['mIoU']) == sorted(eval_all.BENCHMARKS)
    for name in eval_all.BENCHMARKS:   # every metric exactly equal, not approximately
        a = {k: v for k, v in sep['details'][name].items() if k != 'seconds'}
        b = {k: v for k, v in sh['details'][name].items() if k != 'seconds'}
        assert a == b, name
    assert not sh['errors'] and not sep['errors']
    # three of the eight benchmarks reuse their partner's features: 8 x 2 images vs 5 x 2
    assert passes == dict(separate=16, shared=10)
    assert passes['separate'] / passes['shared'] >= 1.6


def test_failing_benchmark_is_marked_and_others_finish(tmp_path, capsys):
    data = write_all_fixtures(tmp_path / 'data', num_images=1)
    shutil.rmtree(tmp_path / 'data' / 'cityscapes' / 'leftImg8bit')   # fails while building
    shutil.rmtree(tmp_path / 'data' / 'ade' / 'ADEChallengeData2016' / 'annotations')  # mid-run
    out = tmp_path / 'eval'
    results = eval_all.main(['--data-root', data, '--work-dir', str(out), '--cfg-options',
                             *tiny_options(tmp_path, 'openai')])
    assert sorted(results) == sorted(set(eval_all.BENCHMARKS) - {'cityscapes', 'ade20k'})
    saved = json.load(open(run_file(out, 'json')))
    assert saved['mIoU'] == pytest.approx(results)
    assert set(saved['errors']) == {'cityscapes', 'ade20k'}
    table = open(run_file(out, 'md')).read()
    assert '| failed |' in table and 'City failed:' in table and 'ADE failed:' in table
    text = capsys.readouterr().out
    assert 'ade20k: FAILED' in text and 'carrying on' in text


def test_format_table_marks_failures():
    t = eval_all.format_table({'voc21': 50.0, 'ade20k': 20.0}, {'cityscapes': 'OSError: gone'})
    lines = t.splitlines()
    assert lines[0] == '| VOC21 | City | ADE | Avg |'
    assert lines[2] == '| 50.0 | failed | 20.0 | 35.0* |'
    assert '- City failed: OSError: gone' in t


def test_text_embeddings_cached_on_disk(tmp_path, monkeypatch):
    import open_clip

    from declip_mm.models import DeCLIPTextEncoder, DeCLIPZeroShotSegmentor
    from declip_mm.testing import tiny_clip_config
    cfg = tiny_clip_config('openai')
    weights = tmp_path / 'clip.pth'
    torch.manual_seed(0)
    torch.save(open_clip.model.CLIP(**cfg).state_dict(), weights)

    def build(names, pretrained=str(weights), templates='single'):
        seg = DeCLIPZeroShotSegmentor(
            backbone=dict(type='DeCLIPVisionTransformer', model_name=cfg, attn_mode='csa'),
            text_encoder=dict(type='DeCLIPTextEncoder', model_name=cfg, templates=templates,
                              pretrained=pretrained),
            class_names=names, embedding_cache_dir=str(tmp_path / 'cache'))
        seg.init_weights()
        return seg

    first = build(['cat', ['dog', 'puppy']]).class_embeddings()
    assert len(list((tmp_path / 'cache').glob('*.pt'))) == 1
    calls = []
    orig = DeCLIPTextEncoder.forward
    monkeypatch.setattr(DeCLIPTextEncoder, 'forward',
                        lambda self, *a, **k: calls.append(1) or orig(self, *a, **k))
    again = build(['cat', ['dog', 'puppy']]).class_embeddings()
    assert not calls and torch.equal(first, again)       # read from disk, same values
    other = build(['cat', 'dog']).class_embeddings()      # another vocabulary: computed
    assert calls and other.shape == (2, first.shape[1])
    build(['cat', 'dog'], templates='vild').class_embeddings()   # other templates: another file
    assert len(list((tmp_path / 'cache').glob('*.pt'))) == 3
    build(['cat', 'dog'], pretrained=None).class_embeddings()    # random tower: never cached
    assert len(list((tmp_path / 'cache').glob('*.pt'))) == 3
