#!/usr/bin/env python
"""The README's main job.

Builds tiny DeCLIP backbones of both families (random weights: no download, nothing to fetch),
runs the decoupled forward on a rectangular image and prints what comes out.
"""
import argparse
import time

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--weights', default=None, help='a local CLIP checkpoint (any supported format)')
    p.add_argument('--model-name', default='EVA02-B-16', help='architecture of --weights')
    p.add_argument('--attn-mode', default='csa')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import declip_mm
    from declip_mm.models import DeCLIPTextEncoder, DeCLIPVisionTransformer
    from declip_mm.testing import tiny_clip_config

    print(f'declip_mm {declip_mm.__version__} | torch {torch.__version__} | '
          f'threads {torch.get_num_threads()}')
    if args.weights:
        towers = {args.model_name: args.model_name}
    else:
        print('no --weights given: tiny towers with RANDOM weights (shapes and plumbing only)')
        towers = {'tiny EVA02-style': tiny_clip_config('eva02'),
                  'tiny OpenAI-style': tiny_clip_config('openai')}
    for label, cfg in towers.items():
        bb = DeCLIPVisionTransformer(cfg, pretrained=args.weights, attn_mode=args.attn_mode,
                                     out_indices=(0, ))
        bb.init_weights()
        bb.eval()
        ph, pw = bb.patch_size
        x = torch.randn(1, 3, 6 * ph, 10 * pw)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = bb(x)
            cls = bb.encode_image(x, normalize=True)
        dt = (time.perf_counter() - t0) * 1000
        print(f'\n{label}: {bb.family}, width {bb.width}, depth {bb.depth}, '
              f'attn_mode={bb.attn_mode}, tau={bb.attn_scale:.4g}')
        print(f'  input           {tuple(x.shape)}')
        for k, v in out.items():
            shapes = [tuple(t.shape) for t in v] if isinstance(v, list) else tuple(v.shape)
            print(f'  {k:<15} {shapes}')
        print(f'  encode_image    {tuple(cls.shape)}   ({dt:.0f} ms for both passes)')
        text = DeCLIPTextEncoder(cfg, pretrained=args.weights, templates='single')
        text.init_weights()
        with torch.no_grad():
            emb = text(['cat', ['sky', 'clouds']])
            dense = torch.nn.functional.normalize(out['content'], dim=1)
            logits = torch.einsum('bchw,nc->bnhw', dense, emb)
        print(f'  text embeddings {tuple(emb.shape)} -> dense logits {tuple(logits.shape)}')
    print('\nquick-start finished')


if __name__ == '__main__':
    main()
