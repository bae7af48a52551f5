#!/usr/bin/env python
"""Cost of the CAT-Seg-style segmentor (docs/catseg.md): parameter counts, forward time and peak memory per
384 window and per test image (four windows + the global view, one batch).

    python tools/analysis/catseg_cost.py [--model EVA02-B-16] [--classes 150] [--repeats 1] [--params-only]

The towers are built from open_clip's config with random weights (``pretrained=None``: nothing is
read or downloaded), the head with the paper's sizes. Peak memory is the process's peak resident
set (CPU; ``ru_maxrss``, so it includes Python, torch and the weights) or ``max_memory_allocated``
on CUDA. ``catseg_cost()`` is the function a benchmark driver can call.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any, Dict

import torch


def build_segmentor(model_name: str = 'EVA02-B-16', num_classes: int = 150, out_indices=(3, 7),
                    clip_size=None):
    import declip_mm  # noqa: F401  (registers)
    from declip_mm.registry import MODELS
    cfg = dict(
        type='DeCLIPCATSegSegmentor',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.0] * 3, std=[1.0] * 3),
        backbone=dict(type='DeCLIPVisionTransformer', model_name=model_name, pretrained=None,
                      attn_mode='csa', out_indices=out_indices),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=model_name, pretrained=None,
                          templates='catseg'),
        decode_head=dict(type='DeCLIPCATSegHead'),
        class_names=[f'class {i}' for i in range(num_classes)],
        clip_size=clip_size,
        test_cfg=dict(mode='catseg', size=640, crop_size=384, stride=256, batch_size=5))
    return MODELS.build(cfg)


def param_counts(model) -> Dict[str, int]:
    """Parameter counts: ``total``, ``trainable`` (elements that get updates: ``requires_grad``
    tensors minus their ``frozen_slices`` rows, e.g. the K rows of a fused q/k/v weight under the
    Q/V rule), ``head``, ``image_tower`` and ``text_tower`` (the trainable elements of each tower)."""
    frozen = {}
    params = dict(model.named_parameters())
    for name, rows in getattr(model, 'frozen_slices', None) or []:
        frozen[name] = frozen.get(name, 0) + params[name][rows].numel()
    trainable = {n: p.numel() - frozen.get(n, 0) for n, p in params.items() if p.requires_grad}
    return dict(total=sum(p.numel() for p in params.values()),
                trainable=sum(trainable.values()),
                head=sum(p.numel() for p in model.decode_head.parameters()),
                image_tower=sum(v for n, v in trainable.items() if n.startswith('backbone.')),
                text_tower=sum(v for n, v in trainable.items() if n.startswith('text_encoder.')))


def _peak_mb(device: torch.device) -> float:
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _timed(fn, repeats: int, device: torch.device) -> float:
    best = float('inf')
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


@torch.no_grad()
def catseg_cost(model_name: str = 'EVA02-B-16', num_classes: int = 150, repeats: int = 1,
                device: str = 'cpu', image_hw=(512, 683), params_only: bool = False
                ) -> Dict[str, Any]:
    """Parameter counts (:func:`param_counts`) and eval-mode forward cost (the text embeddings are
    cached first); ``params_only`` skips the forward passes."""
    dev = torch.device(device)
    model = build_segmentor(model_name, num_classes).to(dev).eval()
    counts = param_counts(model)
    if params_only:
        return dict(model=model_name, **{f'params_{k}': v for k, v in counts.items()})
    model._weights_ready = True        # random weights: nothing to load
    model.class_embeddings()           # text tower once (cached in eval mode)
    rss_before = _peak_mb(dev)
    window = torch.randn(1, 3, 384, 384, device=dev)
    t_window = _timed(lambda: model.encode_decode(window), repeats, dev)
    mem_window = _peak_mb(dev)
    image = torch.randn(1, 3, *image_hw, device=dev)
    t_image = _timed(lambda: model.inference(image), repeats, dev)
    mem_image = _peak_mb(dev)
    return dict(model=model_name, classes=num_classes, device=str(dev),
                threads=torch.get_num_threads(),
                **{f'params_{k}': v for k, v in counts.items()}, window_s=t_window, image_s=t_image,
                peak_mb_after_setup=rss_before, peak_mb_window=mem_window, peak_mb_image=mem_image)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', default='EVA02-B-16')
    p.add_argument('--classes', type=int, default=150)
    p.add_argument('--repeats', type=int, default=1)
    p.add_argument('--device', default='cpu')
    p.add_argument('--params-only', action='store_true', help='count parameters, skip the timing')
    args = p.parse_args(argv)
    res = catseg_cost(args.model, args.classes, args.repeats, args.device,
                      params_only=args.params_only)
    print(json.dumps(res, indent=1))
    return res


if __name__ == '__main__':
    main()
