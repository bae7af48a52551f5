"""Issue 22.7: ``import declip_mm`` leaves mmengine's checkpoint loader and ``torch.load`` alone, and
registers into mmdet without taking a name mmdet or another plugin owns.

Each check runs in a fresh interpreter (the test process has imported declip_mm long before)."""
import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1')
    out = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_changes_neither_checkpoint_loader_nor_torch_load():
    got = _run('''
        import json, pickle
        import torch, torch.serialization as ser
        from mmengine.runner.checkpoint import CheckpointLoader
        # the dependencies' own imports first (mmseg adds safe globals of its own)
        import mmseg.models, mmdet.models, open_clip, timm  # noqa: F401
        schemes = dict(CheckpointLoader._schemes)
        before = dict(load=torch.load, ser_load=ser.load, safe=list(ser.get_safe_globals()))
        import declip_mm  # noqa: F401
        import declip_mm.tools_support, declip_mm.apis  # noqa: F401  (the tool helpers too)
        after = dict(CheckpointLoader._schemes)
        print(json.dumps(dict(
            same_keys=list(after) == list(schemes),
            same_loaders=all(after[k] is schemes[k] for k in schemes),
            local=after[''].__module__ + '.' + after[''].__qualname__,
            torch_load=torch.load is before['load'] and ser.load is before['ser_load'],
            safe=list(ser.get_safe_globals()) == before['safe'])))
    ''')
    assert got == dict(same_keys=True, same_loaders=True,
                       local='mmengine.runner.checkpoint.load_from_local', torch_load=True,
                       safe=True)


def test_mmdet_keeps_a_foreign_module_of_the_same_name():
    got = _run('''
        import json, warnings
        from mmdet.registry import MODELS
        import mmdet.models  # noqa: F401  (mmdet's own names)

        @MODELS.register_module(name='DeCLIPVisionTransformer')
        class OtherBackbone:   # another plugin got there first
            pass

        @MODELS.register_module(name='DeCLIPFViT')
        class OtherDetector:
            pass

        mmdet_names = dict(MODELS.module_dict)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import declip_mm
            from declip_mm.mmdet_registration import MMDET_SKIPPED, register_into_mmdet
            again = register_into_mmdet()   # idempotent: no new skips, no error
        from mmseg.registry import MODELS as SEG
        msgs = [str(w.message) for w in caught if w.category.__name__ == 'RegistryNameTaken']
        print(json.dumps(dict(
            backbone=MODELS.module_dict['DeCLIPVisionTransformer'] is OtherBackbone,
            detector=MODELS.module_dict['DeCLIPFViT'] is OtherDetector,
            others_ours=[MODELS.module_dict[n].__module__.split('.')[0] for n in
                         ('SimplePyramidResampler', 'DeCLIPOVRoIHead', 'DeCLIPOVBBoxHead',
                          'SquarePadDetDataPreprocessor')],
            mmdet_untouched=all(MODELS.module_dict[k] is v for k, v in mmdet_names.items()),
            seg_ours=SEG.get('DeCLIPVisionTransformer') is declip_mm.DeCLIPVisionTransformer,
            skipped=MMDET_SKIPPED, again=again, registered=declip_mm.MMDET_REGISTERED,
            msgs=msgs)))
    ''')
    assert got['backbone'] and got['detector'] and got['mmdet_untouched'] and got['seg_ours']
    assert got['others_ours'] == ['declip_mm'] * 4
    assert got['skipped'] == ['DeCLIPVisionTransformer', 'DeCLIPFViT']
    assert got['again'] and got['registered']
    assert len(got['msgs']) == 4   # two at import, two on the second call
    assert "the name 'DeCLIPFViT' already belongs to __main__.OtherDetector" in got['msgs'][1]
    assert 'type=declip_mm.models.detectors.fvit_detector.DeCLIPFViT' in got['msgs'][1]


def test_mmdet_names_mmdet_itself_owns_are_not_ours():
    """None of our names is one of mmdet's own (so nothing of mmdet's is skipped or shadowed)."""
    got = _run('''
        import json
        from mmdet.registry import MODELS
        import mmdet.models  # noqa: F401
        before = dict(MODELS.module_dict)
        import declip_mm
        from declip_mm.mmdet_registration import MMDET_SKIPPED
        print(json.dumps(dict(skipped=MMDET_SKIPPED,
                              kept=all(MODELS.module_dict[k] is v for k, v in before.items()),
                              new=sorted(set(MODELS.module_dict) - set(before)))))
    ''')
    assert got['skipped'] == [] and got['kept']
    assert got['new'] == sorted(['DeCLIPVisionTransformer', 'SimplePyramidResampler', 'DeCLIPFViT',
                                 'DeCLIPOVRoIHead', 'DeCLIPOVBBoxHead',
                                 'SquarePadDetDataPreprocessor'])
