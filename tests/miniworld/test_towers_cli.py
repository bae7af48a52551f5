"""The world towers' cache, shipped archives and tools/miniworld.py (declip_mm/miniworld/tower_cache.py,
shipped.py): keyed by versions and settings, reused, an archive unpacks into a loadable release."""
from __future__ import annotations

import hashlib
import json
import os.path as osp
from dataclasses import asdict

import numpy as np
import pytest
import torch
from tf_helpers import load_tool

from declip_mm.miniworld import shipped, tower_cache
from declip_mm.miniworld.classes import WORLD_VERSION
from declip_mm.miniworld.clip_trainer import CLIPTrainSettings, save_clip, train_clip
from declip_mm.miniworld.tower_configs import CLIP_TRAINER_VERSION, world_clip_config, world_vfm_spec
from declip_mm.miniworld.vfm_trainer import VFMTrainSettings

TINY_CLIP = world_clip_config(embed_dim=32, depth=1, num_heads=2)     # 64 px, as the CLI trains
TINY_VFM = world_vfm_spec(embed_dim=32, depth=1, num_heads=2)

miniworld = load_tool('miniworld')


@pytest.fixture
def tiny_towers(monkeypatch):
    monkeypatch.setattr(tower_cache, 'WORLD_CLIP_CONFIG', TINY_CLIP)
    monkeypatch.setattr(tower_cache, 'WORLD_VFM', TINY_VFM)
    monkeypatch.setattr(shipped, 'SHIPPED_DIR', '/nonexistent')   # never the repository's towers


def test_tower_key_depends_on_versions_settings_and_world(monkeypatch):
    s = CLIPTrainSettings()
    key = tower_cache.tower_key('clip', TINY_CLIP, s)
    assert key.startswith('clip-') and '-w0-' in key
    assert tower_cache.tower_key('clip', TINY_CLIP, CLIPTrainSettings(steps=s.steps + 1)) != key
    assert tower_cache.tower_key('clip', TINY_CLIP, CLIPTrainSettings(world_seed=1)) != key
    assert tower_cache.tower_key('clip', TINY_CLIP, CLIPTrainSettings(object_fraction=0.1)) != key
    # the cores that train are not part of the recipe
    assert tower_cache.tower_key('clip', TINY_CLIP, CLIPTrainSettings(threads=7)) == key
    # a knob added later hashes only away from its neutral value (earlier keys stay valid)
    neutral = CLIPTrainSettings(crop_fraction=0.0)
    old = {k: v for k, v in asdict(neutral).items() if k not in ('threads', 'crop_fraction')}
    digest = hashlib.sha1(json.dumps(dict(arch=TINY_CLIP, settings=old), sort_keys=True)
                          .encode()).hexdigest()[:10]
    assert tower_cache.tower_key('clip', TINY_CLIP, neutral) == \
        f'clip-{WORLD_VERSION}-{CLIP_TRAINER_VERSION}-w0-{digest}'
    assert tower_cache.tower_key('clip', TINY_CLIP, CLIPTrainSettings(crop_fraction=0.1)) != \
        tower_cache.tower_key('clip', TINY_CLIP, neutral)
    assert tower_cache.tower_key('clip', world_clip_config(depth=3), s) != key
    monkeypatch.setattr(tower_cache, 'CLIP_TRAINER_VERSION', 'clip-trainer-x')
    assert tower_cache.tower_key('clip', TINY_CLIP, s) != key
    from declip_mm.miniworld import classes
    monkeypatch.setattr(classes, 'WORLD_VERSION', 'miniworld-x')
    assert 'miniworld-x' in tower_cache.tower_key('vfm', TINY_VFM, VFMTrainSettings())
    with pytest.raises(ValueError, match="'clip' or 'vfm'"):
        tower_cache.tower_key('sam', TINY_VFM, s)


