"""Labels of a large image in row strips: memory proportional to its pixels, not pixels x classes.

The training-free segmentor's post-processing (docs/method.md §4) resizes the (num_names, h, w) cosine map to
the original image size, multiplies by the logit scale, takes the softmax over names and the max over
each class's names, then the argmax with ``area_thd`` / ``prob_thd``. Done at once it holds several
(num_names, H, W) float tensors: ~1.8 GB per megapixel at 150 classes. Here the same steps run on
strips of output rows, so only one strip of (num_names, rows, W) floats lives at a time and the
result is the (1, H, W) label map alone.

The bilinear resize of a strip is computed as PyTorch's kernel does (half-pixel source coordinates,
clamped indices, separable weights): the width step is ``F.interpolate`` itself on the needed source
rows (identity in height, hence exact), the height step applies the same two-row weights by hand with
the kernel's fused multiply-add. On this build (torch 2.14, x86) that reproduces the full-image
``F.interpolate`` bit for bit at the protocol's sizes (checked by the tests); where a kernel variant
rounds differently (some tiny outputs) values agree to ~1e-7 relative, so labels could only differ
where two classes' probabilities (or the top probability and ``prob_thd``) tie to that rounding.

Speed. Every strip costs about a dozen tensor operations whatever its height. The former code
also allocated every intermediate afresh (seven full-size tensors per strip, three in float64) and
read the probabilities twice (``argmax`` and ``amax``); and with two threads
on a busy machine each parallel operation waits milliseconds for the other thread, so its one-row
strips of a wide image (2**20 floats is one row at 150 names x 8000 px: 6000 strips) took ~40 min
for an 8000x6000 image. Now the buffers are allocated once per image and every step writes into
them (``out=`` / in place; all operands of an operation share a dtype, since a mixed-dtype operation
would allocate a converted copy), ``max(0)`` gives the labels and top probabilities in one pass, and the
strip height comes from a byte budget: 32 MiB of buffers on one thread (cache-sized strips are the
fastest there), 128 MiB on several threads (fewer operations to wait for). Every step keeps the
former arithmetic (the same operations on the same float32 / float64 values), so the labels are
bit-identical to the former code's (tests compare them on several shapes, class counts and
thresholds, and the resized logits bit for bit).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['bilinear_rows', 'labels_in_strips', 'logsumexp_in_strips', 'probabilities_in_strips',
           'strip_rows', 'STRIP_BYTES', 'STRIP_BYTES_THREADS', 'BYTES_PER_STRIP_ELEM']

#: default bytes of the strip buffers with one thread: small enough to stay in the caches (the
#: fastest on one thread; measured 2.2x the former speed at 150 names x 2000 px, 1.7x at 8000 px,
#: where strips of 100+ MB gain only 1.1x)
STRIP_BYTES = 32 << 20
#: default with several threads: each parallel operation has a fixed cost (the threads meet at its
#: end, which takes milliseconds when another process holds a core), so fewer, taller strips. A
#: compromise: on an idle machine (2 threads) 32 MiB is 1.8-2x the former speed, 128 MiB 1.45x,
#: 384 MiB 1.15-1.25x; on a busy one the taller strips win (384 MiB: 4-7x)
STRIP_BYTES_THREADS = 128 << 20
#: bytes per (name, row, column) element of a strip: two float64 buffers (height step) and two
#: float32 buffers (second-row products / logits, probabilities), allocated once per image
BYTES_PER_STRIP_ELEM = 24


def _source_rows(in_size: int, out_size: int, align_corners: bool, device: torch.device
                 ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per output row: the two source rows and their weights (i0, i1, w0, w1), (out_size,) each.

    Formula of PyTorch's ``upsample_bilinear2d`` (``area_pixel_compute_source_index``): source
    coordinate ``scale * (y + 0.5) - 0.5`` clamped at 0 (``scale * y`` with ``align_corners``).
    """
    y = torch.arange(out_size, device=device, dtype=torch.float64)
    if in_size == out_size:
        i = y.long()
        return i, i, torch.ones(out_size, device=device), torch.zeros(out_size, device=device)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = (torch.tensor(scale, dtype=torch.float32).double() * y).float()
    else:
        scale = torch.tensor(in_size, dtype=torch.float32) / out_size   # float, as the kernel
        src = (scale.double() * (y + 0.5) - 0.5).float().clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    w1 = (src - i0.float()).clamp(0, 1)
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, 1 - w1, w1


