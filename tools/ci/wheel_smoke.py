"""The Python half of tools/ci/wheel_smoke.sh: run by the fresh environment's interpreter, from a
folder outside the checkout. Checks what a ``pip install`` user gets: the package imports from
site-packages, configs resolve by name inside ``declip_mm/.mim``, the inferencer runs a shipped config
(tiny random towers), the console entry points run, and ``declip-test`` evaluates a fixture benchmark.

    python wheel_smoke.py CHECKOUT_DIR
"""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time


def step(msg):
    print(f'[wheel-smoke] {msg}', flush=True)


def main(checkout):
    t0 = time.time()
    cwd = os.getcwd()
    assert not osp.abspath(cwd).startswith(osp.abspath(checkout)), 'run me outside the checkout'
    import numpy as np

    import declip_mm
    from declip_mm.utils import package_files
    pkg = osp.dirname(declip_mm.__file__)
    assert not pkg.startswith(osp.abspath(checkout)), f'declip_mm imported from the checkout: {pkg}'
    assert package_files.data_roots() == [osp.join(pkg, '.mim')], package_files.data_roots()
    step(f'import declip_mm {declip_mm.__version__} from {pkg}')

    # shipped files: configs (with class names), tools, the model index and its metafiles
    mim = osp.join(pkg, '.mim')
    for rel in ('configs/class_names/ade20k.txt', 'configs/_base_/tf_runtime.py', 'tools/train.py',
                'tools/test.py', 'tools/web_demo.html', 'tools/install_mmcv.sh', 'tools/slurm_train.sh',
                'model-index.yml'):
        assert osp.isfile(osp.join(mim, rel)), rel
    assert not osp.exists(osp.join(mim, 'tools', 'ci'))
    import yaml
    index = yaml.safe_load(open(osp.join(mim, 'model-index.yml')))
    for meta in index['Import']:
        for m in yaml.safe_load(open(osp.join(mim, meta)))['Models']:
            assert osp.isfile(osp.join(mim, m['Config'])), m['Config']
    step(f'.mim holds configs, class names, tools and {len(index["Import"])} metafiles')

    # a config by name through the inferencer, tiny random towers
    from declip_mm.apis import DeCLIPInferencer
    from declip_mm.testing import tiny_clip_config, write_benchmark_fixture
    from declip_mm.tools_support.catseg_suite import catseg_config
    assert catseg_config('ade20k').startswith(mim)
    tiny = dict(tiny_clip_config('eva02'), _delete_=True)
    opts = {'model.backbone.model_name': tiny, 'model.text_encoder.model_name': tiny,
            'model.backbone.pretrained': None, 'model.text_encoder.pretrained': None,
            'model.text_encoder.templates': 'single', 'model.test_cfg.crop_size': 64,
            'model.test_cfg.stride': 48, 'test_pipeline.1.scale': (4096, 72)}
    inf = DeCLIPInferencer('declip_eva02-b16_training-free_ade20k-448', cfg_options=opts, device='cpu')
    assert inf.cfg.filename.startswith(mim), inf.cfg.filename
    img = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    res = inf(img, classes='sky; grass, lawn; road')
    assert res.labels.shape == (60, 80) and res.probs.shape == (3, 60, 80)
    # ADE's prob_thd is 0: every pixel is labelled with its most probable class
    assert (res.labels == res.probs.argmax(0)).all() and 0.0 <= res.probs.min() <= res.probs.max() <= 1.0
    step('DeCLIPInferencer(<config name>) segments an image')

    bindir = osp.dirname(sys.executable)

    def cmd(name, *args, **kw):
        exe = osp.join(bindir, name)
        assert osp.isfile(exe), f'entry point {name} not installed'
        return subprocess.run([exe, *args], capture_output=True, text=True, **kw)

    out = cmd('declip-configs')
    assert out.returncode == 0 and 'declip_eva02-b16_training-free_voc21-448' in out.stdout.split()
    from declip_mm.cli import COMMANDS
    from declip_mm.utils.package_files import tool_path
    for name, (script, _) in COMMANDS.items():  # every command is installed and its tool shipped
        assert osp.isfile(osp.join(bindir, name)), name
        assert tool_path(script) == osp.join(mim, 'tools', script)
    for name in ('declip-train', 'declip-test', 'declip-demo', 'declip-web'):  # each start costs seconds
        out = cmd(name, '--help')
        assert out.returncode == 0 and 'usage' in out.stdout, (name, out.stderr[-2000:])
    step(f'declip-configs lists the configs; {len(COMMANDS)} tool commands installed, four answer --help')

    # declip-test on a fixture benchmark, the config given by name
    work = tempfile.mkdtemp(prefix='declip_smoke_test_')
    try:
        root = write_benchmark_fixture('ade20k', osp.join(work, 'data'))
        arch = osp.join(work, 'tiny.json')
        json.dump(tiny_clip_config('eva02'), open(arch, 'w'))
        out = cmd('declip-test', 'declip_eva02-b16_training-free_ade20k-448', '--work-dir',
                  osp.join(work, 'wd'), '--cfg-options', f'model.backbone.model_name={arch}',
                  f'model.text_encoder.model_name={arch}', 'model.backbone.pretrained=None',
                  'model.text_encoder.pretrained=None', 'model.text_encoder.templates=single',
                  'model.test_cfg.crop_size=64', 'model.test_cfg.stride=48',
                  'test_dataloader.num_workers=0', f'test_dataloader.dataset.data_root={root}', cwd=work)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        metrics = [json.load(open(p)) for p in glob.glob(osp.join(work, 'wd', '*', '*.json'))]
        assert any('mIoU' in m for m in metrics), metrics
        (m, ) = [m for m in metrics if 'mIoU' in m]
        assert 0.0 <= m['mIoU'] <= 100.0
        step(f"declip-test <config name> on the ADE20K-layout fixture: mIoU {m['mIoU']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step(f'python checks took {time.time() - t0:.0f} s')


if __name__ == '__main__':
    main(sys.argv[1])
