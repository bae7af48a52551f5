"""tools/train.py --vfm-cache-dir: the flag reaches the model, epoch 2 runs no VFM teacher."""
import glob
import os.path as osp

from tf_helpers import load_tool
from train_helpers import train_args, write_images

train_tool = load_tool('train')


def test_flag_sets_the_config_knob(tmp_path):
    args = train_tool.parse_args(train_args(tmp_path / 'wd', tmp_path, epochs=1))
    assert train_tool.build_cfg(args).model.get('vfm_cache') is None  # default: no cache
    args = train_tool.parse_args(train_args(tmp_path / 'wd', tmp_path, epochs=1) +
                                 ['--vfm-cache-dir', str(tmp_path / 'cache')])
    assert train_tool.build_cfg(args).model.vfm_cache == dict(cache_dir=str(tmp_path / 'cache'))


def test_two_epochs_second_reads_the_cache(tmp_path):
    from mmengine.runner import Runner
    data = write_images(tmp_path / 'imgs', n=4)
    cache = tmp_path / 'cache'
    args = train_tool.parse_args(train_args(tmp_path / 'wd', data, epochs=2) +
                                 ['--vfm-cache-dir', str(cache)])
    import declip_mm  # noqa: F401
    from declip_mm.tools_support import fresh_visualizer
    runner = Runner.from_cfg(fresh_visualizer(train_tool.build_cfg(args)))
    calls = []
    runner.model.vfm_teacher.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    runner.train()
    assert runner.iter == 4
    assert calls == [2, 2]  # epoch 1 only: epoch 2 reads every image from the cache
    assert runner.model.vfm_cache.stats == dict(hit=4, miss=4, invalid=0, written=4, unkeyed=0)
    files = glob.glob(osp.join(str(cache), 'dinov2_vitb14_reg-112x112-*', '*', '*.npy'))
    assert len(files) == 4
    assert osp.isfile(osp.join(osp.dirname(osp.dirname(files[0])), 'meta.json'))
