"""Classes of the miniature world (docs/miniworld.md): names, plurals, the shared thing palette.

Label index = position in ``ALL_CLASSES`` (things first, then stuff). Every thing class draws its two
colours from the same ``PALETTE``, so colour does not tell a thing class; a thing class is told by its
silhouette and its internal pattern (see ``generator.py``). Stuff classes keep a characteristic hue
and texture, as grass or snow do.
"""
from __future__ import annotations

WORLD_VERSION = 'miniworld-4'

THING_CLASSES: tuple[str, ...] = (
    'fish', 'star', 'heart', 'moon', 'tree', 'house', 'kite', 'donut', 'leaf', 'arrow', 'flower')
STUFF_CLASSES: tuple[str, ...] = ('grass', 'water', 'sand', 'brick', 'snow', 'wood')
ALL_CLASSES: tuple[str, ...] = THING_CLASSES + STUFF_CLASSES
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(ALL_CLASSES)}

PLURALS: dict[str, str] = {
    'fish': 'fish', 'star': 'stars', 'heart': 'hearts', 'moon': 'moons', 'tree': 'trees',
    'house': 'houses', 'kite': 'kites', 'donut': 'donuts', 'leaf': 'leaves', 'arrow': 'arrows',
    'flower': 'flowers'}

# One palette shared by every thing class (RGB); an instance takes two different entries.
PALETTE: dict[str, tuple[int, int, int]] = {
    'red': (215, 40, 40),
    'orange': (245, 140, 30),
    'yellow': (240, 215, 40),
    'green': (40, 165, 60),
    'blue': (40, 80, 215),
    'purple': (135, 55, 185),
    'pink': (245, 135, 185),
    'white': (245, 245, 245),
    'black': (25, 25, 25),
    'brown': (125, 75, 35),
    'grey': (128, 128, 128),
    'teal': (40, 195, 210),
}
PALETTE_NAMES: tuple[str, ...] = tuple(PALETTE)
