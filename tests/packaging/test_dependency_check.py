"""Import-time dependency checks: versions and mmcv's compiled ops, with messages naming the fix."""
import importlib.util
import sys

import pytest

from declip_mm.utils.dependency_check import RANGES, check_dependencies, dependency_problems

GOOD = {'timm': '1.0.31', 'open_clip_torch': '3.3.0', 'mmcv': '2.1.0'}


def versions(**over):
    table = dict(GOOD, **over)
    return lambda dist: table.get(dist)


def spec_without(*missing):
    return lambda name: None if name in missing else object()


def test_tested_environment_passes():
    assert dependency_problems(versions(), spec_without()) == []
    check_dependencies()  # the environment running the tests


@pytest.mark.parametrize('ver,bad', [('1.0.25', True), ('1.0.26', False), ('0.9.16', True),
                                     ('1.0.26rc1', True), ('1.1.0', False)])
def test_timm_lower_bound(ver, bad):
    problems = dependency_problems(versions(timm=ver), spec_without())
    assert bool(problems) == bad
    if bad:
        (msg, ) = problems
        assert f'timm {ver} is older than 1.0.26' in msg and "'head_dim'" in msg
        assert "pip install 'timm>=1.0.26,<2'" in msg


def test_open_clip_lower_bound():
    (msg, ) = dependency_problems(versions(open_clip_torch='2.31.0'), spec_without())
    assert 'open_clip_torch 2.31.0 is older than 2.32' in msg
    assert "pip install 'open_clip_torch>=2.32,<4'" in msg
    assert dependency_problems(versions(open_clip_torch='2.32.0'), spec_without()) == []


def test_missing_mmcv_names_both_fixes():
    (msg, ) = dependency_problems(versions(), spec_without('mmcv'))
    assert msg.startswith('mmcv is not installed')
    assert 'bash tools/install_mmcv.sh' in msg and 'declip-install-mmcv' in msg
    assert "mim install 'mmcv>=2.0.0rc4,<2.2.0'" in msg


def test_mmcv_lite_without_ops():
    lite = lambda d: {'mmcv-lite': '2.1.0'}.get(d, GOOD.get(d) if d != 'mmcv' else None)  # noqa: E731
    (msg, ) = dependency_problems(lite, spec_without('mmcv._ext'))
    assert 'mmcv 2.1.0 has no compiled ops' in msg and 'mmcv-lite' in msg
    assert 'bash tools/install_mmcv.sh' in msg


@pytest.mark.parametrize('ver,bad', [('2.2.0', True), ('1.7.2', True), ('2.0.0rc4', False), ('2.1.0', False)])
def test_mmcv_range(ver, bad):
    problems = dependency_problems(versions(mmcv=ver), spec_without())
    assert bool(problems) == bad
    if bad:
        assert f'mmcv {ver} is outside [2.0.0rc4, 2.2.0)' in problems[0]


def test_all_problems_in_one_import_error():
    with pytest.raises(ImportError) as e:
        check_dependencies(version_of=versions(timm='1.0.20'), find_spec=spec_without('mmcv'))
    text = str(e.value)
    assert 'timm 1.0.20' in text and 'mmcv is not installed' in text


def test_import_declip_mm_runs_the_check(monkeypatch):
    """A fresh ``import declip_mm`` with a too-old timm fails with the message, not later."""
    import importlib.metadata as md
    real = md.version
    monkeypatch.setattr(md, 'version', lambda d: '1.0.25' if d == 'timm' else real(d))
    saved = {k: v for k, v in sys.modules.items() if k == 'declip_mm' or k.startswith('declip_mm.')}
    for k in saved:
        monkeypatch.delitem(sys.modules, k)
    try:
        with pytest.raises(ImportError, match="timm 1.0.25 is older than 1.0.26"):
            importlib.import_module('declip_mm')
    finally:
        for k in [k for k in sys.modules if k == 'declip_mm' or k.startswith('declip_mm.')]:
            del sys.modules[k]
        sys.modules.update(saved)
    assert RANGES['timm'][0] == '1.0.26'
    assert importlib.util.find_spec('declip_mm') is not None
