"""The ViTDet-style SimplePyramidResampler (models/necks/simple_pyramid.py, issue 14.1) against a
float64 reference written from the operators' definitions (transposed conv k=2 s=2, channel
LayerNorm, exact GELU, max-pooling; tests/pyramid_reference.py)."""
import pytest
import torch
from declip_reference import rel_err
from pyramid_reference import resample_ref as _resample_ref

from declip_mm.models.necks import SimplePyramidResampler


def _randomise(module):
    torch.manual_seed(1)
    for p in module.parameters():  # LayerNorm starts at (1, 0): make the test see its weights
        p.data.normal_(0, 0.5)


@pytest.mark.parametrize('scales', [(4.0, 2.0, 1.0, 0.5), (8.0, 0.25, 0.125, 1.0)])
@pytest.mark.parametrize('hw', [(8, 8), (8, 24)])
def test_resampler_matches_float64_reference(scales, hw):
    chans = [16, 16, 16, 8]
    rs = SimplePyramidResampler(chans, scales)
    _randomise(rs)
    xs = [torch.randn(2, c, *hw) for c in chans]
    outs = rs(xs)
    for op, x, y, s in zip(rs.ops, xs, outs, scales):
        ref = _resample_ref(op, x, s)
        assert y.shape == (2, x.shape[1], int(hw[0] * s), int(hw[1] * s))
        assert rel_err(y, ref) <= 1e-5, (s, rel_err(y, ref))
    # learned only where needed: identity / pooling branches carry no parameters
    for op, s in zip(rs.ops, scales):
        assert (sum(p.numel() for p in op.parameters()) > 0) == (s > 1)


def test_resampler_bad_input():
    with pytest.raises(ValueError, match='one scale per map'):
        SimplePyramidResampler([8, 8], [1.0])
    with pytest.raises(ValueError, match='expected 2 maps, got 1'):
        SimplePyramidResampler([8, 8], [1.0, 2.0])([torch.zeros(1, 8, 2, 2)])
