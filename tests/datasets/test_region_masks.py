"""Region masks at the token grid with non-rectangular shapes (issue 21.8).

The rule (official DeCLIP / CLIPSelf ``ResizeLongest`` on the mask, panoptic_regions.py): the
(H, W) binary mask is resized bicubically (A = -0.75, half-pixel centres, no antialias, borders
clamped) to round(H g / L) x round(W g / L), L = max(H, W), zero-padded bottom / right to g x g,
and a token is in the region where the resized value is > 0. A shrunk rectangle gives values of
exactly 0 or >= 1 almost everywhere, so a threshold of 0.5 or a bilinear kernel give the same mask
on it; disks, rings, L-shapes and random blobs have fractional and negative (bicubic overshoot)
values at their borders, where the rules differ. The reference below is the formula in float64.
"""
import math
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image
from region_cls_helpers import pipeline

from declip_mm.datasets.panoptic_regions import mask_to_grid, rgb_to_id
from declip_mm.registry import DATASETS

A = -0.75  # PyTorch's (and torchvision's) bicubic coefficient


def cubic_weight(x):
    x = abs(x)
    if x <= 1:
        return ((A + 2) * x - (A + 3)) * x * x + 1
    if x < 2:
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A
    return 0.0


def bicubic_matrix(n_in, n_out):
    """(n_out, n_in) float64: row i holds the 4 cubic weights around the source coordinate
    (i + 0.5) n_in / n_out - 0.5 (not clamped), neighbours outside [0, n_in) clamped to the border."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = (i + 0.5) * n_in / n_out - 0.5
        base = math.floor(src)
        t = src - base
        for off in (-1, 0, 1, 2):
            m[i, min(max(base + off, 0), n_in - 1)] += cubic_weight(off - t)
    return m


def bilinear_matrix(n_in, n_out):
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(src), n_in - 1)
        m[i, i0] += 1 - (src - i0)
        m[i, min(i0 + 1, n_in - 1)] += src - i0
    return m


def resized_mask_values(mask, grid, kernel=bicubic_matrix):
    """(grid, grid) float64 values of the resized, zero-padded mask."""
    h, w = mask.shape
    s = grid / max(h, w)
    nh, nw = round(h * s), round(w * s)
    vals = np.zeros((grid, grid))
    vals[:nh, :nw] = kernel(h, nh) @ mask.astype(np.float64) @ kernel(w, nw).T
    return vals


def _disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _shapes():
    rng = np.random.default_rng(0)
    out = {}
    out['disk'] = _disk(64, 64, 30.3, 35.1, 17.5)
    out['ring'] = _disk(48, 64, 24, 30, 20) & ~_disk(48, 64, 23, 31, 11)
    ell = np.zeros((61, 37), bool)
    ell[5:55, 4:15] = True
    ell[40:55, 4:33] = True
    out['L'] = ell
    noise = rng.standard_normal((10, 14))
    blob = torch.nn.functional.interpolate(torch.from_numpy(noise)[None, None], size=(70, 100),
                                           mode='bicubic', align_corners=False)[0, 0].numpy()
    out['blobs'] = blob > 0.6
    line = np.zeros((80, 53), bool)
    for y in range(80):
        line[y, max(0, int(0.6 * y) - 1):int(0.6 * y) + 2] = True
    out['diagonal'] = line
    return out


SHAPES = _shapes()


@pytest.mark.parametrize('name', sorted(SHAPES))
@pytest.mark.parametrize('grid', [7, 8, 12])
def test_mask_to_grid_equals_bicubic_reference(name, grid):
    mask = SHAPES[name]
    vals = resized_mask_values(mask, grid)
    got = mask_to_grid(mask, grid)
    assert got.dtype == torch.bool and got.shape == (grid, grid)
    # no value within float32 rounding of the threshold: the comparison is exact
    assert not ((vals != 0) & (np.abs(vals) < 1e-5)).any()
    assert torch.equal(got, torch.from_numpy(vals > 0))


def test_the_shapes_separate_the_rules():
    """Across the shapes the > 0.5 threshold and the bilinear kernel give other masks (so the test
    above would fail on them), and bicubic overshoot makes some border tokens negative."""
    n_half = n_bilinear = n_negative = 0
    for mask in SHAPES.values():
        for grid in (7, 8, 12):
            vals = resized_mask_values(mask, grid)
            n_half += int(((vals > 0) != (vals > 0.5)).sum())
            n_bilinear += int(((vals > 0) != (resized_mask_values(mask, grid, bilinear_matrix)
                                              > 0)).sum())
            n_negative += int((vals < -1e-3).sum())
    assert n_half >= 10 and n_bilinear >= 10 and n_negative >= 10, (n_half, n_bilinear, n_negative)


def test_pipeline_masks_of_l_shapes_and_holes(tmp_path):
    """Through LoadPanopticRegions: a 'car' whose rectangle is partly covered by a later 'road'
    (an L) and a 'person' with a 'bottle' painted inside it (a frame with a hole), on a 48 x 64
    image, 96-px letterbox, patch 8 -> a 12 x 12 grid (the mask resized to 9 x 12)."""
    from declip_mm.testing import write_panoptic_fixture
    images = [dict(size=(48, 64), segments=[(187, (0, 0, 64, 48)), (3, (3, 5, 40, 44)),
                                            (149, (21, 19, 64, 48)), (1, (42, 2, 62, 18)),
                                            (44, (46, 6, 56, 13))])]
    root = write_panoptic_fixture(str(tmp_path), images=images)
    ds = DATASETS.build(dict(type='COCOPanopticRegionDataset', data_root=root,
                             pipeline=pipeline(size=96, patch=8, crop=32)))
    s = ds[0]
    png = np.asarray(Image.open(osp.join(root, 'annotations', 'panoptic_val2017',
                                         '000000000139.png')))
    ids = rgb_to_id(png)
    seg_ids = s['data_samples'].seg_ids.tolist()
    checked = 0
    for k, seg_id in enumerate(seg_ids):
        full = ids == seg_id
        ref = resized_mask_values(full, 12) > 0
        assert torch.equal(s['inputs']['masks'][k], torch.from_numpy(ref)), k
        checked += 1
    labels = s['data_samples'].labels.tolist()
    assert checked == len(labels) >= 4
    car = ids == seg_ids[labels.index(1)]
    assert car.sum() < (39 - 3 + 1) * (44 - 5)  # the car is an L, not its rectangle
    person = ids == seg_ids[labels.index(0)]
    assert not person[8, 50]  # the person has a hole
