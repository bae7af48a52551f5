"""tools/dist_train.sh / dist_test.sh run the project's interpreter, not a bare ``python`` (24.8)."""
import os
import os.path as osp
import shutil
import subprocess

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPTS = ('dist_train.sh', 'dist_test.sh', 'python_for_tools.sh')


def fake_python(path, tag):
    """An executable that records which interpreter ran and with which arguments."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(f'#!/bin/sh\necho {tag} "$@" >> "$LOG"\n')
    os.chmod(path, 0o755)


@pytest.fixture
def checkout(tmp_path):
    """A copy of the scripts in a checkout with a .venv; 'python' / 'python3' on PATH are others."""
    (tmp_path / 'tools').mkdir()
    for name in SCRIPTS:
        shutil.copy(osp.join(ROOT, 'tools', name), tmp_path / 'tools' / name)
    fake_python(str(tmp_path / '.venv' / 'bin' / 'python'), 'dotvenv')
    for name in ('python', 'python3'):
        fake_python(str(tmp_path / 'bin' / name), 'system')
    fake_python(str(tmp_path / 'other' / 'bin' / 'python'), 'activated')
    return tmp_path


def run(checkout, script, args, **env):
    log = checkout / 'log.txt'
    if log.exists():
        log.unlink()
    base = {'PATH': f'{checkout / "bin"}:/usr/bin:/bin', 'LOG': str(log), 'HOME': str(checkout)}
    subprocess.run(['bash', str(checkout / 'tools' / script), *args], env={**base, **env},
                   check=True, timeout=30)
    return log.read_text().split()


def test_dist_scripts_use_the_venv(checkout):
    words = run(checkout, 'dist_train.sh', ['cfg.py', '2', '--resume'])
    assert words[:3] == ['dotvenv', '-m', 'torch.distributed.run']
    assert words[-5:] == [f'{checkout}/tools/train.py', 'cfg.py', '--launcher', 'pytorch',
                          '--resume'] and '--nproc_per_node=2' in words
    words = run(checkout, 'dist_test.sh', ['cfg.py', 'ckpt.pth', '2'])
    assert words[0] == 'dotvenv' and words[-5:] == [f'{checkout}/tools/test.py', 'cfg.py',
                                                    'ckpt.pth', '--launcher', 'pytorch']
    # an explicit PYTHON wins, then an activated virtualenv; without .venv: python3 on the PATH
    assert run(checkout, 'dist_train.sh', ['c', '1'],
               PYTHON=str(checkout / 'other' / 'bin' / 'python'))[0] == 'activated'
    assert run(checkout, 'dist_test.sh', ['c', '1'], VIRTUAL_ENV=str(checkout / 'other'))[0] == \
        'activated'
    shutil.rmtree(checkout / '.venv')
    assert run(checkout, 'dist_train.sh', ['c', '1'])[0] == 'system'
