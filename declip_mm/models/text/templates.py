"""Prompt templates by name.

* ``imagenet80``: the 80 OpenAI ImageNet templates (CLIP paper; the training-free segmentation
  protocol of SCLIP / ClearCLIP / NACLIP / DeCLIP, docs/method.md §4). Taken from open_clip's metadata.
* ``vild``: the 14 ViLD-style templates (``VILD_PROMPT`` of the open-vocabulary detection code bases
  that CLIPSelf / DeCLIP use for region classification, the README, region classification).
* ``single``: ``'a photo of a {}.'``.
* ``vild_hand_craft``: the hand-crafted list of ``tools/generate_text_embeddings.py`` of CLIPSelf and
  DeCLIP (its ``multiple_templates``, modified from ViLD), which built their 133 COCO-panoptic class
  embeddings for region classification (README). Its prompt rule: ``{article}`` is ``an`` when the
  name starts with a vowel letter (a, e, i, o, u) and ``a`` otherwise; a prompt starting with ``a``
  or ``the`` gets the prefix ``'This is '`` (applied to the templates here: no template starts with
  the name, so the rule does not depend on it); the name is lower-cased, ``_`` becomes a space,
  ``/`` becomes ``' or '`` and trailing dots are dropped. :func:`fill_template` applies it.
* ``catseg``: ``'A photo of a {} in the scene'``, the single prompt of CAT-Seg's ViT-B/L configs
  (``PROMPT_ENSEMBLE_TYPE: single``, docs/catseg.md).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

__all__ = ['TEMPLATES', 'get_templates', 'fill_template']


def _imagenet80() -> Tuple[str, ...]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    out = tuple(t('{}') for t in OPENAI_IMAGENET_TEMPLATES)
    assert len(out) == 80, len(out)
    return out


_VILD = (
    'a photo of a {}.',
    'This is a photo of a {}',
    'There is a {} in the scene',
    'There is the {} in the scene',
    'a photo of a {} in the scene',
    'a photo of a small {}.',
    'a photo of a medium {}.',
    'a photo of a large {}.',
    'This is a photo of a small {}.',
    'This is a photo of a medium {}.',
    'This is a photo of a large {}.',
    'There is a small {} in the scene.',
    'There is a medium {} in the scene.',
    'There is a large {} in the scene.',
)

# ``multiple_templates`` of CLIPSelf / DeCLIP ``tools/generate_text_embeddings.py`` (63 prompts)
_HAND_CRAFT_RAW = (
    'There is {article} {} in the scene.', 'There is the {} in the scene.',
    'a photo of {article} {} in the scene.', 'a photo of the {} in the scene.',
    'a photo of one {} in the scene.',
    'itap of {article} {}.', 'itap of my {}.', 'itap of the {}.', 'a photo of {article} {}.',
    'a photo of my {}.', 'a photo of the {}.', 'a photo of one {}.', 'a photo of many {}.',
    'a good photo of {article} {}.', 'a good photo of the {}.', 'a bad photo of {article} {}.',
    'a bad photo of the {}.', 'a photo of a nice {}.', 'a photo of the nice {}.',
    'a photo of a cool {}.', 'a photo of the cool {}.', 'a photo of a weird {}.',
    'a photo of the weird {}.',
    'a photo of a small {}.', 'a photo of the small {}.', 'a photo of a large {}.',
    'a photo of the large {}.',
    'a photo of a clean {}.', 'a photo of the clean {}.', 'a photo of a dirty {}.',
    'a photo of the dirty {}.',
    'a bright photo of {article} {}.', 'a bright photo of the {}.', 'a dark photo of {article} {}.',
    'a dark photo of the {}.',
    'a photo of a hard to see {}.', 'a photo of the hard to see {}.',
    'a low resolution photo of {article} {}.', 'a low resolution photo of the {}.',
    'a cropped photo of {article} {}.', 'a cropped photo of the {}.',
    'a close-up photo of {article} {}.', 'a close-up photo of the {}.',
    'a jpeg corrupted photo of {article} {}.', 'a jpeg corrupted photo of the {}.',
    'a blurry photo of {article} {}.', 'a blurry photo of the {}.',
    'a pixelated photo of {article} {}.', 'a pixelated photo of the {}.',
    'a black and white photo of the {}.', 'a black and white photo of {article} {}.',
    'a plastic {}.', 'the plastic {}.',
    'a toy {}.', 'the toy {}.', 'a plushie {}.', 'the plushie {}.', 'a cartoon {}.',
    'the cartoon {}.',
    'an embroidered {}.', 'the embroidered {}.',
    'a painting of the {}.', 'a painting of a {}.',
)


def _hand_craft() -> Tuple[str, ...]:
    # the official rule on the filled prompt: ``"This is " + text`` if it starts with "a" / "the"
    out = tuple('This is ' + t if t.startswith(('a', 'the')) else t for t in _HAND_CRAFT_RAW)
    assert len(out) == 63, len(out)
    return out


def _hand_craft_name(name: str) -> str:
    return name.replace('_', ' ').replace('/', ' or ').lower().rstrip('.')


def fill_template(template: str, name: str) -> str:
    """A prompt from one template and one class name.

    Plain ``'{}'`` templates are filled with the name as it is; templates with ``{article}`` follow
    the ``vild_hand_craft`` rule (see the module doc): the processed name and its article.
    """
    if '{article}' in template:
        return template.format(_hand_craft_name(name),
                               article='an' if name[:1] in 'aeiou' and name else 'a')
    return template.format(name)


TEMPLATES = {
    'imagenet80': _imagenet80,
    'vild': lambda: _VILD,
    'single': lambda: ('a photo of a {}.', ),
    'vild_hand_craft': _hand_craft,
    'catseg': lambda: ('A photo of a {} in the scene', ),
}


def get_templates(templates: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """Resolve a template set name, or validate a list of ``'{}'`` format strings."""
    if isinstance(templates, str):
        if templates not in TEMPLATES:
            raise ValueError(f'unknown template set {templates!r}; choose one of {sorted(TEMPLATES)} '
                             'or pass a list of strings containing "{}"')
        return tuple(TEMPLATES[templates]())
    out = tuple(templates)
    if not out:
        raise ValueError('templates must not be empty')
    for t in out:
        if not isinstance(t, str) or t.replace('{article}', '').count('{}') != 1 \
                or t.replace('{article}', '').replace('{}', '').count('{') > 0:
            raise ValueError('each template must be a string with exactly one "{}" (and optionally '
                             f'"{{article}}"), got {t!r}')
    return out
