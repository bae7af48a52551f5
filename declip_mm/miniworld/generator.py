"""Scene rendering of the miniature world (docs/miniworld.md): numpy only, deterministic per seed.

A scene is 1-3 stuff regions split by smooth random boundaries (``argmax`` of low-frequency random
fields), each filled with its class's texture, then 1-5 things painted in order on top (later ones
occlude earlier ones). A thing is an implicit shape in its own frame ``(u, v)`` (about ``[-1, 1]²``)
mapped to the image by a random rotation, anisotropic scale, shear and a smooth sinusoidal warp; its
pixels take one of two colours from the shared palette, chosen by the class's pattern (stripes, rings,
dots, checker, zigzag, ...) evaluated in the same frame, so the pattern turns and stretches with the
silhouette. Labels are written by the same masks that paint the pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from .captions import make_caption
from .classes import ALL_CLASSES, CLASS_INDEX, PALETTE, PALETTE_NAMES, STUFF_CLASSES, THING_CLASSES

_PALETTE_RGB = np.array([PALETTE[n] for n in PALETTE_NAMES], dtype=np.float32)


@lru_cache(maxsize=8)
def _grid(size):
    """(ys, xs) float32 pixel-index grids of a size x size image (read-only, cached)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def _normal(rng, shape):
    return rng.standard_normal(shape, dtype=np.float32)


@dataclass
class Scene:
    """One rendered scene. ``objects``: ``(class_name, visible_mask)`` in paint order (objects left
    with no visible pixel are dropped); ``full_masks``: the same objects' unoccluded masks;
    ``colours``: each object's two RGB colours (uint8, primary first) and ``colour_names``;
    ``stuff_layers``: each stuff class's full texture (the image shows it where ``label`` says)."""
    image: np.ndarray
    label: np.ndarray
    objects: list
    caption: str
    present: tuple
    full_masks: list = field(default_factory=list)
    colours: list = field(default_factory=list)
    colour_names: list = field(default_factory=list)
    stuff_layers: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- things
# Each entry maps local coordinates (u, v) and a pattern period p to (inside, secondary) boolean
# arrays: ``inside`` the silhouette, ``secondary`` where the second colour shows.

def _stripe(x, p):
    return np.floor(x / p).astype(np.int64) % 2 == 1


def _fish(u, v, p):
    body = ((u + 0.2) / 0.75) ** 2 + (v / 0.48) ** 2 <= 1.0
    tail = (u >= 0.45) & (u <= 1.0) & (np.abs(v) <= (u - 0.45) * 1.1)
    return body | tail, _stripe(u + 5.0, p)                       # bands across the body


def _star(u, v, p):
    r = np.hypot(u, v)
    t = np.arctan2(v, u) * 5.0 / (2 * math.pi)
    tri = np.abs((t - np.floor(t)) - 0.5) * 2.0                    # 1 at a point, 0 between points
    return r <= 0.42 + 0.58 * tri ** 1.5, _stripe(r, p * 0.9)       # concentric rings


