#!/usr/bin/env python
"""Timings and peak memory of declip_mm's hot paths (median of several runs after warm-up).

Side by side with the public code's way of computing (``declip_mm.benchmarking.reference``), modes
interleaved A, B, A, B in separate processes, FLOPs, and the fraction of this machine's matmul rate:

    python tools/benchmark.py train  [--modes default reference bf16 bf16-cache] [--rounds 2]
    python tools/benchmark.py infer  [--size 448 597] [--num-classes 150] [--rounds 2]
    python tools/benchmark.py catseg [--num-classes 150] [--rounds 2]

Single-mode timings:

    python tools/benchmark.py segmentor [--model-name EVA02-B-16] [--size 448 597] [--runs 5]
    python tools/benchmark.py backbone  [--model-name ViT-B-16] [--size 448 448]
    python tools/benchmark.py train_step [--model-name EVA02-B-16] [--vfm-arch dinov2_vitb14_reg]
                                         [--teacher-dtypes fp32 bf16] [--runs 3]
    python tools/benchmark.py region_cls [--model-name EVA02-B-16] [--size 480 640] [--regions 10]
    python tools/benchmark.py large_image [--size 6000 8000] [--num-classes 150] [--runs 1]
    python tools/benchmark.py infer_api [--size 3000 4000] [--num-classes 150] [--runs 1]
                                        [--modes lazy dense] [--whole]
    python tools/benchmark.py proxy [--model-name ViT-B-16] [--vfm-arch dino_vitb8] [--size 336 448]
                                    [--modes vanilla proxy] [--rounds 2] [--tiny]

``proxy``: cost per image of the training-free segmentor in ``vanilla`` / ``csa`` vs ``proxy``
(ProxyCLIP's proxy attention with its VFM, docs/method.md §7) at the ProxyCLIP protocol window
(336 / 112), modes interleaved A, B, A, B in separate processes; the ratio is against the first mode.

Each case runs in its own subprocess so that the peak resident memory (ru_maxrss) is the case's own.
Random weights: the cost does not depend on them. Results are printed as a Markdown table and JSON.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch


def _timeit(fn, runs: int, warmup: int = 1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def case_segmentor(args, batch_size: int):
    import declip_mm  # noqa: F401
    from declip_mm.models import DeCLIPZeroShotSegmentor
    seg = DeCLIPZeroShotSegmentor(
        backbone=dict(type='DeCLIPVisionTransformer', model_name=args.model_name, attn_mode='csa'),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=args.model_name, templates='single'),
        class_names=[f'class {i}' for i in range(args.num_classes)],
        test_cfg=dict(mode='slide', crop_size=336, stride=112, batch_size=batch_size)).eval()
    seg._weights_ready = True  # random weights on purpose
    img = torch.randn(1, 3, *args.size)
    with torch.no_grad():
        seg.class_embeddings()
        med, times = _timeit(lambda: seg.inference(img), args.runs)
    from declip_mm.models.segmentors.zero_shot_segmentor import window_grid
    n_win = len(window_grid(*args.size, (336, 336), (112, 112)))
    return dict(case=f'segmentor slide 336/112, window batch {batch_size}', model=args.model_name,
                size=list(args.size), windows=n_win, median_s=med, runs_s=times,
                peak_rss_mib=_peak_mib(), threads=torch.get_num_threads())


def case_proxy(args, mode: str):
    """One image through the sliding-window segmentor in ``mode`` (vanilla / csa / proxy)."""
    import declip_mm  # noqa: F401
    from declip_mm.models.segmentors import DeCLIPProxySegmentor, DeCLIPZeroShotSegmentor
    from declip_mm.testing import tiny_clip_config
    from declip_mm.testing.proxyclip_public import TINY_VFMS
    model = tiny_clip_config('openai', image_size=args.crop) if args.tiny else args.model_name
    common = dict(
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=model, templates='single'),
        class_names=[f'class {i}' for i in range(args.num_classes)],
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094],
                               std=[68.501, 66.632, 70.323], bgr_to_rgb=True),
        test_cfg=dict(mode='slide', crop_size=args.crop, stride=args.stride, batch_size=16))
    backbone = dict(type='DeCLIPVisionTransformer', model_name=model, attn_mode=mode)
    if mode == 'proxy':
        vfm = dict(arch=args.vfm_arch, arch_overrides=TINY_VFMS.get(args.vfm_arch) if args.tiny
                   else None)
        seg = DeCLIPProxySegmentor(backbone=backbone, vfm=vfm, **common).eval()
    else:
        seg = DeCLIPZeroShotSegmentor(backbone=backbone, **common).eval()
    seg._weights_ready = True  # random weights on purpose
    img = torch.randn(1, 3, *args.size)
    with torch.no_grad():
        seg.class_embeddings()
        med, times = _timeit(lambda: seg.inference(img), args.runs, warmup=args.warmup)
    from declip_mm.models.segmentors.zero_shot_segmentor import window_grid
    n_win = len(window_grid(*args.size, (args.crop, args.crop), (args.stride, args.stride)))
    name = 'tiny' if args.tiny else args.model_name
    if mode == 'proxy':
        name += f' + {args.vfm_arch}' + (' (tiny)' if args.tiny else '')
    return dict(case=f'proxy cost, {mode}', mode=mode, model=name, size=list(args.size),
                windows=n_win, median_s=med, runs_s=times, peak_rss_mib=_peak_mib(),
                threads=torch.get_num_threads())


def main_proxy(args, argv) -> list:
    """Interleaved rounds of case_proxy per mode; median time per image, peak RSS, ratio."""
    modes = args.modes or ['vanilla', 'proxy']
    if set(modes) - {'vanilla', 'csa', 'proxy'}:
        sys.exit(f'proxy: --modes are vanilla, csa and / or proxy, got {modes}')
    runs = {m: [] for m in modes}
    for r in range(args.rounds):
        for m in modes:
            cmd = [sys.executable, os.path.abspath(__file__), *argv, '--_child', 'case_proxy', m]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            runs[m].append(res)
            print(f"round {r + 1} {m}: median {res['median_s'] * 1000:.0f} ms, peak RSS "
                  f"{res['peak_rss_mib']:.0f} MiB", flush=True)
    base = statistics.median(x['median_s'] for x in runs[modes[0]])
    base_mem = max(x['peak_rss_mib'] for x in runs[modes[0]])
    first = runs[modes[0]][0]
    print(f"\nimage {first['size'][0]}x{first['size'][1]}, {first['windows']} windows of "
          f"{args.crop} / stride {args.stride}, {first['threads']} thread(s), {args.rounds} "
          'interleaved rounds\n')
    print(f'| mode | towers | time per image | vs {modes[0]} | peak RSS | vs {modes[0]} |\n'
          '|---|---|---|---|---|---|')
    summary = []
    for m in modes:
        t = statistics.median(x['median_s'] for x in runs[m])
        mem = max(x['peak_rss_mib'] for x in runs[m])
        summary.append(dict(mode=m, model=runs[m][0]['model'], median_s=t, peak_rss_mib=mem,
                            time_ratio=t / base, mem_ratio=mem / base_mem))
        print(f"| {m} | {runs[m][0]['model']} | {t * 1000:.0f} ms | {t / base:.2f}x | "
              f'{mem:.0f} MiB | {mem / base_mem:.2f}x |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(summary=summary, runs=runs), f, indent=2)
    return summary


def case_large_image(args, _):
    """One large photo through the ade20k training-free protocol (resize to short side 448, slide
    336/112, labels at the original size): peak RSS must grow with the pixels, not x classes."""
    import numpy as np
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope

    import declip_mm  # noqa: F401
    from declip_mm.models import DeCLIPZeroShotSegmentor
    init_default_scope('mmseg')
    seg = DeCLIPZeroShotSegmentor(
        backbone=dict(type='DeCLIPVisionTransformer', model_name=args.model_name, attn_mode='csa'),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=args.model_name, templates='single'),
        class_names=[f'class {i}' for i in range(args.num_classes)],
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094],
                               std=[68.501, 66.632, 70.323], bgr_to_rgb=True),
        test_cfg=dict(mode='slide', crop_size=336, stride=112)).eval()
    seg._weights_ready = True  # random weights on purpose
    pipe = Compose([dict(type='LoadImageFromNDArray'),
                    dict(type='Resize', scale=(4096, 448), keep_ratio=True),
                    dict(type='PackSegInputs')])
    h, w = args.size

    def run():
        img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        data = seg.data_preprocessor(pseudo_collate([pipe(dict(img=img))]), False)
        with torch.no_grad():
            out = seg.predict(data['inputs'], data['data_samples'])
        assert tuple(out[0].pred_sem_seg.data.shape[-2:]) == (h, w)

    with torch.no_grad():
        seg.class_embeddings()
    med, times = _timeit(run, args.runs, warmup=0)
    return dict(case=f'large image, {args.num_classes} classes, labels in strips', model=str(
        args.model_name), size=[h, w], median_s=med, runs_s=times, peak_rss_mib=_peak_mib(),
        threads=torch.get_num_threads())


def case_infer_api(args, mode: str):
    """One photo of ``--size`` through ``DeCLIPInferencer`` (the ADE20K training-free config: its
    protocol, or ``--whole``) with ``--num-classes`` names: labels, overlay, legend and the
    full-size map of one class. ``mode='dense'`` also reads ``res.probs`` (every class at full size,
    what the inferencer held before issue 24 item 4)."""
    import numpy as np

    import declip_mm  # noqa: F401
    from declip_mm.apis import DeCLIPInferencer
    name = args.model_name
    if name.endswith('.json'):
        with open(name) as f:
            name = json.load(f)
    arch = dict(name, _delete_=True) if isinstance(name, dict) else name
    opts = {'model.backbone.model_name': arch, 'model.text_encoder.model_name': arch,
            'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
            'model.text_encoder.templates': 'single'}
    inf = DeCLIPInferencer(cfg_options=opts, device=args.device)  # random weights on purpose
    classes = [f'class {i}' for i in range(args.num_classes)]
    h, w = args.size
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    inf.set_classes(classes)
    with torch.no_grad():
        inf.model.class_embeddings()  # text forward once, outside the timing

    def run():
        res = inf(img, mode='whole' if args.whole else None)
        assert res.labels.shape == (h, w) and res.class_probability(0).shape == (h, w)
        if mode == 'dense':
            assert res.probs.shape == (args.num_classes, h, w)

    med, times = _timeit(run, args.runs, warmup=0)
    return dict(case=f'inferencer ({"whole" if args.whole else "protocol"}), '
                f'{args.num_classes} classes, {mode}', model=str(args.model_name)[-40:], size=[h, w],
                median_s=med, runs_s=times, peak_rss_mib=_peak_mib(),
                threads=torch.get_num_threads())


def case_backbone(args, mode: str):
    import declip_mm  # noqa: F401
    from declip_mm.models import DeCLIPVisionTransformer
    bb = DeCLIPVisionTransformer(args.model_name, attn_mode=mode).eval()
    img = torch.randn(1, 3, *args.size)
    with torch.no_grad():
        med, times = _timeit(lambda: bb(img), args.runs)
    return dict(case=f'backbone forward, attn_mode={mode}', model=args.model_name,
                size=list(args.size), median_s=med, runs_s=times, peak_rss_mib=_peak_mib(),
                threads=torch.get_num_threads())


def case_train_step(args, teacher_dtype: str):
    """One DeCLIP optimisation step: EVA02-B/16 student at 560, DINOv2-B/14 (reg) at 490, CLIP
    teacher on 20 crops of 224, AdamW; batch 1 (the worst case: a 5x4 grid, 20 crops)."""
    import declip_mm  # noqa: F401
    from declip_mm.models import DeCLIPDistiller
    model = DeCLIPDistiller(
        student=dict(type='DeCLIPVisionTransformer', model_name=args.model_name, attn_mode='csa',
                     attn_scale=1.0),
        vfm_teacher=dict(type='VFMTeacher', arch=args.vfm_arch),
        teacher_dtype=None if teacher_dtype == 'fp32' else teacher_dtype).train()
    b = args.batch
    side, patch = 560, model.student.patch_size[0]
    vfm_side = model.vfm_teacher.input_side(side, patch)
    k = 20
    cells = torch.tensor([[j * 7.0, i * 8.75, (j + 1) * 7.0, (i + 1) * 8.75]
                          for i in range(4) for j in range(5)])
    inputs = dict(student=torch.randn(b, 3, side, side), vfm=torch.randn(b, 3, vfm_side, vfm_side),
                  crops=torch.randn(b * k, 3, 224, 224),
                  rois=torch.cat([torch.arange(b).repeat_interleave(k)[:, None].float(),
                                  cells.repeat(b, 1)], 1))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.1)

    def step():
        opt.zero_grad(set_to_none=True)
        losses = model.loss(inputs)
        sum(losses.values()).backward()
        opt.step()

    med, times = _timeit(step, args.runs)
    return dict(case=f'DeCLIP train step, batch {b}, teachers {teacher_dtype}',
                model=f'{args.model_name} + {args.vfm_arch}', size=[side, side], median_s=med,
                runs_s=times, peak_rss_mib=_peak_mib(), threads=torch.get_num_threads(),
                trainable_params=sum(p.numel() for p in params))


def case_region_cls(args, _):
    """Region classification of one image (README): a generated panoptic image of ``--size`` with
    ``--regions`` segments, 560 letterbox, crops at the tower's input size; data pipeline (regions,
    masks, crops, letterbox) and model (content map, rois, maskpool, crop CLS) timed apart."""
    import tempfile

    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope

    import declip_mm  # noqa: F401
    from declip_mm.models.backbones.clip_towers import resolve_clip_config
    from declip_mm.registry import DATASETS, MODELS
    from declip_mm.testing import default_panoptic_images, write_panoptic_fixture
    init_default_scope('mmseg')
    vis = resolve_clip_config(args.model_name)['vision_cfg']
    model = MODELS.build(dict(
        type='DeCLIPRegionClassifier',
        backbone=dict(type='DeCLIPVisionTransformer', model_name=args.model_name, attn_mode='csa'),
        text_encoder=dict(type='DeCLIPTextEncoder', model_name=args.model_name,
                          templates='single'))).eval()
    patch, crop = model.backbone.patch_size[0], int(vis['image_size'])
    with tempfile.TemporaryDirectory() as tmp:
        root = write_panoptic_fixture(tmp, default_panoptic_images(tuple(args.size), 1,
                                                                   args.regions))
        ds = DATASETS.build(dict(type='COCOPanopticRegionDataset', data_root=root, pipeline=[
            dict(type='LoadPanopticRegions', image_size=560, patch_size=patch, crop_size=crop),
            dict(type='DeCLIPLetterbox', size=560, key='img_tensor'),
            dict(type='PackRegionInputs')]))
        data_med, _ = _timeit(lambda: ds[0], args.runs)
        batch = pseudo_collate([ds[0]])
    n = int(batch['inputs']['boxes'][0].shape[0])
    with torch.no_grad():
        model.class_embeddings(ds.metainfo['classes'])  # once per model, not per image
        med, times = _timeit(lambda: model.test_step(batch), args.runs)
    return dict(case=f'region classification, {n} regions, rois+maskpool+crops (pipeline '
                f'{data_med * 1000:.0f} ms + model)', model=args.model_name,
                size=list(args.size), median_s=med + data_med, model_s=med, pipeline_s=data_med,
                runs_s=times, regions=n, peak_rss_mib=_peak_mib(), threads=torch.get_num_threads())


# side by side: default vs reference (declip_mm.benchmarking) -------------------------------------
SIDE_BY_SIDE = ('train', 'infer', 'catseg')
#: training-step modes: the default mode's options (the reference always runs fp32 teachers)
TRAIN_MODES = {'default': dict(), 'reference': dict(), 'bf16': dict(teacher_dtype='bf16'),
               'cache': dict(vfm_cache=True), 'bf16-cache': dict(teacher_dtype='bf16', vfm_cache=True)}


def _side_case(args, mode: str):
    from declip_mm.benchmarking.cases import CatSegCase, InferCase, TrainCase
    student = dict(type='DeCLIPVisionTransformer', model_name=args.model_name, attn_mode='csa')
    text = dict(type='DeCLIPTextEncoder', model_name=args.model_name, templates='single')
    if args.what == 'train':
        return TrainCase(dict(student, attn_scale=1.0), dict(type='VFMTeacher', arch=args.vfm_arch),
                         batch=args.batch, optimizer=args.optimizer, **TRAIN_MODES[mode])
    if args.what == 'infer':
        return InferCase(student, text, num_classes=args.num_classes, size=args.size, ori=args.ori)
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs',
                                       '_base_', 'models', 'catseg_declip_eva02-b16.py')).model
    cfg.backbone.update(model_name=args.model_name, pretrained=None)
    cfg.text_encoder.update(model_name=args.model_name, pretrained=None)
    return CatSegCase(cfg.to_dict(), num_classes=args.num_classes, size=args.catseg_size)


def case_side(args, mode: str) -> dict:
    """One process of the side-by-side comparison: build, warm up, time, peak memory; in the first
    round also FLOPs (counted once) and what the modes must agree on (saved to ``--_check-dir``)."""
    import declip_mm  # noqa: F401
    from declip_mm.benchmarking import (
        count_flops,
        peak_memory_mib,
        peak_tensor_bytes,
        reset_peak,
        tensor_bytes,
        time_runs,
    )
    device = torch.device(args.device)
    case = _side_case(args, mode).to(device)
    run_mode = 'reference' if mode == 'reference' else 'default'
    check = None
    if args._first:  # what the modes must agree on, from the untouched model
        if args.what == 'train':
            with torch.no_grad():
                check = {k: float(v) for k, v in case.losses(run_mode).items()}
        else:
            out = case.predict(run_mode)
            torch.save(out, os.path.join(args._check_dir, f'{mode}.pt'))
    reset_peak(device)
    times = time_runs(case.runner(run_mode), args.runs, args.warmup, device)
    res = dict(case=args.what, mode=mode, model=args.model_name, median_s=statistics.median(times),
               runs_s=times, peak_mib=peak_memory_mib(device), device=str(device),
               threads=torch.get_num_threads(), check=check)
    if args._first:  # once: FLOPs, and the tensor memory (held + peak during a call)
        res['flops'] = count_flops(case.runner(run_mode))
        if device.type == 'cuda':  # max_memory_allocated is already the tensor peak
            res['tensor_peak_mib'] = res['peak_mib']
        else:
            held = tensor_bytes(*case.held_tensors(run_mode))
            res['tensor_peak_mib'] = (held + peak_tensor_bytes(case.runner(run_mode))) / 2 ** 20
    return res


def _compare_checks(what: str, results: list, check_dir: str) -> dict:
    """How far each mode is from the reference: loss differences (train), label agreement and
    probability differences (infer, catseg)."""
    out = {}
    for r in results:
        if r['mode'] == 'reference' or not r.get('_first'):
            continue
        if what == 'train':
            ref = next(x['check'] for x in results if x['mode'] == 'reference' and x.get('_first'))
            out[r['mode']] = {k: abs(r['check'][k] - v) / max(abs(v), 1e-12) for k, v in ref.items()}
            continue
        ref = torch.load(os.path.join(check_dir, 'reference.pt'))
        got = torch.load(os.path.join(check_dir, f"{r['mode']}.pt"))
        if what == 'catseg':
            (ref, ref_p), (got, got_p) = ref, got
            out[r['mode']] = dict(labels_equal=float((ref == got).float().mean()),
                                  max_abs_prob_diff=float((ref_p - got_p).abs().max()))
        else:
            out[r['mode']] = dict(labels_equal=float((ref == got).float().mean()))
    return out


def main_side(args, argv) -> list:
    import tempfile

    from declip_mm.benchmarking import matmul_rate
    device = torch.device(args.device)
    modes = args.modes or ['default', 'reference']
    if 'reference' not in modes:
        sys.exit('--modes must include reference (the ratios are relative to it)')
    rate, _ = matmul_rate(device)
    print(f'fp32 matmul rate after warm-up: {rate / 1e9:.0f} GFLOP/s', flush=True)
    results = []
    with tempfile.TemporaryDirectory() as check_dir:
        for rnd in range(args.rounds):  # A, B, A, B: each measurement in its own process
            for mode in modes:
                cmd = [sys.executable, os.path.abspath(__file__), *argv, '--_child', 'case_side',
                       mode, '--_check-dir', check_dir] + (['--_first'] if rnd == 0 else [])
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    sys.exit(out.stderr)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                res['round'], res['_first'] = rnd, rnd == 0
                results.append(res)
                print(f"round {rnd} {mode}: runs {', '.join(f'{t:.2f}' for t in res['runs_s'])} s,"
                      f" peak {res['peak_mib']:.0f} MiB", flush=True)
        agreement = _compare_checks(args.what, results, check_dir)
    rate_end, _ = matmul_rate(device)
    summary = {}
    for mode in modes:
        rs = [r for r in results if r['mode'] == mode]
        flops = next(r['flops'] for r in rs if r['_first'])
        med = statistics.median(t for r in rs for t in r['runs_s'])
        tensor = next(r['tensor_peak_mib'] for r in rs if r['_first'])
        summary[mode] = dict(median_s=med, peak_mib=max(r['peak_mib'] for r in rs), flops=flops,
                             tensor_peak_mib=tensor)
    ref = summary['reference']
    mem = 'peak allocated' if device.type == 'cuda' else 'peak RSS'
    print(f'\nmatmul rate (fp32, after warm-up): {rate / 1e9:.0f} GFLOP/s at the start, '
          f'{rate_end / 1e9:.0f} at the end; {args.rounds} interleaved rounds of {args.runs} runs '
          f'after {args.warmup} warm-up, {torch.get_num_threads()} threads, {device}\n')
    print(f'| case | mode | median | speed-up vs reference | {mem} | vs reference | peak tensor memory '
          f'| vs reference | GFLOP | GFLOP/s | of matmul rate |\n' + '|---' * 11 + '|')
    for mode, s in summary.items():
        fps = s['flops'] / s['median_s']
        print(f"| {args.what} | {mode} | {s['median_s']:.2f} s | "
              f"{ref['median_s'] / s['median_s']:.2f}x | {s['peak_mib']:.0f} MiB | "
              f"{s['peak_mib'] / ref['peak_mib']:.0%} | {s['tensor_peak_mib']:.0f} MiB | "
              f"{s['tensor_peak_mib'] / ref['tensor_peak_mib']:.0%} | {s['flops'] / 1e9:.0f} | "
              f"{fps / 1e9:.0f} | {fps / rate:.0%} |")
    print('\nagreement with the reference mode:', json.dumps(agreement))
    report = dict(case=args.what, matmul_rate_flops=[rate, rate_end], summary=summary,
                  agreement=agreement, runs=results)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
    return [report]


def cases(args):
    if args.what == 'region_cls':
        return [('case_region_cls', 'all')]
    if args.what == 'train_step':
        return [('case_train_step', d) for d in args.teacher_dtypes]
    if args.what == 'large_image':
        return [('case_large_image', 'all')]
    if args.what == 'infer_api':
        modes = args.modes or ['lazy']
        if set(modes) - {'lazy', 'dense'}:
            sys.exit(f'infer_api: --modes are lazy and / or dense, got {modes}')
        return [('case_infer_api', m) for m in modes]
    if args.what == 'segmentor':
        return [('case_segmentor', b) for b in args.batch_sizes]
    return [('case_backbone', m) for m in ('vanilla', 'csa')]


WHATS = SIDE_BY_SIDE + ('segmentor', 'backbone', 'train_step', 'region_cls', 'large_image',
                        'infer_api', 'proxy')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('what', choices=WHATS)
    p.add_argument('--model-name', default='EVA02-B-16')
    p.add_argument('--size', type=int, nargs=2, default=[448, 597], metavar=('H', 'W'))
    p.add_argument('--runs', type=int, default=None,
                   help='timed runs per process (train: 2, infer / catseg: 3, others: 5)')
    p.add_argument('--num-classes', type=int, default=None,
                   help='classes (train/infer/catseg: 150, others: 21)')
    p.add_argument('--batch-sizes', type=int, nargs='+', default=[16, 1],
                   help='segmentor: window batch sizes to compare')
    p.add_argument('--vfm-arch', default='dinov2_vitb14_reg')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--teacher-dtypes', nargs='+', default=['fp32'], choices=['fp32', 'bf16'],
                   help='train_step: teacher precision(s) to compare')
    p.add_argument('--regions', type=int, default=10, help='region_cls: segments of the image')
    p.add_argument('--modes', nargs='+', default=None,
                   help=f'train/infer/catseg: modes to interleave (default: default reference; '
                        f'train also: {", ".join(TRAIN_MODES)}); infer_api: lazy (default) '
                        f'and / or dense (also every class at full size, res.probs)')
    p.add_argument('--whole', action='store_true',
                   help="infer_api: mode='whole' instead of the config's protocol")
    p.add_argument('--rounds', type=int, default=2, help='train/infer/catseg: interleaved rounds')
    p.add_argument('--warmup', type=int, default=1, help='train/infer/catseg: untimed calls')
    p.add_argument('--optimizer', default='fused', choices=['fused', 'torch'],
                   help="train: the default mode's AdamW (the reference keeps torch's default choice)")
    p.add_argument('--ori', type=int, nargs=2, default=None, metavar=('H', 'W'),
                   help='infer: original size the labels are produced at (default --size)')
    p.add_argument('--catseg-size', type=int, default=384)
    p.add_argument('--crop', type=int, default=336, help='proxy: window (ProxyCLIP: 336)')
    p.add_argument('--stride', type=int, default=112, help='proxy: window stride (112)')
    p.add_argument('--tiny', action='store_true', help='proxy: tiny random towers (tests)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--_check-dir', dest='_check_dir', default=None, help=argparse.SUPPRESS)
    p.add_argument('--_first', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--json', default=None, help='also write the results here')
    p.add_argument('--_child', nargs=2, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.num_classes is None:
        args.num_classes = 150 if args.what in SIDE_BY_SIDE else 21
    if args.runs is None:
        args.runs = 2 if args.what == 'train' else 5 if args.what not in SIDE_BY_SIDE else 3
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._child:
        fn, param = args._child
        param = int(param) if param.isdigit() else param
        print(json.dumps(globals()[fn](args, param)))
        return
    if args.what in SIDE_BY_SIDE:
        return main_side(args, argv if argv is not None else sys.argv[1:])
    if args.what == 'proxy':
        return main_proxy(args, argv if argv is not None else sys.argv[1:])
    results = []
    for fn, param in cases(args):
        cmd = [sys.executable, os.path.abspath(__file__), *(argv if argv is not None else sys.argv[1:]),
               '--_child', fn, str(param)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"{res['case']}: median {res['median_s'] * 1000:.0f} ms, peak RSS "
              f"{res['peak_rss_mib']:.0f} MiB", flush=True)
    print('\n| case | model | input | median | peak RSS |\n|---|---|---|---|---|')
    for r in results:
        print(f"| {r['case']} | {r['model']} | {r['size'][0]}x{r['size'][1]} | "
              f"{r['median_s'] * 1000:.0f} ms | {r['peak_rss_mib']:.0f} MiB |")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
