
import pytest
import torch
import torch.nn.functional as F
from declip_reference import rel_err
from roi_align_reference import roi_align_1x1_reference

from declip_mm.models.losses import ContentDistillLoss, ContextDistillLoss


def reference_content_loss(content, rois, teacher):
    cos = []
    for r in rois:
        s = F.normalize(roi_align_1x1_reference(content[int(r[0])], r[1:]), dim=0)
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


# --- head handling of the student correlation (issue 11) -----------------------------------------
# The public code holds Q / K as (B*H, N, d): batch outer, heads inner (``q.reshape(B, N, H, d)
# .permute(0, 2, 1, 3).view(B*H, N, d)`` in eva_vit_model.py ``ss_attn``). The references below are
# transcriptions of the public formulas on that layout, in float64.

def _public_layout(fmap, H):
    """(B, H*d, h, w) map -> the public (B*H, N, d) tensor."""
    B, D = fmap.shape[:2]
    t = fmap.flatten(2).transpose(1, 2)                      # (B, N, D)
    return t.reshape(B, -1, H, D // H).permute(0, 2, 1, 3).reshape(B * H, -1, D // H)


def _teacher_similarity(t):
    """official declip.py get_teacher_context_similarity: normalise over channels, einsum."""
    f = F.normalize(t.flatten(-2, -1), dim=1)
    return torch.einsum('b c m, b c n -> b m n', f, f)


def public_merged_csa(q, k, t, B):
    """declip_plus.py compute_student_intra_image_similarity ('csa_vfm_distill') + the loss line."""
    N = q.shape[1]
    qf = q.transpose(0, 1).contiguous().view(N, B, -1).transpose(0, 1)
    kf = k.transpose(0, 1).contiguous().view(N, B, -1).transpose(0, 1)
    qf = F.normalize(qf, dim=-1).transpose(-2, -1)
    kf = F.normalize(kf, dim=-1).transpose(-2, -1)
    s = (torch.einsum('b c m, b c n -> b m n', qf, qf)
         + torch.einsum('b c m, b c n -> b m n', kf, kf)) / 2.0
    return (_teacher_similarity(t) - s).norm(p=2, dim=-1).mean()


def public_merged_single(x, t, B):
    """official declip.py get_student_context_similarity, the qq/kk branch (grids equal)."""
    N = x.shape[1]
    c = x.transpose(0, 1).contiguous().view(N, B, -1).transpose(0, 1)
    c = F.normalize(c, dim=-1).transpose(-2, -1)
    s = torch.einsum('b c m, b c n -> b m n', c, c)
    return (_teacher_similarity(t) - s).norm(p=2, dim=-1).mean()


def public_per_head_csa_batch1(q, k, t):
    """official declip.py (main) 'csa_vfm_distill': per-head normalisation, teacher (1, N, N)
    broadcast against the (H, N, N) student correlations; only defined for one image."""
    qf = F.normalize(q, dim=-1).transpose(-2, -1)
    kf = F.normalize(k, dim=-1).transpose(-2, -1)
    s = (torch.einsum('b c m, b c n -> b m n', qf, qf)
         + torch.einsum('b c m, b c n -> b m n', kf, kf)) / 2.0
    return (_teacher_similarity(t) - s).norm(p=2, dim=-1).mean()


def _qkt(B, H, d, C, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H * d, h, w, dtype=torch.float64, generator=g)
    k = torch.randn(B, H * d, h, w, dtype=torch.float64, generator=g) * 0.5 + 0.2
    t = torch.randn(B, C, h, w, dtype=torch.float64, generator=g)
    return q, k, t


@pytest.mark.parametrize('B,H,d,C,h,w', [(1, 2, 4, 6, 3, 4), (3, 4, 8, 12, 5, 5), (2, 3, 5, 8, 4, 6)])
def test_merged_head_mode_matches_public_formulas(B, H, d, C, h, w):
    q, k, t = _qkt(B, H, d, C, h, w, seed=B * 7 + h)
    loss = ContextDistillLoss(loss_weight=1.0, head_mode='merged')
    ref_csa = public_merged_csa(_public_layout(q, H), _public_layout(k, H), t, B)
    assert abs(loss([q, k], t, num_heads=H).item() - ref_csa.item()) <= 1e-6 * max(1, ref_csa.item())
    for x in (q, k):  # qq (Q) and kk (K): one map
        ref = public_merged_single(_public_layout(x, H), t, B)
        assert abs(loss([x], t).item() - ref.item()) <= 1e-6 * max(1, ref.item())
    # fp32 inputs (what training feeds) stay within float tolerance of the float64 source
    ours32 = loss([q.float(), k.float()], t.float())
    assert abs(ours32.item() - ref_csa.item()) <= 1e-5 * max(1, ref_csa.item())


@pytest.mark.parametrize('B,H,d,C,h,w', [(1, 2, 4, 6, 3, 4), (3, 4, 8, 12, 5, 5), (2, 3, 5, 8, 4, 6)])
def test_per_head_mode_matches_main_branch_csa(B, H, d, C, h, w):
    q, k, t = _qkt(B, H, d, C, h, w, seed=B * 11 + w)
    loss = ContextDistillLoss(loss_weight=1.0, head_mode='per_head')
    qs = q.clone().requires_grad_()
    ks = k.clone().requires_grad_()
    ours = loss([qs, ks], t, num_heads=H)
    ours.backward()
    # the public code at one image per GPU, applied image by image (every image has H*N rows, so the
    # mean over (image, head, row) is the mean of the per-image values)
    qr = q.clone().requires_grad_()
    kr = k.clone().requires_grad_()
    per_image = [public_per_head_csa_batch1(_public_layout(qr[b:b + 1], H),
                                            _public_layout(kr[b:b + 1], H), t[b:b + 1])
                 for b in range(B)]
    ref = torch.stack(per_image).mean()
    ref.backward()
    assert abs(ours.item() - ref.item()) <= 1e-6 * max(1, ref.item())
    assert rel_err(qs.grad, qr.grad) <= 1e-6 and rel_err(ks.grad, kr.grad) <= 1e-6
    # the two head modes are different objectives
    merged = ContextDistillLoss(loss_weight=1.0)([q, k], t)
    assert abs(merged.item() - ours.item()) > 1e-3
    if B > 1:  # the literal public code cannot run this batch; ours does
        with pytest.raises(RuntimeError):
            public_per_head_csa_batch1(_public_layout(q, H), _public_layout(k, H), t)


def test_head_mode_errors_and_mask():
    with pytest.raises(ValueError, match='head_mode must be one of'):
        ContextDistillLoss(head_mode='heads')
    q, k, t = _qkt(2, 2, 3, 4, 3, 3, seed=0)
    with pytest.raises(ValueError, match='needs num_heads'):
        ContextDistillLoss(head_mode='per_head')([q], t)
    with pytest.raises(ValueError, match='not divisible by num_heads=4'):
        ContextDistillLoss(head_mode='per_head')([q], t, num_heads=4)
    # masking in per-head mode: per image, per head, valid rows/columns only
    valid = torch.zeros(2, 3, 3, dtype=torch.bool)
    valid[0, :2, :3] = True
    valid[1, :3, :1] = True
    ours = ContextDistillLoss(1.0, use_mask=True, head_mode='per_head')([q, k], t, valid, num_heads=2)
    per = []
    for b in range(2):
        idx = valid[b].flatten().nonzero()[:, 0]
        sel = [x[b].flatten(1)[:, idx][None, :, :, None] for x in (q, k, t)]  # (1, C, n, 1)
        per.append(public_per_head_csa_batch1(_public_layout(sel[0], 2), _public_layout(sel[1], 2),
                                              sel[2]))
    assert ours.item() == pytest.approx(torch.stack(per).mean().item(), rel=1e-9)
