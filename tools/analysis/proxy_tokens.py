#!/usr/bin/env python
"""Proxy tokens: per-layer attention maps and concentration scores of CLIP / DeCLIP image towers.

    python tools/analysis/proxy_tokens.py IMAGE --checkpoint EVA02_CLIP_B_psz16_s8B.pt \
        --compare work_dirs/declip_vitb_dinov2/declip_epoch_6.pth --model-name EVA02-B-16 \
        --vfm-weights weights/dinov2_vitb14_reg4_pretrain.pth --points 0.5,0.5 0.3,0.7 \
        --out proxy_tokens.png

Writes ``--out``: a grid with one row per block and, per tower (original | DeCLIP side by side), the
attention of the CLS token and of each chosen image token over the patch grid; the last row is the
last block as DeCLIP runs it (its decoupled ``attn_mode``). Writes ``<out>_context.png``: the cosine
correlation of each chosen token's context features (Q, and K in kk/csa) with every token, for each
tower and for the VFM teacher. Prints, per block, how concentrated the image tokens' attention is:
mean mass on the top-k most attended keys, entropy (nats), keys holding ``--mass`` of it
(``declip_mm/analysis/proxy_scores.py``). Drawn with matplotlib, or PIL where matplotlib is missing.
Without checkpoints the towers have RANDOM weights (tests,
trying the tool out): the pictures then show no proxy tokens.
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('image')
    p.add_argument('--model-name', default='EVA02-B-16', help='open_clip name or JSON config file')
    p.add_argument('--checkpoint', default=None, help='the (original) CLIP tower; none = random')
    p.add_argument('--compare', default=None, help='a second tower (e.g. the DeCLIP export)')
    p.add_argument('--attn-mode', default='csa', help='decoupled mode of the last block')
    p.add_argument('--size', type=int, default=448, help='short side of the input (px)')
    p.add_argument('--points', nargs='+', default=['0.5,0.5', '0.25,0.75'],
                   help='chosen image tokens as relative y,x in [0, 1]')
    p.add_argument('--topk', type=int, default=5)
    p.add_argument('--mass', type=float, default=0.5)
    p.add_argument('--vfm-arch', default='dinov2_vitb14_reg')
    p.add_argument('--vfm-weights', default=None, help='VFM teacher weights (none = random)')
    p.add_argument('--vfm-overrides', default=None, help='JSON constructor overrides (tiny towers)')
    p.add_argument('--no-vfm', action='store_true', help='skip the VFM teacher')
    p.add_argument('--out', default='proxy_tokens.png')
    return p.parse_args(argv)


def load_tower(model_name, checkpoint, attn_mode):
    from declip_mm.models import DeCLIPVisionTransformer
    if model_name.endswith('.json'):
        with open(model_name) as f:
            model_name = json.load(f)
    bb = DeCLIPVisionTransformer(model_name=model_name, pretrained=checkpoint, attn_mode=attn_mode,
                                 check_mode=False)
    bb.init_weights()
    return bb.eval()


def load_image(path: str, short: int, patch: int) -> np.ndarray:
    if not osp.isfile(path):
        raise SystemExit(f'image not found: {path}')
    img = Image.open(path).convert('RGB')
    s = short / min(img.size)
    w = max(patch, round(img.width * s / patch) * patch)
    h = max(patch, round(img.height * s / patch) * patch)
    return np.asarray(img.resize((w, h), Image.BICUBIC))


def to_tensor(rgb: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(np.array(rgb)).float().permute(2, 0, 1) / 255
    return ((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1))[None]


def parse_points(points: List[str], grid: Tuple[int, int]) -> List[Tuple[int, int]]:
    out = []
    for p in points:
        try:
            y, x = (float(v) for v in p.split(','))
        except ValueError as e:
            raise SystemExit(f'--points takes relative y,x pairs such as 0.5,0.5; got {p!r}') from e
        if not (0 <= y <= 1 and 0 <= x <= 1):
            raise SystemExit(f'--points must lie in [0, 1], got {p!r}')
        out.append((min(int(y * grid[0]), grid[0] - 1), min(int(x * grid[1]), grid[1] - 1)))
    return out


def analyse(bb, x: torch.Tensor, points, topk: int, mass: float) -> Dict:
    """Attention maps (CLS and chosen tokens per layer) and scores of the image-token queries."""
    from declip_mm.analysis import attention_trace, proxy_scores
    tr = attention_trace(bb, x)
    h, w = tr.grid
    npt = tr.num_prefix
    layers = [(str(i), a.mean(1)[0]) for i, a in enumerate(tr.attn)]
    if tr.decoupled is not None:
        layers.append((f'{len(tr.attn) - 1} {tr.mode}', tr.decoupled.mean(1)[0]))
    rows, scores = [], []
    for name, a in layers:
        maps = [a[0, npt:].view(h, w)] + [a[npt + y * w + xx, npt:].view(h, w) for y, xx in points]
        rows.append((name, [m.numpy() for m in maps]))
        scores.append((name, proxy_scores(a[npt:].double(), k=topk, frac=mass)))
    return dict(rows=rows, scores=scores, grid=tr.grid)


def context_maps(bb, x, points) -> List[Tuple[str, List[np.ndarray]]]:
    from declip_mm.analysis import token_correlation
    with torch.no_grad():
        out = bb(x)
    rows = []
    for key in ('context_q', 'context_k'):
        if key in out:
            rows.append((key[-1].upper(), [token_correlation(out[key][0].double(), p).numpy()
                                           for p in points]))
    return rows


def vfm_maps(args, rgb: np.ndarray, grid, points):
    from declip_mm.analysis import token_correlation
    from declip_mm.models import VFMTeacher
    over = json.loads(args.vfm_overrides) if args.vfm_overrides else None
    t = VFMTeacher(args.vfm_arch, pretrained=args.vfm_weights, arch_overrides=over)
    t.init_weights()
    size = (grid[1] * t.patch_size, grid[0] * t.patch_size)
    img = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
    feats = t(to_tensor(img, IMAGENET_MEAN, IMAGENET_STD))[0].double()
    return [token_correlation(feats, p).numpy() for p in points]


def print_scores(results: Dict[str, Dict], topk: int, mass: float) -> None:
    names = list(results)
    head = '| block | ' + ' | '.join(f'{n}: top-{topk} mass | {n}: entropy | {n}: keys '
                                      f'{mass:.0%}' for n in names) + ' |'
    print(head)
    print('|---' * (1 + 3 * len(names)) + '|')
    for i, (layer, _) in enumerate(results[names[0]]['scores']):
        cells = []
        for n in names:
            s = results[n]['scores'][i][1]
            cells += [f"{s['topk_mass']:.3f}", f"{s['entropy']:.2f}", f"{s['keys_for_mass']:.1f}"]
        print(f'| {layer} | ' + ' | '.join(cells) + ' |')


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def draw_pil(rows: List[Tuple[str, List[np.ndarray]]], rgb: np.ndarray, out: str, title: str,
             signed: bool = False, cell: int = 96) -> None:
    """Fallback without matplotlib: one labelled row of heat maps per entry, the photo first."""
    from PIL import ImageDraw

    from declip_mm.apis.overlay import prob_heatmap
    width = 110 + cell * (1 + max(len(m) for _, m in rows))
    canvas = Image.new('RGB', (width, 20 + cell * len(rows)), 'white')
    d = ImageDraw.Draw(canvas)
    d.text((4, 4), title, fill=(0, 0, 0))
    photo = Image.fromarray(rgb).resize((cell - 4, cell - 4))
    for r, (name, maps) in enumerate(rows):
        y = 20 + r * cell
        d.text((4, y + cell // 2 - 6), name[:18], fill=(0, 0, 0))
        canvas.paste(photo, (110, y))
        for k, m in enumerate(maps):
            lo, hi = (-1.0, 1.0) if signed else (float(m.min()), float(m.max()) + 1e-12)
            heat = Image.fromarray(prob_heatmap(m, lo, hi)).resize((cell - 4, cell - 4),
                                                                   Image.NEAREST)
            canvas.paste(heat, (110 + cell * (k + 1), y))
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    canvas.save(out)


def draw(results, rgb, points, out: str, title: str) -> None:
    """One column per block; one row per (tower, query): CLS, then each chosen token."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(results)
    layers = [name for name, _ in results[names[0]]['rows']]
    queries = ['CLS'] + [f'token {k + 1}' for k in range(len(points))]
    n_rows, cols = len(names) * len(queries), 1 + len(layers)
    fig, axes = plt.subplots(n_rows, cols, figsize=(0.95 * cols, 1.0 * n_rows + 0.45),
                             squeeze=False)
    h, w = results[names[0]]['grid']
    for t, n in enumerate(names):
        for q, qname in enumerate(queries):
            r = t * len(queries) + q
            ax = axes[r, 0]
            ax.imshow(rgb)
            for k, (y, x) in enumerate(points):
                if q in (0, k + 1):
                    ax.plot((x + 0.5) / w * rgb.shape[1], (y + 0.5) / h * rgb.shape[0], 'o',
                            ms=3, mfc='red', mec='white', mew=0.5)
            ax.set_ylabel(f'{n}\n{qname}', fontsize=6)
            for c, (layer, maps) in enumerate(results[n]['rows']):
                a = axes[r, 1 + c]
                a.imshow(maps[q], cmap='viridis')
                if q > 0:
                    y, x = points[q - 1]
                    a.plot(x, y, 's', ms=2.5, mfc='none', mec='red', mew=0.6)
                if r == 0:
                    a.set_title(f'block {layer}', fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=7)
    fig.tight_layout(pad=0.15, h_pad=0.1, w_pad=0.1)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def draw_context(rows, rgb, points, out: str, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(rows), 1 + len(points), squeeze=False,
                             figsize=(1.5 * (1 + len(points)), 1.3 * len(rows) + 0.5))
    for r, (name, maps) in enumerate(rows):
        axes[r, 0].imshow(rgb)
        axes[r, 0].set_ylabel(name, fontsize=6)
        h, w = maps[0].shape
        for k, m in enumerate(maps):
            a = axes[r, 1 + k]
            a.imshow(m, cmap='coolwarm', vmin=-1, vmax=1)
            y, x = points[k]
            a.plot(x, y, 's', ms=3, mfc='none', mec='black', mew=0.6)
            if r == 0:
                a.set_title(f'token {k + 1}', fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    import declip_mm  # noqa: F401
    towers = {'original': load_tower(args.model_name, args.checkpoint, args.attn_mode)}
    if args.compare:
        towers['DeCLIP'] = load_tower(args.model_name, args.compare, args.attn_mode)
    random = [n for n, c in (('original', args.checkpoint), ('DeCLIP', args.compare))
              if n in towers and not c]
    if random:
        print(f'note: RANDOM weights for {", ".join(random)} (no checkpoint given)')
    bb0 = towers['original']
    rgb = load_image(args.image, args.size, bb0.patch_size[0])
    x = to_tensor(rgb, CLIP_MEAN, CLIP_STD)
    grid = (rgb.shape[0] // bb0.patch_size[0], rgb.shape[1] // bb0.patch_size[1])
    points = parse_points(args.points, grid)
    results = {n: analyse(bb, x, points, args.topk, args.mass) for n, bb in towers.items()}
    print(f'image tokens\' attention per block ({grid[0]}x{grid[1]} tokens, heads averaged; '
          f'chosen tokens {points}):')
    print_scores(results, args.topk, args.mass)
    title = 'attention over the patch grid per block (heads averaged)' + \
        (' - RANDOM weights: ' + ', '.join(random) if random else '')
    if have_matplotlib():
        draw(results, rgb, points, args.out, title)
    else:  # one row per (tower, block), maps of CLS and the chosen tokens
        draw_pil([(f'{n} {layer}', maps) for n, r in results.items() for layer, maps in r['rows']],
                 rgb, args.out, title)
    print(f'wrote {args.out}')
    ctx_rows = []
    for n, bb in towers.items():
        ctx_rows += [(f'{n} {k}', maps) for k, maps in context_maps(bb, x, points)]
    if not args.no_vfm:
        ctx_rows.append((f'VFM {args.vfm_arch}' + ('' if args.vfm_weights else ' (random)'),
                         vfm_maps(args, rgb, grid, points)))
    ctx_out = osp.splitext(args.out)[0] + '_context.png'
    ctx_title = 'context-feature correlation of chosen tokens'
    if have_matplotlib():
        draw_context(ctx_rows, rgb, points, ctx_out, ctx_title)
    else:
        draw_pil(ctx_rows, rgb, ctx_out, ctx_title, signed=True)
    print(f'wrote {ctx_out}')
    return dict(results=results, context=ctx_rows, points=points)


if __name__ == '__main__':
    main()
