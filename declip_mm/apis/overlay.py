"""Drawing segmentation results: colour overlay, legend with per-class area, probability heat map.

Shared by :class:`~declip_mm.apis.DeCLIPInferencer`, ``tools/demo.py`` and ``tools/web_demo.py``.
Label maps are integer arrays of class indices 0..num_classes-1, any number of classes; pixels that
no class claims confidently are :data:`UNLABELED` (-1, never a class index): they keep the photo's
own colours in the overlay and get their own legend entry (``index`` -1, ``unlabeled`` True).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ['UNLABELED', 'UNLABELED_COLOR', 'class_palette', 'blend_labels', 'class_areas',
           'legend_entries', 'draw_legend', 'prob_heatmap']

#: label of pixels left unassigned (below ``prob_thd`` with no background class in the list); apart
#: from the class indices whatever the number of classes (label files: ``result_files``)
UNLABELED = -1
#: legend colour of the unlabeled pixels (their overlay shows the photo untinted)
UNLABELED_COLOR = (128, 128, 128)


def class_palette(n: int, seed: int = 3) -> np.ndarray:
    """(n, 3) uint8 colours; the same seed gives the same colours in every tool."""
    rng = np.random.default_rng(seed)
    return rng.integers(40, 256, size=(n, 3)).astype(np.uint8)


def blend_labels(image: np.ndarray, labels: np.ndarray, colors: np.ndarray,
                 alpha: float = 0.5) -> np.ndarray:
    """Tint an RGB image (H, W, 3) uint8 with the colour of each pixel's label (H, W).

    Pixels labelled :data:`UNLABELED` (or any label without a colour) keep the photo's colours.
    Computed in row strips: the float buffers stay small whatever the image size.
    """
    if image.shape[:2] != labels.shape:
        raise ValueError(f'image {image.shape[:2]} and labels {labels.shape} differ in size')
    out = np.empty_like(image)
    rows = max(1, (1 << 20) // max(1, labels.shape[1]))
    for y in range(0, labels.shape[0], rows):
        lab, img = labels[y:y + rows], image[y:y + rows]
        known = (lab >= 0) & (lab < len(colors))
        tint = colors[np.where(known, lab, 0)].astype(np.float32)
        mixed = (img.astype(np.float32) * (1 - alpha) + tint * alpha).clip(0, 255).astype(np.uint8)
        out[y:y + rows] = np.where(known[..., None], mixed, img)
    return out


def class_areas(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes + 1,) fraction of pixels of each class; the last entry is the unlabeled share."""
    lab = labels.reshape(-1)
    known = lab[(lab >= 0) & (lab < num_classes)]
    counts = np.bincount(known, minlength=num_classes)[:num_classes]
    counts = np.append(counts, lab.size - known.size)
    return counts / max(lab.size, 1)


def _hex(rgb) -> str:
    return '#' + ''.join(f'{int(c):02x}' for c in rgb)


def legend_entries(class_names: Sequence[Sequence[str]], labels: np.ndarray,
                   colors: Optional[np.ndarray] = None) -> List[Dict]:
    """One dict per class (``name``, ``synonyms``, ``color`` '#rrggbb', ``area`` in [0, 1],
    ``index``, ``unlabeled`` False), plus an ``'unlabeled'`` entry (``index`` :data:`UNLABELED`,
    ``unlabeled`` True) when some pixels are unlabeled."""
    colors = class_palette(len(class_names)) if colors is None else colors
    areas = class_areas(labels, len(class_names))
    out = []
    for i, names in enumerate(class_names):
        out.append(dict(index=i, name=names[0], synonyms=list(names[1:]),
                        color=_hex(colors[i]),
                        area=float(areas[i]), unlabeled=False))
    if areas[-1] > 0:
        out.append(dict(index=UNLABELED, name='unlabeled', synonyms=[],
                        color=_hex(UNLABELED_COLOR), area=float(areas[-1]), unlabeled=True))
    return out


def draw_legend(overlay: np.ndarray, entries: List[Dict]) -> Image.Image:
    """Overlay (H, W, 3) with a legend panel on its right: colour, name, area share."""
    out = Image.fromarray(overlay)
    font = ImageFont.load_default()
    row = 14
    legend = Image.new('RGB', (max(170, out.width // 3), row * len(entries) + 6), (255, 255, 255))
    d = ImageDraw.Draw(legend)
    for k, e in enumerate(entries):
        y = 3 + k * row
        rgb = tuple(int(e['color'][j:j + 2], 16) for j in (1, 3, 5))
        d.rectangle([4, y + 1, 14, y + 11], fill=rgb)
        label = f"{e['name']} {e['area']:.1%}" if e['area'] > 0 else f"{e['name']} (absent)"
        d.text((20, y), label, fill=(0, 0, 0), font=font)
    canvas = Image.new('RGB', (out.width + legend.width, max(out.height, legend.height)), 'white')
    canvas.paste(out, (0, 0))
    canvas.paste(legend, (out.width, 0))
    return canvas


def prob_heatmap(prob: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """(H, W) probabilities -> (H, W, 3) uint8 heat map (matplotlib's viridis, else grey)."""
    x = np.clip((prob.astype(np.float32) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    try:
        from matplotlib import colormaps
        rgb = colormaps['viridis'](x)[..., :3]
    except Exception:  # matplotlib missing or broken: a plain grey ramp still shows the map
        rgb = np.repeat(x[..., None], 3, axis=-1)
    return (rgb * 255).round().astype(np.uint8)
