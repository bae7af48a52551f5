"""The DeCLIP training model (SPEC §3-5).

Call graph::

    loss(inputs)
      ├─ student(inputs['student'])              content (B, E, h, w), context_q/k (B, D, h, w)
      ├─ clip_teacher.encode_image(crops)        no_grad, one batched call for the whole batch
      ├─ vfm_teacher(inputs['vfm'])              no_grad, (B, C, h', w')
      ├─ ContentDistillLoss(content, rois, teacher embeddings)
      └─ ContextDistillLoss([Q] or [Q, K], VFM features)

Trainable set (SPEC §5): every student block except the last block's unused FFN and norm2 (and
k_proj in ``qq`` mode); frozen: patch embedding, CLS, position embedding, pre-norm, final norm,
projection head. Teachers are frozen, in eval mode and outside the state dict (they are rebuilt
from their local weights / the student's initial weights), so checkpoints hold the student only.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor

from ...registry import MODELS
from ...utils.finite import last_checkpoint_note
from ..layers import DECOUPLED_MODES

__all__ = ['DeCLIPDistiller', 'apply_declip_trainable_set']

_TEACHERS = ('clip_teacher.', 'vfm_teacher.')
_DEFAULT_CONTEXT = object()  # sentinel: ContextDistillLoss(loss_weight=0.1); None disables it


def apply_declip_trainable_set(student) -> List[str]:
    """Set ``requires_grad`` of a DeCLIPVisionTransformer to SPEC §5's trainable set.

    Returns the names of the frozen parameters.
    """
    for p in student.parameters():
        p.requires_grad = True
    frozen = {id(p) for p in student._stem_params()}
    v = student.visual
    if student.family == 'eva02':
        t = v.trunk
        head_mods = [t.norm, t.fc_norm, t.head]
    else:
        head_mods = [v.ln_post]
        frozen.add(id(v.proj))
    for m in head_mods:
        frozen |= {id(p) for p in m.parameters()}
    last = student.ops.blocks()[-1]
    if student.attn_mode in DECOUPLED_MODES:
        unused = [last.mlp, last.norm2 if student.family == 'eva02' else last.ln_2]
        for m in unused:
            frozen |= {id(p) for p in m.parameters()}
        for name in ('gamma_2', ):
            p = getattr(last, name, None)
            if isinstance(p, torch.nn.Parameter):
                frozen.add(id(p))
        if student.family == 'openai':
            frozen |= {id(p) for p in last.ls_2.parameters()}
        if student.attn_mode == 'qq' and student.family == 'eva02' and last.attn.k_proj is not None:
            frozen |= {id(p) for p in last.attn.k_proj.parameters()}
    names = []
    for name, p in student.named_parameters():
        if id(p) in frozen:
            p.requires_grad = False
            names.append(name)
    return names


@MODELS.register_module()
class DeCLIPDistiller(BaseModel):
    """Student CLIP + frozen CLIP teacher + frozen VFM teacher, trained with the two DeCLIP losses.

    Args:
        student (dict): ``DeCLIPVisionTransformer`` config (its ``pretrained`` also initialises the
            CLIP teacher; ``attn_mode`` 'csa' or 'qq' for DeCLIP, 'vanilla' for the undecoupled
            ablation).
        vfm_teacher (dict, optional): ``VFMTeacher`` config; ``None`` = content distillation only.
        content_loss (dict): defaults to ``ContentDistillLoss(loss_weight=1.0)``.
        context_loss (dict, optional): defaults to ``ContextDistillLoss(loss_weight=0.1)``.
        context_source (str): ``'qk'`` (Q, and K in csa: DeCLIP) or ``'content'`` (the content map
            itself: the "without decoupling" ablation). Defaults to ``'qk'``.
        teacher_dtype (str, optional): ``'bf16'`` / ``'fp16'`` autocast for both teachers.
        data_preprocessor (dict): defaults to ``DeCLIPDataPreprocessor``.
    """

    def __init__(self,
                 student: dict,
                 vfm_teacher: Optional[dict] = None,
                 content_loss: Optional[dict] = None,
                 context_loss: Optional[dict] = _DEFAULT_CONTEXT,
                 context_source: str = 'qk',
                 teacher_dtype: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        # built from mmseg's registry, so the model also builds outside a Runner / default scope
        data_preprocessor = MODELS.build(data_preprocessor or dict(type='DeCLIPDataPreprocessor')) \
            if not isinstance(data_preprocessor, torch.nn.Module) else data_preprocessor
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = MODELS.build(student)
        self.clip_teacher = copy.deepcopy(self.student).lock()
        self.clip_teacher.attn_mode = 'vanilla'
        self.vfm_teacher = MODELS.build(vfm_teacher) if vfm_teacher is not None else None
        self.content_loss = MODELS.build(
            content_loss or dict(type='ContentDistillLoss', loss_weight=1.0))
        if context_loss is _DEFAULT_CONTEXT:
            context_loss = dict(type='ContextDistillLoss', loss_weight=0.1)
        self.context_loss = MODELS.build(context_loss) if context_loss is not None else None
        if self.context_loss is not None and self.vfm_teacher is None:
            raise ValueError('context_loss needs a vfm_teacher')
        if context_source not in ('qk', 'content'):
            raise ValueError(f"context_source must be 'qk' or 'content', got {context_source!r}")
        self.context_source = context_source
        if teacher_dtype not in (None, 'bf16', 'fp16'):
            raise ValueError(f"teacher_dtype must be None, 'bf16' or 'fp16', got {teacher_dtype!r}")
        self.teacher_dtype = teacher_dtype
        self.frozen_student_params = apply_declip_trainable_set(self.student)
        # OpenAI towers fuse q/k/v in one in_proj: in qq mode the K rows of the last block must stay
        # frozen although the tensor is trained (the optimizer constructor restores them each step)
        self.frozen_slices: List[Tuple[str, slice]] = []
        if self.student.family == 'openai' and self.student.attn_mode == 'qq':
            d = self.student.width
            name = f'student.visual.transformer.resblocks.{self.student.depth - 1}.attn.'
            self.frozen_slices = [(name + 'in_proj_weight', slice(d, 2 * d)),
                                  (name + 'in_proj_bias', slice(d, 2 * d))]
        self._register_state_dict_hook(self._drop_teachers)
        self._register_load_state_dict_pre_hook(self._fill_teachers, with_module=True)

    # teachers outside checkpoints --------------------------------------------------------------
    @staticmethod
    def _drop_teachers(module, state_dict, prefix, local_metadata):
        for k in [k for k in state_dict if k[len(prefix):].startswith(_TEACHERS)]:
            del state_dict[k]
        return state_dict

    @staticmethod
    def _fill_teachers(module, state_dict, prefix, *args):
        # checkpoints hold no teacher weights: keep the current ones (strict loading still works)
        for name in ('clip_teacher', 'vfm_teacher'):
            teacher = getattr(module, name)
            if teacher is not None:
                for k, v in teacher.state_dict(prefix=f'{prefix}{name}.').items():
                    state_dict.setdefault(k, v)

    def init_weights(self) -> None:
        """Load the student's CLIP weights, copy them into the CLIP teacher, load the VFM."""
        self.student.init_weights()
        self.clip_teacher.load_state_dict(self.student.state_dict())
        self.clip_teacher.lock()
        if self.vfm_teacher is not None:
            self.vfm_teacher.init_weights()
        self._is_init = True

    def train(self, mode: bool = True) -> DeCLIPDistiller:
        super().train(mode)
        self.clip_teacher.eval()
        if self.vfm_teacher is not None:
            self.vfm_teacher.eval()
        return self

    # forward -----------------------------------------------------------------------------------
    def _teacher_context(self, device: torch.device):
        if self.teacher_dtype is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.teacher_dtype == 'bf16' else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)

    @torch.no_grad()
    def teacher_targets(self, inputs: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """CLIP teacher crop embeddings (K, E) and VFM features (B, C, h, w), in fp32."""
        dev = inputs['student'].device
        with self._teacher_context(dev):
            crops = self.clip_teacher.encode_image(inputs['crops'], normalize=True).float()
            vfm = self.vfm_teacher(inputs['vfm']).float() if (
                self.vfm_teacher is not None and self.context_loss is not None) else None
        return F.normalize(crops, dim=-1), vfm

    def _vfm_valid(self, inputs: Dict[str, Tensor], hw) -> Optional[Tensor]:
        if 'vfm_valid_hw' not in inputs:
            return None
        side = inputs['vfm'].shape[-1]
        p = side / hw[1]
        vh = torch.ceil(inputs['vfm_valid_hw'][:, 0].float() / p).long()
        vw = torch.ceil(inputs['vfm_valid_hw'][:, 1].float() / p).long()
        ys = torch.arange(hw[0], device=vh.device)[None, :, None] < vh[:, None, None]
        xs = torch.arange(hw[1], device=vw.device)[None, None, :] < vw[:, None, None]
        return ys & xs

    def loss(self, inputs: Dict[str, Tensor], data_samples=None) -> Dict[str, Tensor]:
        out = self.student(inputs['student'])
        crop_emb, vfm = self.teacher_targets(inputs)
        losses = {self.content_loss.loss_name: self.content_loss(out['content'], inputs['rois'],
                                                                 crop_emb)}
        if self.context_loss is not None:
            if self.context_source == 'content':
                feats = [out['content']]
            else:
                feats = [out['context_q']] + ([out['context_k']] if 'context_k' in out and
                                              self.student.attn_mode == 'csa' else [])
            valid = self._vfm_valid(inputs, vfm.shape[-2:]) if self.context_loss.use_mask else None
            losses[self.context_loss.loss_name] = self.context_loss(feats, vfm, valid)
        return losses

    def forward(self, inputs: Dict[str, Tensor], data_samples=None, mode: str = 'loss'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode in ('tensor', 'predict'):
            return self.student(inputs['student'])
        raise ValueError(f'unknown mode {mode!r}')

    def parse_losses(self, losses: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
        loss, log_vars = super().parse_losses(losses)
        if not torch.isfinite(loss):
            detail = ', '.join(f'{k}={float(v):.4g}' for k, v in log_vars.items())
            # True only because DeCLIPFiniteWeightsHook keeps non-finite weights out of every
            # checkpoint; it also tells us where the run writes them (else no checkpoint is named)
            raise FloatingPointError(
                f'non-finite DeCLIP loss ({detail}); training stopped before the optimizer step, so '
                'nothing from this step was applied or saved. Lower the learning rate or check the '
                'input images. ' + last_checkpoint_note(getattr(self, 'last_checkpoint_dir', None)))
        return loss, log_vars
