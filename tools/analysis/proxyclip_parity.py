#!/usr/bin/env python
"""Measured parity of attn_mode='proxy' (docs/method.md §7) with the float64 formula and, side by side,
with the public ProxyCLIP code (mc-lan/ProxyCLIP) on shared random tiny towers.

    python tools/analysis/proxyclip_parity.py [--proxyclip /tmp/proxyclip_src] [--seeds 3]

``--proxyclip`` is a checkout of the public repository (nothing of it is stored in declip_mm), e.g.
``git --git-dir <mirror> archive HEAD | tar -x -C /tmp/proxyclip_src``; without it only the float64
rows are printed. Prints a Markdown table: the worst relative error of the content features
(max |a - b| / max |b|), and for the segmentor the worst absolute difference of the class
probabilities and the number of differing labels.
"""
import argparse
import importlib.util
import os.path as osp

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_reference():
    spec = importlib.util.spec_from_file_location(
        'proxy_reference', osp.join(ROOT, 'tests', 'proxy_reference.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--proxyclip', default=None, help='checkout of mc-lan/ProxyCLIP')
    p.add_argument('--seeds', type=int, default=3)
    args = p.parse_args(argv)
    import declip_mm  # noqa: F401
    from declip_mm.models.backbones import DeCLIPVisionTransformer, ProxyVFM
    from declip_mm.testing import tiny_clip_config
    from declip_mm.testing.proxyclip_public import TINY_VFMS
    ref = load_reference()
    rows = []
    cm, cs = torch.tensor([0.481, 0.458, 0.408]), torch.tensor([0.269, 0.261, 0.276])
    for family in ('openai', 'eva02'):
        for arch, sides in (('dino_vitb8', (32, 48)), ('dinov2_vitb14_reg', (56, 112))):
            worst = 0.0
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                bb = DeCLIPVisionTransformer(tiny_clip_config(family), attn_mode='proxy').eval()
                vfm = ProxyVFM(arch, arch_overrides=TINY_VFMS[arch]).eval()
                for side in sides:
                    x = torch.randn(2, 3, side, side)
                    with torch.no_grad():
                        feats = vfm(x, cm, cs)
                        out = bb(x, proxy_feats=feats)['content']
                    r = ref.reference_proxy_content(bb, x, feats)
                    worst = max(worst, float((out.double() - r).abs().max() / r.abs().max()))
            rows.append((f'{family} tower + {arch} (tiny)', 'float64 formula', f'{worst:.1e}', '-'))
    if args.proxyclip:
        from declip_mm.testing.proxyclip_public import (
            compare_custom_attn,
            compare_segmentors,
            load_public,
            tiny_proxy_segmentor,
        )
        public = load_public(args.proxyclip)
        worst = 0.0
        for seed in range(args.seeds):
            for side in (64, 112):
                torch.manual_seed(seed)
                bb = DeCLIPVisionTransformer(tiny_clip_config('openai', image_size=side,
                                                              patch_size=16),
                                             attn_mode='proxy').eval()
                g = side // 14 + 1
                worst = max(worst, compare_custom_attn(public, bb, torch.randn(1, 3, side, side),
                                                       torch.randn(1, 12, g, g) + 0.2))
        rows.append(('openai tower (tiny), random VFM features', 'public custom_attn',
                     f'{worst:.1e}', '-'))
        for arch in ('dino_vitb8', 'dinov2_vitb14_reg'):
            dp, mism, pix = 0.0, 0, 0
            for seed in range(args.seeds):
                seg = tiny_proxy_segmentor(arch, seed=seed)
                torch.manual_seed(100 + seed)
                r = compare_segmentors(public, seg, torch.randn(1, 3, 112, 200))
                dp, mism, pix = max(dp, r['prob_max_diff']), mism + r['label_mismatch'], \
                    pix + r['pixels']
            rows.append((f'openai tower + {arch} (tiny), 112x200 image, window 112/56',
                         'public ProxyCLIPSegmentation (fp32)', f'{dp:.1e} (probabilities)',
                         f'{mism} / {pix}'))
    print('| case | against | max difference | labels differing |\n|---|---|---|---|')
    for r in rows:
        print('| ' + ' | '.join(r) + ' |')
    return rows


if __name__ == '__main__':
    main()
