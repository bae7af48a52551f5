"""Writers of the miniature world's on-disk layouts (docs/miniworld.md)."""
from __future__ import annotations


def write_world(out_dir, world_seed: int = 0, **kwargs):
    raise NotImplementedError('write_world: coming in the next commit')
