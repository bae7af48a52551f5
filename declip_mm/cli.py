"""Console entry points: ``declip-train``, ``declip-test``, ``declip-demo``, ... run the shipped tools.

Each command runs ``tools/<script>`` exactly as ``python tools/<script> ARGS`` does in a checkout,
from any directory: the script is taken from the installed package (``declip_mm/.mim/tools``) or
from the checkout this package sits in (:mod:`declip_mm.utils.package_files`). The commands that
take a config as their first argument (train, test) also accept a config *name*
(``declip-test declip_eva02-b16_training-free_ade20k-448``): when that argument is not an existing
file it is looked up among the shipped configs. ``declip-configs`` lists the names.
``declip-install-mmcv`` is a plain script (``scripts/``), not an entry point: importing this module
imports ``declip_mm``, which needs the mmcv it would install.
"""
from __future__ import annotations

import os.path as osp
import runpy
import sys
from typing import List, Optional

from .utils.package_files import config_names, config_root, find_config, tool_path

__all__ = ['COMMANDS', 'run_tool', 'main_configs']

#: console command -> (tool script, whether its first positional argument is a config)
COMMANDS = {
    'declip-train': ('train.py', True),
    'declip-test': ('test.py', True),
    'declip-demo': ('demo.py', False),
    'declip-web': ('web_demo.py', False),
    'declip-eval-all': ('eval_all.py', False),
    'declip-eval-catseg': ('eval_catseg.py', False),
    'declip-convert': ('convert_checkpoint.py', False),
    'declip-quickstart': ('quickstart.py', False),
    'declip-benchmark': ('benchmark.py', False),
    'declip-gradio': ('gradio_demo.py', False),  # needs the [demo] extra
}


def _resolve_config_arg(argv: List[str]) -> List[str]:
    """Replace the first positional argument by the config's path when it is a config name."""
    for i, arg in enumerate(argv):
        if arg.startswith('-'):
            return argv  # options first (e.g. -h): leave everything to the tool's parser
        if osp.isfile(arg):
            return argv
        try:
            path = find_config(arg)
        except FileNotFoundError:
            return argv  # the tool reports a missing file in its own words
        return argv[:i] + [path] + argv[i + 1:]
    return argv


def run_tool(script: str, argv: Optional[List[str]] = None, config_first: bool = False) -> int:
    """Run ``tools/<script>`` with ``argv`` as its command line; returns the exit status.

    The script runs in this interpreter as ``__main__`` (``sys.argv[0]`` is the script and its
    folder leads ``sys.path``, as with ``python tools/<script>``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if config_first:
        argv = _resolve_config_arg(argv)
    path = tool_path(script)
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [path, *argv]
    sys.path.insert(0, osp.dirname(path))
    try:
        runpy.run_path(path, run_name='__main__')
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    return 0


def _entry(command: str):
    script, config_first = COMMANDS[command]

    def main() -> int:
        return run_tool(script, config_first=config_first)
    main.__name__ = main.__qualname__ = 'main_' + command.replace('-', '_')
    main.__doc__ = f'``{command} ARGS`` = ``python tools/{script} ARGS``.'
    return main


main_train = _entry('declip-train')
main_test = _entry('declip-test')
main_demo = _entry('declip-demo')
main_web = _entry('declip-web')
main_eval_all = _entry('declip-eval-all')
main_eval_catseg = _entry('declip-eval-catseg')
main_convert = _entry('declip-convert')
main_quickstart = _entry('declip-quickstart')
main_benchmark = _entry('declip-benchmark')
main_gradio = _entry('declip-gradio')


def main_configs(argv: Optional[List[str]] = None) -> int:
    """``declip-configs``: print every config name; ``--root``: the configs folder;
    ``--path NAME``: the file of one config."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['--root']:
        print(config_root())
    elif argv[:1] == ['--path'] and len(argv) == 2:
        print(find_config(argv[1]))
    elif not argv:
        print('\n'.join(config_names()))
    else:
        print('usage: declip-configs [--root | --path NAME]', file=sys.stderr)
        return 2
    return 0


#: entry-point lines for setup.py (``console_scripts``)
CONSOLE_SCRIPTS = [f'{cmd} = declip_mm.cli:main_{cmd[len("declip-"):].replace("-", "_")}'
                   for cmd in COMMANDS] + ['declip-configs = declip_mm.cli:main_configs']
