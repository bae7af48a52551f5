"""The miniature open-vocabulary world (docs/miniworld.md): a seeded generator of scenes with dense
labels and captions, and writers of the project's dataset layouts."""
from .captions import make_caption
from .classes import ALL_CLASSES, CLASS_INDEX, PALETTE, PLURALS, STUFF_CLASSES, THING_CLASSES, WORLD_VERSION
from .generator import Scene, render_object, render_scene
from .layouts import write_world

__all__ = ['ALL_CLASSES', 'CLASS_INDEX', 'PALETTE', 'PLURALS', 'STUFF_CLASSES', 'THING_CLASSES',
           'WORLD_VERSION', 'Scene', 'make_caption', 'render_object', 'render_scene', 'write_world']