def _view(flat: Tensor, shape: Tuple[int, ...]) -> Tensor:
    """The first prod(shape) elements of a flat buffer, as a contiguous tensor of ``shape``."""
    return flat[:math.prod(shape)].view(shape)


def _bilinear_rows_into(x: Tensor, out_hw: Tuple[int, int], rows: Tuple[int, int],
                        align_corners: bool, row_table, buf64: Tensor, out: Tensor) -> Tensor:
    """:func:`bilinear_rows` written into ``out`` (flat, x.dtype) with ``buf64`` (flat, float64,
    twice the size of ``out``) as the height step's scratch; returns the (C, rows, W) view of
    ``out``."""
    h = x.shape[-2]
    y0, y1 = rows
    i0, i1, w0, w1 = (t[y0:y1] for t in row_table)
    s0, s1 = int(i0.min()), int(i1.max()) + 1
    # width step on the source rows this strip needs: F.interpolate with the height unchanged
    t = F.interpolate(x[None, :, s0:s1], size=(s1 - s0, out_hw[1]), mode='bilinear',
                      align_corners=align_corners)[0]
    shape = (x.shape[0], y1 - y0, out_hw[1])
    res = _view(out, shape)
    if h == out_hw[0]:
        return torch.index_select(t, 1, i0 - s0, out=res)
    # the kernel's fused multiply-add fma(t0, w0, t1 * w1), one rounding: the float64 sum of a
    # product of two floats (exact in float64) and a float, rounded once to float32; the same
    # float64 operations as t0.double() * w0 + (t1 * w1).double(), on preallocated buffers (every
    # operand already float64: a mixed-dtype operation would allocate a float64 copy of its input)
    n = math.prod(shape)
    first, acc = buf64[:n].view(shape), buf64[n:2 * n].view(shape)
    torch.index_select(t.double(), 1, i0 - s0, out=first)   # t0 (exact in float64)
    second = torch.index_select(t, 1, i1 - s0, out=res)
    second.mul_(w1.to(t.dtype).view(1, -1, 1))              # the float32 product t1 * w1
    acc.copy_(second)                                        # exact
    acc.addcmul_(first, w0.to(t.dtype).double().view(1, -1, 1))  # + t0 * w0 (exact), one rounding
    return res.copy_(acc)                                    # rounded once to float32


def bilinear_rows(x: Tensor, out_hw: Tuple[int, int], rows: Tuple[int, int],
                  align_corners: bool = False, row_table=None) -> Tensor:
    """Rows ``rows[0]:rows[1]`` of ``F.interpolate(x[None], out_hw, mode='bilinear')[0]``.

    Args:
        x (Tensor): (C, h, w).
        out_hw (tuple): the full output size (H, W).
        rows (tuple): the output rows [y0, y1) to compute.
        align_corners (bool): as in ``F.interpolate``.
        row_table (tuple, optional): ``_source_rows(h, H, ...)``, to reuse between strips.

    Returns:
        Tensor: (C, y1 - y0, W).
    """
    if row_table is None:
        row_table = _source_rows(x.shape[-2], out_hw[0], align_corners, x.device)
    n = x.shape[0] * (rows[1] - rows[0]) * out_hw[1]
    return _bilinear_rows_into(x, out_hw, rows, align_corners, row_table,
                               x.new_empty(2 * n, dtype=torch.float64), x.new_empty(n))