def _heart(u, v, p):
    x, y = u * 1.25, -v * 1.25 + 0.25
    inside = (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0
    q = p * 1.1
    du = (u + 5.0) % q - q / 2
    dv = (v + 5.0) % q - q / 2
    return inside, du * du + dv * dv <= (0.3 * q) ** 2              # polka dots


def _moon(u, v, p):
    inside = (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + (v + 0.1) ** 2 >= 0.8 ** 2)
    return inside, _stripe(u + v + 5.0, p * 0.9)                   # diagonal stripes


def _tree(u, v, p):
    canopy = u * u + (v + 0.3) ** 2 <= 0.7 ** 2
    trunk = (np.abs(u) <= 0.17) & (v > 0.2) & (v <= 1.0)
    q = p * 0.8
    zig = np.abs(((u / q) % 2.0) - 1.0) * q                        # triangle wave in u
    return canopy | trunk, np.where(canopy, _stripe(v + zig + 5.0, q), True)  # zigzag, plain trunk


def _house(u, v, p):
    body = (np.abs(u) <= 0.7) & (v >= -0.1) & (v <= 0.9)
    roof = (v >= -0.95) & (v < -0.1) & (np.abs(u) <= (v + 0.95) * 1.0)
    q = p * 0.9
    checker = (np.floor((u + 5.0) / q) + np.floor((v + 5.0) / q)) % 2 == 1
    return body | roof, np.where(roof, False, checker)              # plain roof, checkered walls


def _kite(u, v, p):
    inside = np.abs(u) / 0.65 + np.abs(v + 0.1) / 0.95 <= 1.0
    w = 0.35 * p
    return inside, (np.abs(u) <= w) | (np.abs(v + 0.3) <= w)      # a cross


def _donut(u, v, p):
    r = np.hypot(u, v)
    sector = np.floor((np.arctan2(v, u) + math.pi) * 8 / (2 * math.pi)).astype(np.int64) % 2 == 1
    return (r <= 1.0) & (r >= 0.45), sector                         # alternating sectors


def _leaf(u, v, p):
    inside = (u * u + (v - 0.75) ** 2 <= 1.25 ** 2) & (u * u + (v + 0.75) ** 2 <= 1.25 ** 2)
    w = 0.3 * p
    q = p * 1.2
    veins = ((u + 0.8 * np.abs(v) + 5.0) % q) <= w
    return inside, (np.abs(v) <= w) | veins                         # midrib and side veins


def _arrow(u, v, p):
    shaft = (np.abs(v) <= 0.24) & (u >= -1.0) & (u <= 0.15)
    head = (u > 0.15) & (u <= 1.0) & (np.abs(v) <= (1.0 - u) * 1.0)
    return shaft | head, _stripe(u + np.abs(v) + 5.0, p * 0.8)     # chevrons


def _flower(u, v, p):
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    inside = r <= 0.5 + 0.5 * np.abs(np.cos(2.5 * theta))
    return inside, (r <= 0.33) | ((r > 0.5) & (r <= 0.5 + 0.15 * p))  # centre disc and a ring


_SHAPES = {'fish': _fish, 'star': _star, 'heart': _heart, 'moon': _moon, 'tree': _tree,
           'house': _house, 'kite': _kite, 'donut': _donut, 'leaf': _leaf, 'arrow': _arrow,
           'flower': _flower}
assert tuple(_SHAPES) == THING_CLASSES


def _thing_params(rng, size, radius_range=(0.14, 0.3), centre_range=(0.15, 0.85)):
    """Random pose of one thing (all floats): centre, radius in pixels, 2x2 inverse map, warp."""
    cx, cy = rng.uniform(*centre_range, size=2) * size
    radius = rng.uniform(*radius_range) * size
    theta = rng.uniform(-math.pi, math.pi)
    aspect = math.exp(rng.uniform(-0.22, 0.22))
    shear = rng.uniform(-0.25, 0.25)
    # forward map rot @ [[aspect, shear], [0, 1 / aspect]] * radius; its inverse in closed form
    c, s = math.cos(theta), math.sin(theta)
    a, b, d = aspect * radius, shear * radius, radius / aspect
    f00, f01, f10, f11 = c * a, c * b - s * d, s * a, s * b + c * d
    det = f00 * f11 - f01 * f10
    inv = ((f11 / det, -f01 / det), (-f10 / det, f00 / det))
    warp = (rng.uniform(0.0, 0.09), rng.uniform(2.0, 5.0), rng.uniform(0, 2 * math.pi),
            rng.uniform(0.0, 0.09), rng.uniform(2.0, 5.0), rng.uniform(0, 2 * math.pi))
    period = rng.uniform(0.26, 0.38)
    return cx, cy, radius * max(aspect, 1 / aspect) * 1.6, inv, warp, period


def _paint_window(cls_name, params, size):
    """The thing's window ``(y0, y1, x0, x1)`` and its (inside, secondary) boolean masks there, or
    None when the window is empty (the thing lies outside the image)."""
    cx, cy, reach, inv, warp, period = params
    x0, x1 = max(0, int(cx - reach)), min(size, int(math.ceil(cx + reach)) + 1)
    y0, y1 = max(0, int(cy - reach)), min(size, int(math.ceil(cy + reach)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    gy, gx = _grid(size)
    dx, dy = gx[y0:y1, x0:x1] + (0.5 - cx), gy[y0:y1, x0:x1] + (0.5 - cy)
    u = inv[0][0] * dx + inv[0][1] * dy
    v = inv[1][0] * dx + inv[1][1] * dy
    au, ku, pu, av, kv, pv = warp
    u, v = u + au * np.sin(ku * v + pu), v + av * np.sin(kv * u + pv)
    ins, sec = _SHAPES[cls_name](u, v, period)
    return (y0, y1, x0, x1), ins, sec & ins


def _paint_thing(cls_name, params, size):
    """(inside, secondary) full-size boolean masks of one thing with the given pose."""
    inside = np.zeros((size, size), dtype=bool)
    secondary = np.zeros((size, size), dtype=bool)
    painted = _paint_window(cls_name, params, size)
    if painted is not None:
        (y0, y1, x0, x1), ins, sec = painted
        inside[y0:y1, x0:x1] = ins
        secondary[y0:y1, x0:x1] = sec
    return inside, secondary


def _instance_colours(rng):
    n = len(PALETTE_NAMES)
    i = int(rng.integers(n))
    j = (i + 1 + int(rng.integers(n - 1))) % n            # uniform over the other colours
    jitter = rng.integers(-12, 13, size=(2, 3))
    cols = np.clip(_PALETTE_RGB[[i, j]] + jitter, 0, 255).astype(np.uint8)
    return cols, (PALETTE_NAMES[i], PALETTE_NAMES[j])


# ------------------------------------------------------------------------------------------ stuff

def _smooth(rng, size, cells, amp=1.0):
    """Smooth random field: a cells x cells normal grid resized bicubically to size x size."""
    grid = _normal(rng, (cells, cells)) * amp
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _stuff_texture(name, rng, size):
    """(size, size, 3) float32 RGB texture of one stuff class (values may exceed 0..255; clipped)."""
    s = size / 64.0
    ys, xs = _grid(size)
    shade = 1.0 + rng.uniform(-0.08, 0.08)
    if name == 'grass':
        base = np.array([55, 140, 45], np.float32)
        blades = cv2.resize(_normal(rng, (max(2, size // 6), size)),
                            (size, size), interpolation=cv2.INTER_LINEAR)
        tone = 1.0 + 0.22 * blades + 0.06 * _normal(rng, (size, size))
    elif name == 'water':
        base = np.array([45, 95, 185], np.float32)
        period = rng.uniform(7, 11) * s
        phase = _smooth(rng, size, 3, 1.5)
        tone = 1.0 + 0.2 * np.sin(2 * math.pi * ys / period + phase + 0.6 * np.sin(xs / (5 * s)))
    elif name == 'sand':
        base = np.array([205, 180, 125], np.float32)
        tone = (1.0 + 0.1 * _normal(rng, (size, size))
                + 0.06 * _smooth(rng, size, 4))
    elif name == 'brick':
        base = np.array([160, 62, 42], np.float32)
        h, w = rng.uniform(5.5, 7.5) * s, rng.uniform(11, 15) * s
        row = np.floor(ys / h)
        xo = xs + (row % 2) * w / 2
        col = np.floor(xo / w)
        mortar = ((ys % h) < 1.2 * s) | ((xo % w) < 1.2 * s)
        brick_shade = np.sin(row * 12.9898 + col * 78.233 + rng.uniform(0, 100)) * 0.1
        tone = 1.0 + brick_shade
        tex = base[None, None] * tone[..., None] * shade
        tex[mortar] = np.array([195, 190, 180], np.float32) * shade
        return tex
    elif name == 'snow':
        base = np.array([232, 238, 248], np.float32)
        tone = 1.0 - 0.04 * np.abs(_normal(rng, (size, size))) \
            - 0.03 * np.abs(_smooth(rng, size, 5))
    elif name == 'wood':
        base = np.array([140, 92, 52], np.float32)
        period = rng.uniform(5, 8) * s
        bend = _smooth(rng, size, 3, 3.0 * s)
        grain = np.sin(2 * math.pi * (xs + bend + 0.3 * ys * rng.uniform(-0.3, 0.3)) / period)
        tone = 1.0 + 0.14 * grain + 0.04 * _normal(rng, (size, size))
    else:
        raise KeyError(f'unknown stuff class {name!r}; expected one of {STUFF_CLASSES}')
    return base[None, None] * tone[..., None] * shade


def _stuff_regions(rng, size, k):
    """(size, size) int map into range(k): argmax of k smooth random fields (irregular borders)."""
    if k == 1:
        return np.zeros((size, size), dtype=np.int64)
    fields = np.stack([_smooth(rng, size, 3, 1.0) + _smooth(rng, size, 7, 0.25) for _ in range(k)])
    return np.argmax(fields, axis=0)


# ------------------------------------------------------------------------------------------ scene

def _pools(classes):
    if classes is None:
        return THING_CLASSES, STUFF_CLASSES
    classes = tuple(classes)
    unknown = [c for c in classes if c not in CLASS_INDEX]
    if unknown:
        raise ValueError(f'unknown miniworld classes {unknown}; known: {ALL_CLASSES}')
    things = tuple(c for c in THING_CLASSES if c in classes)
    stuff = tuple(c for c in STUFF_CLASSES if c in classes)
    if not stuff:
        raise ValueError('classes= must keep at least one stuff class (stuff labels every pixel '
                         f'behind the things); got {classes}')
    return things, stuff


def render_scene(seed: int, size: int = 64, *, n_objects=None, classes=None, n_stuff=None,
                 caption: bool = True) -> Scene:
    """Render the scene of ``seed`` (deterministic): see the module docstring.

    n_objects: number of things to place (default 1-5 at random); a thing that would hide more than
    60 % of an earlier one is re-placed (up to 8 tries) or dropped. classes: the thing and stuff
    classes allowed (default all). n_stuff: number of stuff regions (default 1-3).
    """
    rng = np.random.default_rng([int(seed), 0x5CE9E])
    things, stuff = _pools(classes)
    if n_stuff is None:
        n_stuff = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    n_stuff = min(int(n_stuff), len(stuff))
    chosen_stuff = [stuff[i] for i in rng.choice(len(stuff), size=n_stuff, replace=False)]
    region = _stuff_regions(rng, size, n_stuff)
    image = np.zeros((size, size, 3), dtype=np.uint8)
    label = np.zeros((size, size), dtype=np.uint8)
    layers = {}
    for i, name in enumerate(chosen_stuff):
        layer = np.clip(_stuff_texture(name, rng, size), 0, 255).astype(np.uint8)
        layers[name] = layer
        sel = region == i
        np.copyto(image, layer, where=sel[..., None])
        label[sel] = CLASS_INDEX[name]

    if n_objects is None:
        n_objects = int(rng.integers(1, 6))
    if not things:
        n_objects = 0
    full, visible, vis_area, full_area, names, cols, col_names = [], [], [], [], [], [], []
    for _ in range(int(n_objects)):
        cls_name = things[int(rng.integers(len(things)))]
        colours, cnames = _instance_colours(rng)
        for _try in range(8):
            painted = _paint_window(cls_name, _thing_params(rng, size), size)
            if painted is None:
                continue
            (y0, y1, x0, x1), ins, sec = painted
            area = int(np.count_nonzero(ins))
            if area < 0.02 * size * size:
                continue
            lost = [int(np.count_nonzero(vis[y0:y1, x0:x1] & ins)) for vis in visible]
            if all(va - lo >= 0.4 * fa for va, lo, fa in zip(vis_area, lost, full_area)):
                break
        else:
            continue
        for k, vis in enumerate(visible):
            vis[y0:y1, x0:x1] &= ~ins
            vis_area[k] -= lost[k]
        inside = np.zeros((size, size), dtype=bool)
        inside[y0:y1, x0:x1] = ins
        full.append(inside)
        visible.append(inside.copy())
        vis_area.append(area)
        full_area.append(area)
        names.append(cls_name)
        cols.append(colours)
        col_names.append(cnames)
        win = image[y0:y1, x0:x1]
        win[ins] = colours[0]
        win[sec] = colours[1]
        label[y0:y1, x0:x1][ins] = CLASS_INDEX[cls_name]

    keep = [i for i, a in enumerate(vis_area) if a > 0]
    objects = [(names[i], visible[i]) for i in keep]
    counts = np.bincount(label.ravel(), minlength=len(ALL_CLASSES))
    present = tuple(c for c in ALL_CLASSES if counts[CLASS_INDEX[c]] > 0)
    scene = Scene(image=image, label=label, objects=objects, caption='', present=present,
                  full_masks=[full[i] for i in keep], colours=[cols[i] for i in keep],
                  colour_names=[col_names[i] for i in keep], stuff_layers=layers)
    if caption:
        scene.caption = make_caption(scene, np.random.default_rng([int(seed), 0xCA9]))
    return scene


def render_object(class_name: str, seed: int, size: int = 64):
    """One thing centred on a random stuff background, or (a stuff class) a full patch of that stuff:
    zero-shot classification images. Returns (image uint8 (size, size, 3), mask bool (size, size))."""
    if class_name not in CLASS_INDEX:
        raise ValueError(f'unknown miniworld class {class_name!r}; known: {ALL_CLASSES}')
    rng = np.random.default_rng([int(seed), 0x0B1EC7])
    if class_name in STUFF_CLASSES:
        image = np.clip(_stuff_texture(class_name, rng, size), 0, 255).astype(np.uint8)
        return image, np.ones((size, size), dtype=bool)
    back = STUFF_CLASSES[int(rng.integers(len(STUFF_CLASSES)))]
    image = np.clip(_stuff_texture(back, rng, size), 0, 255).astype(np.uint8)
    colours, _ = _instance_colours(rng)
    params = _thing_params(rng, size, radius_range=(0.26, 0.36), centre_range=(0.45, 0.55))
    inside, sec = _paint_thing(class_name, params, size)
    image[inside] = colours[0]
    image[sec] = colours[1]
    return image, inside
