"""The miniature world as the default model of ``DeCLIPInferencer`` and of the web page when no
weights are given (docs/miniworld.md): the training-free world config with the world towers
(``world_towers.py``), the world's class names, sample scenes rendered by the generator and the
banner that says what they are.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Dict, Optional

import numpy as np

__all__ = ['WORLD_CONFIG', 'SAMPLE_SCALE', 'WORLD_DEMO_MODE', 'world_banner', 'world_cfg_options',
           'world_classes', 'world_samples', 'world_default', 'world_default_without_weights']

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: the training-free config of the world's benchmark (64-px scenes, 17 classes)
WORLD_CONFIG = osp.join(ROOT, 'configs', 'miniworld',
                        'declip_tiny-clip_training-free_miniworld-64.py')
#: sample scenes are rendered at the towers' 64 px and enlarged by this factor (nearest neighbour):
#: the config's resize back to 64 px gives the rendered pixels exactly
SAMPLE_SCALE = 4
#: the attention mode of the default model: the plain tiny CLIP's best training-free mode (mIoU 19.1
#: against 0.25 in ``csa`` on the world's benchmark, docs/miniworld.md "Results": this CLIP pools the
#: mean of its patch tokens, so the residual the decoupled modes drop carries the classes)
WORLD_DEMO_MODE = 'vanilla'


def world_classes() -> str:
    """The world's 17 class names as a class-list string (``'fish; star; ...; wood'``)."""
    from .classes import ALL_CLASSES
    return '; '.join(ALL_CLASSES)


def world_banner(towers: Dict[str, Any]) -> str:
    """What the default model is, for the page's banner and the console."""
    from .classes import WORLD_VERSION
    how = {'shipped': 'shipped in the repository', 'cached': 'trained briefly on first use (cache)',
           'trained': 'trained briefly just now'}.get(towers['clip'].get('source'), '')
    return (f'No weights given: running the MINIATURE WORLD towers ({WORLD_VERSION}, {how}): a tiny '
            'CLIP and a tiny VFM learned from scratch on synthetic 64-px scenes of 17 classes '
            f'({world_classes().replace("; ", ", ")}), attention {WORLD_DEMO_MODE!r} (this plain '
            'CLIP\'s best training-free mode). Try the world sample scenes with those '
            'class names; on real photos the masks mean nothing. See docs/miniworld.md; pass '
            '--checkpoint (and --text-checkpoint) for real weights.')


def world_cfg_options(towers: Dict[str, Any]) -> Dict[str, Any]:
    """``cfg_options`` of :data:`WORLD_CONFIG` that point it at ``towers`` (the tiny CLIP's image
    and text towers in :data:`WORLD_DEMO_MODE`, the world's prompt templates)."""
    from .tower_configs import WORLD_TEMPLATES
    clip = towers['clip']
    return {'model.backbone.model_name': clip['config'], 'model.backbone.pretrained': clip['weights'],
            'model.backbone.attn_mode': WORLD_DEMO_MODE,
            'model.text_encoder.model_name': clip['config'],
            'model.text_encoder.pretrained': clip['weights'],
            'model.text_encoder.templates': list(WORLD_TEMPLATES)}


def world_samples(n: int = 4, world_seed: int = 0, scale: int = SAMPLE_SCALE,
                  labels: bool = False) -> Dict[str, Any]:
    """``{'scene<i>': RGB uint8 (64 * scale)^2}`` of the first ``n`` benchmark scenes of the world
    (``labels=True``: ``(image, label map)`` pairs, labels at 64 px = class indices)."""
    from .generator import render_scene
    from .layouts import scene_seed
    out: Dict[str, Any] = {}
    for i in range(n):
        sc = render_scene(scene_seed(world_seed, 'bench', i), 64, caption=False)
        img = np.repeat(np.repeat(sc.image, scale, 0), scale, 1)
        out[f'scene{i}'] = (img, sc.label) if labels else img
    return out


def world_default(cache_dir: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """``{'config', 'cfg_options', 'classes', 'banner', 'towers'}`` of the world model, or ``None``
    when the world towers are neither shipped (fitting this checkout) nor cached (nothing is
    trained here: the quick-start or ``tools/miniworld.py`` caches them)."""
    from .world_towers import world_towers
    towers = world_towers(cache_dir, train=False, log=None)
    if towers is None:
        return None
    return dict(config=WORLD_CONFIG, cfg_options=world_cfg_options(towers),
                classes=world_classes(), banner=world_banner(towers), towers=towers)


def world_default_without_weights(config: Any) -> Optional[Dict[str, Any]]:
    """:func:`world_default` when ``config``'s own weight files (image and text towers) are not
    both on disk, else ``None`` (the config's weights are used as before)."""
    wanted = [config.model.backbone.get('pretrained'), config.model.text_encoder.get('pretrained')]
    if all(w and osp.isfile(w) for w in wanted):
        return None
    return world_default()
