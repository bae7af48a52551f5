"""Open-vocabulary segmentation of your own images with your own class names.

``DeCLIPInferencer`` wraps any open-vocabulary segmentor of a declip_mm config (the training-free
``DeCLIPZeroShotSegmentor``, the CAT-Seg-style segmentor, ...) in the style of mmseg's
``MMSegInferencer``, with one difference that matters: the class list is an argument of every call,
and changing it really changes the classifier::

    inferencer = DeCLIPInferencer('declip_eva02-b16_training-free_ade20k-448',
                                  checkpoint='work_dirs/x/declip_epoch_6.pth', device='cpu')
    res = inferencer('photo.jpg', classes='person, man; sky; grass, lawn')
    res.labels      # (H, W) int64 class indices, -1 = unlabeled (any number of classes)
    res.class_probability(k)   # (H, W) float32 map of class k, computed on demand
    res.probs       # (num_classes, H, W) float32, all classes at once (memory: classes x pixels)
    res.overlay     # (H, W, 3) uint8
    inferencer(['a.jpg', 'b.jpg'], classes=[['cat'], ['dog', 'puppy']], out_dir='out/')

Call graph::
    __call__(inputs, classes, mode, prob_thd, batch_size, out_dir)
      └─ set_classes            segmentor vocabulary (text embeddings cached per vocabulary by the
                                text encoder; see :func:`set_segmentor_classes`)
      └─ _prepare               image -> config test pipeline (short side 448, ...) -> data dict
      └─ _predict_maps          batches of equally sized images -> the segmentor's
                                ``predict_probability_maps``: per image, class scores at the
                                network's resolution (ClassProbabilityMaps); segmentors without it:
                                ``test_step`` and its full-size ``seg_logits``
      └─ _finish                labels = argmax computed in row strips at the photo's size; top
                                probability < prob_thd -> -1 (or the background class)
      └─ overlay / legend       :mod:`declip_mm.apis.overlay`; optional files in ``out_dir``
                                (:mod:`declip_mm.apis.result_files`)

Memory: the full-resolution probabilities of all classes are never held (a 12 MP photo with 150
classes would need 7.2 GB of float32 for them alone): labels and the map of a chosen class are
computed strip by strip from the low-resolution scores (``SegResult.class_probability(k)``).

Low-confidence pixels (``prob_thd``): the benchmarks' configs send them to class 0 because class 0
*is* the benchmark's background. For a user's list the first class is nothing special, so they are
:data:`~declip_mm.apis.overlay.UNLABELED` (-1) unless the list names a background class
(a class with the name ``background``), which then receives them. Class lists:
:mod:`declip_mm.apis.vocabulary`.
"""
from __future__ import annotations

import copy
import os
import os.path as osp
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from PIL import Image

from ..models.segmentors.probability_maps import ClassProbabilityMaps, DenseClassMaps
from ..utils.package_files import find_config
from .checkpoints import apply_test_checkpoint
from .overlay import UNLABELED, blend_labels, class_palette, draw_legend, legend_entries
from .result_files import write_label_png, write_probs_npz
from .strict_checkpoint import ALLOW_UNTRAINED_KEY, check_trained_head, load_whole_model_checkpoint
from .vocabulary import BACKGROUND_NAMES, ClassesInput, parse_classes, set_segmentor_classes

__all__ = ['DeCLIPInferencer', 'SegResult', 'resolve_config']

ImageInput = Union[str, Path, np.ndarray, Image.Image]
DEFAULT_CONFIG = 'declip_eva02-b16_training-free_ade20k-448'


def resolve_config(config: Union[str, Path, Config, None]) -> Config:
    """A Config object from a path, a config name (without ``.py``) or None.

    Names are looked up in the installed package's ``.mim/configs`` first, then in a checkout's
    ``configs/`` (:func:`declip_mm.utils.package_files.find_config`).
    """
    if isinstance(config, Config):
        return copy.deepcopy(config)
    name = os.fspath(config) if config is not None else DEFAULT_CONFIG
    return Config.fromfile(find_config(name))


def _non_empty(rgb: np.ndarray, what: str) -> np.ndarray:
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f'{what} is empty: {rgb.shape[1]}x{rgb.shape[0]} pixels (shape '
                         f'{tuple(rgb.shape)}); an image needs at least one pixel')
    return rgb


