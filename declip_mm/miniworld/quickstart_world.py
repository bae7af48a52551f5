"""The README's quick-start on the miniature world (docs/miniworld.md, "The quick-start"): a short
version of ``tools/miniworld.py`` that shows DeCLIP improving dense features with the project's own
tools, in about a minute once the towers are at hand.

Phases (each prints one progress line with its wall time):

1. ``world``: a small world (``write_world``: unlabeled images for distillation, an ADE-layout
   benchmark) in ``OUT/world``;
2. ``towers``: the tiny CLIP and VFM (``world_towers.py``: shipped archive, else a brief training,
   cached);
3. ``before``: ``tools/test.py`` on the training-free world config with the plain tiny CLIP in
   ``vanilla`` and ``csa`` (training-free DeCLIP);
4. ``declip``: ``tools/train.py`` on the world's DeCLIP config (content + context, the entry recipe
   scaled to the world) for a few epochs, printing the losses per epoch;
5. ``after``: ``tools/test.py`` with the exported alpha-merged tower in ``csa``;
6. ``pictures``: before / after overlays side by side (``DeCLIPInferencer`` in the benchmark
   protocol) and the proxy-token pictures of ``tools/analysis/proxy_tokens.py`` for the original
   and the DeCLIP tower.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ['QuickWorldSettings', 'WORLD_COLOURS', 'before_after_table', 'label_panel',
           'side_by_side', 'run_world_quickstart']

#: 17 well-separated colours for the world's classes in the pictures (things, then stuff)
WORLD_COLOURS = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128),
    (120, 200, 80), (30, 60, 160), (220, 190, 130), (170, 60, 40), (235, 235, 235),
    (110, 70, 30)], dtype=np.uint8)
PHASE_NAMES = ('world', 'towers', 'before', 'declip', 'after', 'pictures')


@dataclass
class QuickWorldSettings:
    """The quick-start's sizes (chosen for <= 2 min warm on 2 cores, docs/miniworld.md).

    Args:
        world_seed: the world (0: the shipped towers' world).
        n_unlabeled: unlabeled images DeCLIP distils on.
        n_bench: benchmark scenes evaluated before and after.
        epochs / batch: DeCLIP schedule (content + context, the world config's recipe otherwise).
        seed: DeCLIP training seed.
        n_pictures: benchmark scenes drawn before / after.
        pictures: draw them (and the proxy-token pictures); ``False`` skips the phase.
        threads: torch threads of the towers' brief training and of the runs.
    """
    world_seed: int = 0
    n_unlabeled: int = 400
    n_bench: int = 100
    epochs: int = 6
    batch: int = 16
    seed: int = 0
    n_pictures: int = 4
    threads: int = 2
    pictures: bool = True


# pictures ----------------------------------------------------------------------------------------
def label_panel(rgb: np.ndarray, labels: np.ndarray, scale: int, alpha: float = 0.8) -> np.ndarray:
    """The image tinted by :data:`WORLD_COLOURS` of each pixel's class (``-1``: untinted),
    enlarged ``scale`` times (nearest neighbour)."""
    from declip_mm.apis.overlay import blend_labels
    out = blend_labels(rgb, labels, WORLD_COLOURS, alpha)
    return np.repeat(np.repeat(out, scale, 0), scale, 1)


def side_by_side(rows: Sequence[Tuple[np.ndarray, List[Tuple[str, np.ndarray]]]],
                 class_names: Sequence[str], out: str, scale: int = 3, title: str = '') -> str:
    """One row per image: the image, then one panel per ``(column title, label map)``; a legend of
    the classes below. Writes ``out`` (PNG) and returns it."""
    font = ImageFont.load_default()
    h, w = rows[0][0].shape[:2]
    ph, pw = h * scale, w * scale
    cols = 1 + len(rows[0][1])
    gap, head = 4, 28 if title else 14
    legend_h = 16 * ((len(class_names) + 5) // 6) + 6
    canvas = Image.new('RGB', (cols * (pw + gap) + gap, head + len(rows) * (ph + gap) + legend_h),
                       (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    if title:
        d.text((gap, 2), title, fill=(0, 0, 0), font=font)
    titles = ['image'] + [t for t, _ in rows[0][1]]
    for c, t in enumerate(titles):
        d.text((gap + c * (pw + gap), head - 13), t, fill=(0, 0, 0), font=font)
    for r, (rgb, panels) in enumerate(rows):
        y = head + r * (ph + gap)
        big = np.repeat(np.repeat(rgb, scale, 0), scale, 1)
        canvas.paste(Image.fromarray(big), (gap, y))
        for c, (_, labels) in enumerate(panels, 1):
            canvas.paste(Image.fromarray(label_panel(rgb, labels, scale)), (gap + c * (pw + gap), y))
    y0 = head + len(rows) * (ph + gap) + 2
    for k, name in enumerate(class_names):
        x, y = gap + (k % 6) * 105, y0 + 16 * (k // 6)
        d.rectangle([x, y + 2, x + 10, y + 12], fill=tuple(int(v) for v in WORLD_COLOURS[k]))
        d.text((x + 14, y + 1), name, fill=(0, 0, 0), font=font)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    canvas.save(out, optimize=True)
    return out


# the table ---------------------------------------------------------------------------------------
def before_after_table(before: Dict[str, Dict[str, float]], after: Dict[str, float],
                       epochs: int, n_bench: int) -> str:
    """Markdown table of the training-free rows (``before[mode]`` metrics) and the DeCLIP row."""
    lines = [f'| world benchmark ({n_bench} scenes, 17 classes) | attention | mIoU | mAcc | aAcc |',
             '|---|---|---|---|---|']
    for mode, m in before.items():
        lines.append(f'| before: tiny CLIP, training-free | `{mode}` | {m["mIoU"]:.1f} | '
                     f'{m["mAcc"]:.1f} | {m["aAcc"]:.1f} |')
    lines.append(f'| after: DeCLIP content + context, {epochs} epochs | `csa` | {after["mIoU"]:.1f} '
                 f'| {after["mAcc"]:.1f} | {after["aAcc"]:.1f} |')
    return '\n'.join(lines)


def _loss_rows(work_dir: str) -> Tuple[List[str], Dict[int, Dict[str, float]]]:
    """The Markdown rows and ``{epoch: {loss name: mean}}`` of the logged losses of a run."""
    rows = []
    for d, _, files in os.walk(work_dir):
        if 'scalars.json' in files:
            with open(osp.join(d, 'scalars.json')) as f:
                rows = [json.loads(line) for line in f]
    by_epoch: Dict[int, List[Dict]] = {}
    for r in rows:
        if 'loss' in r:
            by_epoch.setdefault(r['epoch'], []).append(r)
    lines = ['| epoch | loss_content | loss_context | loss |', '|---|---|---|---|']
    means = {}
    for e, rs in sorted(by_epoch.items()):
        mean = means[int(e)] = {k: sum(r.get(k, 0.0) for r in rs) / len(rs)
                                for k in ('loss_content', 'loss_context', 'loss')}
        lines.append(f"| {e} | {mean['loss_content']:.4f} | {mean['loss_context']:.4f} | "
                     f"{mean['loss']:.4f} |")
    return lines, means


# the run -----------------------------------------------------------------------------------------
QUIET = dict(log_level='ERROR')  # the runs' own logs stay in their work folders


def _predict(config: str, options: Dict[str, Any], checkpoint: Optional[str], images: List[str]):
    from declip_mm.apis import DeCLIPInferencer

    from .world_demo import world_classes
    inf = DeCLIPInferencer(config, checkpoint=checkpoint, device='cpu', cfg_options=options,
                           classes=world_classes())
    return [r.labels for r in inf(images, show_progress=False)]


def _pictures(out: str, inputs, towers: Dict[str, Any], export: str,
              metrics: Dict[str, Dict[str, float]], s: QuickWorldSettings,
              log: Callable[[str], None]) -> Dict[str, Any]:
    import glob

    from .classes import ALL_CLASSES
    from .world_demo import WORLD_CONFIG, world_cfg_options
    ade = inputs.paths['ade_root']
    images = sorted(glob.glob(osp.join(ade, 'images', 'validation', '*.jpg')))[:s.n_pictures]
    gts = [np.asarray(Image.open(p.replace('images', 'annotations').replace('.jpg', '.png')))
           .astype(np.int64) - 1 for p in images]
    rgbs = [np.asarray(Image.open(p).convert('RGB')) for p in images]
    opts = world_cfg_options(towers)
    cols: List[Tuple[str, List[np.ndarray]]] = []
    for title, mode, ckpt, key in (('before: vanilla', 'vanilla', None, 'vanilla'),
                                   ('before: csa', 'csa', None, 'csa'),
                                   ('after: DeCLIP csa', 'csa', export, 'declip')):
        labels = _predict(WORLD_CONFIG, dict(opts, **{'model.backbone.attn_mode': mode}), ckpt,
                          images)
        cols.append((f'{title} ({metrics[key]["mIoU"]:.1f})', labels))
    rows = [(rgb, [('ground truth', gt)] + [(t, lab[i]) for t, lab in cols])
            for i, (rgb, gt) in enumerate(zip(rgbs, gts))]
    os.makedirs(osp.join(out, 'overlays'), exist_ok=True)
    np.savez_compressed(osp.join(out, 'overlays', 'labels.npz'), images=np.array(images),
                        ground_truth=np.stack(gts), **{key: np.stack(lab) for key, (_, lab) in
                                                       zip(('vanilla', 'csa', 'declip'), cols)})
    overlay = side_by_side(rows, ALL_CLASSES, osp.join(out, 'overlays', 'before_after.png'),
                           title='miniature world benchmark: ground truth, training-free tiny CLIP '
                                 'before, DeCLIP after (mIoU in brackets)')
    proxy_dir = osp.join(out, 'proxy_tokens')
    os.makedirs(proxy_dir, exist_ok=True)
    with open(towers['vfm']['config']) as f:
        vfm_spec = json.load(f)
    proxy = osp.join(proxy_dir, 'proxy_tokens.png')
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):  # its per-block score table: see its --help
        _proxy_tool().main([
            images[0], '--model-name', towers['clip']['config'], '--checkpoint',
            towers['clip']['weights'], '--compare', export, '--attn-mode', 'csa', '--size', '64',
            '--points', '0.5,0.5', '0.25,0.75', '--vfm-arch', vfm_spec['arch'], '--vfm-weights',
            towers['vfm']['weights'], '--vfm-overrides', json.dumps(vfm_spec.get('arch_overrides')),
            '--out', proxy])
    return dict(overlay=overlay, proxy_tokens=proxy,
                proxy_context=osp.splitext(proxy)[0] + '_context.png')


def _proxy_tool():
    """``tools/analysis/proxy_tokens.py`` as a module."""
    import importlib.util
    import sys

    from .experiments import ROOT
    name = '_declip_tools_proxy_tokens'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, osp.join(ROOT, 'tools', 'analysis', 'proxy_tokens.py'))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return sys.modules[name]


def run_world_quickstart(out: str, s: Optional[QuickWorldSettings] = None,
                         cache_dir: Optional[str] = None,
                         log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the six phases into ``out``; returns the metrics, the table, the files and timings
    (also written to ``out/results.json``)."""
    import torch
    s = s or QuickWorldSettings()
    threads = torch.get_num_threads()
    torch.set_num_threads(int(s.threads))
    try:
        return _run(out, s, cache_dir, log)
    finally:
        torch.set_num_threads(threads)


def _run(out: str, s: QuickWorldSettings, cache_dir: Optional[str],
         log: Callable[[str], None]) -> Dict[str, Any]:
    from .experiments import ExperimentSettings, WorldInputs, evaluate_segmentation, train_declip
    from .layouts import write_world
    from .world_towers import world_towers
    out = osp.abspath(out)
    res: Dict[str, Any] = dict(settings=asdict(s), timings={})
    n = len(PHASE_NAMES) - (0 if s.pictures else 1)
    state: Dict[str, Any] = {}

    def phase(i: int, name: str, what: str, fn: Callable[[], str]) -> None:
        log(f'[{i}/{n}] {name}: {what} ...')
        t0 = time.time()
        note = fn()
        res['timings'][name] = round(time.time() - t0, 1)
        log(f'[{i}/{n}] {name} done in {time.time() - t0:.0f} s' + (f': {note}' if note else ''))

    def world() -> str:
        state['paths'] = write_world(osp.join(out, 'world'), s.world_seed, n_caption=0,
                                     n_unlabeled=s.n_unlabeled, n_bench=s.n_bench, n_catseg_train=0)
        return f'{s.n_unlabeled} unlabeled + {s.n_bench} benchmark scenes in {out}/world'
    phase(1, 'world', f'render the miniature world (seed {s.world_seed})', world)

    def towers() -> str:
        t = world_towers(cache_dir, s.world_seed, train=True, threads=s.threads, log=log)
        state['towers'] = t
        res['towers'] = {k: dict(source=t[k]['source'], weights=t[k]['weights'],
                                 config=t[k]['config']) for k in ('clip', 'vfm')}
        src = t['clip']['source']
        return {'shipped': 'the towers shipped in the repository (unpacked into the cache '
                           f'{t["cache_dir"]})',
                'cached': f'reused from the cache {t["cache_dir"]}',
                'trained': f'trained briefly and cached in {t["cache_dir"]} (no shipped tower fits '
                           'this checkout)'}[src]
    phase(2, 'towers', 'the tiny CLIP and the tiny VFM', towers)

    t = state['towers']
    inputs = WorldInputs(paths=state['paths'], clip=t['clip'], vfm=t['vfm'], out=out, log=log)
    ex = ExperimentSettings(seeds=(s.seed, ), declip_epochs=s.epochs, declip_batch=s.batch,
                            threads=s.threads)
    metrics: Dict[str, Dict[str, float]] = {}

    def before() -> str:
        for mode in ('vanilla', 'csa'):
            m = evaluate_segmentation(inputs, mode, osp.join(out, 'eval', f'before_{mode}'), None,
                                      ex, extra=QUIET)
            metrics[mode] = {k: float(m[k]) for k in ('mIoU', 'mAcc', 'aAcc')}
        return ', '.join(f'{k} mIoU {v["mIoU"]:.1f}' for k, v in metrics.items())
    phase(3, 'before', 'training-free tiny CLIP through tools/test.py (vanilla, csa)', before)

    def declip() -> str:
        wd = osp.join(out, 'train')
        state['export'] = train_declip(inputs, 'content+context', s.seed, wd, ex,
                                       extra=dict(QUIET, default_hooks=dict(logger=dict(
                                           interval=5))))
        lines, res['losses'] = _loss_rows(wd)
        for line in lines:
            log('      ' + line)
        return f'alpha-merged image tower exported to {state["export"]}'
    phase(4, 'declip', f'DeCLIP distillation through tools/train.py ({s.epochs} epochs, '
          f'{s.n_unlabeled} images, batch {s.batch})', declip)

    def after() -> str:
        m = evaluate_segmentation(inputs, 'csa', osp.join(out, 'eval', 'after_csa'),
                                  state['export'], ex, extra=QUIET)
        metrics['declip'] = {k: float(m[k]) for k in ('mIoU', 'mAcc', 'aAcc')}
        return f'DeCLIP csa mIoU {metrics["declip"]["mIoU"]:.1f}'
    phase(5, 'after', 'the DeCLIP tower through tools/test.py (csa)', after)

    def pictures() -> str:
        res['files'] = _pictures(out, inputs, t, state['export'], metrics, s, log)
        return ', '.join(osp.relpath(p, out) for p in res['files'].values())
    if s.pictures:
        phase(6, 'pictures', 'before / after overlays and proxy-token pictures', pictures)

    res['before'] = {k: metrics[k] for k in ('vanilla', 'csa')}
    res['after'] = {'csa': metrics['declip']}
    res['export'] = state['export']
    res['table'] = before_after_table(res['before'], metrics['declip'], s.epochs, s.n_bench)
    with open(osp.join(out, 'results.json'), 'w') as f:
        json.dump(res, f, indent=1)
    return res
