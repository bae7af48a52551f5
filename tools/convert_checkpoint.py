#!/usr/bin/env python
"""Convert a CLIP checkpoint of any supported flavour into a declip_mm checkpoint.

    python tools/convert_checkpoint.py SRC DST [--model-name EVA02-B-16] [--attn-mode csa]
                                               [--attn-scale 1.0] [--image-only] [--overwrite]

Reads OpenAI jit/state-dict ``.pt``, open_clip ``.bin``/``.safetensors``, original EVA-CLIP ``.pt`` and
official DeCLIP releases (detected by key signature), checks the result against the architecture (named
or inferred from the shapes), reports unmatched and missing keys by name, and writes
``{'state_dict': ..., 'meta': {architecture, attn_mode, attn_scale, source}}``.

An existing DST is refused unless ``--overwrite`` is given, and DST may never be SRC (or the JSON
model config). The file is written next to DST under a temporary name and renamed once it loads.
"""
import argparse
import os
import sys

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='local source checkpoint')
    p.add_argument('dst', help='output .pth file')
    p.add_argument('--model-name', default=None,
                   help='open_clip architecture name or a JSON model config (default: inferred from '
                   'the weights)')
    p.add_argument('--attn-mode', default=None, choices=['vanilla', 'maskclip', 'qq', 'kk', 'csa'],
                   help='attention mode the weights were trained with (stored in meta)')
    p.add_argument('--attn-scale', type=float, default=None, help='training tau (stored in meta)')
    p.add_argument('--image-only', action='store_true', help='drop the text tower')
    p.add_argument('--overwrite', action='store_true',
                   help='replace DST if it exists (never allowed when DST is SRC)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import declip_mm  # noqa: F401
    from declip_mm.utils.output_files import check_output_path
    try:  # before anything is read: a refused output costs nothing
        check_output_path(args.dst, [args.src, args.model_name or ''], args.overwrite)
    except (FileExistsError, ValueError) as err:
        sys.exit(f'convert_checkpoint: {err}')
    from declip_mm.converters import infer_model_name, save_checkpoint, summarize_keys, to_open_clip_state_dict
    from declip_mm.models import DeCLIPTextEncoder, DeCLIPVisionTransformer
    from declip_mm.utils import load_weight_file

    raw = load_weight_file(args.src, 'source checkpoint')
    dropped = []
    sd, flavour, meta = to_open_clip_state_dict(raw, dropped)
    print(f'source: {args.src}\n  flavour: {flavour}, {len(sd)} tensors')
    if dropped:
        print(f'  {len(dropped)} source key(s) without a counterpart (dropped): '
              f'{summarize_keys(dropped, 20)}')
    name = args.model_name or meta.get('architecture') or infer_model_name(sd)
    if name is None:
        sys.exit('could not infer the architecture from the weights; pass --model-name')
    if isinstance(name, str) and name.endswith('.json'):
        import json
        with open(name) as f:
            name = json.load(f)
    print(f'  architecture: {name}')

    backbone = DeCLIPVisionTransformer(name, attn_mode='vanilla')
    backbone.load_open_clip_state_dict(sd, source=args.src)
    used = {'visual.' + k for k in backbone.visual.state_dict()}
    has_text = any(k.startswith(('text.', 'token_embedding')) for k in sd)
    if has_text and not args.image_only:
        text = DeCLIPTextEncoder(name)
        text.load_open_clip_state_dict(sd, source=args.src)
        prefix = 'text.' if any(k.startswith('text.') for k in sd) else ''
        used |= {prefix + k for k in text.text.state_dict()}
        used |= {k for k in sd if k == 'logit_scale'}
    elif not has_text:
        print('  note: no text tower in the source (image tower only)')
    unmatched = sorted(k for k in sd if k not in used)
    if unmatched:
        print(f'  {len(unmatched)} unmatched key(s) dropped: {summarize_keys(unmatched, 20)}')
    out = {k: v for k, v in sd.items() if k in used}
    attn_mode = args.attn_mode or meta.get('attn_mode')
    attn_scale = args.attn_scale if args.attn_scale is not None else meta.get('attn_scale')
    tmp = f'{args.dst}.tmp-{os.getpid()}'
    try:
        save_checkpoint(tmp, out, name, attn_mode=attn_mode, attn_scale=attn_scale, source=flavour)
        torch.load(tmp, weights_only=True)  # the written file must load safely
        check_output_path(args.dst, [args.src], args.overwrite)  # nothing appeared meanwhile
        os.replace(tmp, args.dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f'wrote {args.dst}: {len(out)} tensors, meta attn_mode={attn_mode} attn_scale={attn_scale}')


if __name__ == '__main__':
    main()
