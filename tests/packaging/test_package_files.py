"""Config / tool lookup (installed package first, checkout second) and the console entry points."""
import ast
import os
import os.path as osp
import sys

import pytest

from declip_mm import cli
from declip_mm.utils import package_files as pf

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def make_tree(base, configs, tools=(), setup_py=False):
    for rel in configs:
        p = base / 'configs' / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f'# {base.name}\nx = {rel!r}\n')
    for rel, text in tools:
        p = base / 'tools' / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    if setup_py:
        (base / 'setup.py').write_text('')


@pytest.fixture
def fake_install(tmp_path, monkeypatch):
    """A site-packages with declip_mm/.mim and, beside the package, a stray top-level configs/."""
    site = tmp_path / 'site-packages'
    mim = site / 'declip_mm' / '.mim'
    make_tree(mim, ['fam/a-1.py', 'fam/b-2.py', '_base_/a-1.py'], [('t.py', '')])
    make_tree(site, ['fam/stray.py'])  # another package's site-packages/configs: never ours
    monkeypatch.setattr(pf, 'MIM_DIR', str(mim))
    monkeypatch.setattr(pf, 'CHECKOUT_DIR', str(site))
    return site, mim


def test_installed_package_is_searched_and_stray_site_packages_configs_is_not(fake_install):
    site, mim = fake_install
    assert pf.data_roots() == [str(mim)]
    assert pf.config_root() == str(mim / 'configs')
    assert pf.find_config('a-1') == str(mim / 'configs' / 'fam' / 'a-1.py')  # not the _base_ one
    assert pf.find_config('fam/b-2.py') == str(mim / 'configs' / 'fam' / 'b-2.py')
    assert pf.config_names() == ['a-1', 'b-2']
    with pytest.raises(FileNotFoundError, match=r"'stray' is neither a file nor a config name.*a-1"):
        pf.find_config('stray')


def test_package_first_checkout_second(tmp_path, monkeypatch):
    mim, checkout = tmp_path / 'pkg' / '.mim', tmp_path / 'checkout'
    make_tree(mim, ['f/only-installed.py', 'f/both.py'])
    make_tree(checkout, ['f/only-checkout.py', 'f/both.py'], [('x.py', '')], setup_py=True)
    monkeypatch.setattr(pf, 'MIM_DIR', str(mim))
    monkeypatch.setattr(pf, 'CHECKOUT_DIR', str(checkout))
    assert pf.data_roots() == [str(mim), str(checkout)]
    assert pf.find_config('both').startswith(str(mim))
    assert pf.find_config('only-installed').startswith(str(mim))
    assert pf.tool_path('x.py') == str(checkout / 'tools' / 'x.py')  # the package has no tools/
    # a checkout alone (editable install: no .mim)
    monkeypatch.setattr(pf, 'MIM_DIR', str(tmp_path / 'absent'))
    assert pf.find_config('both').startswith(str(checkout))
    assert pf.find_config('only-checkout').startswith(str(checkout))
    with pytest.raises(FileNotFoundError, match='neither in the installed package'):
        pf.tool_path('missing.py')


def test_this_checkout_resolves_its_configs_and_names_are_unique():
    names = pf.config_names()
    assert 'declip_eva02-b16_training-free_ade20k-448' in names and len(names) > 40
    stems = [osp.splitext(f)[0] for d, _, fs in os.walk(pf.config_root()) if '_base_' not in d
             for f in fs if f.endswith('.py')]
    assert len(stems) == len(set(stems))  # a name identifies one config
    for n in names:
        assert osp.splitext(osp.basename(pf.find_config(n)))[0] == n


def test_inferencer_and_catseg_suite_use_the_package_lookup(fake_install, tmp_path):
    from declip_mm.apis.inferencer import resolve_config
    from declip_mm.tools_support.catseg_suite import catseg_config
    site, mim = fake_install
    cfg = resolve_config('b-2')
    assert cfg.filename == str(mim / 'configs' / 'fam' / 'b-2.py') and cfg.x == 'fam/b-2.py'
    (mim / 'configs' / 'catseg').mkdir()
    (mim / 'configs' / 'catseg' / 'catseg_openai-vitb16_ade20k-640x640.py').write_text('y = 1\n')
    assert catseg_config('ade20k', 'openai-vitb16').startswith(str(mim))


