"""Class probabilities computed on demand in row strips (issue 24, item 4) and the result files of any
vocabulary size (item 3), against references written from the formulas in float64."""
import numpy as np
import pytest
import torch

from declip_mm.apis.result_files import UNLABELED_IN_FILE, read_label_png, write_label_png, write_probs_npz
from declip_mm.models.segmentors.probability_maps import DenseClassMaps, NameSoftmaxMaps, ResizedClassMaps

pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


def resize_matrix(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
    """(n_out, n_in) float64 bilinear weights: source coordinate (y + 0.5) * n_in / n_out - 0.5
    clamped at 0 (y * (n_in - 1) / (n_out - 1) with align_corners), the two nearest rows."""
    m = np.zeros((n_out, n_in))
    for y in range(n_out):
        if align_corners:
            src = y * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((y + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        m[y, i0] += 1 - lam
        m[y, i1] += lam
    return m


def resize64(x: np.ndarray, hw, align_corners=False) -> np.ndarray:
    """(C, h, w) -> (C, H, W) bilinear in float64 (separable: Ry @ x @ Rx^T)."""
    ry = resize_matrix(x.shape[1], hw[0], align_corners)
    rx = resize_matrix(x.shape[2], hw[1], align_corners)
    return np.einsum('Yh,chw,Xw->cYX', ry, x.astype(np.float64), rx)


def softmax_classes64(z: np.ndarray, scale: float, name_to_class, num_classes) -> np.ndarray:
    """softmax over names of scale * z, then the max over each class's names (float64)."""
    s = scale * z
    e = np.exp(s - s.max(0, keepdims=True))
    p = e / e.sum(0, keepdims=True)
    return np.stack([p[np.asarray(name_to_class) == c].max(0) for c in range(num_classes)])


def labels64(probs: np.ndarray, thd: float, low: int) -> np.ndarray:
    lab = probs.argmax(0)
    if thd > 0:
        lab[probs.max(0) < thd] = low
    return lab


def assert_labels(got, probs64, thd, low):
    """Equal to the float64 labels wherever the decision is not within float32 rounding."""
    ref = labels64(probs64, thd, low)
    srt = np.sort(probs64, axis=0)
    clear = (srt[-1] - srt[-2] > 1e-5) & (np.abs(srt[-1] - thd) > 1e-5)
    assert clear.mean() > 0.97
    np.testing.assert_array_equal(got.numpy()[clear], ref[clear])


@pytest.mark.parametrize('case', [
    # (names per class, (h, w), (H, W), align_corners, strip floats)
    ([1, 1, 1], (7, 9), (31, 45), False, 1),
    ([2, 1, 3, 1], (12, 10), (37, 29), False, 500),
    ([1] * 9, (16, 21), (16, 21), False, None),
    ([3, 2], (9, 13), (40, 17), True, 123),
    ([1, 2, 1], (20, 30), (11, 14), False, 64)])
def test_name_softmax_maps_equal_the_formula(case):
    per_class, hw, out_hw, align, strip = case
    torch.manual_seed(len(per_class))
    n2c = torch.tensor([c for c, k in enumerate(per_class) for _ in range(k)])
    x = torch.randn(len(n2c), *hw)
    maps = NameSoftmaxMaps(x, out_hw, 7.0, n2c, len(per_class), align, max_elems=strip)
    ref = softmax_classes64(resize64(x.numpy(), out_hw, align), 7.0, n2c.numpy(), len(per_class))
    for k in range(len(per_class)):
        # float32 against float64: the softmax of 7 x cosines amplifies the rounding
        np.testing.assert_allclose(maps.class_probability(k).numpy(), ref[k], rtol=0, atol=2e-5)
    ks = [len(per_class) - 1, 0, len(per_class) - 1]  # any order, repeats
    np.testing.assert_allclose(maps.class_probabilities(ks).numpy(), ref[ks], rtol=0, atol=2e-5)
    # the former full computation: the same float32 operations, up to the rounding of PyTorch's
    # kernel variants at these tiny sizes
    torch.testing.assert_close(maps.dense(), torch.stack([maps.class_probability(k)
                                                          for k in range(len(per_class))]),
                               rtol=0, atol=2e-6)
    thd = float(np.median(ref.max(0)))
    for t, low in ((0.0, -1), (thd, -1), (thd, 1)):
        lab = maps.labels(t, low)
        assert lab.dtype == torch.int64 and tuple(lab.shape) == out_hw
        assert_labels(lab, ref, t, low)
    assert (maps.labels(thd, -1) == -1).any() and (maps.labels(thd, -1) >= 0).any()
    with pytest.raises(IndexError, match='out of range'):
        maps.class_probability(len(per_class))


def test_maps_do_not_follow_the_segmentor_vocabulary():
    """A result keeps its own name-to-class map: changing the caller's tensor later changes
    nothing (the web page keeps results while the vocabulary changes)."""
    n2c = torch.tensor([0, 0, 1])
    x = torch.randn(3, 5, 6)
    maps = NameSoftmaxMaps(x, (10, 12), 10.0, n2c, 2)
    before = maps.dense().clone()
    n2c[:] = torch.tensor([0, 1, 1])
    torch.testing.assert_close(maps.dense(), before, rtol=0, atol=0)


@pytest.mark.parametrize('hw,out_hw,strip', [((12, 16), (37, 45), 50), ((40, 40), (13, 27), None),
                                             ((9, 9), (9, 9), 1)])
def test_resized_class_maps_equal_the_formula(hw, out_hw, strip):
    torch.manual_seed(1)
    p = torch.rand(5, *hw)
    maps = ResizedClassMaps(p, out_hw, max_elems=strip)
    ref = resize64(p.numpy(), out_hw)
    # PyTorch's kernel computes the source coordinates in float32: ~1e-6 when down-sampling
    np.testing.assert_allclose(maps.dense().numpy(), ref, rtol=0, atol=1e-5)
    for k in (4, 0, 2):
        np.testing.assert_allclose(maps.class_probability(k).numpy(), ref[k], rtol=0, atol=1e-5)
    thd = float(np.median(ref.max(0)))
    assert_labels(maps.labels(), ref, 0.0, -1)
    assert_labels(maps.labels(thd, -1), ref, thd, -1)
    dense = DenseClassMaps(torch.from_numpy(ref).float())
    assert_labels(dense.labels(thd, 3), ref, thd, 3)
    np.testing.assert_array_equal(dense.class_probabilities([3, 1]).numpy(),
                                  ref[[3, 1]].astype(np.float32))


def test_label_png_holds_any_class_and_keeps_unlabeled_apart(tmp_path):
    cv2 = pytest.importorskip('cv2')
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 300, (23, 31))
    lab[0, :6] = [255, 256, 299, 0, 65534, -1]
    lab[5:9, 5:9] = -1
    path = str(tmp_path / 'l.png')
    write_label_png(path, lab)
    np.testing.assert_array_equal(read_label_png(path), lab)
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)  # any 16-bit reader: 65535 = unlabeled
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, np.where(lab < 0, UNLABELED_IN_FILE, lab))
    assert raw[0, 2] == 299 and raw[0, 1] == 256  # not 43 and 0 (mod 256)
    for bad in (65535, -2, 70000):
        with pytest.raises(ValueError, match='cannot be written'):
            write_label_png(path, np.full((2, 2), bad))
    with pytest.raises(ValueError, match='integer'):
        write_label_png(path, lab.astype(np.float32))