def strip_rows(num_names: int, width: int, max_bytes: Optional[int] = None,
               max_elems: Optional[int] = None) -> int:
    """Output rows per strip: ``max_elems`` floats of (num_names, rows, W) if given, else
    ``max_bytes`` of buffers (:data:`BYTES_PER_STRIP_ELEM` per element; ``None``:
    :data:`STRIP_BYTES` on one thread, :data:`STRIP_BYTES_THREADS` on several); at least one."""
    per_row = max(1, num_names * width)
    if max_elems is not None:
        return max(1, int(max_elems) // per_row)
    if max_bytes is None:
        max_bytes = STRIP_BYTES if torch.get_num_threads() == 1 else STRIP_BYTES_THREADS
    return max(1, int(max_bytes) // (BYTES_PER_STRIP_ELEM * per_row))


def labels_in_strips(name_logits: Tensor, out_hw: Tuple[int, int], logit_scale: float,
                     name_to_class: Optional[Tensor], num_classes: int, prob_thd: float = 0.0,
                     area_thd: Optional[float] = None, align_corners: bool = False,
                     max_elems: Optional[int] = None, max_bytes: Optional[int] = None,
                     low_label: int = 0) -> Tensor:
    """Label map (1, H, W) of the segmentor's post-processing, computed in row strips.

    Args:
        name_logits (Tensor): (num_names, h, w) cosines (padding removed, flips undone).
        out_hw (tuple): the original image size (H, W).
        logit_scale (float): multiplies the cosines before the softmax over names.
        name_to_class (Tensor, optional): (num_names,) class of every name.
        num_classes (int): number of classes.
        prob_thd (float): pixels whose top class probability is below it become ``low_label``.
        area_thd (float, optional): classes (except 0) predicted on at most this fraction of the
            non-background pixels are suppressed; needs a first pass over the strips for the areas.
        align_corners (bool): of the resize.
        max_elems (int, optional): floats of one (num_names, rows, W) strip; sets the strip height
            if given (overrides ``max_bytes``).
        max_bytes (int, optional): bytes of the strip buffers, which sets the strip height
            (:func:`strip_rows`). Defaults to None: 32 MiB on one thread, 128 MiB on several.
        low_label (int): label of the pixels below ``prob_thd``. Defaults to 0 (the benchmarks'
            background); the inferencer passes -1 (unlabeled) or the list's background class.

    Returns:
        Tensor: (1, H, W) int64 labels.
    """
    H, W = int(out_hw[0]), int(out_hw[1])
    n = name_logits.shape[0]
    step = min(H, strip_rows(n, W, max_bytes, max_elems))
    table = _source_rows(name_logits.shape[-2], H, align_corners, name_logits.device)
    strips = [(y, min(y + step, H)) for y in range(0, H, step)]
    # three buffers for all strips: no allocation (and no page faults) per strip
    size = n * step * W
    buf64 = name_logits.new_empty(2 * size, dtype=torch.float64)
    logits, probs_buf = name_logits.new_empty(size), name_logits.new_empty(size)
    top = name_logits.new_empty(step * W)
    synonyms = name_to_class is not None and n != num_classes
    if synonyms:
        idx = name_to_class.to(name_logits.device).view(-1, 1, 1)

    def probs_of(r):
        """(num_classes, rows, W) probabilities: softmax over names, max over each class's names."""
        z = _bilinear_rows_into(name_logits, (H, W), r, align_corners, table, buf64, logits)
        z.mul_(logit_scale)  # the same products as z * logit_scale
        probs = torch.softmax(z, 0, out=_view(probs_buf, z.shape))  # = z.softmax(0), no allocation
        if not synonyms:
            return probs
        out = probs.new_full((num_classes, *probs.shape[1:]), -1.0)
        return out.scatter_reduce(0, idx.expand_as(probs), probs, reduce='amax', include_self=True)

    keep = None
    if area_thd is not None:  # the areas of the unsuppressed argmax, over the whole image
        area = torch.zeros(num_classes, dtype=torch.long, device=name_logits.device)
        for r in strips:
            area += torch.bincount(probs_of(r).argmax(0).flatten(), minlength=num_classes)
        area = area[1:].to(name_logits.dtype)
        keep = (area > area_thd * area.sum()).to(name_logits.dtype).view(-1, 1, 1)
    pred = torch.empty((1, H, W), dtype=torch.long, device=name_logits.device)
    for y0, y1 in strips:
        probs = probs_of((y0, y1))
        if keep is not None:
            probs[1:].mul_(keep)  # in place: the same products as probs[1:] * keep
        # max(0): the top probability and, as argmax, the first class among equal maxima, in one
        # pass, the labels written straight into the output rows
        t = _view(top, (y1 - y0, W))
        torch.max(probs, 0, out=(t, pred[0, y0:y1]))
        if prob_thd > 0:  # probabilities are >= 0: a threshold <= 0 changes nothing
            pred[0, y0:y1][t < prob_thd] = low_label
    return pred


def logsumexp_in_strips(name_logits: Tensor, out_hw: Tuple[int, int], logit_scale: float,
                        align_corners: bool = False, max_elems: Optional[int] = None,
                        max_bytes: Optional[int] = None) -> Tensor:
    """(H, W) float64 log of the softmax denominator over names of the resized, scaled cosines (the
    float32 values ``s`` the softmax of :func:`labels_in_strips` sees), per pixel.

    ``lse = m + log(sum_n exp(s_n - m))`` with ``m = max_n s_n``: the sum in float32 as the float32
    softmax kernel forms it (relative rounding ~1e-7, which is also the rounding of its
    probabilities), ``m`` and the log in float64 (so that ``|lse|`` up to the logit scale adds no
    rounding). With it, a class's probability needs only its own names' maps
    (:func:`probabilities_in_strips`).
    """
    H, W = int(out_hw[0]), int(out_hw[1])
    n = name_logits.shape[0]
    step = min(H, strip_rows(n, W, max_bytes, max_elems))
    table = _source_rows(name_logits.shape[-2], H, align_corners, name_logits.device)
    size = n * step * W
    buf64 = name_logits.new_empty(2 * size, dtype=torch.float64)
    logits = name_logits.new_empty(size)
    top, total = name_logits.new_empty(step * W), name_logits.new_empty(step * W)
    lse = name_logits.new_empty((H, W), dtype=torch.float64)
    for y0 in range(0, H, step):
        y1 = min(y0 + step, H)
        z = _bilinear_rows_into(name_logits, (H, W), (y0, y1), align_corners, table, buf64, logits)
        z.mul_(logit_scale)
        m = torch.amax(z, 0, out=_view(top, z.shape[1:]))
        z.sub_(m).exp_()
        s = torch.sum(z, 0, out=_view(total, z.shape[1:]))
        torch.add(m.double(), s.double().log_(), out=lse[y0:y1])
    return lse


def probabilities_in_strips(name_logits: Tensor, lse: Tensor, logit_scale: float,
                            name_to_class: Tensor, classes: Sequence[int],
                            align_corners: bool = False, max_elems: Optional[int] = None,
                            max_bytes: Optional[int] = None, out: Optional[Tensor] = None) -> Tensor:
    """Full-resolution probabilities of some classes from their own names' maps.

    A name's probability is ``exp(s - lse)`` with ``s`` the float32 scaled cosine of
    :func:`labels_in_strips` and ``lse`` from :func:`logsumexp_in_strips`, evaluated in float64 and
    rounded once: the softmax over names to within float32 rounding (the float32 softmax kernel
    rounds each step, ~1e-7); a class's probability is the max over its names.

    Args:
        name_logits (Tensor): (num_names, h, w) cosines.
        lse (Tensor): (H, W) float64 from :func:`logsumexp_in_strips`.
        logit_scale (float): multiplies the cosines.
        name_to_class (Tensor): (num_names,) class of every name.
        classes (sequence of int): the class indices wanted (any order, repeats allowed).
        align_corners (bool): of the resize.
        max_elems, max_bytes (int, optional): strip size (:func:`strip_rows`) for the names read.
        out (Tensor, optional): (len(classes), H, W) output of any float dtype (e.g. float16 to
            write a file).

    Returns:
        Tensor: (len(classes), H, W), ``out`` if given (float32 otherwise).
    """
    H, W = lse.shape
    n2c = name_to_class.tolist()
    names = [[i for i, c in enumerate(n2c) if c == k] for k in classes]
    if any(not ns for ns in names):
        raise IndexError(f'class indices must be in [0, {max(n2c) + 1}), got {list(classes)}')
    if out is None:
        out = name_logits.new_empty((len(names), H, W))
    elif tuple(out.shape) != (len(names), H, W):
        raise ValueError(f'out must be {(len(names), H, W)}, got {tuple(out.shape)}')
    if not names:
        return out
    used = sorted({i for ns in names for i in ns})
    pos = {i: j for j, i in enumerate(used)}
    sub = name_logits[used]
    step = min(H, strip_rows(len(used), W, max_bytes, max_elems))
    table = _source_rows(name_logits.shape[-2], H, align_corners, name_logits.device)
    for y0 in range(0, H, step):
        y1 = min(y0 + step, H)
        s = bilinear_rows(sub, (H, W), (y0, y1), align_corners, table).mul_(logit_scale)
        p = torch.exp(s.double() - lse[y0:y1])
        for j, ns in enumerate(names):
            out[j, y0:y1].copy_(p[[pos[i] for i in ns]].amax(0))
    return out
