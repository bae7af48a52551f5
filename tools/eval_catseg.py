#!/usr/bin/env python
"""Run the three CAT-Seg benchmarks (ADE150, Pascal Context 59, Cityscapes; docs/catseg.md) and print the
mIoU table next to the published numbers (Markdown; also written as JSON).

    python tools/eval_catseg.py CHECKPOINT --data-root data [--variant declip-eva02-b16]
                                [--benchmarks ade20k context59 cityscapes] [--work-dir DIR]
                                [--cfg-options k=v ...] [--allow-untrained-head]

CHECKPOINT: a trained CAT-Seg segmentor checkpoint (``work_dirs/<train config>/iter_80000.pth``).
Configs: ``configs/catseg/catseg_<variant>_<benchmark>-640x640.py``; each config's ``data_root`` is
re-rooted below ``--data-root``; ``--cfg-options`` apply to every config. Each run writes its own
``results_<YYYYmmdd-HHMMSS>.{md,json}`` in the work dir after every benchmark; a benchmark that
fails (e.g. its dataset is missing) is listed under the table with its error and the others carry on.
Without CHECKPOINT (or with an image-tower one) the head is untrained: refused unless
``--allow-untrained-head``.
"""
import argparse
import copy
import json
import os.path as osp
import time

from mmengine.config import Config, DictAction


def parse_args(argv=None):
    from declip_mm.tools_support.catseg_suite import CATSEG_BENCHMARKS, CATSEG_VARIANTS
    p = argparse.ArgumentParser(description='declip_mm: evaluate the three CAT-Seg benchmarks')
    p.add_argument('checkpoint', nargs='?', default=None, help='CAT-Seg segmentor checkpoint')
    p.add_argument('--data-root', default='data', help='folder holding the datasets (default: data)')
    p.add_argument('--variant', default='declip-eva02-b16', choices=CATSEG_VARIANTS)
    p.add_argument('--benchmarks', nargs='+', default=list(CATSEG_BENCHMARKS),
                   choices=list(CATSEG_BENCHMARKS))
    p.add_argument('--work-dir', default='work_dirs/eval_catseg')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='applied to every config')
    p.add_argument('--allow-untrained-head', action='store_true',
                   help='evaluate without a trained CAT-Seg checkpoint (random head; smoke tests)')
    return p.parse_args(argv)


def write_results(prefix: str, results: dict, errors: dict, details: dict, args) -> str:
    """This run's ``<prefix>.{md,json}`` (rewritten after every benchmark: a later failure or a
    missing dataset loses nothing)."""
    from declip_mm.tools_support.catseg_suite import CATSEG_BENCHMARKS, format_catseg_table
    table = format_catseg_table(results, label=f'{args.variant} (this run)')
    if errors:
        table += '\n\n' + '\n'.join(f'- {CATSEG_BENCHMARKS[n]} not evaluated: {errors[n]}'
                                      for n in args.benchmarks if n in errors)
    with open(prefix + '.json', 'w') as f:
        json.dump(dict(mIoU=results, errors=errors, details=details, checkpoint=args.checkpoint,
                       variant=args.variant), f, indent=2)
    with open(prefix + '.md', 'w') as f:
        f.write(table + '\n')
    return table


def main(argv=None):
    args = parse_args(argv)
    import declip_mm  # noqa: F401
    from declip_mm.tools_support import prepare_test_runner
    from declip_mm.tools_support.catseg_suite import catseg_config
    from declip_mm.utils import mmengine_checkpoint_loading
    from declip_mm.utils.output_files import reserve_run_prefix
    # this run's tables: results_<date-time>.{md,json}, never an earlier run's files
    prefix = reserve_run_prefix(args.work_dir, 'results', ('md', 'json'))
    results, errors, details = {}, {}, {}
    total = len(args.benchmarks)
    for i, name in enumerate(args.benchmarks, 1):
        t0 = time.time()
        try:
            path = catseg_config(name, args.variant)
            cfg = Config.fromfile(path)
            if args.cfg_options:
                cfg.merge_from_dict(copy.deepcopy(args.cfg_options))
            if args.allow_untrained_head:
                cfg.allow_untrained_head = True
            rel = cfg.test_dataloader.dataset.data_root
            rel = rel[len('data/'):] if rel.startswith('data/') else rel
            cfg.test_dataloader.dataset.data_root = osp.join(args.data_root, rel)
            print(f'[{i}/{total}] {name}: {osp.basename(path)} on '
                  f'{cfg.test_dataloader.dataset.data_root}', flush=True)
            runner = prepare_test_runner(cfg, args.checkpoint, osp.join(args.work_dir, name), path)
            with mmengine_checkpoint_loading():
                metrics = runner.test()
        except Exception as err:  # noqa: BLE001  (reported; the other benchmarks carry on)
            errors[name] = f'{type(err).__name__}: {err}'.splitlines()[0][:300]
            details[name] = dict(error=errors[name])
            print(f'[{i}/{total}] {name}: FAILED ({errors[name]}); carrying on', flush=True)
        else:
            results[name] = float(metrics['mIoU'])
            details[name] = dict({k: float(v) for k, v in metrics.items()},
                                 seconds=round(time.time() - t0, 1), config=path)
        write_results(prefix, results, errors, details, args)
    table = write_results(prefix, results, errors, details, args)
    print('\n' + table + '\n')
    print(f'wrote {prefix}.{{md,json}}' + (f' ({len(errors)} of {total} benchmark(s) not '
                                         'evaluated, listed above)' if errors else ''))
    return results


if __name__ == '__main__':
    main()
