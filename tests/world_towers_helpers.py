"""Tiny world towers for tests: trained for 2 steps (seconds) and archived as if shipped, so the code
paths that use the shipped towers run without the repository's archives (tests of learning use
the real archives: tests/miniworld/test_world_end_to_end.py)."""
import os.path as osp


def ship_brief_towers(root) -> str:
    """Train both towers for 2 steps into ``root/cache`` and archive them into ``root/shipped``
    (``world_{clip,vfm}.npz``); returns the shipped folder."""
    from unittest import mock

    import declip_mm.miniworld.world_towers as wt
    from declip_mm.miniworld.shipped import pack_tower
    ship = osp.join(str(root), 'shipped')
    with mock.patch.object(wt, 'BRIEF_CLIP_STEPS', 2), mock.patch.object(wt, 'BRIEF_VFM_STEPS', 2):
        towers = wt.world_towers(osp.join(str(root), 'cache'), threads=1,
                                 shipped_dir=osp.join(str(root), 'none'), log=None)
    for kind in ('clip', 'vfm'):
        t = towers[kind]
        pack_tower(t['weights'], t['config'], t['record'], osp.join(ship, f'world_{kind}.npz'))
    return ship
