"""The CAT-Seg head the public code's way, for the benchmark's reference mode (:mod:`.reference`).

The public ``cat_seg/modeling/transformer/model.py`` concatenates the guidance to every row it
guides before each projection (``torch.cat([x, guidance.repeat(...)], dim=-1)``) and to every class
map before the decoder's first conv, and runs every padded class token as a query and through the
MLP of the class step. declip_mm's heads compute the same numbers with the guidance term projected
once and broadcast and only the real classes as queries (``models/heads/guided_linear.py``,
``class_aggregation.py``, ``upsample_decoder.py``). :func:`literal_heads` gives the head's modules
these subclasses for the length of a ``with`` block.
"""
from __future__ import annotations

from typing import ContextManager, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.heads.class_aggregation import ClassAggregation
from ..models.heads.guided_linear import GuidedLinear
from ..models.heads.upsample_decoder import GuidedUpStage
from .class_swap import swapped_classes

__all__ = ['ConcatGuidedLinear', 'AllQueriesClassAggregation', 'ConcatGuidedUpStage',
           'literal_heads']


def _repeat_guidance(guidance: Tensor, rows: int) -> Tensor:
    """(B, *S) -> (B * R, *S), each image's guidance repeated for its R = rows / B rows."""
    b = guidance.shape[0]
    return guidance.unsqueeze(1).expand(b, rows // b, *guidance.shape[1:]).flatten(0, 1)


class ConcatGuidedLinear(GuidedLinear):
    """``linear(cat([y, guidance repeated], -1))``."""

    def forward(self, y: Tensor, guidance: Optional[Tensor] = None) -> Tensor:
        if guidance is not None:
            y = torch.cat([y, _repeat_guidance(guidance, y.shape[0])], dim=-1)
        return F.linear(y, self.weight, self.bias)


class AllQueriesClassAggregation(ClassAggregation):
    """Every class token, padding included, is a query and goes through the MLP; the padding rows
    are dropped afterwards."""

    def attend(self, tokens: Tensor, guidance: Optional[Tensor], num_queries: int) -> Tensor:
        return super().attend(tokens, guidance, tokens.shape[1])[:, :num_queries]


class ConcatGuidedUpStage(GuidedUpStage):
    """The decoder stage's first conv over ``cat([x, guidance repeated], 1)``."""

    def guided_conv(self, x: Tensor, guidance: Tensor) -> Tensor:
        return self.conv(torch.cat([x, _repeat_guidance(guidance, x.shape[0])], dim=1))


PUBLIC_HEAD_CLASSES = {GuidedLinear: ConcatGuidedLinear,
                       ClassAggregation: AllQueriesClassAggregation,
                       GuidedUpStage: ConcatGuidedUpStage}


def literal_heads(module: nn.Module) -> ContextManager[int]:
    """Within the block the CAT-Seg head modules inside ``module`` compute as the public code does
    (module docstring); yields how many modules changed."""
    return swapped_classes(module.modules(), PUBLIC_HEAD_CLASSES)
