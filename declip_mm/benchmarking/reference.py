"""Reference mode: declip_mm's computations run the way the public DeCLIP code runs them.

``tools/benchmark.py`` times every case twice, in declip_mm's default mode and in this reference
mode, interleaved; the reference computes the same numbers (tests/benchmarking pins it) with the
public code's cost structure:

* **explicit attention** (:func:`explicit_attention`): every attention, in the student, the CLIP
  teacher, the VFM and the decoupled block, materialises ``softmax(scale * Q Kᵀ)`` (and
  ``softmax(scale * Q Qᵀ)``, ``softmax(scale * K Kᵀ)`` in the decoupled modes) and multiplies it by V,
  as the official ``eva_vit_model.py`` / DINOv2 attention do without xformers (always on a CPU), so
  training keeps an (H, N, N) matrix per block for the backward pass;
* **RoPE by the literal formula** (:func:`.reference_towers.literal_rope`): negate, stack, two
  products, sum and concatenate per q / k, as the official ``VisionRotaryEmbeddingFast`` (and timm)
  compute it, and EVA blocks through timm's own forward (declip_mm's inference path rotates in one
  complex product);
* **the CAT-Seg head as the public code** (:func:`.reference_heads.literal_heads`): guidance
  repeated and concatenated to every class map / location before each projection and the decoder's
  first conv, every padded class token a query and through the MLP;
* **windows one at a time at batch 1** (:func:`reference_slide_logits`): the sliding-window loop of
  the public training-free evaluator: each window's logits are resized to the window, zero-padded to
  the whole image and added (``preds += F.pad(window_logits, ...)``); the logits of all classes are then
  resized to the original image and post-processed at once (:func:`reference_predict`);
* the training step's teachers as the official ``src/training/declip.py`` runs them: the 20 teacher
  crops of an image in one ``encode_image`` call under ``torch.no_grad`` (the public code batches them;
  it does not run them one at a time), after the student, the CLIP teacher's last block for every
  token (open_clip pools the CLS row of the full block), the VFM in the same precision as the
  default mode's fp32 (the bf16 / cache modes of the benchmark are compared with this fp32
  reference), the student's MLPs keeping all of timm's activations
  (:func:`.reference_towers.plain_mlps`).

The models have one code path each and know nothing of this mode: the reference variants are
subclasses owned by the benchmark (``reference_towers.py``, ``reference_heads.py``) that the model's
objects are given for the length of a ``with`` block (:func:`.class_swap.swapped_classes`), and the
training step is assembled here from the distiller's public pieces (``run_teachers``,
``distill_losses``). The one process-wide change is :func:`explicit_attention`: the models (and timm)
call ``F.scaled_dot_product_attention`` by name at call time, and replacing that function for the
block is how every attention, timm's included, computes the explicit way without a second path in
the models (restored on exit; the benchmark runs in its own process, one thread of work).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .reference_heads import literal_heads
from .reference_towers import full_last_block, literal_rope, plain_mlps

__all__ = ['explicit_attention', 'explicit_sdpa', 'reference_slide_logits', 'reference_predict',
           'reference_train_losses', 'reference_catseg_predict']


def explicit_sdpa(query: Tensor, key: Tensor, value: Tensor, attn_mask: Optional[Tensor] = None,
                  dropout_p: float = 0.0, is_causal: bool = False, scale: Optional[float] = None,
                  enable_gqa: bool = False) -> Tensor:
    """``F.scaled_dot_product_attention`` computed with the explicit (…, N, M) weight matrix:
    ``softmax((scale * Q) Kᵀ + mask) V`` (scale defaults to 1/sqrt(d); timm / EVA order: the query
    is scaled before the product)."""
    if enable_gqa:
        raise NotImplementedError('explicit_sdpa: grouped-query attention is not used here')
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    attn = (query * scale) @ key.transpose(-2, -1)
    if is_causal:
        n, m = attn.shape[-2:]
        keep = torch.ones(n, m, dtype=torch.bool, device=attn.device).tril()
        attn = attn.masked_fill(~keep, float('-inf'))
    if attn_mask is not None:
        attn = attn.masked_fill(~attn_mask, float('-inf')) if attn_mask.dtype == torch.bool \
            else attn + attn_mask
    attn = attn.softmax(dim=-1)
    if dropout_p > 0.0:
        attn = F.dropout(attn, p=dropout_p)
    return attn @ value


@contextlib.contextmanager
def explicit_attention() -> Iterator[None]:
    """Within the block, ``F.scaled_dot_product_attention`` is :func:`explicit_sdpa` (every caller
    that looks it up at call time: timm's EVA / ViT / DINOv2 attention, declip_mm's decoupled block
    and CAT-Seg Swin blocks). Not covered: ``nn.MultiheadAttention``'s fused inference path (OpenAI
    towers), which does not go through the Python function."""
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = explicit_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


@torch.no_grad()
def reference_slide_logits(segmentor, inputs: Tensor) -> Tensor:
    """Overlap-averaged cosine logits (B, num_names, H, W) of a ``DeCLIPZeroShotSegmentor`` in slide
    mode, window by window at batch 1 with explicit attention (the public evaluator's loop)."""
    from ..models.segmentors.zero_shot_segmentor import center_pad_size, window_grid
    seg = segmentor
    b, _, h, w = inputs.shape
    boxes = window_grid(h, w, seg.crop_size, seg.stride)
    text = seg.class_embeddings()
    preds = inputs.new_zeros((b, text.shape[0], h, w))
    count = inputs.new_zeros((b, 1, h, w))
    with explicit_attention(), literal_rope(seg):
        for i in range(b):
            for y1, y2, x1, x2 in boxes:
                crop = inputs[i:i + 1, :, y1:y2, x1:x2]
                hc, wc = crop.shape[-2:]
                pad = center_pad_size(hc, wc, seg.backbone.patch_size)
                if any(pad):
                    crop = F.pad(crop, pad)
                feats = F.normalize(seg.backbone(crop)['content'], dim=1)
                logit = torch.einsum('bchw,nc->bnhw', feats, text.to(feats.dtype))
                logit = F.interpolate(logit, size=crop.shape[-2:], mode='bilinear',
                                      align_corners=seg.align_corners)
                logit = logit[:, :, pad[2]:pad[2] + hc, pad[0]:pad[0] + wc]
                preds[i:i + 1] += F.pad(logit, (x1, w - x2, y1, h - y2))
                count[i:i + 1, :, y1:y2, x1:x2] += 1
    return preds / count


@torch.no_grad()
def reference_predict(segmentor, inputs: Tensor, data_samples: Optional[list] = None) -> list:
    """``segmentor.predict`` in reference mode: :func:`reference_slide_logits`, then the logits of
    every class resized to the original size at once and post-processed there."""
    seg = segmentor
    seg._ensure_weights()
    if seg.mode != 'slide':
        raise ValueError(f"reference mode is the sliding-window protocol; test_cfg.mode is "
                         f"{seg.mode!r}")
    logits = reference_slide_logits(seg, inputs)
    keep = seg.keep_seg_logits
    seg.keep_seg_logits = True  # the full (num_classes, H, W) probabilities, as the public code
    try:
        return seg.postprocess_result(logits, data_samples)
    finally:
        seg.keep_seg_logits = keep


def reference_train_losses(distiller, inputs: dict) -> dict:
    """``DeCLIPDistiller.loss`` in reference mode: the same losses, every attention explicit, the
    literal RoPE, the student first and then the teachers under ``torch.no_grad`` as in the public
    training loop (the default runs them first under ``torch.inference_mode``), the CLIP teacher's
    whole last block computed, the student's MLPs keeping timm's activations (no ``lean_mlp``)."""
    with explicit_attention(), literal_rope(distiller), plain_mlps(distiller.student), \
            full_last_block(distiller.clip_teacher):
        out = distiller.student(inputs['student'])
        with torch.no_grad():
            crop_emb, vfm = distiller.run_teachers(inputs)
        return distiller.distill_losses(out, inputs, crop_emb, vfm)


def reference_catseg_predict(segmentor, inputs: Tensor, data_samples: Optional[list] = None
                             ) -> List:
    """``DeCLIPCATSegSegmentor.predict`` the public CAT-Seg way: explicit attention, the literal
    RoPE, the head's guidance repeated and concatenated and every padded class token a query
    (``literal_heads``); the public code batches its five views as declip_mm does."""
    with explicit_attention(), literal_rope(segmentor), literal_heads(segmentor):
        return segmentor.predict(inputs, data_samples)