def test_console_scripts_in_setup_match_cli():
    tree = ast.parse(open(osp.join(ROOT, 'setup.py')).read())
    (node, ) = [n for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and getattr(n.targets[0], 'id', None) == 'CONSOLE_SCRIPTS']
    declared = ast.literal_eval(node.value)
    assert declared == cli.CONSOLE_SCRIPTS
    for line in declared:
        name, target = (s.strip() for s in line.split('='))
        assert callable(getattr(cli, target.split(':')[1]))
        if name in cli.COMMANDS:  # every tool script exists in this checkout
            assert osp.isfile(osp.join(ROOT, 'tools', cli.COMMANDS[name][0]))


def test_run_tool_runs_the_script_as_main_with_a_config_name(fake_install, capsys):
    site, mim = fake_install
    (mim / 'tools' / 'echo.py').write_text(
        'import sys\nprint("ARGV", sys.argv)\nprint("PATH0", sys.path[0])\nprint("NAME", __name__)\n')
    before = list(sys.path), list(sys.argv)
    assert cli.run_tool('echo.py', ['b-2', '--x', 'a-1'], config_first=True) == 0
    out = capsys.readouterr().out
    script = str(mim / 'tools' / 'echo.py')
    # only the first positional argument is a config; later ones are left as they are
    assert f"ARGV {[script, str(mim / 'configs' / 'fam' / 'b-2.py'), '--x', 'a-1']}" in out
    assert f'PATH0 {mim / "tools"}' in out and 'NAME __main__' in out
    assert (list(sys.path), list(sys.argv)) == before
    cli.run_tool('echo.py', ['not-a-config', 'b-2'], config_first=True)
    assert "'not-a-config', 'b-2'" in capsys.readouterr().out
    cli.run_tool('echo.py', ['-h', 'b-2'], config_first=True)
    assert "'-h', 'b-2'" in capsys.readouterr().out
    cli.run_tool('echo.py', ['b-2'], config_first=False)
    assert "'b-2'" in capsys.readouterr().out


def test_declip_configs_command(fake_install, capsys):
    site, mim = fake_install
    assert cli.main_configs([]) == 0
    assert capsys.readouterr().out.split() == ['a-1', 'b-2']
    assert cli.main_configs(['--path', 'a-1']) == 0
    assert capsys.readouterr().out.strip() == str(mim / 'configs' / 'fam' / 'a-1.py')
    assert cli.main_configs(['--root']) == 0
    assert capsys.readouterr().out.strip() == str(mim / 'configs')
    assert cli.main_configs(['--bogus']) == 2


def test_install_mmcv_script_locates_the_package_without_importing_it(tmp_path):
    """scripts/declip-install-mmcv runs the package's .mim/tools/install_mmcv.sh for its PYTHON."""
    import subprocess
    pkg = tmp_path / 'site' / 'declip_mm'
    (pkg / '.mim' / 'tools').mkdir(parents=True)
    (pkg / '__init__.py').write_text('raise ImportError("must not be imported")\n')
    log = tmp_path / 'log.txt'
    (pkg / '.mim' / 'tools' / 'install_mmcv.sh').write_text(f'echo "$PYTHON|$*" > {log}\n')
    fake = tmp_path / 'python'
    fake.write_text(f'#!/bin/sh\nPYTHONPATH={pkg.parent} exec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    script = osp.join(ROOT, 'scripts', 'declip-install-mmcv')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    run = dict(env=dict(env, PYTHON=str(fake)), capture_output=True, text=True, cwd=tmp_path)
    out = subprocess.run(['bash', script, '--x'], **run)
    assert out.returncode == 0, out.stderr
    assert log.read_text().strip() == f'{fake}|--x'
    (pkg / '.mim' / 'tools' / 'install_mmcv.sh').unlink()  # neither in the package nor a checkout
    out = subprocess.run(['bash', script], **run)
    assert out.returncode == 1 and 'install_mmcv.sh is neither in' in out.stderr
    fake.write_text('#!/bin/sh\necho\n')  # an interpreter that cannot find declip_mm
    out = subprocess.run(['bash', script], **run)
    assert out.returncode == 1 and 'declip_mm is not installed' in out.stderr


def test_setup_installs_the_install_mmcv_script():
    tree = ast.parse(open(osp.join(ROOT, 'setup.py')).read())
    (kw, ) = [k for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'setup'
              for k in n.keywords if k.arg == 'scripts']
    assert ast.literal_eval(kw.value) == ['scripts/declip-install-mmcv']
    assert 'scripts/declip-install-mmcv' in open(osp.join(ROOT, 'MANIFEST.in')).read()
