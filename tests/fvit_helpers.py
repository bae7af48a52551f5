"""A tiny-tower child of configs/detection/fvit_declip-eva02-b16_ov-coco.py for tests (written as a
config file in tmp_path so that mmengine's inheritance is what a user gets)."""
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FVIT_CONFIG = osp.join(ROOT, 'configs', 'detection', 'fvit_declip-eva02-b16_ov-coco.py')


def write_tiny_fvit_config(path, data_root, work_dir, max_epochs=1):
    from declip_mm.testing import tiny_clip_config
    from declip_mm.testing.fvit_config import tiny_fvit_config_text
    tower = dict(_delete_=True, **tiny_clip_config('eva02', depth=4, patch_size=16))
    with open(path, 'w') as f:
        f.write(tiny_fvit_config_text(FVIT_CONFIG, tower, None, data_root, work_dir=work_dir,
                                      max_epochs=max_epochs))
    return path