@pytest.mark.parametrize('group_bytes', [1, 2 * 17 * 19 * 2, 1 << 30])
def test_probs_npz_streamed_equals_savez(tmp_path, group_bytes):
    """The streamed file reads as ``np.savez_compressed(probs=..., classes=...)`` did, with the
    class maps' values (float16) in every group size."""
    torch.manual_seed(2)
    n2c = torch.tensor([0, 1, 1, 2, 3, 4])
    maps = NameSoftmaxMaps(torch.randn(6, 5, 7), (17, 19), 20.0, n2c, 5, max_elems=40)
    classes = [['a'], ['b', 'bb'], ['c'], ['d'], ['e']]
    path = str(tmp_path / 'p.npz')
    write_probs_npz(path, maps, classes, group_bytes=group_bytes)
    ref = str(tmp_path / 'ref.npz')
    np.savez_compressed(ref, probs=maps.class_probabilities(range(5)).numpy().astype(np.float16),
                        classes=np.array([';'.join(c) for c in classes]))
    got, want = np.load(path), np.load(ref)
    assert sorted(got.files) == sorted(want.files) == ['classes', 'probs']
    assert got['probs'].dtype == np.float16 and got['probs'].shape == (5, 17, 19)
    np.testing.assert_array_equal(got['probs'], want['probs'])
    np.testing.assert_allclose(got['probs'], maps.dense().numpy(), rtol=0, atol=5e-4)  # float16
    assert got['classes'].tolist() == want['classes'].tolist() == ['a', 'b;bb', 'c', 'd', 'e']
