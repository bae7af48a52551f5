"""Frozen CLIP text tower with prompt ensembling and a per-class-list embedding cache.

Class embedding (CLIP paper, prompt ensembling; docs/method.md §4): for every name, embed each template filled
with the name, L2-normalise each, average over templates, renormalise.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from ...converters import match_state_dict, text_state_dict, to_open_clip_state_dict
from ...registry import MODELS
from ...utils import check_local_file, load_weight_file
from ..backbones.clip_towers import build_text_tower, default_quick_gelu, resolve_clip_config
from .templates import fill_template, get_templates

__all__ = ['DeCLIPTextEncoder']

#: names the text tower's file in messages (the image backbone's reads 'pretrained CLIP checkpoint')
_WHAT = 'text encoder checkpoint (the CLIP text tower, model.text_encoder.pretrained)'


@MODELS.register_module()
class DeCLIPTextEncoder(BaseModule):
    """CLIP text encoder returning prompt-ensembled, L2-normalised name embeddings.

    Args:
        model_name (str | dict): open_clip model name or config (as the image backbone).
        pretrained (str, optional): local checkpoint holding the text tower (any format of docs/method.md §1);
            loaded by :meth:`init_weights`. ``None`` keeps random weights.
        templates (str | list[str]): ``'imagenet80'``, ``'vild'``, ``'single'``, ``'vild_hand_craft'``
            or ``'{}'`` strings (see ``templates.py``).
        batch_size (int): prompts per forward of the text tower. Defaults to 256.
        quick_gelu (bool, optional): as in the backbone (QuickGELU for OpenAI names by default).
        frozen (bool): keep the tower frozen (no grads, eval mode). Defaults to True. A trainable
            tower (``frozen=False``, e.g. CAT-Seg fine-tuning) caches embeddings only in eval mode,
            and the cache is dropped whenever it switches to training.
    """

    def __init__(self,
                 model_name: Union[str, Dict[str, Any]] = 'ViT-B-16',
                 pretrained: Optional[str] = None,
                 templates: Union[str, Sequence[str]] = 'imagenet80',
                 batch_size: int = 256,
                 quick_gelu: Optional[bool] = None,
                 frozen: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.model_name = model_name
        cfg = resolve_clip_config(model_name)
        if quick_gelu is None:
            quick_gelu = default_quick_gelu(model_name, cfg)
        self.text = build_text_tower(cfg, quick_gelu=bool(quick_gelu))
        self.context_length = int(cfg['text_cfg'].get('context_length', 77))
        self.templates = get_templates(templates)
        self.batch_size = int(batch_size)
        self.frozen = bool(frozen)
        if pretrained is not None:
            check_local_file(pretrained, _WHAT)
        self.pretrained = pretrained
        self._tokenizer = None
        self._cache: Dict[Tuple, Tensor] = {}
        if self.frozen:
            self.text.requires_grad_(False)
        # new weights (e.g. a segmentor checkpoint loaded after an eval-mode forward) make cached
        # embeddings stale
        self.register_load_state_dict_post_hook(self._drop_cache)

    @staticmethod
    def _drop_cache(module, incompatible_keys) -> None:
        module._cache.clear()

    def train(self, mode: bool = True) -> DeCLIPTextEncoder:
        if mode and not self.frozen:
            self._cache.clear()  # the weights are about to change: cached embeddings go stale
        return super().train(False if self.frozen else mode)

    # weights -----------------------------------------------------------------------------------
    def init_weights(self) -> None:
        if self.pretrained is not None:
            self.load_pretrained(self.pretrained)
        self._is_init = True

    def load_pretrained(self, path: str) -> None:
        raw = load_weight_file(path, _WHAT)
        sd, flavour, _ = to_open_clip_state_dict(raw)
        self.load_open_clip_state_dict(sd, source=f'{path} ({flavour})')

    def load_open_clip_state_dict(self, sd: Dict[str, Tensor], source: str = 'state dict') -> None:
        tsd = text_state_dict(sd)
        if not tsd:
            raise ValueError(f'{source} holds no text-tower weights; the text encoder needs a full '
                             'CLIP checkpoint (image and text towers)')
        to_load, _, unexpected = match_state_dict(self.text, tsd, f'text tower (from {source})')
        if unexpected:
            print_log(f'{source}: ignored text-tower keys {sorted(unexpected)[:10]}',
                      logger='current', level=logging.WARNING)
        self.text.load_state_dict(to_load, strict=False)
        self._cache.clear()

    # encoding ----------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from open_clip.tokenizer import SimpleTokenizer  # ships its BPE vocabulary
            self._tokenizer = SimpleTokenizer(context_length=self.context_length)
        return self._tokenizer

    def _can_truncate(self) -> bool:
        t = self.text
        return (getattr(t, 'attn_mask', None) is not None and getattr(t, 'cls_emb', None) is None
                and not getattr(t, 'use_pad_mask', False) and t.pool_type == 'argmax')

    def _encode_tokens(self, tokens: Tensor) -> Tensor:
        """The text tower on token ids; causal towers run only up to the batch's last EOT token.

        With a causal mask no position attends to later ones, and the embedding is read at the EOT
        token (the argmax id), so dropping the trailing padding changes nothing but the cost (class
        prompts are ~10 of the 77 positions).
        """
        t = self.text
        if not self._can_truncate():
            return t(tokens)
        eot = tokens.argmax(dim=-1)
        n = int(eot.max()) + 1
        tok = tokens[:, :n]
        cast = t.transformer.get_cast_dtype()
        x = t.token_embedding(tok).to(cast) + t.positional_embedding[:n].to(cast)
        x = t.transformer(x, attn_mask=t.attn_mask[:n, :n])
        x = t.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        if t.text_projection is not None:
            x = t.text_projection(x) if isinstance(t.text_projection, torch.nn.Linear) \
                else x @ t.text_projection
        return x

    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> Tensor:
        """Embed raw strings: (len(texts), E)."""
        device = next(self.text.parameters()).device
        outs = []
        for i in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[i:i + self.batch_size])).to(device)
            outs.append(self._encode_tokens(tokens))
        emb = torch.cat(outs).float()
        return F.normalize(emb, dim=-1) if normalize else emb

    @staticmethod
    def _flatten(names: Sequence[Union[str, Sequence[str]]]) -> List[str]:
        flat = []
        for n in names:
            group = [n] if isinstance(n, str) else list(n)
            if not group or not all(isinstance(s, str) and s.strip() for s in group):
                raise ValueError(f'each class needs at least one non-empty name, got {n!r}')
            flat += [s.strip() for s in group]
        return flat

    def forward(self, names: Sequence[Union[str, Sequence[str]]],
                per_template: bool = False) -> Tensor:
        """Prompt-ensembled embeddings of every name.

        Args:
            names: one entry per class, each a name or a list of synonyms.
            per_template (bool): return the normalised embedding of every template instead of their
                ensemble. Defaults to False.

        Returns:
            Tensor: (num_names, E) L2-normalised, rows in the order of the flattened names; with
            ``per_template`` (num_names, num_templates, E).
        """
        flat = self._flatten(names)
        device = next(self.text.parameters()).device
        key = (tuple(flat), self.templates, str(device), bool(per_template))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        prompts = [fill_template(t, n) for n in flat for t in self.templates]
        with torch.set_grad_enabled(not self.frozen and torch.is_grad_enabled()):
            emb = self.encode_text(prompts, normalize=True)
        emb = emb.view(len(flat), len(self.templates), -1)
        if not per_template:
            emb = F.normalize(emb.mean(dim=1), dim=-1)
        # a trainable tower changes at every step: cache only while its weights are fixed
        if self.frozen or not self.training:
            emb = emb.detach()
            self._cache[key] = emb
        return emb

    @staticmethod
    def name_to_class_index(names: Sequence[Union[str, Sequence[str]]]) -> Tensor:
        """For every flattened name, the index of its class: (num_names,) long."""
        idx = []
        for c, n in enumerate(names):
            idx += [c] * (1 if isinstance(n, str) else len(n))
        return torch.tensor(idx, dtype=torch.long)
