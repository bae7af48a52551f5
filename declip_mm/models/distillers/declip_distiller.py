"""The DeCLIP training model (docs/method.md §2).

Call graph::

    loss(inputs)
      ├─ student(inputs['student'])              content (B, E, h, w), context_q/k (B, D, h, w)
      ├─ clip_teacher.encode_image(crops)        no_grad, one batched call for the whole batch
      ├─ vfm_teacher(inputs['vfm'])              no_grad, (B, C, h', w')
      ├─ ContentDistillLoss(content, rois, teacher embeddings)
      └─ ContextDistillLoss([Q] or [Q, K], VFM features)

Trainable set (docs/method.md §3): every student block except the last block's unused FFN and norm2, and the
projection the mode does not distil: k_proj in ``qq``, q_proj (weight and bias) in ``kk`` (the
official ``src/training/utils.py`` freeze lists); frozen: patch embedding, CLS, position embedding,
pre-norm, final norm, projection head. The context distilled per mode (official
``eva_vit_model.py`` ``ss_attn`` outputs): Q in ``qq``, K in ``kk``, Q and K in ``csa``. Teachers are
frozen, in eval mode and outside the state dict (they are rebuilt from their local weights / the
student's initial weights), so checkpoints hold the student only.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor

from ...registry import MODELS
from ...utils.finite import last_checkpoint_note
from ..layers import DECOUPLED_MODES
from ..layers.lean_mlp import make_mlps_lean
from .multi_context import MultiContextMixin
from .vfm_feature_cache import VFMFeatureCache

__all__ = ['DeCLIPDistiller', 'apply_declip_trainable_set', 'CONTEXT_KEYS']

_TEACHERS = ('clip_teacher.', 'vfm_teacher.', 'vfm_extra.', 'region_eval.')
#: decoupled mode -> the last block's projection it neither uses nor distils (kept frozen)
_UNDISTILLED = {'qq': 'k', 'kk': 'q'}
#: decoupled mode -> the backbone outputs that are the context (docs/method.md §2)
CONTEXT_KEYS = {'qq': ('context_q', ), 'kk': ('context_k', ), 'csa': ('context_q', 'context_k')}
_DEFAULT_CONTEXT = object()  # sentinel: ContextDistillLoss(loss_weight=0.1); None disables it


def apply_declip_trainable_set(student) -> List[str]:
    """Set ``requires_grad`` of a DeCLIPVisionTransformer to docs/method.md §3's trainable set.

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
        # the projection the mode leaves out of the context (and of the attention) stays CLIP's
        if student.attn_mode in _UNDISTILLED and student.family == 'eva02':
            proj = getattr(last.attn, _UNDISTILLED[student.attn_mode] + '_proj', None)
            if proj is not None:
                frozen |= {id(p) for p in proj.parameters()}
    names = []
    for name, p in student.named_parameters():
        if id(p) in frozen:
            p.requires_grad = False
            names.append(name)
    return names


