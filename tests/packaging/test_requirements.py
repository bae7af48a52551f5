"""Declared dependency ranges: what setup.py publishes, the tested set, and the installed versions."""
import ast
import importlib.metadata as md
import os.path as osp
import re

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from declip_mm.utils.dependency_check import MMCV_RANGE, RANGES

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def reqs(name):
    out = []
    for line in open(osp.join(ROOT, 'requirements', name)):
        line = line.split('#', 1)[0].strip()
        if line:
            out.append(Requirement(line))
    return out


def canon(name):
    return re.sub(r'[-_.]+', '-', name).lower()


RUNTIME = reqs('runtime.txt')
CONSTRAINTS = {canon(r.name): r for r in reqs('constraints.txt')}


def test_no_exact_pins_and_upper_bounds_at_the_next_major():
    for r in RUNTIME + reqs('mminstall.txt'):
        ops = {s.operator for s in r.specifier}
        assert '==' not in ops and '===' not in ops, r
        if canon(r.name) in CONSTRAINTS:  # tested: the oldest passing version up to the next major
            (low, ) = [Version(s.version) for s in r.specifier if s.operator == '>=']
            (high, ) = [Version(s.version) for s in r.specifier if s.operator == '<']
            (tested, ) = [Version(s.version) for s in CONSTRAINTS[canon(r.name)].specifier]
            assert low <= tested < high, r
            if r.name == 'mmcv':
                assert high == Version('2.2.0')  # mmseg 1.2.2 / mmdet 3.3.0 refuse mmcv >= 2.2
            else:
                assert high == Version(f'{tested.major + 1}'), r


def test_setuptools_is_not_a_runtime_requirement():
    names = {canon(r.name) for r in RUNTIME}
    assert 'setuptools' not in names
    assert 'setuptools' in CONSTRAINTS and CONSTRAINTS['setuptools'].specifier == SpecifierSet('<81')


def test_import_check_bounds_are_the_declared_lower_bounds():
    by_name = {canon(r.name): r for r in RUNTIME}
    for dist, (low, high) in RANGES.items():
        assert by_name[canon(dist)].specifier == SpecifierSet(f'>={low},<{high}'), dist
    (mmcv, ) = [r for r in reqs('mminstall.txt') if r.name == 'mmcv']
    assert mmcv.specifier == SpecifierSet(f'>={MMCV_RANGE[0]},<{MMCV_RANGE[1]}')


def test_tested_versions_lie_in_the_declared_ranges():
    for r in RUNTIME + reqs('mminstall.txt'):
        pin = CONSTRAINTS.get(canon(r.name))
        if pin is not None and any(s.operator == '==' for s in pin.specifier):
            (exact, ) = [s.version for s in pin.specifier if s.operator == '==']
            assert r.specifier.contains(exact, prereleases=True), (r, exact)


@pytest.mark.parametrize('req', RUNTIME + reqs('mminstall.txt'), ids=str)
def test_installed_versions_satisfy_the_ranges(req):
    dist = 'mmcv' if req.name == 'mmcv' else req.name
    assert req.specifier.contains(md.version(dist), prereleases=True)


def test_python_requires_can_be_met():
    """python_requires is not below what the lowest allowed timm / the tested torch support."""
    tree = ast.parse(open(osp.join(ROOT, 'setup.py')).read())
    (kw, ) = [k for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'setup'
              for k in n.keywords if k.arg == 'python_requires']
    declared = SpecifierSet(kw.value.value)
    for dist in ('timm', 'torch'):
        needs = SpecifierSet(md.metadata(dist)['Requires-Python'] or '')
        for minor in range(8, 15):
            v = f'3.{minor}'
            if declared.contains(v):
                assert needs.contains(v), (dist, v)
    import sys
    assert declared.contains(f'{sys.version_info.major}.{sys.version_info.minor}')


def test_setup_metadata_declares_the_ranges_and_the_environment_meets_them(tmp_path):
    """The metadata setup.py writes (egg_info, as a build does) carries runtime.txt's ranges, and the
    installed versions satisfy each of them."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info', '--egg-base', str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (info, ) = tmp_path.glob('*.egg-info')
    text = (info / 'requires.txt').read_text()
    base = text.split('\n[', 1)[0]  # requirements before the first [extra] section
    declared = [Requirement(ln) for ln in base.splitlines() if ln.strip()]
    assert [str(r) for r in declared] == [str(r) for r in RUNTIME]
    for r in declared:
        assert r.specifier.contains(md.version(r.name), prereleases=True), (r, md.version(r.name))
    assert 'Requires-Python: >=3.10' in (info / 'PKG-INFO').read_text()
