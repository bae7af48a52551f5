"""The dict returned by :class:`DeCLIPVisionTransformer` in ``out_type='dict'`` mode.

A plain ``dict`` with one addition: indexing it like a tuple of maps (``outs[0]``, what every
mmseg / mmdet neck does) raises an error that says which backbone option to set, instead of the bare
``KeyError: 0`` a stock config with only the backbone swapped used to end in (issue 14.1). Values,
keys and order are those of the plain dict, so declip_mm's own models see no difference.
"""
from __future__ import annotations

from typing import Any

__all__ = ['DenseOutputs']

_HINT = ("DeCLIPVisionTransformer returned its named outputs (out_type='dict', keys {keys}) but was "
         'indexed with {key!r} like a tuple of feature maps, as mmseg / mmdet necks do. Build the '
         "backbone with out_type='featmap' and out_indices=(...) (one map per entry; the last block "
         "index gives the content map), plus out_scales=(4.0, 2.0, 1.0, 0.5) for a stride-4..32 FPN; "
         'see the README section "Use in your own mmseg / mmdet configs".')


class DenseOutputs(dict):
    """``dict`` of the backbone's named outputs; integer keys raise a clear TypeError."""

    def __missing__(self, key: Any) -> Any:
        # only non-string keys get the hint: a missing name (e.g. 'context_k' in qq mode) stays a
        # KeyError as with a plain dict
        if isinstance(key, int):
            raise TypeError(_HINT.format(keys=list(self), key=key))
        raise KeyError(key)
