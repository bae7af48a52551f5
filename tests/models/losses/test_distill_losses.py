import math

import pytest
import torch
import torch.nn.functional as F
from declip_reference import rel_err

from declip_mm.models.losses import ContentDistillLoss, ContextDistillLoss


def _bilinear(fmap, y, x):
    """torchvision / Detectron2 roi_align bilinear sample of fmap (C, H, W) at (y, x)."""
    C, H, W = fmap.shape
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return fmap.new_zeros(C)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= H - 1:
        y0 = y1 = H - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= W - 1:
        x0 = x1 = W - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * fmap[:, y0, x0] + hy * lx * fmap[:, y0, x1] + ly * hx * fmap[:, y1, x0]
            + ly * lx * fmap[:, y1, x1])


def reference_roi_align_1x1(fmap, box):
    """aligned=True, spatial_scale=1, sampling_ratio=-1, one output bin (SPEC §3)."""
    x1, y1, x2, y2 = [float(v) - 0.5 for v in box]
    rh, rw = y2 - y1, x2 - x1
    gh, gw = max(math.ceil(rh), 1), max(math.ceil(rw), 1)
    acc = fmap.new_zeros(fmap.shape[0])
    for iy in range(gh):
        for ix in range(gw):
            acc = acc + _bilinear(fmap, y1 + (iy + 0.5) * rh / gh, x1 + (ix + 0.5) * rw / gw)
    return acc / max(gh * gw, 1)


def reference_content_loss(content, rois, teacher):
    cos = []
    for r in rois:
        s = F.normalize(reference_roi_align_1x1(content[int(r[0])], r[1:]), dim=0)
        cos.append((s * F.normalize(teacher[len(cos)], dim=0)).sum())
    return 1 - torch.stack(cos).mean()


def reference_context_loss(student_maps, teacher):
    def corr(f):
        t = f.flatten(2).transpose(1, 2)
        t = t / t.norm(dim=-1, keepdim=True)
        return t @ t.transpose(1, 2)

    s_s = sum(corr(s) for s in student_maps) / len(student_maps)
    s_t = corr(teacher)
    B, N, _ = s_t.shape
    total = 0.0
    for b in range(B):
        for i in range(N):
            total = total + torch.sqrt(((s_t[b, i] - s_s[b, i]) ** 2).sum())
    return total / (B * N)


def random_rois(B, h, w, k, g):
    out = []
    for _ in range(k):
        b = torch.randint(0, B, (1, ), generator=g).item()
        x1, y1 = torch.rand(2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
        x2 = x1 + 0.3 + torch.rand(1, generator=g) * (w - x1)
        y2 = y1 + 0.3 + torch.rand(1, generator=g) * (h - y1)
        out.append([b, x1.item(), y1.item(), min(x2.item(), w), min(y2.item(), h)])
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize('B,E,h,w,k', [(1, 8, 5, 7, 3), (2, 16, 6, 6, 7), (3, 4, 9, 4, 11)])
def test_content_loss_and_grad_match_formula(B, E, h, w, k):
    g = torch.Generator().manual_seed(h * 31 + k)
    content = torch.randn(B, E, h, w, dtype=torch.float64, generator=g)
    rois = random_rois(B, h, w, k, g)
    teacher = torch.randn(k, E, dtype=torch.float64, generator=g)
    loss_fn = ContentDistillLoss(loss_weight=1.0)
    c32 = content.float().requires_grad_()
    ours = loss_fn(c32, rois.float(), teacher.float())
    ours.backward()
    c64 = content.clone().requires_grad_()
    ref = reference_content_loss(c64, rois, teacher)
    ref.backward()
    assert abs(ours.item() - ref.item()) <= 1e-5 * max(1.0, abs(ref.item()))
    assert rel_err(c32.grad, c64.grad) <= 1e-4
    assert ContentDistillLoss(loss_weight=2.5)(content.float(), rois.float(), teacher.float()).item() \
        == pytest.approx(2.5 * ours.item(), rel=1e-6)


@pytest.mark.parametrize('B,D,C,h,w', [(1, 8, 6, 3, 4), (2, 16, 12, 5, 5), (2, 4, 32, 7, 3)])
@pytest.mark.parametrize('two', [False, True])
def test_context_loss_and_grad_match_formula(B, D, C, h, w, two):
    g = torch.Generator().manual_seed(B * 100 + h)
    q = torch.randn(B, D, h, w, dtype=torch.float64, generator=g)
    k = torch.randn(B, D, h, w, dtype=torch.float64, generator=g)
    t = torch.randn(B, C, h, w, dtype=torch.float64, generator=g)
    maps32 = [q.float().requires_grad_()] + ([k.float().requires_grad_()] if two else [])
    ours = ContextDistillLoss(loss_weight=1.0)(maps32, t.float())
    ours.backward()
    maps64 = [q.clone().requires_grad_()] + ([k.clone().requires_grad_()] if two else [])
    ref = reference_context_loss(maps64, t)
    ref.backward()
    assert abs(ours.item() - ref.item()) <= 1e-5 * max(1.0, abs(ref.item()))
    for a, b in zip(maps32, maps64):
        assert rel_err(a.grad, b.grad) <= 1e-4
    # weight lambda
    assert ContextDistillLoss(loss_weight=0.1)(maps32, t.float()).item() == \
        pytest.approx(0.1 * ours.item(), rel=1e-6)


def test_context_loss_resizes_student_to_teacher_grid():
    q = torch.randn(1, 8, 4, 4, dtype=torch.float64)
    t = torch.randn(1, 6, 6, 6, dtype=torch.float64)
    ours = ContextDistillLoss(loss_weight=1.0)([q], t)
    q6 = F.interpolate(q, size=(6, 6), mode='bilinear', align_corners=False)
    assert ours.item() == pytest.approx(reference_context_loss([q6], t).item(), rel=1e-9)


def test_context_loss_mask():
    q = torch.randn(2, 8, 4, 5, dtype=torch.float64)
    t = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    valid = torch.zeros(2, 4, 5, dtype=torch.bool)
    valid[0, :3, :4] = True
    valid[1, :, :2] = True
    masked = ContextDistillLoss(loss_weight=1.0, use_mask=True)([q], t, valid)
    # reference: restrict both maps to the valid tokens of each image
    per = []
    for b in range(2):
        idx = valid[b].flatten().nonzero()[:, 0]
        qs = q[b].flatten(1)[:, idx][None, :, :, None]
        ts = t[b].flatten(1)[:, idx][None, :, :, None]
        per.append(reference_context_loss([qs], ts))
    assert masked.item() == pytest.approx(torch.stack(per).mean().item(), rel=1e-9)
    unmasked = ContextDistillLoss(loss_weight=1.0, use_mask=False)([q], t, valid)
    assert unmasked.item() == pytest.approx(reference_context_loss([q], t).item(), rel=1e-9)


def test_loss_names_and_errors():
    assert ContentDistillLoss().loss_name == 'loss_content'
    assert ContextDistillLoss().loss_name == 'loss_context'
    with pytest.raises(ValueError, match='must start with "loss_"'):
        ContentDistillLoss(loss_name='content')
    with pytest.raises(ValueError, match='boxes but'):
        ContentDistillLoss()(torch.randn(1, 4, 3, 3), torch.zeros(2, 5), torch.randn(3, 4))
