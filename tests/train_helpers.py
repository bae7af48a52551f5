"""Shared set-up of the training tests: generated photos-like images, tiny config options."""
import glob
import os
import os.path as osp

import numpy as np
import torch
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CFG = osp.join(ROOT, 'configs', 'declip', 'declip_tiny-random_quickstart.py')


def write_images(folder, n=10, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = rng.integers(40, 100, 2)
        base = rng.integers(0, 255, 3)
        img = np.zeros((h, w, 3), np.float32) + base
        for _ in range(3):  # a few coloured blocks: some structure for the teachers
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            img[y0:y0 + h // 2, x0:x0 + w // 2] = rng.integers(0, 255, 3)
        img += rng.normal(0, 10, img.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(osp.join(folder, f'{i:06d}.jpg'))
    return str(folder)


def train_args(work_dir, data_root, *options, epochs=6, batch=2):
    return [TINY_CFG, '--work-dir', str(work_dir), '--cfg-options',
            f'train_dataloader.dataset.data_root={data_root}', f'train_cfg.max_epochs={epochs}',
            f'train_dataloader.batch_size={batch}', 'default_hooks.logger.interval=1',
            f'param_scheduler.0.end={epochs}',
            *options]


def student_weights(ckpt_path):
    from declip_mm.apis import mmengine_safe_torch_load
    sd = mmengine_safe_torch_load(str(ckpt_path))['state_dict']
    return {k: v for k, v in sd.items() if k.startswith('student.')}


def latest(work_dir, pattern='epoch_*.pth'):
    files = glob.glob(osp.join(str(work_dir), pattern))
    return max(files, key=lambda f: int(f.rsplit('_', 1)[1].split('.')[0])) if files else None


def assert_same_weights(a, b, rtol=0.0, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), rtol=rtol, atol=atol), k
