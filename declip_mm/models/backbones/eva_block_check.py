"""Start-up check that the written-out EVA block equals the INSTALLED timm's ``EvaBlock.forward``.

``EvaViTOps.run_block`` runs timm's EVA block written out (one-pass RoPE, in-place SwiGLU and
residual sums). That copy reproduces ``EvaBlock.forward`` of the timm versions it was compared with;
a later timm may change the block (an extra norm, another RoPE layout, a new attribute). So before a
block configuration first takes the written-out path, :func:`written_out_block_verified` runs a random
copy of that very block both ways in float64 on a small input and keeps the verdict per (timm
version, block configuration). A mismatch, or an error inside the written-out path, gives one warning
naming the timm version, and every block of that configuration then runs timm's own forward.

The configuration key holds the timm version, the block's ``repr`` (module types, widths, biases,
norm eps), every parameter's name and shape, the scalar attributes of every sub-module (head count,
scale, fused-attention and RoPE flags, ...) and the ``forward`` functions of every sub-module's class,
so a patched or replaced forward is a new configuration that is checked again. Each block keeps its
verdict (re-derived when the timm version or a sub-module's class ``forward`` changes; attributes set
on a block after its first forward are not re-read). The probe costs ~0.9 s once per process for an
EVA02-L block (a float64 copy of it), milliseconds for the tiny test towers.
"""
from __future__ import annotations

import copy
import threading
import warnings
import weakref
from typing import Callable, Dict, Hashable, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ['written_out_block_verified', 'block_signature', 'reset_block_checks']

#: (timm version, block configuration) -> the written-out block equals timm's forward
_VERDICTS: Dict[Hashable, bool] = {}
_WARNED = set()  # timm versions a mismatch was reported for
#: block -> (timm version, prefix tokens, RoPE, its modules' forward functions; verdict): the full
#: signature (~0.4 ms) is computed once per block, again only when one of these changes
_PER_BLOCK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()

#: the probe: 1 image, the prefix tokens plus a 2x3 patch grid, float64
PROBE_GRID = (2, 3)
#: largest |written-out - timm| accepted, relative to the largest |timm output| (float64 rounding
#: of a block is ~1e-15; any change of formula is orders of magnitude above this)
PROBE_RTOL = 1e-9

_SCALARS = (bool, int, float, str, type(None))


def block_signature(blk: nn.Module, num_prefix_tokens: int, has_rope: bool) -> Tuple:
    """What decides whether the written-out forward reproduces ``blk``'s (see the module doc)."""
    import timm
    attrs = tuple(
        (name, tuple(sorted((k, v) for k, v in vars(m).items()
                            if isinstance(v, _SCALARS) and not k.startswith('_') and k != 'training')))
        for name, m in blk.named_modules())
    forwards = tuple(type(m).forward for m in blk.modules())
    params = tuple((n, tuple(p.shape)) for n, p in blk.named_parameters())
    return (timm.__version__, num_prefix_tokens, has_rope, repr(blk), params, attrs, forwards)


def _randomize_(probe: nn.Module, seed: int = 0) -> None:
    """Random parameters of a useful size (a zero gamma or bias would hide a dropped term):
    matrices ~ N(0, 1/fan_in), vectors named ``*weight`` / ``gamma*`` ~ 1 + N(0, 0.3^2), other
    vectors ~ N(0, 0.3^2)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in probe.named_parameters():
        r = torch.randn(p.shape, generator=g, dtype=torch.float64)
        if p.dim() >= 2:
            r = r / p.shape[-1] ** 0.5
        elif name.endswith('weight') or name.split('.')[-1].startswith('gamma'):
            r = 1 + 0.3 * r
        else:
            r = 0.3 * r
        p.copy_(r)


def _compare(blk: nn.Module, written_out: Callable[[nn.Module, Tensor, Optional[Tensor]], Tensor],
             rope_table: Optional[Callable[[Tuple[int, int], Tensor], Tensor]],
             num_prefix_tokens: int) -> Tuple[bool, str]:
    """(equal, what differed) for a random float64 copy of ``blk`` run both ways."""
    probe = copy.deepcopy(blk).to(device='cpu', dtype=torch.float64).eval()
    with torch.no_grad():
        _randomize_(probe)
        width = next(p for n, p in probe.named_parameters() if n.endswith('norm1.weight')).shape[0]
        h, w = PROBE_GRID
        g = torch.Generator().manual_seed(1)
        x = torch.randn(1, num_prefix_tokens + h * w, width, generator=g, dtype=torch.float64)
        rope = None
        if rope_table is not None:
            rope = rope_table((h, w), x).to(torch.float64)
        ref = probe(x.clone(), rope=rope)
        got = written_out(probe, x.clone(), rope)
    if got.shape != ref.shape:
        return False, f'output shape {tuple(got.shape)} != {tuple(ref.shape)}'
    err = (got - ref).abs().max().item()
    scale = ref.abs().max().item()
    if not err <= PROBE_RTOL * max(scale, 1.0):
        return False, f'max |difference| {err:.3g} (outputs up to {scale:.3g})'
    return True, ''


def written_out_block_verified(blk: nn.Module, written_out, rope_table, num_prefix_tokens: int,
                               has_rope: bool) -> bool:
    """Whether ``written_out(blk, x, rope)`` may stand in for ``blk(x, rope=rope)``: the cached
    verdict of the float64 probe for ``blk``'s configuration under the installed timm.

    ``rope_table((h, w), x)`` builds the RoPE table of an ``h`` x ``w`` patch grid (None: the block
    runs without RoPE). On a mismatch or an error in the probe, warns once per timm version.
    """
    import timm
    quick = (timm.__version__, num_prefix_tokens, has_rope,
             tuple(type(m).forward for m in blk.modules()))
    seen = _PER_BLOCK.get(blk)
    if seen is not None and seen[0] == quick:  # this block, unchanged classes: its verdict
        return seen[1]
    key = block_signature(blk, num_prefix_tokens, has_rope)
    with _LOCK:
        verdict = _VERDICTS.get(key)
        if verdict is not None:
            _PER_BLOCK[blk] = (quick, verdict)
            return verdict
        try:
            verdict, why = _compare(blk, written_out, rope_table if has_rope else None,
                                    num_prefix_tokens)
        except Exception as e:  # e.g. a renamed attribute in a new timm
            verdict, why = False, f'{type(e).__name__}: {e}'
        _VERDICTS[key] = verdict
        _PER_BLOCK[blk] = (quick, verdict)
        version = key[0]
        if not verdict and version not in _WARNED:
            _WARNED.add(version)
            warnings.warn(
                f'timm {version}: the written-out EVA block (EvaViTOps.run_block) does not '
                f"reproduce this timm's EvaBlock.forward ({why}); the EVA blocks run timm's own "
                'forward instead (correct, somewhat slower). declip_mm was checked against timm '
                '1.0.31 (requirements/constraints.txt).', RuntimeWarning, stacklevel=3)
    return verdict


def reset_block_checks() -> None:
    """Forget the verdicts and warnings (tests)."""
    with _LOCK:
        _VERDICTS.clear()
        _WARNED.clear()
        _PER_BLOCK.clear()
