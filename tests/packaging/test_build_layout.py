"""setup.py's build step lays configs, tools and the model index into declip_mm/.mim (the wheel's
package data); MANIFEST.in gives the sdist what setup.py and that step read."""
import os
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def tree(root):
    return {osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_build_py_copies_configs_tools_and_index_into_mim(tmp_path):
    out = subprocess.run([sys.executable, 'setup.py', '-q', 'build_py', '--build-lib', str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    mim = tmp_path / 'declip_mm' / '.mim'
    shipped = tree(mim)
    want_configs = {osp.join('configs', p) for p in tree(osp.join(ROOT, 'configs'))
                    if '__pycache__' not in p and not p.endswith('.pyc')}
    want_tools = {osp.join('tools', p) for p in tree(osp.join(ROOT, 'tools'))
                  if '__pycache__' not in p and not p.endswith('.pyc') and not p.startswith('ci' + os.sep)}
    assert {p for p in shipped if p.startswith('configs')} == want_configs
    assert {p for p in shipped if p.startswith('tools')} == want_tools
    assert 'model-index.yml' in shipped
    assert 'configs/class_names/ade20k.txt' in shipped and 'tools/web_demo.html' in shipped
    # the package itself is built next to it, and nothing is written into the checkout's package
    assert (tmp_path / 'declip_mm' / 'cli.py').is_file()
    assert not osp.exists(osp.join(ROOT, 'declip_mm', '.mim'))


def test_manifest_carries_what_setup_and_build_read():
    lines = open(osp.join(ROOT, 'MANIFEST.in')).read().splitlines()
    text = '\n'.join(ln for ln in lines if not ln.startswith('#'))
    for need in ('recursive-include requirements *.txt', 'LICENSE', 'model-index.yml', 'README.md'):
        assert need in text, need
    for folder, exts in (('configs', ('.py', '.txt', '.yml', '.md')), ('tools', ('.py', '.sh', '.html'))):
        (line, ) = [ln for ln in lines if ln.startswith(f'recursive-include {folder} ')]
        have = {f'.{e.split(".")[-1]}' for e in line.split()[2:]}
        on_disk = {osp.splitext(p)[1] for p in tree(osp.join(ROOT, folder))
                   if '__pycache__' not in p and not p.endswith('.pyc')}
        assert on_disk <= have, (folder, on_disk - have)
        assert set(exts) <= have
