"""The models keep one code path each: the benchmark's reference mode lives in
``declip_mm/benchmarking`` and is applied from outside (issue 22.5).

An AST scan of every file under ``declip_mm/models``: no import of ``declip_mm.benchmarking`` (the
benchmark depends on the models, never the reverse), no process-wide mode switch (the former
``ModeSwitch`` flags ``literal_rope`` / ``literal_heads`` / ``fast_rope_enabled``, ``global``
rebinding of module state) and no ``reference`` / ``literal`` parameters selecting a second path.
"""
import ast
import importlib.util
import pathlib
import re

import pytest

import declip_mm

PKG = pathlib.Path(declip_mm.__file__).parent
MODELS = PKG / 'models'
FORBIDDEN_MODULES = ('declip_mm.benchmarking', 'declip_mm.utils.mode_switch')
SWITCH_NAME = re.compile(r'ModeSwitch|^literal_|fast_rope|^reference_mode')
SWITCH_PARAMS = {'reference', 'literal'}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool):
    """Absolute names of everything ``tree`` imports (relative imports resolved against
    ``module``; ``from a import b`` yields ``a`` and ``a.b``)."""
    package = module if is_package else module.rpartition('.')[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = '.'.join(anchor + ([base] if base else []))
            yield base
            yield from (f'{base}.{a.name}' for a in node.names)


def switch_uses(tree: ast.AST):
    """(line, what) of every switch-like construct in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            yield node.lineno, f'global {", ".join(node.names)}'
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if SWITCH_NAME.search(node.name):
                yield node.lineno, f'def {node.name}'
            args = node.args
            for a in args.posonlyargs + args.args + args.kwonlyargs:
                if a.arg in SWITCH_PARAMS:
                    yield node.lineno, f'{node.name}({a.arg}=...)'
        elif isinstance(node, ast.Name) and SWITCH_NAME.search(node.id):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute) and SWITCH_NAME.search(node.attr):
            yield node.lineno, node.attr
        elif isinstance(node, ast.alias) and SWITCH_NAME.search(node.name.rpartition('.')[2]):
            yield getattr(node, 'lineno', 0), f'import {node.name}'


def scan(path: pathlib.Path, text=None):
    """Problems of one models file (or of ``text`` placed there): forbidden imports and switch-like
    constructs."""
    tree = ast.parse(path.read_text() if text is None else text, filename=str(path))
    problems = [f'imports {name}' for name in imported_modules(tree, _module_name(path),
                                                              path.name == '__init__.py')
                if name.startswith(FORBIDDEN_MODULES)]
    return problems + [f'line {line}: {what}' for line, what in switch_uses(tree)]


FILES = sorted(MODELS.rglob('*.py'))


def test_the_scan_covers_the_models():
    assert len(FILES) > 40 and MODELS / 'heads' / 'guided_linear.py' in FILES


@pytest.mark.parametrize('path', FILES, ids=lambda p: str(p.relative_to(MODELS)))
def test_models_file_has_no_benchmark_import_or_switch(path):
    assert scan(path) == []


def test_mode_switch_module_is_gone():
    assert importlib.util.find_spec('declip_mm.utils.mode_switch') is None


@pytest.mark.parametrize('source,found', [
    ('from ...benchmarking import literal_rope\n', 'imports declip_mm.benchmarking'),
    ('from ... import benchmarking\n', 'imports declip_mm.benchmarking'),
    ('import declip_mm.benchmarking.reference_heads as r\n', 'imports declip_mm.benchmarking'),
    ('from ...utils.mode_switch import ModeSwitch\n', 'imports declip_mm.utils.mode_switch'),
    ('_LITERAL = ModeSwitch()\n', 'ModeSwitch'),
    ('def f(x, reference: bool = False):\n    return x\n', 'f(reference=...)'),
    ('def f(x, *, literal=False):\n    return x\n', 'f(literal=...)'),
    ('def g():\n    global _ON\n    _ON = True\n', 'global _ON'),
    ('def fast_rope_enabled():\n    return True\n', 'def fast_rope_enabled'),
    ('y = x if literal_heads_enabled() else z\n', 'literal_heads_enabled'),
])
def test_the_scan_finds_planted_switches(source, found):
    """Each construct, appended to a models file's text, is reported."""
    target = MODELS / 'heads' / 'guided_linear.py'
    problems = scan(target, target.read_text() + '\n' + source)
    assert any(found in p for p in problems), problems
    assert scan(target) == []
