"""Shared set-up for the tools tests: tiny towers through --cfg-options, fixture data roots."""
import json
import os.path as osp

from declip_mm.testing import BENCHMARK_LAYOUTS, tiny_clip_config, write_benchmark_fixture

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TF_DIR = osp.join(ROOT, 'configs', 'training_free')


def load_tool(name):
    """Import tools/<name>.py as a module (tools/ is not a package; 'test' would shadow stdlib)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'declip_tool_{name}',
                                                  osp.join(ROOT, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tf_config(name):
    import glob
    (path, ) = glob.glob(osp.join(TF_DIR, f'*_{name}-*.py'))
    return path


def tiny_options(tmp_path, family='eva02'):
    js = tmp_path / f'tiny_{family}.json'
    js.write_text(json.dumps(tiny_clip_config(family)))
    return [f'model.backbone.model_name={js}', f'model.text_encoder.model_name={js}',
            'model.backbone.pretrained=None', 'model.text_encoder.pretrained=None',
            'model.text_encoder.templates=single', 'model.test_cfg.crop_size=64',
            'model.test_cfg.stride=48', 'test_dataloader.num_workers=0']


def write_all_fixtures(data_dir, **kw):
    for name in BENCHMARK_LAYOUTS:
        write_benchmark_fixture(name, str(data_dir), **kw)
    return str(data_dir)


def run_file(work_dir, ext):
    """The one ``results_<date-time>.<ext>`` an eval tool wrote in ``work_dir`` (issue 24.6: each
    run writes its own table)."""
    import glob
    (path, ) = glob.glob(osp.join(str(work_dir), f'results_*.{ext}'))
    return path