@MODELS.register_module()
class DeCLIPDistiller(MultiContextMixin, BaseModel):
    """Student CLIP + frozen CLIP teacher + frozen VFM teacher, trained with the two DeCLIP losses.

    Args:
        student (dict): ``DeCLIPVisionTransformer`` config (its ``pretrained`` also initialises the
            CLIP teacher; ``attn_mode`` 'csa' or 'qq' for DeCLIP, 'vanilla' for the undecoupled
            ablation).
        vfm_teacher (dict | list[dict], optional): ``VFMTeacher`` config; ``None`` = content
            distillation only. A list of configs = several teachers (beyond the paper,
            docs/method.md §6): teacher t > 0 reads ``inputs['vfm_<t>']`` (pipeline key
            ``vfm_img_<t>``), each with its own input size and normalisation.
        vfm_weights (sequence[float], optional): one weight per teacher, normalised to sum 1;
            ``None`` = equal weights.
        vfm_combine (str): ``'loss'`` (weighted sum of the per-teacher context losses) or
            ``'target'`` (one loss against the weighted average of the teacher correlations; the
            teachers must share the token grid). Defaults to ``'loss'``.
        context_block_weights (sequence[float], optional): with ``student.decouple_last`` = k, the
            weights (w_{L-k+1}, .., w_L) of each decoupled block's context loss (used as given);
            ``None`` = 1/k each. The content loss stays on the final content map.
        content_loss (dict): defaults to ``ContentDistillLoss(loss_weight=1.0)``.
        context_loss (dict, optional): defaults to ``ContextDistillLoss(loss_weight=0.1)``.
        context_source (str): ``'qk'`` (the mode's context: Q in qq, K in kk, Q and K in csa:
            DeCLIP) or ``'content'`` (the content map itself: the "without decoupling" ablation).
            Defaults to ``'qk'``. The student's head count is passed to the context loss (its
            ``head_mode='per_head'`` option splits the context by head).
        teacher_dtype (str, optional): ``'bf16'`` / ``'fp16'`` autocast for both teachers.
        data_preprocessor (dict): defaults to ``DeCLIPDataPreprocessor``.
        vfm_cache (dict, optional): ``VFMFeatureCache`` arguments (``cache_dir`` ...): read the VFM
            teachers' features of images seen before from an fp16 disk cache instead of running
            the teachers (docs/method.md §6); ``None`` (default) runs them at every step.
        region_eval (dict, optional): a ``DeCLIPRegionClassifier`` config (its backbone is the
            student; ``text_encoder`` model name and weights default to the student's) to run region
            classification as validation after training epochs (``configs/_base_/region_cls_val.py``).
            Its extra key ``merge_alpha`` (default 0.7) makes validation run on
            ``alpha * student + (1 - alpha) * original``, the tower exported after the epoch, as the
            official code evaluates; None evaluates the student itself. Left out of checkpoints like
            the teachers. Defaults to None (no validation).
        lean_mlp (bool): EVA students keep fewer MLP activations for the backward pass
            (``models/layers/lean_mlp.py``: bit-identical values and gradients, ~360 MB less for
            B/16 at 560). Defaults to True.
    """

    def __init__(self,
                 student: dict,
                 vfm_teacher: Union[dict, Sequence[dict], None] = None,
                 content_loss: Optional[dict] = None,
                 context_loss: Optional[dict] = _DEFAULT_CONTEXT,
                 context_source: str = 'qk',
                 teacher_dtype: Optional[str] = None,
                 vfm_weights: Optional[Sequence[float]] = None,
                 vfm_combine: str = 'loss',
                 context_block_weights: Optional[Sequence[float]] = None,
                 data_preprocessor: Optional[dict] = None,
                 vfm_cache: Optional[dict] = None,
                 region_eval: Optional[dict] = None,
                 lean_mlp: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        # built from mmseg's registry, so the model also builds outside a Runner / default scope
        data_preprocessor = MODELS.build(data_preprocessor or dict(type='DeCLIPDataPreprocessor')) \
            if not isinstance(data_preprocessor, torch.nn.Module) else data_preprocessor
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = MODELS.build(student)
        self.clip_teacher = copy.deepcopy(self.student).lock()
        if lean_mlp:  # after the copy: the teacher never needs gradients
            make_mlps_lean(self.student)
        self.clip_teacher.attn_mode = 'vanilla'
        extra_vfm: List[dict] = []
        if isinstance(vfm_teacher, (list, tuple)):
            if not vfm_teacher:
                raise ValueError('vfm_teacher is an empty list; use None for no VFM teacher')
            vfm_teacher, extra_vfm = vfm_teacher[0], list(vfm_teacher[1:])
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
        if (context_source == 'content' and self.context_loss is not None
                and getattr(self.context_loss, 'head_mode', 'merged') == 'per_head'):
            raise ValueError("head_mode='per_head' splits Q/K by attention head; it does not apply "
                             "to context_source='content'")
        if teacher_dtype not in (None, 'bf16', 'fp16'):
            raise ValueError(f"teacher_dtype must be None, 'bf16' or 'fp16', got {teacher_dtype!r}")
        self.teacher_dtype = teacher_dtype
        self._setup_multi_context(extra_vfm, vfm_weights, vfm_combine, context_block_weights)
        self.vfm_cache = None
        if vfm_cache is not None:
            if self.vfm_teacher is None:
                raise ValueError('vfm_cache caches VFM teacher features; it needs a vfm_teacher')
            self.vfm_cache = VFMFeatureCache(**vfm_cache)   # a disk cache, not a registered model
            self.data_preprocessor.keep_img_path = True  # the cache keys on the image file
        self.frozen_student_params = apply_declip_trainable_set(self.student)
        # OpenAI towers fuse q/k/v in one in_proj: the rows of the projection the mode does not use
        # (K in qq, Q in kk) must stay frozen although the tensor is trained (the optimizer
        # constructor restores them after each step)
        self.frozen_slices: List[Tuple[str, slice]] = []
        if self.student.family == 'openai' and self.student.attn_mode in _UNDISTILLED:
            d = self.student.width
            start = {'q': 0, 'k': d}[_UNDISTILLED[self.student.attn_mode]]
            name = f'student.visual.transformer.resblocks.{self.student.depth - 1}.attn.'
            self.frozen_slices = [(name + 'in_proj_weight', slice(start, start + d)),
                                  (name + 'in_proj_bias', slice(start, start + d))]
        self.region_eval_alpha = (region_eval or {}).get('merge_alpha', 0.7)
        self.region_eval = self._build_region_eval(region_eval, student)
        self._val_tower = None  # the alpha-merged student, built once per validation
        self._register_state_dict_hook(self._drop_teachers)
        self._register_load_state_dict_pre_hook(self._fill_teachers, with_module=True)

    @staticmethod
    def _build_region_eval(cfg: Optional[dict], student: dict):
        if cfg is None:
            return None
        cfg = copy.deepcopy(dict(cfg))
        cfg.pop('merge_alpha', None)
        cfg['backbone'] = None  # the student is lent at each validation step
        te = cfg.setdefault('text_encoder', dict(type='DeCLIPTextEncoder'))
        te.setdefault('model_name', student.get('model_name', 'ViT-B-16'))
        te.setdefault('pretrained', student.get('pretrained'))
        return MODELS.build(cfg)

    # teachers outside checkpoints --------------------------------------------------------------
    @staticmethod
    def _drop_teachers(module, state_dict, prefix, local_metadata):
        for k in [k for k in state_dict if k[len(prefix):].startswith(_TEACHERS)]:
            del state_dict[k]
        return state_dict

    @staticmethod
    def _fill_teachers(module, state_dict, prefix, *args):
        # checkpoints hold no teacher weights: keep the current ones (strict loading still works)
        for name in ('clip_teacher', 'vfm_teacher', 'vfm_extra', 'region_eval'):
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
        for teacher in self.vfm_extra:
            teacher.init_weights()
        if self.region_eval is not None:
            self.region_eval.init_weights()
        self._is_init = True

    def train(self, mode: bool = True) -> DeCLIPDistiller:
        super().train(mode)
        if mode:
            self._val_tower = None  # the student changes again: rebuild at the next validation
        self.clip_teacher.eval()
        if self.vfm_teacher is not None:
            self.vfm_teacher.eval()
        self.vfm_extra.eval()
        if self.region_eval is not None:
            self.region_eval.eval()
        return self

    # forward -----------------------------------------------------------------------------------
    def _teacher_context(self, device: torch.device):
        if self.teacher_dtype is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.teacher_dtype == 'bf16' else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)

    def teacher_targets(self, inputs: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """CLIP teacher crop embeddings (K, E) and VFM features (B, C, h, w), in fp32.

        The teachers run under ``torch.inference_mode`` (no autograd bookkeeping at all; the outputs
        are cloned out of it so the losses can use them).
        """
        with torch.inference_mode():
            crops, vfm = self.run_teachers(inputs)
        return crops.clone(), vfm.clone() if vfm is not None else None

    def run_teachers(self, inputs: Dict[str, Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        """The teachers' outputs of :meth:`teacher_targets` under the caller's autograd mode (in the
        teachers' ``teacher_dtype`` autocast): L2-normalised crop embeddings and VFM features."""
        with self._teacher_context(inputs['student'].device):
            crops = self.clip_teacher.encode_image(inputs['crops'], normalize=True).float()
            vfm = self._vfm_features(self.vfm_teacher, inputs, 'vfm') if (
                self.vfm_teacher is not None and self.context_loss is not None) else None
            return F.normalize(crops, dim=-1), vfm

    def _vfm_features(self, teacher, inputs: Dict[str, Tensor], key: str) -> Tensor:
        """One teacher's (B, C, h, w) fp32 features of ``inputs[key]``, through the cache if set
        (called inside the teacher autocast context)."""
        if self.vfm_cache is None:
            return teacher(inputs[key]).float()
        if 'img_path' not in inputs:
            raise KeyError("vfm_cache needs inputs['img_path'] (DeCLIPDataPreprocessor with "
                           'keep_img_path=True and PackDeCLIPInputs)')
        return self.vfm_cache.features(teacher, inputs[key], inputs['img_path'],
                                       inputs.get(key + '_valid_hw'),
                                       run=lambda x: teacher(x).float(),
                                       autocast=self.teacher_dtype)

    def _vfm_valid(self, inputs: Dict[str, Tensor], hw, key: str = 'vfm') -> Optional[Tensor]:
        if key + '_valid_hw' not in inputs:
            return None
        side = inputs[key].shape[-1]
        p = side / hw[1]
        vh = torch.ceil(inputs[key + '_valid_hw'][:, 0].float() / p).long()
        vw = torch.ceil(inputs[key + '_valid_hw'][:, 1].float() / p).long()
        ys = torch.arange(hw[0], device=vh.device)[None, :, None] < vh[:, None, None]
        xs = torch.arange(hw[1], device=vw.device)[None, None, :] < vw[:, None, None]
        return ys & xs

    def loss(self, inputs: Dict[str, Tensor], data_samples=None) -> Dict[str, Tensor]:
        """The DeCLIP losses of a batch. The teachers run first, so their temporaries are freed
        before the student's activations (kept for the backward pass) exist."""
        crop_emb, vfm = self.teacher_targets(inputs)
        out = self.student(inputs['student'])
        return self.distill_losses(out, inputs, crop_emb, vfm)

    def distill_losses(self, out: Dict[str, Tensor], inputs: Dict[str, Tensor], crop_emb: Tensor,
                       vfm: Optional[Tensor]) -> Dict[str, Tensor]:
        """The losses of the student's outputs ``out`` against the teacher targets (:meth:`loss`)."""
        losses = {self.content_loss.loss_name: self.content_loss(out['content'], inputs['rois'],
                                                                 crop_emb)}
        if self.context_loss is not None and self.multi_context:  # options beyond the paper
            keys = ('content', ) if self.context_source == 'content' else \
                CONTEXT_KEYS.get(self.student.attn_mode, ('context_q', ))
            losses[self.context_loss.loss_name] = self._multi_context_loss(out, inputs, vfm, keys)
        elif self.context_loss is not None:
            if self.context_source == 'content':
                feats = [out['content']]
            else:
                feats = [out[k] for k in CONTEXT_KEYS.get(self.student.attn_mode, ('context_q', ))]
            valid = self._vfm_valid(inputs, vfm.shape[-2:]) if self.context_loss.use_mask else None
            losses[self.context_loss.loss_name] = self.context_loss(
                feats, vfm, valid, num_heads=self.student.num_heads)
        return losses

    def val_tower(self):
        """The tower region validation runs on: the student, or its alpha-merge with the original
        weights (the frozen CLIP teacher's) when ``merge_alpha`` is set."""
        if self.region_eval_alpha is None:
            return self.student
        if self._val_tower is None:
            from ...engine.hooks import merge_weights  # pure function; engine imports no models
            tower = copy.deepcopy(self.student).eval()
            tower.visual.load_state_dict(merge_weights(
                self.student.visual.state_dict(), self.clip_teacher.visual.state_dict(),
                float(self.region_eval_alpha)))
            self._val_tower = [tower]  # in a list: not a registered submodule (no state dict)
        return self._val_tower[0]

    def val_step(self, data) -> list:
        """Region classification (``region_eval``) of :meth:`val_tower`; else mmengine's."""
        if self.region_eval is None:
            return super().val_step(data)
        return self.region_eval.predict_step(data, backbone=self.val_tower())

    def test_step(self, data) -> list:
        if self.region_eval is None:
            return super().test_step(data)
        return self.region_eval.predict_step(data, backbone=self.val_tower())

    def fsdp_units(self) -> List[torch.nn.Module]:
        """Student sub-modules that may be their own FSDP units (``DeCLIPFSDPStrategy``): the blocks
        before the decoupled ones, which are only ever entered through ``forward``. The decoupled
        blocks (projections read directly) and the stem / head stay in the root unit."""
        k = getattr(self.student, 'decouple_last', 1)
        return list(self.student.ops.blocks())[:self.student.depth - k]

    def fsdp_ignored_modules(self) -> List[torch.nn.Module]:
        """The frozen teachers: replicated on every rank, not sharded (they hold no gradients or
        optimizer state, and are kept out of checkpoints by this model's state-dict hooks)."""
        return [t for t in [self.clip_teacher, self.vfm_teacher, *self.vfm_extra, self.region_eval]
                if t is not None]

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
