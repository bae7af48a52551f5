"""declip_mm: DeCLIP (CVPR 2025) as an MMEngine / MMSegmentation plugin.

Build: ``python -m build`` (sdist + wheel; MANIFEST.in lists what the sdist carries). The wheel ships
``configs/`` (with ``class_names/``), ``tools/`` and ``model-index.yml`` as package data under
``declip_mm/.mim/``, the place OpenMMLab packages keep them; the build step below copies them there
inside the build folder, so a checkout never holds a second, stale copy.
"""
import os
import re
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))

#: shipped under declip_mm/.mim/ (folders are copied without caches; tools/ci is CI-only)
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')
MIM_IGNORE = shutil.ignore_patterns('__pycache__', '*.pyc', 'ci')


class BuildWithMim(build_py):
    """build_py that also copies :data:`MIM_ITEMS` into ``<build_lib>/declip_mm/.mim``.

    An editable install keeps using the checkout's folders (declip_mm.utils.package_files finds them).
    """

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        mim = os.path.join(self.build_lib, 'declip_mm', '.mim')
        for item in MIM_ITEMS:
            src, dst = os.path.join(HERE, item), os.path.join(mim, item)
            if not os.path.exists(src):
                raise FileNotFoundError(f'{src} is missing: the sdist must carry it (MANIFEST.in)')
            if os.path.isdir(dst):
                shutil.rmtree(dst)
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=MIM_IGNORE)
            else:
                os.makedirs(mim, exist_ok=True)
                shutil.copy2(src, dst)


def read_requirements(name):
    out = []
    with open(os.path.join(HERE, 'requirements', name)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                out.append(line)
    return out


def version():
    with open(os.path.join(HERE, 'declip_mm', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


CONSOLE_SCRIPTS = [
    'declip-train = declip_mm.cli:main_train',
    'declip-test = declip_mm.cli:main_test',
    'declip-demo = declip_mm.cli:main_demo',
    'declip-web = declip_mm.cli:main_web',
    'declip-eval-all = declip_mm.cli:main_eval_all',
    'declip-eval-catseg = declip_mm.cli:main_eval_catseg',
    'declip-convert = declip_mm.cli:main_convert',
    'declip-quickstart = declip_mm.cli:main_quickstart',
    'declip-benchmark = declip_mm.cli:main_benchmark',
    'declip-gradio = declip_mm.cli:main_gradio',
    'declip-configs = declip_mm.cli:main_configs',
]

setup(
    name='declip_mm',
    version=version(),
    description='DeCLIP: decoupled learning for open-vocabulary dense perception, '
                'as an MMSegmentation plugin',
    long_description=open(os.path.join(HERE, 'README.md'), encoding='utf-8').read()
    if os.path.exists(os.path.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    author='declip_mm contributors',
    license='Apache-2.0',
    license_files=['LICENSE'],
    project_urls={
        'Paper': 'https://arxiv.org/abs/2505.04410',
        'Official DeCLIP code (method reference)': 'https://github.com/xiaomoguhz/DeCLIP',
    },
    keywords='open-vocabulary segmentation, CLIP, DeCLIP, mmsegmentation, mmdetection',
    classifiers=[
        'Development Status :: 4 - Beta',
        'Intended Audience :: Science/Research',
        'Operating System :: POSIX :: Linux',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
    packages=find_packages(include=['declip_mm', 'declip_mm.*']),
    # torch 2.14 and timm 1.0.31 (the tested pair) need Python >= 3.10; CI runs 3.11
    python_requires='>=3.10',
    # torch/torchvision (requirements/torch.txt) and mmcv (tools/install_mmcv.sh) are installed by
    # tools/setup_env.sh: pip must not pull a different torch build or mmcv's sdist on its own.
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'optional': read_requirements('optional.txt'),
        'mmdet': [r for r in read_requirements('mminstall.txt') if r.startswith('mmdet')],
        # tools/gradio_demo.py (declip-gradio); tools/web_demo.py needs no extra
        'demo': read_requirements('demo.txt'),
    },
    entry_points={'console_scripts': CONSOLE_SCRIPTS},
    # not an entry point: it must run before mmcv (which `import declip_mm` needs) is installed
    scripts=['scripts/declip-install-mmcv'],
    cmdclass={'build_py': BuildWithMim},
    include_package_data=True,
    # the world towers shipped in the repository (docs/miniworld.md), used by tools/miniworld.py
    package_data={'declip_mm.miniworld': ['weights/*.npz', 'weights/*.json', 'weights/*.md']},
    zip_safe=False,
)
