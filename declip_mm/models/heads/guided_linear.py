"""``linear([y, g])`` with a guidance ``g`` shared by several rows of ``y``, without concatenating it.

CAT-Seg's aggregation layers (public ``cat_seg/modeling/transformer/model.py``) project queries and
keys from the cost features concatenated with guidance features: ``W [y, g] + b``. The guidance is the
same for many rows of ``y`` -- an image's visual guidance for its T class maps (spatial step), a class's
text guidance for every location (class step) -- so the public code repeats it and multiplies it
again for each. Since ``W [y, g] + b = W_y y + (W_g g + b)``, the guidance term is computed once and
broadcast: the same sum up to the order of the float additions.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['guided_linear']


def guided_linear(linear: nn.Linear, y: Tensor, guidance: Optional[Tensor]) -> Tensor:
    """``linear(cat([y, g_rep], -1))`` where ``g_rep`` repeats each guidance row over its group.

    Args:
        linear (nn.Linear): the projection of the concatenated input (in = C + G).
        y (Tensor): (B * R, *S, C): R rows per guidance entry (interleaved image-major).
        guidance (Tensor, optional): (B, *S, G); None: ``linear(y)``.

    Returns:
        Tensor: (B * R, *S, out).
    """
    if guidance is None:
        return linear(y)
    c, b = y.shape[-1], guidance.shape[0]
    out = F.linear(y, linear.weight[:, :c]).unflatten(0, (b, -1))  # (B, R, *S, out)
    out += F.linear(guidance, linear.weight[:, c:], linear.bias).unsqueeze(1)
    return out.flatten(0, 1)