@dataclass
class SegResult:
    """Result of one image.

    Attributes:
        labels: (H, W) int64 class indices at the input's size (any number of classes);
            :data:`UNLABELED` (-1) marks pixels below ``prob_thd`` when the list has no background
            class.
        overlay: (H, W, 3) uint8 photo tinted by class colour.
        classes: the class list used (one list of names per class).
        legend: :func:`~declip_mm.apis.overlay.legend_entries` (name, colour, area share).
        image: (H, W, 3) uint8 RGB input.
        maps: the class scores (softmax probabilities for the zero-shot segmentor, per-class
            sigmoid for CAT-Seg), kept at the segmentor's resolution and computed at the input's
            size on demand: :meth:`class_probability`, :attr:`probs`.
        name: file stem used for the written files.
    """
    labels: np.ndarray
    overlay: np.ndarray
    classes: List[List[str]]
    legend: List[Dict[str, Any]]
    image: np.ndarray
    maps: ClassProbabilityMaps = field(repr=False)
    name: str = 'image'
    files: Dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_probability(self, k: int) -> np.ndarray:
        """(H, W) float32 score of class ``k`` at the input's size, computed now in row strips
        (the values of ``probs[k]``, without the other classes' maps)."""
        return self.maps.class_probability(k).cpu().numpy()

    @property
    def probs(self) -> np.ndarray:
        """(num_classes, H, W) float32 scores of all classes, computed on each access: memory is
        classes x pixels (7.2 GB at 12 MP and 150 classes); prefer :meth:`class_probability`."""
        return self.maps.dense().cpu().numpy()

    def visualization(self):
        """The overlay with a legend panel (PIL image), as ``tools/demo.py`` writes it."""
        return draw_legend(self.overlay, self.legend)


