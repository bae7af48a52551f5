"""declip_mm: DeCLIP (CVPR 2025) as an MMEngine / MMSegmentation plugin."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


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


setup(
    name='declip_mm',
    version=version(),
    description='DeCLIP: decoupled learning for open-vocabulary dense perception, '
                'as an MMSegmentation plugin',
    long_description=open(os.path.join(HERE, 'README.md')).read()
    if os.path.exists(os.path.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['declip_mm', 'declip_mm.*']),
    python_requires='>=3.9',
    # torch/torchvision (requirements/torch.txt) and mmcv (tools/install_mmcv.sh) are installed by
    # tools/setup_env.sh: pip must not pull a different torch build or mmcv's sdist on its own.
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'optional': read_requirements('optional.txt'),
        'mmdet': ['mmdet==3.3.0'],
    },
    include_package_data=True,
    zip_safe=False,
)
