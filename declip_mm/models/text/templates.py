"""Prompt templates by name.

* ``imagenet80``: the 80 OpenAI ImageNet templates (CLIP paper; the training-free segmentation
  protocol of SCLIP / ClearCLIP / NACLIP / DeCLIP, SPEC §6). Taken from open_clip's metadata.
* ``vild``: the 14 ViLD-style templates (``VILD_PROMPT`` of the open-vocabulary detection code bases
  that CLIPSelf / DeCLIP use for region classification, SPEC §8).
* ``single``: ``'a photo of a {}.'``.
* ``catseg``: ``'A photo of a {} in the scene'``, the single prompt of CAT-Seg's ViT-B/L configs
  (``PROMPT_ENSEMBLE_TYPE: single``, SPEC §7).
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

__all__ = ['TEMPLATES', 'get_templates']


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

TEMPLATES = {
    'imagenet80': _imagenet80,
    'vild': lambda: _VILD,
    'single': lambda: ('a photo of a {}.', ),
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
        if not isinstance(t, str) or t.count('{}') != 1:
            raise ValueError(f'each template must be a string with exactly one "{{}}", got {t!r}')
    return out
