"""out_type='featmap' / out_scales of DeCLIPVisionTransformer and the ViTDet-style resampler (issue 14.1).

The maps are checked against the dict outputs (bit-exact) and their resampled scales against the
float64 reference of the resampler (tests/pyramid_reference.py; the resampler on its own:
tests/models/necks/test_simple_pyramid.py).
"""
import pytest
import torch
from declip_reference import rel_err
from pyramid_reference import resample_ref as _resample_ref


def _randomise(module):
    torch.manual_seed(1)
    for p in module.parameters():  # LayerNorm starts at (1, 0): make the test see its weights
        p.data.normal_(0, 0.5)


def test_featmap_equals_dict_outputs(make_backbone):
    x = torch.randn(2, 3, 24, 40)
    ref = make_backbone(out_indices=(0, 1))
    fm = make_backbone(out_type='featmap', out_indices=(1, 0, -1))
    fm.load_state_dict(ref.state_dict())
    with torch.no_grad():
        d = ref(x)
        maps = fm(x)
    assert isinstance(maps, tuple) and len(maps) == 3
    # the given order, the content map last
    assert torch.equal(maps[0], d['intermediates'][1])
    assert torch.equal(maps[1], d['intermediates'][0])
    assert torch.equal(maps[2], d['content'])
    assert fm.out_channels == [fm.width, fm.width, fm.embed_dim]
    assert [m.shape[1] for m in maps] == fm.out_channels


def test_featmap_out_scales_strides_and_values(make_backbone):
    x = torch.randn(1, 3, 32, 48)  # patch 8: a 4x6 grid
    plain = make_backbone(out_type='featmap', out_indices=(0, 1, 2))
    scaled = make_backbone(out_type='featmap', out_indices=(0, 1, 2), out_scales=(4.0, 1.0, 0.5))
    scaled.load_state_dict(plain.state_dict(), strict=False)
    _randomise(scaled.resampler)
    with torch.no_grad():
        a = plain(x)
        b = scaled(x)
    assert [tuple(m.shape[-2:]) for m in b] == [(16, 24), (4, 6), (2, 3)]  # strides 2, 8, 16
    for op, src, out, s in zip(scaled.resampler.ops, a, b, (4.0, 1.0, 0.5)):
        assert rel_err(out, _resample_ref(op, src, s)) <= 1e-5


def test_dict_mode_unchanged_and_has_no_resampler(make_backbone):
    bb = make_backbone(out_indices=(0, ))
    assert bb.out_type == 'dict' and bb.resampler is None
    assert not any(k.startswith('resampler') for k in bb.state_dict())
    fm = make_backbone(out_type='featmap', out_indices=(0, 2), out_scales=(2.0, 1.0))
    assert {k.split('.')[0] for k in fm.state_dict()} == {'visual', 'resampler'}


def test_frozen_tower_trains_only_the_resampler(make_backbone):
    bb = make_backbone(out_type='featmap', out_indices=(0, 1, 2), out_scales=(2.0, 1.0, 0.5),
                       frozen_stages=3).train()
    assert not any(p.requires_grad for p in bb.visual.parameters())
    assert all(p.requires_grad for p in bb.resampler.parameters())
    assert not bb.visual.training and bb.resampler.training
    sum(m.square().sum() for m in bb(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is None for p in bb.visual.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in bb.resampler.parameters())


@pytest.mark.parametrize('kwargs, match', [
    (dict(out_type='tuple'), 'unknown out_type'),
    (dict(out_type='featmap'), 'at least one out_indices'),
    (dict(out_indices=(0, ), out_scales=(1.0, )), "only applies to out_type='featmap'"),
    (dict(out_type='featmap', out_indices=(0, 1), out_scales=(2.0, )), 'one scale per output'),
    (dict(out_type='featmap', out_indices=(0, ), out_scales=(3.0, )), 'not supported'),
    (dict(out_type='featmap', out_indices=(0, ), out_scales=('x', )), 'not supported'),
    (dict(out_type='featmap', out_indices=(-1, 0)), 'must be the last entry'),
    (dict(out_type='featmap', out_indices=(0, 3)), 'out of range'),
    (dict(out_type='featmap', out_indices=(1, -2)), 'twice'),
    # issue 24.7: the last block with the default out_type names out_type='featmap' (it used to say
    # "-1 is out of range")
    (dict(out_indices=(-1, )), r"entry -1 is the last block.*out_type='featmap'.*'content'"),
    (dict(out_indices=(0, 1, -1)), r"entry -1 is the last block.*out_type='featmap'"),
    (dict(out_indices=(2, )), r"entry 2 is the last block.*out_type='featmap'"),
    (dict(out_indices=(5, )), r"entry 5 is out of range for a 3-block tower"),
])
def test_invalid_featmap_config(make_backbone, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_backbone(**kwargs)
