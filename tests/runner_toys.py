"""A small trainable model around the DeCLIP backbone, for Runner-level tests (train / resume)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch.utils.data import Dataset

from declip_mm.registry import DATASETS, MODELS


@MODELS.register_module(force=True)
class ToyBackboneRegressor(BaseModel):
    """Regress the backbone's content features onto fixed random targets."""

    def __init__(self, backbone: dict):
        super().__init__()
        self.backbone = MODELS.build(backbone)

    def forward(self, inputs, targets=None, mode='loss'):
        x = torch.stack(inputs) if isinstance(inputs, (list, tuple)) else inputs
        y = torch.stack(targets) if isinstance(targets, (list, tuple)) else targets
        feats = self.backbone(x)['content']
        if mode == 'loss':
            return {'loss_content': F.mse_loss(feats, y)}
        return [feats]


@DATASETS.register_module(force=True)
class ToyImageTargets(Dataset):
    def __init__(self, n=16, size=(24, 40), dim=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, *size, generator=g)
        self.y = torch.randn(n, dim, size[0] // 8, size[1] // 8, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], targets=self.y[i])


def toy_runner_cfg(work_dir, backbone, max_iters=8, interval=4):
    return dict(
        default_scope='mmseg',
        custom_imports=dict(imports=['declip_mm'], allow_failed_imports=False),
        model=dict(type='ToyBackboneRegressor', backbone=backbone),
        work_dir=str(work_dir),
        train_dataloader=dict(batch_size=2, num_workers=0,
                              dataset=dict(type='ToyImageTargets'),
                              sampler=dict(type='InfiniteSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3),
                         dict(type='CosineAnnealingLR', by_epoch=False, begin=3, end=max_iters)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=interval,
                                           by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo')),
        log_level='WARNING',
    )