class DeCLIPInferencer:
    """Segment images with any class list using a declip_mm open-vocabulary segmentor.

    Args:
        model (str | Path | Config, optional): a config file, a config name under ``configs/``
            (e.g. ``'declip_eva02-b16_training-free_ade20k-448'``, the default) or a Config.
            ``DeCLIPInferencer()`` with no argument at all, while the default config's weight
            files are absent, runs the miniature world's towers (shipped or cached, see
            docs/miniworld.md) with the world's 17 class names; :attr:`world_banner` says so.
        checkpoint (str, optional): a CLIP checkpoint, a DeCLIP export (image tower; becomes
            ``model.backbone.pretrained``) or a whole-segmentor checkpoint (e.g. a trained CAT-Seg;
            loaded into the model; it must fit tensor by tensor). None uses the weights the config
            names. A model with a trained head (CAT-Seg) is refused without one unless
            ``cfg_options={'allow_untrained_head': True}``.
        device (str, optional): ``'cpu'``, ``'cuda'``, ``'cuda:1'``...; None picks CUDA if available.
        cfg_options (dict, optional): config overrides (``--cfg-options`` style keys).
        text_checkpoint (str, optional): CLIP checkpoint of the text tower, when the config's
            ``model.text_encoder.pretrained`` should be replaced (a DeCLIP export has no text tower).
        classes: default class list of calls that give none (any spelling of :func:`parse_classes`:
            a string is always class names; a class file is read only from a ``pathlib.Path``).
        prob_thd (float, optional): default confidence threshold; None takes the config's.
        vfm (str | dict, optional): a local VFM checkpoint (``vfm_arch`` says which) or a
            ``ProxyVFM`` config: a training-free config then runs ProxyCLIP's proxy attention
            (``attn_mode='proxy'``, docs/method.md §7). None keeps the config's mode.
        vfm_arch (str): the VFM of a ``vfm`` checkpoint path. Defaults to ``'dino_vitb8'``.
    """

    def __init__(self,
                 model: Union[str, Path, Config, None] = None,
                 checkpoint: Optional[str] = None,
                 device: Optional[str] = None,
                 cfg_options: Optional[Dict[str, Any]] = None,
                 text_checkpoint: Optional[str] = None,
                 classes: Optional[ClassesInput] = None,
                 prob_thd: Optional[float] = None,
                 vfm: Union[str, Dict[str, Any], None] = None,
                 vfm_arch: str = 'dino_vitb8') -> None:
        from mmengine.registry import init_default_scope
        from mmseg.registry import MODELS

        import declip_mm  # noqa: F401  (registers the components)

        #: set when the miniature world's towers stand in for absent weights (docs/miniworld.md)
        self.world_banner = ''
        if model is None and checkpoint is None and not cfg_options and text_checkpoint is None:
            from ..miniworld.world_demo import world_default_without_weights
            world = world_default_without_weights(resolve_config(None))
            if world is not None:  # no weights at all: the world towers, the world's classes
                model, cfg_options = world['config'], world['cfg_options']
                classes = world['classes'] if classes is None else classes
                self.world_banner = world['banner']
                print(self.world_banner)
        cfg = resolve_config(model)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        model_cfg = cfg.model.get('module', cfg.model)
        if vfm is not None:  # ProxyCLIP's proxy attention with this VFM (docs/method.md §7)
            from .proxy_vfm_option import apply_proxy_vfm
            apply_proxy_vfm(model_cfg, vfm, vfm_arch)
        self.classes = parse_classes(classes) if classes is not None else None
        # the model is built with a valid list; the real one is set per call
        model_cfg.class_names = [list(c) for c in (self.classes or [['object']])]
        # keep the class probabilities: the segmentors may otherwise drop them to save memory
        model_cfg.setdefault('test_cfg', {})['keep_seg_logits'] = True
        if text_checkpoint is not None:
            model_cfg.text_encoder.pretrained = text_checkpoint
        checkpoint = checkpoint or cfg.get('load_from')  # a config naming its model checkpoint
        kind = apply_test_checkpoint(cfg, checkpoint) if checkpoint else None
        if kind == 'segmentor':  # weights come from the file: nothing else may be required on disk
            cfg.load_from = None
            model_cfg.backbone.pretrained = None
            model_cfg.text_encoder.pretrained = None
        text_w = model_cfg.text_encoder.get('pretrained')
        if text_w and not osp.isfile(text_w):
            raise FileNotFoundError(f'text-tower weights not found: {text_w!r} (the config\'s '
                                    'model.text_encoder.pretrained); pass text_checkpoint=<a local '
                                    'CLIP checkpoint> (a DeCLIP export holds no text tower)')
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        self.cfg = cfg
        seg = MODELS.build(model_cfg)
        # a trained head needs its checkpoint, and that checkpoint must fit tensor by tensor
        check_trained_head(seg, kind == 'segmentor', bool(cfg.get(ALLOW_UNTRAINED_KEY, False)))
        if kind == 'segmentor':
            load_whole_model_checkpoint(seg, checkpoint)
        else:
            seg.init_weights()  # local files only; a missing one fails here, not at the first image
        self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        self.model = seg.to(self.device).eval()
        self.default_mode = getattr(seg, 'mode', None)
        self.default_prob_thd = float(getattr(seg, 'prob_thd', 0.0)) if prob_thd is None \
            else float(prob_thd)
        self.pipeline = self._build_pipeline(cfg)

    # set-up ------------------------------------------------------------------------------------
    @staticmethod
    def _build_pipeline(cfg: Config):
        """The config's test pipeline fed with arrays: no annotations, images already decoded."""
        from mmengine.dataset import Compose
        steps = cfg.get('test_pipeline') or cfg.test_dataloader.dataset.pipeline
        steps = [dict(s) for s in steps if s.get('type') != 'LoadAnnotations']
        if not steps or 'LoadImage' not in steps[0].get('type', ''):
            raise ValueError(f'the test pipeline must start with an image loader, got {steps[:1]}')
        steps[0] = dict(type='LoadImageFromNDArray')
        return Compose(steps)

    def set_classes(self, classes: ClassesInput) -> List[List[str]]:
        """Switch the classifier to ``classes``; returns the parsed list."""
        names = parse_classes(classes)
        set_segmentor_classes(self.model, names)
        self.classes = names
        return names

    @contextmanager
    def _settings(self, mode: Optional[str], prob_thd: float) -> Iterator[None]:
        """Temporarily set the segmentor's inference mode and switch its own prob_thd off (the
        threshold is applied here, with the unlabeled rule of the module doc)."""
        seg = self.model
        old_mode, old_thd = getattr(seg, 'mode', None), getattr(seg, 'prob_thd', None)
        if mode is not None and mode != old_mode:
            allowed = {self.default_mode, 'whole'}
            if mode not in allowed or old_mode is None:
                raise ValueError(f'mode must be one of {sorted(m for m in allowed if m)} for '
                                 f'{type(seg).__name__}, got {mode!r}')
            seg.mode = mode
        if old_thd is not None:
            seg.prob_thd = 0.0
        try:
            yield
        finally:
            if old_mode is not None:
                seg.mode = old_mode
            if old_thd is not None:
                seg.prob_thd = old_thd

    # inputs ------------------------------------------------------------------------------------
    @staticmethod
    def _load(img: ImageInput, index: int):
        """-> (RGB uint8 array, name). Paths are decoded as mmcv's LoadImageFromFile does; a
        truncated JPEG / PNG is named in a warning (``declip_mm.datasets.image_check``)."""
        if isinstance(img, (str, Path)):
            from ..datasets.image_check import decode_image_bytes
            path = os.fspath(img)
            if not osp.isfile(path):
                raise FileNotFoundError(f'image not found: {path}')
            with open(path, 'rb') as f:
                bgr = decode_image_bytes(f.read(), path, channel_order='bgr')
            return np.ascontiguousarray(bgr[..., ::-1]), osp.splitext(osp.basename(path))[0]
        if isinstance(img, Image.Image):  # EXIF orientation applied, as cv2 does for a path
            from PIL import ImageOps
            return _non_empty(np.asarray(ImageOps.exif_transpose(img).convert('RGB')),
                              f'image {index} (PIL)'), f'image_{index}'
        if isinstance(img, np.ndarray):
            arr = img
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=-1)
            if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
                raise ValueError(f'an array image must be (H, W), (H, W, 3) or (H, W, 4) RGB, got '
                                 f'{arr.shape}')
            if arr.dtype != np.uint8:
                raise ValueError(f'an array image must be uint8 RGB, got {arr.dtype}')
            return _non_empty(np.ascontiguousarray(arr[..., :3]), f'image {index} (array)'), \
                f'image_{index}'
        raise TypeError(f'images are paths, numpy arrays or PIL images, got {type(img).__name__}')

    def _prepare(self, rgb: np.ndarray) -> Dict[str, Any]:
        return self.pipeline(dict(img=np.ascontiguousarray(rgb[..., ::-1])))  # pipeline wants BGR

    # outputs -----------------------------------------------------------------------------------
    def _predict_maps(self, data: Dict[str, Any]) -> List[ClassProbabilityMaps]:
        """Per image of a collated batch, its class scores (see the module doc)."""
        seg = self.model
        if hasattr(seg, 'predict_probability_maps'):
            data = seg.data_preprocessor(data, False)
            return seg.predict_probability_maps(data['inputs'], data['data_samples'])
        maps = []
        for sample in seg.test_step(data):
            if 'seg_logits' not in sample:
                raise RuntimeError(f'{type(seg).__name__} returned no seg_logits; the inferencer '
                                   'needs the class probabilities (test_cfg.keep_seg_logits=True)')
            maps.append(DenseClassMaps(sample.seg_logits.data))
        return maps

    def _finish(self, maps: ClassProbabilityMaps, rgb: np.ndarray, name: str, prob_thd: float,
                alpha: float) -> SegResult:
        if maps.num_classes != len(self.classes):
            raise RuntimeError(f'{type(self.model).__name__} returned {maps.num_classes} class maps '
                               f'for {len(self.classes)} classes')
        bg = [i for i, names in enumerate(self.classes)
              if any(n.lower() in BACKGROUND_NAMES for n in names)]
        labels = maps.labels(prob_thd, bg[0] if bg else UNLABELED).cpu().numpy()
        colors = class_palette(len(self.classes))
        return SegResult(labels=labels, maps=maps,
                         overlay=blend_labels(rgb, labels, colors, alpha),
                         classes=[list(c) for c in self.classes],
                         legend=legend_entries(self.classes, labels, colors), image=rgb, name=name)

    @staticmethod
    def save(res: SegResult, out_dir: str, save_probs: bool = True) -> Dict[str, str]:
        """Write ``<name>_overlay.png`` (with legend), ``<name>_labels.png`` (16-bit class indices,
        65535 = unlabeled; :func:`~declip_mm.apis.result_files.read_label_png` reads it back) and
        ``<name>_probs.npz`` (float16 ``probs`` and the ``classes``, written a few classes at a
        time). Existing files are never replaced: ``<name>`` becomes ``<name>_1``, ``<name>_2``...
        (``res.name`` is updated) when any of these files exists already."""
        from ..utils.output_files import reserve_free_stem
        os.makedirs(out_dir, exist_ok=True)
        res.name = reserve_free_stem(out_dir, res.name,
                                     ('_overlay.png', '_labels.png', '_probs.npz'))
        files = dict(overlay=osp.join(out_dir, f'{res.name}_overlay.png'),
                     labels=osp.join(out_dir, f'{res.name}_labels.png'))
        res.visualization().save(files['overlay'])
        write_label_png(files['labels'], res.labels)
        if save_probs:
            files['probs'] = osp.join(out_dir, f'{res.name}_probs.npz')
            write_probs_npz(files['probs'], res.maps, res.classes)
        res.files = files
        return files

    # call ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self,
                 inputs: Union[ImageInput, Sequence[ImageInput]],
                 classes: Optional[ClassesInput] = None,
                 mode: Optional[str] = None,
                 prob_thd: Optional[float] = None,
                 batch_size: int = 1,
                 out_dir: Optional[str] = None,
                 save_probs: bool = True,
                 alpha: float = 0.5,
                 show_progress: Optional[bool] = None) -> Union[SegResult, List[SegResult]]:
        """Segment one image or a list of images.

        Args:
            inputs: a path, an RGB array (H, W, 3) uint8, a PIL image, or a list of them. The
                EXIF orientation of a path or a PIL image is applied (as cv2 / a browser show it).
            classes: the class list (see :func:`parse_classes`): ``'cat; grass, lawn'`` (a string is
                always names, never a file name), a list, or ``pathlib.Path('classes.txt')`` to read
                a class file; None reuses the last one.
            mode: None = the config's protocol (e.g. 'slide' windows of the benchmarks), 'whole' =
                the whole (resized) image in one forward: quicker.
            prob_thd: pixels whose top class score is below it become unlabeled (see module doc);
                None takes the inferencer's default (the config's value).
            batch_size: images per forward; only images of the same size after the pipeline share a
                batch, so results equal the one-by-one results.
            out_dir: write each result there (see :meth:`save`).
            save_probs: also write the probabilities when ``out_dir`` is given.
            alpha: overlay opacity.
            show_progress: progress bar (default: when there are more than 2 images).

        Returns:
            SegResult for a single input, else a list in the input order.
        """
        if classes is not None:
            self.set_classes(classes)
        if self.classes is None:
            raise ValueError('give classes=..., e.g. classes="cat; grass, lawn; sky"')
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        if not items:
            raise ValueError('no images given')
        thd = self.default_prob_thd if prob_thd is None else float(prob_thd)
        show = len(items) > 2 if show_progress is None else show_progress
        bar = None
        if show:
            from mmengine.utils import ProgressBar
            bar = ProgressBar(len(items))
        results: List[Optional[SegResult]] = [None] * len(items)
        pending: List[tuple] = []

        def flush():
            if not pending:
                return
            from mmengine.dataset import pseudo_collate
            data = pseudo_collate([p[3] for p in pending])
            maps = self._predict_maps(data)
            for (idx, rgb, name, _), m in zip(pending, maps):
                res = self._finish(m, rgb, name, thd, alpha)
                if out_dir is not None:
                    self.save(res, out_dir, save_probs)
                results[idx] = res
                if bar is not None:
                    bar.update()
            pending.clear()

        with self._settings(mode, thd):
            seen: Dict[str, int] = {}
            for idx, img in enumerate(items):
                rgb, name = self._load(img, idx)
                seen[name] = seen.get(name, 0) + 1
                if seen[name] > 1:  # two inputs with one file stem must not overwrite each other
                    name = f'{name}_{seen[name] - 1}'
                data = self._prepare(rgb)
                if pending and (len(pending) >= batch_size
                                or pending[0][3]['inputs'].shape != data['inputs'].shape):
                    flush()
                pending.append((idx, rgb, name, data))
            flush()
        return results[0] if single else results
