#!/usr/bin/env python
"""Run the eight training-free benchmarks and print the table (Markdown), also written as CSV/JSON.

    python tools/eval_all.py [CHECKPOINT] --data-root data [--work-dir work_dirs/eval_all]
                             [--benchmarks voc21 context60 ...] [--cfg-options k=v ...]
                             [--no-share] [--text-cache-dir DIR | none]

Every benchmark uses its config in configs/training_free/ (protocol of docs/method.md §4). ``--data-root`` is
the folder holding the datasets in their standard layouts (see docs/datasets.md); each config's
``data_root`` is re-rooted below it. ``--cfg-options`` apply to every config (e.g. tiny models).

VOC21/VOC20, Context60/Context59 and COCO-Object/COCO-Stuff read the same images with the same
resize: each pair runs image by image side by side and the backbone features of a window are
computed once and reused (only when the input tensors and the backbones are bit-identical, so the
numbers are exactly those of separate runs; ``--no-share`` runs them one after the other). Results
are written after every benchmark, to this run's own ``results_<YYYYmmdd-HHMMSS>.{md,csv,json}`` in
the work dir (an earlier run's tables are never overwritten); a failing benchmark is marked in the
table with its error and the others carry on. Class-name embeddings are kept in
``--text-cache-dir`` (per model, text weights file, templates and names).
"""
import argparse
import copy
import csv
import json
import os
import os.path as osp
import time
import traceback

from mmengine.config import Config, DictAction

BENCHMARKS = ['voc21', 'context60', 'coco_object', 'voc20', 'context59', 'coco_stuff164k',
              'cityscapes', 'ade20k']
TITLES = dict(voc21='VOC21', context60='Context60', coco_object='Object', voc20='VOC20',
              context59='Context59', coco_stuff164k='Stuff', cityscapes='City', ade20k='ADE')
# benchmarks reading the same images through the same preprocessing (their features are shared)
GROUPS = [('voc21', 'voc20'), ('context60', 'context59'), ('coco_object', 'coco_stuff164k')]
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def config_path(name: str, config_dir: str) -> str:
    hits = [f for f in sorted(os.listdir(config_dir)) if f.endswith('.py') and f'_{name}-' in f]
    if len(hits) != 1:
        raise FileNotFoundError(f'expected one config for {name} in {config_dir}, found {hits}')
    return osp.join(config_dir, hits[0])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='declip_mm: evaluate the eight training-free benchmarks')
    p.add_argument('checkpoint', nargs='?', default=None, help='CLIP / DeCLIP checkpoint (optional)')
    p.add_argument('--data-root', default='data', help='folder holding the datasets (default: data)')
    p.add_argument('--config-dir', default=osp.join(ROOT, 'configs', 'training_free'))
    p.add_argument('--benchmarks', nargs='+', default=BENCHMARKS, choices=BENCHMARKS)
    p.add_argument('--work-dir', default='work_dirs/eval_all')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='applied to every config')
    p.add_argument('--no-share', action='store_true',
                   help='run every benchmark on its own (no shared backbone features)')
    p.add_argument('--text-cache-dir', default=osp.join('work_dirs', 'text_embedding_cache'),
                   help="class-embedding cache folder ('none' to switch it off)")
    return p.parse_args(argv)


def format_table(results: dict, errors: dict = None) -> str:
    """Markdown table; a failed benchmark shows ``failed`` (its error is listed below the table)
    and the average is then over the finished ones (marked ``*``)."""
    errors = errors or {}
    cols = [b for b in BENCHMARKS if b in results or b in errors]
    head = '| ' + ' | '.join(TITLES[c] for c in cols) + ' | Avg |'
    sep = '|' + '---|' * (len(cols) + 1)
    vals = [results[c] for c in cols if c in results]
    avg = sum(vals) / len(vals) if vals else float('nan')
    cells = [f'{results[c]:.1f}' if c in results else 'failed' for c in cols]
    star = '*' if errors else ''
    lines = [head, sep, '| ' + ' | '.join(cells) + f' | {avg:.1f}{star} |']
    if errors:
        lines.append('')
        lines.append('\\* average over the finished benchmarks only.')
        lines += [f'- {TITLES[c]} failed: {errors[c]}' for c in cols if c in errors]
    return '\n'.join(lines)


