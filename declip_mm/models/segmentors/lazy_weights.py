"""Tower weights loaded on first use, shared by the segmentors.

mmseg's ``init_model`` and ``Runner.test`` build a model without calling ``init_weights()``; a
segmentor then loads its towers' configured local ``pretrained`` files at its first prediction,
unless a state dict (a segmentor checkpoint, ``load_from``) was loaded into it first.
"""
from __future__ import annotations

import logging
from typing import Tuple

from mmengine.logging import print_log

__all__ = ['LazyTowerWeightsMixin']


class LazyTowerWeightsMixin:
    """Call :meth:`_init_lazy_weights` in ``__init__`` and :meth:`_ensure_weights` before a forward;
    ``init_weights`` must set ``_weights_ready``. :meth:`_on_state_dict_loaded` is the subclass's
    hook for a loaded state dict."""

    _weights_ready = False

    def _init_lazy_weights(self) -> None:
        self._weights_ready = False
        self.register_load_state_dict_post_hook(self._mark_loaded)

    @staticmethod
    def _pair(v) -> Tuple[int, int]:
        return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))

    @staticmethod
    def _mark_loaded(module, incompatible_keys) -> None:
        module._weights_ready = True
        module._on_state_dict_loaded()

    def _on_state_dict_loaded(self) -> None:
        """Called after a state dict was loaded (the weights are the state dict's)."""

    def _ensure_weights(self) -> None:
        if not self._weights_ready:
            if self.backbone.pretrained or self.text_encoder.pretrained:
                print_log('loading the configured pretrained weights on first use',
                          logger='current', level=logging.INFO)
            self.init_weights()
