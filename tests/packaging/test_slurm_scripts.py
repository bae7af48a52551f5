"""tools/slurm_train.sh / slurm_test.sh: the srun command they build, with a fake srun on PATH."""
import os
import os.path as osp
import subprocess

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(ROOT, 'tools')

FAKE_SRUN = '''#!/usr/bin/env bash
for a in "$@"; do printf 'ARG:%s\\n' "$a"; done
printf 'ENV:MASTER_PORT=%s\\n' "$MASTER_PORT"
printf 'ENV:PYTHONPATH=%s\\n' "$PYTHONPATH"
'''


def run(tmp_path, script, args, **env):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / 'srun').write_text(FAKE_SRUN)
    (bin_dir / 'srun').chmod(0o755)
    e = {k: v for k, v in os.environ.items()
         if k not in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'MASTER_PORT', 'PYTHON')}
    e.update(PATH=f'{bin_dir}:{os.environ["PATH"]}', PYTHONPATH='/some/where', **env)
    out = subprocess.run(['bash', osp.join(TOOLS, script), *args], env=e, capture_output=True, text=True)
    args_out = [ln[4:] for ln in out.stdout.splitlines() if ln.startswith('ARG:')]
    env_out = dict(ln[4:].split('=', 1) for ln in out.stdout.splitlines() if ln.startswith('ENV:'))
    return out, args_out, env_out


def test_train_command(tmp_path):
    out, args, env = run(tmp_path, 'slurm_train.sh',
                         ['gpu', 'declip b', 'configs/declip/declip_vitb_dinov2.py', 'work dir',
                          '--amp', '--cfg-options', 'a=1'],
                         GPUS='16', SRUN_ARGS='--quotatype=auto --time=1:00:00', MASTER_PORT='29999')
    assert out.returncode == 0, out.stderr
    assert args == ['-p', 'gpu', '--job-name=declip b', '--gres=gpu:8', '--ntasks=16',
                    '--ntasks-per-node=8', '--cpus-per-task=5', '--kill-on-bad-exit=1',
                    '--quotatype=auto', '--time=1:00:00', 'python', '-u', osp.join(TOOLS, 'train.py'),
                    'configs/declip/declip_vitb_dinov2.py', '--launcher', 'slurm', '--work-dir', 'work dir',
                    '--amp', '--cfg-options', 'a=1']
    assert env == {'MASTER_PORT': '29999', 'PYTHONPATH': f'{ROOT}:/some/where'}


def test_train_defaults_without_work_dir(tmp_path):
    out, args, env = run(tmp_path, 'slurm_train.sh', ['p', 'j', 'cfg.py', '--resume'],
                         PYTHON='/opt/py/bin/python')
    assert out.returncode == 0, out.stderr
    assert args[:7] == ['-p', 'p', '--job-name=j', '--gres=gpu:4', '--ntasks=4', '--ntasks-per-node=4',
                        '--cpus-per-task=5']
    assert args[8:] == ['/opt/py/bin/python', '-u', osp.join(TOOLS, 'train.py'), 'cfg.py',
                        '--launcher', 'slurm', '--resume']
    assert env['MASTER_PORT'] == '29500'


@pytest.mark.parametrize('ckpt', [None, 'declip_epoch_6.pth'])
def test_test_command(tmp_path, ckpt):
    extra = [ckpt] if ckpt else []
    out, args, _ = run(tmp_path, 'slurm_test.sh', ['p', 'j', 'cfg.py', *extra, '--tta'],
                       GPUS='2', CPUS_PER_TASK='3')
    assert out.returncode == 0, out.stderr
    assert args == ['-p', 'p', '--job-name=j', '--gres=gpu:2', '--ntasks=2', '--ntasks-per-node=2',
                    '--cpus-per-task=3', '--kill-on-bad-exit=1', 'python', '-u',
                    osp.join(TOOLS, 'test.py'), 'cfg.py', *extra, '--launcher', 'slurm', '--tta']


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_too_few_arguments(tmp_path, script):
    out, args, _ = run(tmp_path, script, ['p', 'j'])
    assert out.returncode == 2 and 'usage' in out.stderr and args == []


def test_dist_train_multi_node_variables(tmp_path):
    """The variables the README documents for multi-node runs reach torch.distributed.run."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'python').write_text(FAKE_SRUN)
    (bin_dir / 'python').chmod(0o755)
    # PYTHON names the fake explicitly: the script would otherwise pick the checkout's .venv and
    # really start torch.distributed.run; the master address is a loopback one all the same
    env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', NNODES='2', NODE_RANK='1',
               MASTER_ADDR='127.0.0.9', PORT='29600', PYTHON=str(bin_dir / 'python'))
    env.pop('VIRTUAL_ENV', None)
    out = subprocess.run(['bash', osp.join(TOOLS, 'dist_train.sh'), 'cfg.py', '8', '--amp'], env=env,
                         capture_output=True, text=True, timeout=60)
    args = [ln[4:] for ln in out.stdout.splitlines() if ln.startswith('ARG:')]
    assert args == ['-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1',
                    '--master_addr=127.0.0.9', '--nproc_per_node=8', '--master_port=29600',
                    osp.join(TOOLS, 'train.py'), 'cfg.py', '--launcher', 'pytorch', '--amp']