def write_results(prefix: str, results: dict, errors: dict, details: dict, checkpoint) -> str:
    """Write ``<prefix>.{json,csv,md}``, this run's own files (called after every benchmark: a later
    failure loses nothing)."""
    table = format_table(results, errors)
    with open(prefix + '.json', 'w') as f:
        json.dump(dict(mIoU=results, errors=errors, details=details, checkpoint=checkpoint), f,
                  indent=2)
    with open(prefix + '.csv', 'w', newline='') as f:
        w = csv.writer(f)
        cols = [b for b in BENCHMARKS if b in results or b in errors]
        w.writerow([TITLES[c] for c in cols] + ['Avg'])
        w.writerow([f'{results[c]:.2f}' if c in results else 'failed' for c in cols]
                   + [f'{sum(results.values()) / len(results):.2f}' if results else 'nan'])
    with open(prefix + '.md', 'w') as f:
        f.write(table + '\n')
    return table


def units(names, share: bool):
    """The benchmarks in run order: pairs of GROUPS together (when sharing), others alone."""
    out, seen = [], set()
    for name in names:
        if name in seen:
            continue
        group = [name]
        if share:
            for g in GROUPS:
                if name in g:
                    group = [n for n in g if n in names]
        seen.update(group)
        out.append(group)
    return out


def build_cfg(name: str, args) -> tuple:
    path = config_path(name, args.config_dir)
    cfg = Config.fromfile(path)
    if args.cfg_options:
        cfg.merge_from_dict(copy.deepcopy(args.cfg_options))
    if args.text_cache_dir and args.text_cache_dir.lower() != 'none':
        cfg.model['embedding_cache_dir'] = args.text_cache_dir
    # re-root: 'data/VOCdevkit/VOC2012' -> '<data-root>/VOCdevkit/VOC2012'
    rel = cfg.test_dataloader.dataset.data_root
    rel = rel[len('data/'):] if rel.startswith('data/') else rel
    cfg.test_dataloader.dataset.data_root = osp.join(args.data_root, rel)
    return cfg, path


def main(argv=None):
    args = parse_args(argv)
    import declip_mm  # noqa: F401
    from declip_mm.apis import unwrap_model
    from declip_mm.tools_support import SharedFeatureCache, prepare_test_runner, run_in_lockstep
    from declip_mm.utils.output_files import reserve_run_prefix
    # this run's tables: results_<date-time>.{md,csv,json}, never an earlier run's files
    prefix = reserve_run_prefix(args.work_dir, 'results', ('md', 'csv', 'json'))
    results, errors, details = {}, {}, {}
    t_all = time.time()
    order = {n: i for i, n in enumerate(args.benchmarks, 1)}
    total = len(args.benchmarks)

    def fail(name, err):
        errors[name] = f'{type(err).__name__}: {err}'.splitlines()[0][:300]
        details[name] = dict(error=errors[name], traceback=''.join(
            traceback.format_exception(type(err), err, err.__traceback__))[-4000:])
        print(f'[{order[name]}/{total}] {name}: FAILED ({errors[name]}); carrying on', flush=True)
        write_results(prefix, results, errors, details, args.checkpoint)

    for group in units(args.benchmarks, not args.no_share):
        runners, names, paths = [], [], []
        t0 = time.time()
        cache = SharedFeatureCache() if len(group) > 1 else None
        for name in group:
            try:
                cfg, path = build_cfg(name, args)
                print(f'[{order[name]}/{total}] {name}: {osp.basename(path)} on '
                      f'{cfg.test_dataloader.dataset.data_root}'
                      + (f' (features shared with {", ".join(n for n in group if n != name)})'
                         if cache is not None else ''), flush=True)
                runner = prepare_test_runner(cfg, args.checkpoint, osp.join(args.work_dir, name),
                                             path)
            except Exception as err:  # noqa: BLE001  (marked in the table; the others carry on)
                fail(name, err)
                continue
            if cache is not None and hasattr(unwrap_model(runner.model), 'feature_cache'):
                unwrap_model(runner.model).feature_cache = cache
            runners.append(runner)
            names.append(name)
            paths.append(path)

        def done(i, metrics, err, names=names, paths=paths, t0=t0):
            name = names[i]
            if err is not None:
                return fail(name, err)
            results[name] = float(metrics['mIoU'])
            details[name] = dict({k: float(v) for k, v in metrics.items()},
                                 seconds=round(time.time() - t0, 1), config=paths[i])
            print(f'[{order[name]}/{total}] {name}: mIoU {results[name]:.2f} '
                  f'({time.time() - t0:.0f} s)', flush=True)
            write_results(prefix, results, errors, details, args.checkpoint)

        run_in_lockstep(runners, cache, done)
        if cache is not None:
            print(f'shared features: {cache.computed} backbone passes, {cache.reused} reused',
                  flush=True)
    table = write_results(prefix, results, errors, details, args.checkpoint)
    print('\n' + table + '\n')
    print(f'wrote {prefix}.{{md,csv,json}} ({time.time() - t_all:.0f} s in all)')
    return {b: results[b] for b in args.benchmarks if b in results}


if __name__ == '__main__':
    main()
