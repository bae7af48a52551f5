"""Captions of miniature-world scenes, in the manner of web alt-text (docs/miniworld.md).

Rules (pinned by tests/miniworld/test_generator.py): a caption names only classes present in the
scene; when a thing is visible it names at least one thing class (the contrastive loss must see the
things, not only the backgrounds); a number word ("two fish") is the exact count of that class's
visible objects; a colour word ("a red fish") is only used for a class with one visible object, and
is that object's main colour; it is rare (``colour_prob`` = 5 % of single objects by default: with
frequent colour words the tiny CLIP matched captions by colour and never learned the thing classes,
docs/miniworld.md). Stuff is named only if it covers at least 10 % of the image.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .classes import CLASS_INDEX, PLURALS

NUMBER_WORDS = {1: 'one', 2: 'two', 3: 'three', 4: 'four', 5: 'five', 6: 'six', 7: 'seven'}

_THING_TEMPLATES = (
    '{things}',
    'a photo of {things}',
    'photo of {things}',
    'an image of {things}',
    'a picture of {things}',
    'close-up of {things}',
    '{things}.',
)
_BOTH_TEMPLATES = (
    '{things} on the {stuff}',
    '{things} on {stuff}',
    'a photo of {things} on the {stuff}',
    '{stuff}, {things}',
    '{things} with {stuff} behind',
    '{things} against a {stuff} background',
    'a picture of {things} and {stuff}',
    '{things} near the {stuff}',
    'photo of {things} over {stuff}',
)
_STUFF_TEMPLATES = (
    '{stuff}',
    'a photo of {stuff}',
    '{stuff} texture',
    'a picture of {stuff}',
    'close-up of {stuff}',
)


def join_words(words):
    """'a', 'a and b', 'a, b and c'."""
    words = list(words)
    if len(words) <= 1:
        return ''.join(words)
    return ', '.join(words[:-1]) + ' and ' + words[-1]


def _article(word):
    return 'an' if word[0] in 'aeiou' else 'a'


#: probability that a single visible object is named with its body colour ("a red fish")
COLOUR_PROB = 0.05
#: probability that a caption of a scene with things and enough stuff also names the stuff
STUFF_PROB = 0.6


def thing_phrase(name, count, rng, colour=None, colour_prob=COLOUR_PROB):
    """Noun phrase for ``count`` visible objects of class ``name`` (count exact when a number)."""
    if count == 1:
        if colour is not None and rng.random() < colour_prob:
            return f'{_article(colour)} {colour} {name}'
        return rng.choice([f'{_article(name)} {name}', f'{_article(name)} {name}', f'one {name}'])
    plural = PLURALS[name]
    if rng.random() < 0.6:
        return f'{NUMBER_WORDS[count]} {plural}'
    return rng.choice([plural, f'some {plural}', f'several {plural}'] if count > 2
                      else [plural, f'some {plural}'])


def make_caption(scene, rng, colour_prob: float = COLOUR_PROB, stuff_prob: float = STUFF_PROB) -> str:
    """A caption of ``scene`` (a generator.Scene) drawn with ``rng`` (see the module rules).

    ``colour_prob`` / ``stuff_prob``: see :data:`COLOUR_PROB`, :data:`STUFF_PROB` (the world's
    captions use the defaults; the CLIP trainer may name the stuff less often)."""
    counts = Counter(name for name, _ in scene.objects)
    first_colour = {}
    for (name, _), cnames in zip(scene.objects, scene.colour_names):
        first_colour.setdefault(name, cnames[0])
    things = list(counts)
    rng.shuffle(things)
    if len(things) > 1 and rng.random() < 0.35:
        things = things[:int(rng.integers(1, len(things)))]        # name some, not all
    frac = np.bincount(scene.label.ravel(), minlength=len(CLASS_INDEX)) / scene.label.size
    stuff = [s for s in scene.stuff_layers if frac[CLASS_INDEX[s]] >= 0.1]
    stuff.sort(key=lambda s: -frac[CLASS_INDEX[s]])
    if len(stuff) > 1 and rng.random() < 0.5:
        stuff = stuff[:1]                                           # the dominant one only
    if things:
        phrase = join_words(thing_phrase(t, counts[t], rng, first_colour[t] if counts[t] == 1
                                         else None, colour_prob) for t in things)
        if stuff and rng.random() < stuff_prob:
            template = _BOTH_TEMPLATES[int(rng.integers(len(_BOTH_TEMPLATES)))]
            return template.format(things=phrase, stuff=join_words(stuff))
        return _THING_TEMPLATES[int(rng.integers(len(_THING_TEMPLATES)))].format(things=phrase)
    if not stuff:   # only slivers of stuff: name the largest anyway
        stuff = [max(scene.stuff_layers, key=lambda s: frac[CLASS_INDEX[s]])]
    return _STUFF_TEMPLATES[int(rng.integers(len(_STUFF_TEMPLATES)))].format(stuff=join_words(stuff))


#: a class is named in the caption of a scene crop when it covers at least this share of the crop
CROP_NAME_FRACTION = 0.25


def crop_caption(label: np.ndarray, rng) -> str:
    """Caption of a crop of a scene, from the crop's label map (the CLIP trainer's scene crops, the
    close-ups of web alt-text): the classes covering at least :data:`CROP_NAME_FRACTION` of the crop,
    at most two, the larger first (the largest alone when none does); a thing as one object ("a
    kite": a crop may show part of several, so no count is claimed), no colour word; stuff by name;
    the templates of :func:`make_caption`."""
    from .classes import ALL_CLASSES, THING_CLASSES
    frac = np.bincount(np.asarray(label).ravel(), minlength=len(ALL_CLASSES)) / np.asarray(label).size
    order = [int(i) for i in np.argsort(-frac, kind='stable') if frac[i] >= CROP_NAME_FRACTION][:2]
    order = order or [int(np.argmax(frac))]
    n_things = len(THING_CLASSES)
    things = [ALL_CLASSES[i] for i in order if i < n_things]
    stuff = [ALL_CLASSES[i] for i in order if i >= n_things]
    if things:
        phrase = join_words(f'{_article(t)} {t}' for t in things)
        if stuff:
            template = _BOTH_TEMPLATES[int(rng.integers(len(_BOTH_TEMPLATES)))]
            return template.format(things=phrase, stuff=join_words(stuff))
        return _THING_TEMPLATES[int(rng.integers(len(_THING_TEMPLATES)))].format(things=phrase)
    return _STUFF_TEMPLATES[int(rng.integers(len(_STUFF_TEMPLATES)))].format(stuff=join_words(stuff))
