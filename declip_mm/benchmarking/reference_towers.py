"""The CLIP towers the public code's way, for the benchmark's reference mode (:mod:`.reference`).

* :func:`literal_rope`: EVA towers rotate q / k by the literal formula of the official
  ``VisionRotaryEmbeddingFast`` / timm's ``apply_rot_embed_cat`` (negate, stack, two products, sum,
  concatenate; :func:`literal_rope_rows`) and run every block through timm's own ``EvaBlock.forward``
  (declip_mm's inference path writes the block out and rotates in one complex product,
  ``models/backbones/clip_towers.py``);
* :func:`plain_mlps`: the student's memory-lean SwiGLUs (``models/layers/lean_mlp.py``) are timm's
  ``SwiGLU`` again, saving all their activations for the backward pass;
* :func:`full_last_block`: ``encode_image`` computes the whole last block and pools the CLS row
  (open_clip), instead of the CLS row alone.

Each is a context manager over one model: it swaps classes / methods of that model's objects and
restores them on exit (:func:`.class_swap.swapped_classes`).
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, Iterator, List, Optional

import torch
from timm.layers import SwiGLU
from torch import Tensor, nn

from ..models.backbones.clip_towers import EvaViTOps, _TowerOps
from ..models.layers.lean_mlp import LeanSwiGLU
from ..models.layers.rope import apply_rope_interleaved
from .class_swap import swapped_classes

__all__ = ['literal_rope_rows', 'PublicEvaViTOps', 'tower_ops_in', 'literal_rope', 'plain_mlps',
           'full_last_block']


def literal_rope_rows(x: Tensor, sincos: Tensor, num_prefix: int) -> Tensor:
    """RoPE on the rows of ``x`` (B, H, N, d) after the first ``num_prefix`` as timm's
    ``EvaAttention`` writes it: ``cat([x[..., :npt, :], apply_rot_embed_cat(x[..., npt:, :],
    table)], -2)`` with ``x * cos + rot(x) * sin``, ``rot`` the interleaved pairs (-x1, x0)."""
    rotated = apply_rope_interleaved(x[..., num_prefix:, :], sincos).to(x.dtype)
    return torch.cat([x[..., :num_prefix, :], rotated], dim=-2)


class PublicEvaViTOps(EvaViTOps):
    """EVA tower operations as the public code runs them: timm's block forward, the literal RoPE."""

    def run_block(self, blk: nn.Module, x: Tensor, rope: Optional[Tensor]) -> Tensor:
        return blk(x, rope=rope)

    def apply_rope(self, x: Tensor, rope: Tensor) -> Tensor:
        return literal_rope_rows(x, rope, self.num_prefix_tokens)


def tower_ops_in(module: nn.Module) -> List[_TowerOps]:
    """The tower-operation objects (``.ops``) of every CLIP tower inside ``module``."""
    return [m.ops for m in module.modules() if isinstance(getattr(m, 'ops', None), _TowerOps)]


def literal_rope(module: nn.Module) -> ContextManager[int]:
    """Within the block the EVA towers inside ``module`` compute RoPE by the literal formula and run
    timm's block forward (:class:`PublicEvaViTOps`); yields how many towers changed."""
    return swapped_classes(tower_ops_in(module), {EvaViTOps: PublicEvaViTOps})


def plain_mlps(module: nn.Module) -> ContextManager[int]:
    """Within the block the lean MLPs inside ``module`` are timm's ``SwiGLU`` (same parameters),
    saving their activations as timm's do; yields how many changed."""
    return swapped_classes(module.modules(), {LeanSwiGLU: SwiGLU})


@contextlib.contextmanager
def full_last_block(tower: nn.Module) -> Iterator[None]:
    """Within the block ``tower.encode_image`` runs its whole last block and pools the CLS row (as
    open_clip / the public code), instead of computing the CLS row alone (an instance attribute of
    the tower's ``ops``, deleted on exit)."""
    ops = tower.ops
    ops.run_block_cls = lambda blk, x, rope: ops.run_block(blk, x, rope)[:, :1]
    try:
        yield
    finally:
        del ops.run_block_cls
