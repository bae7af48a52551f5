"""``linear([y, g])`` with a guidance ``g`` shared by several rows of ``y``, without concatenating it.

CAT-Seg's aggregation layers (public ``cat_seg/modeling/transformer/model.py``) project queries and
keys from the cost features concatenated with guidance features: ``W [y, g] + b``. The guidance is the
same for many rows of ``y`` -- an image's visual guidance for its T class maps (spatial step), a class's
text guidance for every location (class step) -- so the public code repeats it and multiplies it
again for each. Since ``W [y, g] + b = W_y y + (W_g g + b)``, the guidance term is computed once and
broadcast: the same sum up to the order of the float additions. (The public way, repeated and
concatenated, is the benchmark's reference: ``declip_mm.benchmarking.reference_heads``.)
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['GuidedLinear']


class GuidedLinear(nn.Linear):
    """``nn.Linear`` over ``[y, g]`` (``in_features`` = C + G; same parameters and state dict keys)
    whose forward takes ``y`` and the shared guidance ``g`` separately.

    Shapes:
        y (B * R, *S, C): R rows per guidance entry (interleaved image-major);
        guidance (B, *S, G) or None (then ``linear(y)``) -> (B * R, *S, out)
    """

    def forward(self, y: Tensor, guidance: Optional[Tensor] = None) -> Tensor:
        if guidance is None:
            return super().forward(y)
        c, b = y.shape[-1], guidance.shape[0]
        out = F.linear(y, self.weight[:, :c]).unflatten(0, (b, -1))  # (B, R, *S, out)
        out += F.linear(guidance, self.weight[:, c:], self.bias).unsqueeze(1)
        return out.flatten(0, 1)
