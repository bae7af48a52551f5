#!/usr/bin/env python
"""Measured parity of DeCLIPVisionTransformer with the float64 formula reference (docs/method.md §1) and of
``encode_image`` with open_clip / timm, for both tower families, every mode and several grids.

    python tools/analysis/parity_report.py [--seeds 3]

Prints a Markdown table of the worst relative error (max |a - b| / max |b|) per family and mode.
The reference is tests/declip_reference.py (explicit softmax matrices, float64).
"""
import argparse
import importlib.util
import os.path as osp

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_reference():
    spec = importlib.util.spec_from_file_location(
        'declip_reference', osp.join(ROOT, 'tests', 'declip_reference.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--seeds', type=int, default=3)
    args = p.parse_args(argv)
    import open_clip

    import declip_mm  # noqa: F401
    from declip_mm.models import DeCLIPVisionTransformer
    from declip_mm.models.layers import ATTN_MODES
    from declip_mm.testing import tiny_clip_config
    ref = load_reference()
    sizes = [(32, 32), (24, 40), (48, 32), (56, 72)]
    rows = []
    for family in ('openai', 'eva02'):
        cfg = tiny_clip_config(family)
        for mode in ATTN_MODES:
            worst = {}
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                bb = DeCLIPVisionTransformer(cfg, attn_mode=mode).eval()
                for size in sizes:
                    x = torch.randn(2, 3, *size)
                    with torch.no_grad():
                        out = bb(x)
                    r = ref.reference_forward(bb, x)
                    for k in r:
                        worst[k] = max(worst.get(k, 0.0), ref.rel_err(out[k], r[k]))
            rows.append((family, mode, worst))
        torch.manual_seed(0)
        bb = DeCLIPVisionTransformer(cfg).eval()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            if family == 'openai':
                m = open_clip.model.CLIP(**cfg).eval()
                m.visual.load_state_dict(bb.visual.state_dict())
                e = ref.rel_err(bb.encode_image(x), m.encode_image(x))
            else:
                e = ref.rel_err(bb.encode_image(x), bb.visual.head(bb.visual.trunk(x)))
        rows.append((family, 'encode_image', {'vs open_clip/timm': e}))
    print('| family | mode | content | context_q | context_k | other |\n|---|---|---|---|---|---|')
    for family, mode, w in rows:
        cells = [f"{w[k]:.1e}" if k in w else '-' for k in ('content', 'context_q', 'context_k')]
        other = f"{w['vs open_clip/timm']:.1e}" if 'vs open_clip/timm' in w else '-'
        print(f'| {family} | {mode} | ' + ' | '.join(cells) + f' | {other} |')
    return rows


if __name__ == '__main__':
    main()
