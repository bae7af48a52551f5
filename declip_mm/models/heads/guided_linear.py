"""``linear([y, g])`` with a guidance ``g`` shared by several rows of ``y``, without concatenating it.

CAT-Seg's aggregation layers (public ``cat_seg/modeling/transformer/model.py``) project queries and
keys from the cost features concatenated with guidance features: ``W [y, g] + b``. The guidance is the
same for many rows of ``y`` -- an image's visual guidance for its T class maps (spatial step), a class's
text guidance for every location (class step) -- so the public code repeats it and multiplies it
again for each. Since ``W [y, g] + b = W_y y + (W_g g + b)``, the guidance term is computed once and
broadcast: the same sum up to the order of the float additions. Within :func:`literal_heads` (the
benchmarks' reference mode) the heads compute it the public way: repeated and concatenated.
"""
from __future__ import annotations

from typing import ContextManager, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...utils.mode_switch import ModeSwitch

__all__ = ['guided_linear', 'literal_heads', 'literal_heads_enabled']

_LITERAL = ModeSwitch()  # on within literal_heads()


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
    if literal_heads_enabled():  # the public code: the guidance repeated and concatenated
        rep = guidance.unsqueeze(1).expand(b, y.shape[0] // b, *guidance.shape[1:]).flatten(0, 1)
        return linear(torch.cat([y, rep], dim=-1))
    out = F.linear(y, linear.weight[:, :c]).unflatten(0, (b, -1))  # (B, R, *S, out)
    out += F.linear(guidance, linear.weight[:, c:], linear.bias).unsqueeze(1)
    return out.flatten(0, 1)


def literal_heads_enabled() -> bool:
    """True within :func:`literal_heads`."""
    return _LITERAL.on


def literal_heads() -> ContextManager[None]:
    """Within the block the CAT-Seg head computes as the public code does: guidance repeated and
    concatenated before each projection / the decoder's first conv, every padded class token a
    query and through the MLP (the benchmarks' reference mode)."""
    return _LITERAL.active()
