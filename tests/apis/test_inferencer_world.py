"""DeCLIPInferencer() without any argument or weights: the miniature world's towers (issue 20.6)."""
import pytest
import torch
from world_towers_helpers import ship_brief_towers

from declip_mm.apis import DeCLIPInferencer

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


@pytest.fixture(scope='module')
def shipped_dir(tmp_path_factory):
    return ship_brief_towers(tmp_path_factory.mktemp('world'))


@pytest.fixture
def world(shipped_dir, tmp_path, monkeypatch):
    import declip_mm.miniworld.shipped as shipped
    monkeypatch.setattr(shipped, 'SHIPPED_DIR', shipped_dir)
    monkeypatch.setenv('DECLIP_MM_CACHE', str(tmp_path / 'cache'))
    monkeypatch.chdir(tmp_path)  # no weights/EVA02_CLIP_B_psz16_s8B.pt here
    return shipped_dir


def test_no_argument_runs_the_world_towers(world):
    from declip_mm.miniworld import ALL_CLASSES
    from declip_mm.miniworld.shipped import unpack_tower
    from declip_mm.miniworld.tower_configs import WORLD_TEMPLATES
    from declip_mm.miniworld.world_demo import SAMPLE_SCALE, world_samples
    inf = DeCLIPInferencer(device='cpu')
    assert 'MINIATURE WORLD' in inf.world_banner and 'shipped' in inf.world_banner
    assert [c[0] for c in inf.classes] == list(ALL_CLASSES)
    # the image tower is the shipped CLIP, as DeCLIPVisionTransformer loads it from its files
    from declip_mm.models import DeCLIPVisionTransformer
    clip = unpack_tower(f'{world}/world_clip.npz', str(world) + '_check', 'clip')
    ref = DeCLIPVisionTransformer(model_name=clip['config'], pretrained=clip['weights'])
    ref.init_weights()
    mine, theirs = inf.model.backbone.state_dict(), ref.state_dict()
    assert mine.keys() == theirs.keys()
    for k in theirs:
        torch.testing.assert_close(mine[k], theirs[k], rtol=0, atol=0)
    rand = DeCLIPVisionTransformer(model_name=clip['config']).state_dict()  # the check can fail
    assert any(not torch.equal(v, theirs[k]) for k, v in rand.items() if v.is_floating_point())
    assert list(inf.model.text_encoder.templates) == list(WORLD_TEMPLATES)
    # a world sample scene (64-px scene enlarged 4x) segments at its own size with world classes
    img = world_samples(1)['scene0']
    assert img.shape == (64 * SAMPLE_SCALE, 64 * SAMPLE_SCALE, 3)
    res = inf(img)
    assert res.labels.shape == img.shape[:2] and res.labels.min() >= 0
    assert res.labels.max() < len(ALL_CLASSES)


def test_world_not_used_when_anything_is_given(world):
    """cfg_options / a checkpoint / a config keep the old behaviour (no world, no banner)."""
    from declip_mm.testing import tiny_clip_config
    tiny = dict(tiny_clip_config('eva02'), _delete_=True)
    inf = DeCLIPInferencer(cfg_options={'model.backbone.model_name': tiny,
                                        'model.text_encoder.model_name': tiny,
                                        'model.backbone.pretrained': None,
                                        'model.text_encoder.pretrained': None,
                                        'model.text_encoder.templates': 'single'})
    assert inf.world_banner == '' and inf.classes is None


def test_no_world_towers_keeps_the_missing_weights_error(tmp_path, monkeypatch):
    import declip_mm.miniworld.shipped as shipped
    monkeypatch.setattr(shipped, 'SHIPPED_DIR', str(tmp_path / 'nothing'))
    monkeypatch.setenv('DECLIP_MM_CACHE', str(tmp_path / 'cache'))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        DeCLIPInferencer(device='cpu')
