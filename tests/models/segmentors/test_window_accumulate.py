"""WindowCanvas (window_accumulate.py) against the literal per-window loop, in float64 (issue 21.7).

The literal loop is the protocol of docs/method.md §4: each window's (names, h', w') map is resized
bilinearly to the *padded* window size, the patch padding (left, right, top, bottom) is cropped
off, and the result is added to the canvas at the window's place. The padding cases include odd
totals, so top != bottom and left != right: a canvas that crops with the wrong side's padding is
off by a visible amount there.
"""
import pytest
import torch
import torch.nn.functional as F

from declip_mm.models.segmentors.window_accumulate import WindowCanvas, linear_resize_matrix
from declip_mm.models.segmentors.zero_shot_segmentor import window_grid


def literal_canvas(boxes, maps, pad, align_corners, hw):
    """maps[i][k]: (names, h', w') of window k of image i -> (B, names, H, W) sums."""
    left, right, top, bottom = pad
    out = torch.zeros(len(maps), maps[0][0].shape[0], *hw, dtype=torch.float64)
    for i, per_image in enumerate(maps):
        for (y1, y2, x1, x2), m in zip(boxes, per_image):
            hc, wc = y2 - y1, x2 - x1
            r = F.interpolate(m[None], size=(hc + top + bottom, wc + left + right),
                              mode='bilinear', align_corners=align_corners)[0]
            out[i, :, y1:y2, x1:x2] += r[:, top:top + hc, left:left + wc]
    return out


@pytest.mark.parametrize('hw,crop,stride,pad,feat', [
    ((40, 52), (29, 29), (11, 13), (1, 2, 1, 2), (4, 4)),   # odd padding on both axes
    ((40, 52), (29, 30), (11, 13), (1, 1, 3, 4), (4, 4)),   # odd vertical padding only
    ((33, 47), (21, 27), (12, 10), (2, 3, 0, 3), (3, 4)),   # all vertical padding at the bottom
    ((25, 61), (25, 23), (8, 9), (0, 1, 3, 4), (4, 3)),     # one row of windows, odd horizontal
    ((30, 30), (16, 16), (7, 7), (0, 0, 0, 0), (2, 2)),     # no padding
])
@pytest.mark.parametrize('align_corners', [False, True])
def test_canvas_equals_literal_loop(hw, crop, stride, pad, feat, align_corners):
    torch.manual_seed(0)
    boxes = window_grid(*hw, crop, stride)
    b, names = 2, 3
    maps = [[torch.randn(names, *feat, dtype=torch.float64) for _ in boxes] for _ in range(b)]
    like = torch.zeros(1, dtype=torch.float64)
    canvas = WindowCanvas(boxes, b, names, feat, pad, align_corners, like)
    for i in range(b):
        for box, m in zip(boxes, maps[i]):
            canvas.add(i, box, m)
    got = canvas.finish(torch.empty(b, names, *hw, dtype=torch.float64))
    ref = literal_canvas(boxes, maps, pad, align_corners, hw)
    assert (got - ref).abs().max() <= 1e-12
    # the comparison can fail: cropping with the other side's padding is far off
    if pad[2] != pad[3] or pad[0] != pad[1]:
        flipped = (pad[1], pad[0], pad[3], pad[2])
        assert (literal_canvas(boxes, maps, flipped, align_corners, hw) - ref).abs().max() > 1e-3


@pytest.mark.parametrize('n_in,n_out', [(4, 29), (7, 3), (1, 5), (5, 5)])
@pytest.mark.parametrize('align_corners', [False, True])
def test_resize_matrix_is_bilinear(n_in, n_out, align_corners):
    """The matrix rows are the linear-interpolation weights written from the coordinate rule:
    source = (i + 0.5) * n_in / n_out - 0.5 clamped at 0 (half-pixel), or i (n_in - 1) / (n_out - 1)
    (align_corners); the two neighbours get 1 - frac and frac, the upper one clamped to the border."""
    m = linear_resize_matrix(n_in, n_out, align_corners, torch.float64, torch.device('cpu'))
    ref = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        if align_corners:
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        frac = src - i0
        ref[i, i0] += 1 - frac
        ref[i, i1] += frac
    torch.testing.assert_close(m, ref, atol=1e-12, rtol=0)
