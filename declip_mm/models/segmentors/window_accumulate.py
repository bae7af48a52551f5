"""Sliding-window logits summed at full resolution without resizing each window on its own.

The protocol (docs/method.md §4) resizes every window's (names, h', w') cosine map bilinearly to the
window size, crops the patch padding back, adds it to the image canvas at the window's place and
finally divides by the number of windows covering each pixel. Done literally that is, per window,
one (names, hc, wc) resize and one strided read-modify-write of the canvas: at 448 x 597 with
150 names and eight 336-windows ~0.6 s on this machine, a fifth of the whole prediction, spent
moving memory.

Bilinear resizing is separable and linear: ``resize(L) = A_y L A_x^T`` with one (out, in) matrix per
axis, whose rows hold the kernel's two interpolation weights (:func:`linear_resize_matrix`, taken from
``F.interpolate`` itself, so half-pixel / ``align_corners`` coordinates and border clamping are
PyTorch's). Placing a window at (y1, x1) selects canvas rows and columns, so the canvas is

    sum_k  E_y(k) A_y L_k A_x^T E_x(k)^T  =  V @ B_x^T,   V = [ sum_r E_y(r) A_y L_(r,c) ]_c

with the windows grouped by column position c (a window grid is a product of row and column
positions). ``V`` (names, H, C*w') is small -- each window adds its height-resized map into its
column block -- and one matrix product with ``B_x`` (W, C*w'), the column resize matrices placed at
their columns, writes the whole canvas once, contiguous. Same arithmetic up to the order of the
float additions (fp32 results within ~1e-6 of the literal loop; float64 to 1e-12; the tests compare
both against the literal loop, ``declip_mm.benchmarking.reference_slide_logits``).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['linear_resize_matrix', 'WindowCanvas']


def linear_resize_matrix(n_in: int, n_out: int, align_corners: bool, dtype: torch.dtype,
                         device: torch.device) -> Tensor:
    """(n_out, n_in) matrix M with ``M @ x == F.interpolate(x, n_out, mode='linear')`` along one
    axis: PyTorch's own weights (the interpolation of the identity), two non-zeros per row."""
    eye = torch.eye(n_in, dtype=dtype, device=device)[None]  # (1, n_in channels, n_in)
    return F.interpolate(eye, size=n_out, mode='linear', align_corners=align_corners)[0].t()


class WindowCanvas:
    """Sums window logits into per-column-position buffers; :meth:`finish` writes the canvas.

    Args:
        boxes (list): the windows (y1, y2, x1, x2), all of one size (hc, wc).
        batch (int): images. names (int): channels. feat_hw (tuple): (h', w') of a window's map.
        pad (tuple): (left, right, top, bottom) patch padding of a window (cropped after resizing).
        align_corners (bool): of the bilinear resize.
        like (Tensor): dtype and device of the sums (the logits are converted to it).
    """

    def __init__(self, boxes: Sequence[Tuple[int, int, int, int]], batch: int, names: int,
                 feat_hw: Tuple[int, int], pad: Tuple[int, int, int, int], align_corners: bool,
                 like: Tensor) -> None:
        y1, y2, x1, x2 = boxes[0]
        hc, wc = y2 - y1, x2 - x1
        self.boxes = list(boxes)
        self.h = max(b[1] for b in self.boxes)
        self.w = max(b[3] for b in self.boxes)
        self.fh, self.fw = feat_hw
        self.columns: List[int] = sorted({b[2] for b in self.boxes})
        dt, dev = like.dtype, like.device
        ay = linear_resize_matrix(self.fh, hc + pad[2] + pad[3], align_corners, dt, dev)
        ax = linear_resize_matrix(self.fw, wc + pad[0] + pad[1], align_corners, dt, dev)
        self.ay = ay[pad[2]:pad[2] + hc].contiguous()  # (hc, h') rows of the kept window
        ax = ax[pad[0]:pad[0] + wc]  # (wc, w')
        self.bx = like.new_zeros((self.w, len(self.columns) * self.fw))
        for c, x in enumerate(self.columns):
            self.bx[x:x + wc, c * self.fw:(c + 1) * self.fw] = ax
        self.v = like.new_zeros((batch, names, self.h, len(self.columns) * self.fw))

    def add(self, image: int, box: Tuple[int, int, int, int], logits: Tensor) -> None:
        """Add one window's (names, h', w') logits of image ``image`` at ``box``."""
        y1, y2, x1, _ = box
        c = self.columns.index(x1)
        block = self.v[image, :, y1:y2, c * self.fw:(c + 1) * self.fw]
        block.add_(torch.matmul(self.ay, logits.to(self.ay.dtype)))  # (names, hc, w'): height resized

    def finish(self, out: Tensor) -> Tensor:
        """Write the summed, resized windows into ``out`` (B, names, H, W) (contiguous)."""
        b, n = self.v.shape[:2]
        torch.mm(self.v.view(b * n * self.h, -1), self.bx.t(), out=out.view(b * n * self.h, self.w))
        return out
