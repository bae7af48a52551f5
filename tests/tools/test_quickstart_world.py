"""tools/quickstart.py's default run: the miniature world (declip_mm/miniworld/quickstart_world.py).

The towers are trained for 2 steps here (no shipped archive visible): the test pins the plumbing
(phases, cache, table, pictures), not learning; tests/miniworld/test_world_end_to_end.py pins the
learning with the shipped towers."""
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from tf_helpers import load_tool

quickstart = load_tool('quickstart')


pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def miou(pred, gt, num_classes=17):
    """mmseg IoUMetric's mIoU (percent) over a list of label maps: per class, intersections and
    unions summed over the images; classes with an empty union are left out of the mean."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for p, g in zip(pred, gt):
        for k in range(num_classes):
            inter[k] += np.sum((p == k) & (g == k))
            union[k] += np.sum((p == k) | (g == k))
    with np.errstate(invalid='ignore', divide='ignore'):
        return float(np.nanmean(inter / np.where(union > 0, union, np.nan)) * 100)


@pytest.fixture
def brief(tmp_path, monkeypatch):
    """No shipped archive; a 2-step 'brief' training."""
    import declip_mm.miniworld.shipped as shipped
    import declip_mm.miniworld.world_towers as wt
    monkeypatch.setattr(shipped, 'SHIPPED_DIR', str(tmp_path / 'nothing_shipped'))
    monkeypatch.setattr(wt, 'BRIEF_CLIP_STEPS', 2)
    monkeypatch.setattr(wt, 'BRIEF_VFM_STEPS', 2)
    return wt


def test_world_quickstart_phases_table_pictures(tmp_path, capsys, brief):
    out, cache = tmp_path / 'qs', tmp_path / 'cache'
    res = quickstart.main(['--out-dir', str(out), '--cache-dir', str(cache), '--epochs', '1',
                           '--unlabeled', '16', '--bench', '4', '--threads', '1'])
    text = capsys.readouterr().out
    # one progress line per phase, in order, each with its time
    done = re.findall(r'^\[(\d)/6\] (\w+) done in \d+ s', text, re.M)
    assert done == [(str(i), n) for i, n in enumerate(
        ('world', 'towers', 'before', 'declip', 'after', 'pictures'), 1)]
    assert 'trained briefly and cached' in text and 'RANDOM' not in text
    assert res['towers']['clip']['source'] == 'trained'
    # the printed table holds the tools/test.py metrics of each run
    rows = [line for line in text.splitlines() if line.startswith(('| before', '| after'))]
    assert len(rows) == 3
    got = [[float(c) for c in r.strip('|').split('|')[2:]] for r in rows]
    want = [res['before']['vanilla'], res['before']['csa'], res['after']['csa']]
    assert got == [[round(m[k], 1) for k in ('mIoU', 'mAcc', 'aAcc')] for m in want]
    for name in ('before_vanilla', 'after_csa'):
        cfg = (out / 'eval' / name / 'run_config.py').read_text()
        assert f"attn_mode='{name.split('_')[1]}'" in cfg      # the merged config, as run
    assert 'train_cfg = dict(max_epochs=1,' in (out / 'train' / 'run_config.py').read_text()
    assert res['export'] == str(out / 'train' / 'declip_epoch_1.pth')
    # the pictures show what was evaluated: the inferencer's labels on the 4 benchmark scenes give
    # tools/test.py's mIoU (n_bench == n_pictures)
    lab = np.load(out / 'overlays' / 'labels.npz')
    gt = list(lab['ground_truth'])
    assert lab['ground_truth'].shape == (4, 64, 64) and gt[0].min() >= 0 and gt[0].max() < 17
    for key, m in (('vanilla', want[0]), ('csa', want[1]), ('declip', want[2])):
        assert miou(list(lab[key]), gt) == pytest.approx(m['mIoU'], abs=0.01), key
    png = Image.open(out / 'overlays' / 'before_after.png')
    assert png.size[0] == 5 * (64 * 3 + 4) + 4          # image, truth, vanilla, csa, DeCLIP
    assert png.size[1] > 4 * (64 * 3 + 4)
    for name in ('proxy_tokens.png', 'proxy_tokens_context.png'):
        assert (out / 'proxy_tokens' / name).stat().st_size > 1000
    saved = json.loads((out / 'results.json').read_text())
    assert saved['after'] == res['after'] and saved['table'] == res['table']


def test_world_towers_cache_then_shipped(tmp_path, brief):
    """Trained once, then reused from the cache; an archive of this checkout's versions is preferred
    to the cache and unpacks to the same tensors (float16); one of another version is ignored."""
    from declip_mm.miniworld import shipped
    cache = tmp_path / 'cache'
    first = brief.world_towers(str(cache), threads=1, log=None)
    assert first['clip']['source'] == first['vfm']['source'] == 'trained'
    again = brief.world_towers(str(cache), train=False, log=None)
    assert again['clip']['source'] == 'cached' and again['clip']['weights'] == first['clip']['weights']
    assert brief.world_towers(str(tmp_path / 'empty'), train=False, log=None) is None
    ship = tmp_path / 'nothing_shipped'
    for kind in ('clip', 'vfm'):
        t = first[kind]
        shipped.pack_tower(t['weights'], t['config'], t['record'], str(ship / f'world_{kind}.npz'))
    got = brief.world_towers(str(tmp_path / 'cache2'), train=False, log=None)
    assert got['clip']['source'] == got['vfm']['source'] == 'shipped'
    a = torch.load(first['vfm']['weights'], weights_only=True)
    b = torch.load(got['vfm']['weights'], weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k].half().float(), rtol=0, atol=0)
    # an archive trained by another generator version does not fit
    with np.load(ship / 'world_vfm.npz') as z:
        arrays = dict(z)
    rec = json.loads(bytes(arrays['__record']).decode())
    rec['key'] = rec['key'].replace('miniworld-', 'miniworld-old')
    arrays['__record'] = np.frombuffer(json.dumps(rec).encode(), dtype=np.uint8)
    np.savez_compressed(ship / 'world_vfm.npz', **arrays)
    assert not brief.shipped_fits('vfm') and brief.shipped_fits('clip')
    assert brief.world_towers(str(tmp_path / 'cache3'), train=False, log=None) is None


def test_random_towers_and_weights_exclude_each_other(tmp_path):
    with pytest.raises(SystemExit, match='exclude each other'):
        quickstart.main(['--out-dir', str(tmp_path / 'x'), '--random-towers', '--weights', 'a.pt',
                         '--vfm-weights', 'b.pth'])
