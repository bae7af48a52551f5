"""Which training mode a checkpoint may be evaluated in (the attention-mode check).

A checkpoint policy, used where weights are loaded (the backbone, ``tools/test.py``'s checkpoint
routing): ``from declip_mm.models.checkpoint_policy import check_mode_pair``.

A DeCLIP checkpoint stores the decoupled mode it was trained in (``meta['attn_mode']``). What may be
evaluated in which mode follows from what each mode trains (official ``src/training/utils.py``
freeze lists, docs/method.md §2):

* ``qq`` trains Q and keeps the last block's K frozen, so K is CLIP's own; ``kk`` trains K and keeps
  Q frozen. ``csa`` uses both, softmax(τQQᵀ) + softmax(τKKᵀ), so a ``qq`` or ``kk`` checkpoint is a
  valid ``csa`` input — and ``csa`` is what the official zero-shot evaluator runs for every checkpoint
  (the published protocol; its configs say ``mode="csa"``).
* Evaluating in ``qq`` (or ``kk``) throws away the other branch. For a ``csa`` checkpoint that branch
  was trained jointly and the accuracy drops (users evaluating the released ``csa`` checkpoint in
  ``qq`` measured ADE20K 20.1 instead of 21.6); for a ``kk`` (``qq``) checkpoint the branch kept is
  the untouched CLIP one.

| checkpoint trained in | evaluated in ``csa`` | in ``qq`` | in ``kk`` |
|---|---|---|---|
| ``csa`` | yes | refused | refused |
| ``qq``  | yes (info line) | yes | refused |
| ``kk``  | yes (info line) | refused | yes |

Checkpoints without a decoupled mode in their meta (plain CLIP weights) and evaluation in
``vanilla`` / ``maskclip`` are not checked. Evaluation in ``proxy`` (ProxyCLIP's test-time attention,
docs/method.md §7) accepts every checkpoint, with an info line for a DeCLIP export: the proxy mode
replaces the last block's attention weights (Q, K) by the VFM's correlation and reads only V, the
output projection and the frozen head -- V and the output projection are trained by the content
loss in every mode, so no trained part is dropped that the mode would need.
"""
from __future__ import annotations

from typing import Optional

from .layers.decoupled_attention import DECOUPLED_MODES

__all__ = ['ALLOWED_MODE_PAIRS', 'check_mode_pair']

#: (checkpoint mode, evaluation mode) pairs that are accepted
ALLOWED_MODE_PAIRS = frozenset({('csa', 'csa'), ('qq', 'qq'), ('kk', 'kk'),
                                ('qq', 'csa'), ('kk', 'csa')})


def check_mode_pair(ckpt_mode: Optional[str], eval_mode: str, source: str = 'checkpoint'
                    ) -> Optional[str]:
    """Check a (trained, evaluated) attention-mode pair against the table of the module docstring.

    Args:
        ckpt_mode (str | None): the checkpoint's ``meta['attn_mode']``.
        eval_mode (str): the mode the model is configured with.
        source (str): names the checkpoint in messages.

    Returns:
        str | None: an info line for an accepted cross-mode pair, else None.

    Raises:
        ValueError: for a refused pair, naming both modes and the published protocol.
    """
    if eval_mode == 'proxy' and ckpt_mode in DECOUPLED_MODES:
        return (f"{source} was trained with attn_mode={ckpt_mode!r} and is evaluated with "
                "attn_mode='proxy': the VFM's proxy attention replaces its Q/K attention; its "
                'last-block V and output projection (trained by the content loss in every mode) '
                'are used.')
    if ckpt_mode not in DECOUPLED_MODES or eval_mode not in DECOUPLED_MODES:
        return None
    if (ckpt_mode, eval_mode) not in ALLOWED_MODE_PAIRS:
        raise ValueError(
            f'{source} was trained with attn_mode={ckpt_mode!r}; evaluating it with '
            f'attn_mode={eval_mode!r} drops the branch it was trained with (the released csa '
            f'checkpoint evaluated in qq gives ADE20K 20.1 instead of 21.6). The published protocol '
            f"evaluates every DeCLIP checkpoint with attn_mode='csa' (the configs in "
            f'configs/training_free/); allowed pairs are listed in docs/method.md.')
    if ckpt_mode != eval_mode:
        frozen = 'K' if ckpt_mode == 'qq' else 'Q'
        return (f'{source} was trained with attn_mode={ckpt_mode!r} and is evaluated with '
                f"attn_mode='csa', as the official evaluator does: its {frozen} branch is CLIP's "
                'untouched one, a valid csa input.')
    return None