def test_cli_trains_then_reuses_and_writes_results(tmp_path, tiny_towers, capsys):
    out = str(tmp_path / 'mw')
    args = ['--out', out, '--phases', 'clip,vfm', '--quick', '--clip-steps', '1', '--vfm-steps',
            '1', '--threads', '1']
    res = miniworld.main(args)
    for kind in ('clip', 'vfm'):
        t = res['towers'][kind]
        assert not t['cached'] and osp.isfile(t['weights']) and osp.isfile(t['record'])
    with open(osp.join(out, 'results.json')) as f:
        on_disk = json.load(f)
    assert on_disk['world_seed'] == 0 and set(on_disk['timings']) == {'clip', 'vfm'}
    for table in ('training_free', 'declip', 'region_cls', 'catseg'):
        assert on_disk[table] == {}
    with open(res['towers']['clip']['record']) as f:
        rec = json.load(f)
    assert rec['settings']['steps'] == 1 and rec['key'] == res['towers']['clip']['key']
    capsys.readouterr()
    again = miniworld.main(args)
    assert again['towers']['clip']['cached'] and again['towers']['vfm']['cached']
    assert again['towers']['clip']['key'] == res['towers']['clip']['key']
    assert 'reusing cached tower' in capsys.readouterr().out
    other = miniworld.main(args[:-4] + ['--threads', '1', '--clip-steps', '2'])
    assert not other['towers']['clip']['cached']
    assert other['towers']['clip']['key'] != res['towers']['clip']['key']
    with pytest.raises(SystemExit, match='unknown phase'):
        miniworld.main(['--out', out, '--phases', 'clip,distil'])


def test_incomplete_cache_entry_is_retrained(tmp_path, tiny_towers):
    s = CLIPTrainSettings(steps=1, batch_size=4, threads=1)
    got = tower_cache.get_world_clip(str(tmp_path), s, log=None)
    mtime = osp.getmtime(got['weights'])
    assert tower_cache.get_world_clip(str(tmp_path), s, log=None)['cached']
    import os
    os.remove(got['record'])                        # as if the first training had been interrupted
    again = tower_cache.get_world_clip(str(tmp_path), s, log=None)
    assert not again['cached'] and osp.getmtime(again['weights']) >= mtime


def test_shipped_archive_round_trip_and_selection(tmp_path, monkeypatch):
    from declip_mm.models.backbones.declip_vit import DeCLIPVisionTransformer
    s = CLIPTrainSettings(steps=1, batch_size=4, threads=1)
    model, record = train_clip(TINY_CLIP, s, log=None)
    record['key'] = tower_cache.tower_key('clip', TINY_CLIP, s)
    paths = save_clip(model, TINY_CLIP, str(tmp_path / 'src' / 'clip.pt'), record)
    sd = torch.load(paths['weights'], weights_only=True)
    table = sd[shipped.TOKEN_KEY]
    seen = record['seen_token_ids']
    unseen = torch.ones(table.shape[0], dtype=torch.bool)
    unseen[seen] = False
    assert not table[unseen].any() and table[seen].abs().sum() > 0   # zeroed by the trainer
    monkeypatch.setattr(shipped, 'SHIPPED_DIR', str(tmp_path / 'ship'))
    shipped.pack_tower(paths['weights'], paths['config'], paths['record'],
                       str(tmp_path / 'ship' / 'world_clip.npz'))
    got = shipped.shipped_tower('clip', str(tmp_path / 'cache'), record['key'])
    back = torch.load(got['weights'], weights_only=True)
    assert set(back) == set(sd)
    for k, v in sd.items():      # float16 storage: the float32 tensors rounded once
        assert torch.equal(back[k], v.half().float()), k
    assert shipped.shipped_tower('clip', str(tmp_path / 'cache'), 'another-key') is None
    assert shipped.shipped_tower('vfm', str(tmp_path / 'cache')) is None
    bb = DeCLIPVisionTransformer(got['config'], pretrained=got['weights'])
    bb.init_weights()
    assert torch.equal(bb.visual.trunk.patch_embed.proj.weight,
                       sd['visual.trunk.patch_embed.proj.weight'].half().float())

    # the cache takes the shipped tower for its key instead of training
    def no_training(*a, **k):
        raise AssertionError('trained although a matching tower is shipped')

    monkeypatch.setattr(tower_cache, 'train_clip', no_training)
    res = tower_cache.get_world_clip(str(tmp_path / 'cache2'), s, config=TINY_CLIP, log=None)
    assert res['shipped'] and res['key'] == record['key']
    assert np.isclose(torch.load(res['weights'], weights_only=True)['logit_scale'].item(),
                      sd['logit_scale'].half().float().item())
