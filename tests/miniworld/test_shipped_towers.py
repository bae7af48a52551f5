"""The world towers shipped in the repository (declip_mm/miniworld/weights/, docs/miniworld.md).

* fast: the archives load through ``DeCLIPVisionTransformer`` / ``DeCLIPTextEncoder`` /
  ``VFMTeacher`` and reproduce the figures recorded in ``manifest.json`` exactly (evaluation only);
  they are what the default settings of ``tools/miniworld.py`` ask for (same cache key), so a default
  run uses them instead of training; they fit the 5 MB budget.
* slow (``DECLIP_MINIWORLD_REBUILD=1``, minutes): rebuilding them with the command of the manifest
  (the default settings) reaches the same zero-shot figures within noise.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from declip_mm.miniworld import shipped, tower_cache
from declip_mm.miniworld.clip_trainer import CLIPTrainSettings
from declip_mm.miniworld.tower_configs import WORLD_CLIP_CONFIG, WORLD_VFM
from declip_mm.miniworld.vfm_trainer import VFMTrainSettings

MANIFEST = shipped.read_manifest()
pytestmark = pytest.mark.skipif(MANIFEST is None, reason='no world towers shipped')


def _assert_zero_shot_close(got, want, tol):
    for key in ('things', 'things_all', 'stuff'):
        assert abs(got[key]['top1'] - want[key]['top1']) <= tol, (key, got[key]['top1'],
                                                                 want[key]['top1'])


def test_shipped_towers_are_the_default_settings_and_fit_the_budget():
    seed = MANIFEST['world_seed']
    keys = dict(clip=tower_cache.tower_key('clip', dict(WORLD_CLIP_CONFIG),
                                           CLIPTrainSettings(world_seed=seed)),
                vfm=tower_cache.tower_key('vfm', dict(WORLD_VFM), VFMTrainSettings(world_seed=seed)))
    total = 0
    for kind in ('clip', 'vfm'):
        t = MANIFEST['towers'][kind]
        path = os.path.join(shipped.SHIPPED_DIR, t['file'])
        assert t['key'] == keys[kind], kind          # a default run takes the shipped tower
        assert os.path.getsize(path) == t['bytes'] and shipped._sha1(path) == t['sha1']
        total += t['bytes']
    assert total <= 5e6


def test_shipped_towers_reproduce_the_recorded_figures(tmp_path):
    clip = shipped.shipped_tower('clip', str(tmp_path))
    vfm = shipped.shipped_tower('vfm', str(tmp_path))
    want = MANIFEST['figures']
    got = shipped.shipped_figures(clip, vfm, MANIFEST['world_seed'], want['n_per_class'],
                                  want['n_scenes'])
    for key in ('things', 'things_all', 'stuff'):
        assert got['zero_shot'][key]['per_class'] == want['zero_shot'][key]['per_class'], key
    assert got['dense'] == want['dense']
    np.testing.assert_equal(got['crop'], want['crop'])      # NaN (no thing cell in 1x1) == NaN
    for tag in ('vfm_trained', 'vfm_random'):
        for part in ('all', 'things'):
            assert np.isclose(got['correlation'][tag][part]['auc'],
                              want['correlation'][tag][part]['auc'], rtol=0, atol=1e-6), (tag, part)


@pytest.mark.skipif(os.environ.get('DECLIP_MINIWORLD_REBUILD') != '1',
                    reason='rebuilds the towers (minutes): set DECLIP_MINIWORLD_REBUILD=1')
def test_rebuilding_the_shipped_towers_reaches_the_same_figures(tmp_path):
    from tf_helpers import load_tool
    miniworld = load_tool('miniworld')
    res = miniworld.main(['--world-seed', str(MANIFEST['world_seed']), '--out', str(tmp_path / 'mw'),
                          '--phases', 'clip,vfm', '--retrain', '--threads', '1'])
    towers = res['towers']
    for kind in ('clip', 'vfm'):
        assert not towers[kind]['cached'] and towers[kind]['key'] == MANIFEST['towers'][kind]['key']
    want = MANIFEST['figures']
    got = shipped.shipped_figures(towers['clip'], towers['vfm'], MANIFEST['world_seed'],
                                  want['n_per_class'], want['n_scenes'])
    _assert_zero_shot_close(got['zero_shot'], want['zero_shot'], tol=0.1)
    auc = got['correlation']['vfm_trained']['things']['auc']
    assert abs(auc - want['correlation']['vfm_trained']['things']['auc']) <= 0.02


def test_the_wheel_build_carries_the_archives(tmp_path):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, 'setup.py', '-q', 'build_py', '--build-lib', str(tmp_path)],
                         cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    built = tmp_path / 'declip_mm' / 'miniworld' / 'weights'
    for name in ('world_clip.npz', 'world_vfm.npz', shipped.MANIFEST, 'README.md'):
        assert (built / name).is_file(), name
    assert 'declip_mm/miniworld/weights *.npz *.json *.md' in open(os.path.join(root,
                                                                                'MANIFEST.in')).read()
