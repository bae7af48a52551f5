import subprocess
import sys

import pytest
import torch
from checkpoint_flavours import (
    open_clip_state_dict,
    save_openai_jit,
    to_declip_release,
    to_eva_clip,
    to_openai_state_dict,
)
from safetensors.torch import save_file

from declip_mm.converters import (
    convert_dinov2,
    detect_flavour,
    infer_model_name,
    to_open_clip_state_dict,
    unwrap_checkpoint,
)
from declip_mm.models import DeCLIPTextEncoder, DeCLIPVisionTransformer
from declip_mm.testing import tiny_clip_config
from declip_mm.utils import load_weight_file


def _pair(cfg, seed):
    torch.manual_seed(seed)
    return DeCLIPVisionTransformer(cfg).eval(), DeCLIPTextEncoder(cfg, templates='single')


def _flavour_files(tmp_path, family, cfg, bb, te):
    sd = open_clip_state_dict(bb, te, custom_text=family == 'eva02')
    files = {}
    files['open_clip.bin'] = sd
    files['open_clip.safetensors'] = sd
    files['declip_release.pth'] = to_declip_release(sd, eva=family == 'eva02')
    # an export stores the tau it was trained with (applied on loading by attn_scale='auto')
    files['declip_mm.pth'] = {'state_dict': sd, 'meta': {'attn_mode': 'csa', 'attn_scale': bb.attn_scale}}
    if family == 'eva02':
        files['eva_clip.pt'] = to_eva_clip(sd)
    else:
        files['openai_state_dict.pt'] = to_openai_state_dict(sd)
        files['openai_jit.pt'] = 'jit'
    paths = {}
    for name, obj in files.items():
        path = str(tmp_path / name)
        if name.endswith('.safetensors'):
            save_file({k: v.contiguous() for k, v in obj.items()}, path)
        elif obj == 'jit':
            save_openai_jit(to_openai_state_dict(sd), path)
        else:
            torch.save(obj, path)
        paths[name] = path
    return paths


def test_every_flavour_loads_identical_weights(tmp_path, family):
    cfg = tiny_clip_config(family)
    src_bb, src_te = _pair(cfg, seed=1)
    paths = _flavour_files(tmp_path, family, cfg, src_bb, src_te)
    x = torch.randn(1, 3, 24, 40)
    with torch.no_grad():
        expect = src_bb(x)['content']
        expect_text = src_te(['cat', 'dog'])
    for name, path in paths.items():
        bb, te = _pair(cfg, seed=2)  # different random init
        with torch.no_grad():
            assert not torch.allclose(bb(x)['content'], expect)
        bb.pretrained = path
        bb.init_weights()
        with torch.no_grad():
            assert torch.equal(bb(x)['content'], expect), name
        if 'release' in name:
            with pytest.raises(ValueError, match='no text-tower'):
                te.load_pretrained(path)
            continue
        te.load_pretrained(path)
        assert torch.equal(te(['cat', 'dog']), expect_text), name


def test_detect_flavour_and_unwrap(tmp_path, family):
    cfg = tiny_clip_config(family)
    bb, te = _pair(cfg, 0)
    sd = open_clip_state_dict(bb, te, custom_text=family == 'eva02')
    if family == 'eva02':
        assert detect_flavour(sd) == 'open_clip'
        assert detect_flavour(to_eva_clip(sd)) == 'eva_clip'
        _, flavour, _ = to_open_clip_state_dict(to_declip_release(sd, eva=True))
        assert flavour == 'declip:eva_clip'
    else:
        assert detect_flavour(sd) == 'open_clip'
        assert detect_flavour(to_openai_state_dict(sd)) == 'openai'
    inner, meta, wrapped = unwrap_checkpoint({'model': {'module.a': torch.ones(1)}, 'meta': {'x': 1}})
    assert list(inner) == ['a'] and meta == {'x': 1} and wrapped


def test_openai_fp16_is_cast_to_fp32():
    bb, te = _pair(tiny_clip_config('openai'), 0)
    sd = to_openai_state_dict(open_clip_state_dict(bb, te, False), half=True)
    out, flavour, _ = to_open_clip_state_dict(sd)
    assert flavour == 'openai'
    assert all(v.dtype == torch.float32 for v in out.values() if v.is_floating_point())
    assert 'input_resolution' not in out


def test_other_architecture_is_a_clear_error(tmp_path):
    eva_bb, eva_te = _pair(tiny_clip_config('eva02'), 0)
    path = str(tmp_path / 'eva.bin')
    torch.save(open_clip_state_dict(eva_bb, eva_te, True), path)
    oa = DeCLIPVisionTransformer(tiny_clip_config('openai'), pretrained=path)
    with pytest.raises(ValueError, match='does not fit'):
        oa.init_weights()
    wide = DeCLIPVisionTransformer(tiny_clip_config('eva02', embed_dim=128), pretrained=path)
    with pytest.raises(ValueError, match='shape mismatch'):
        wide.init_weights()


@pytest.mark.parametrize('trained, evaluated, outcome', [
    ('csa', 'csa', 'ok'), ('qq', 'qq', 'ok'), ('kk', 'kk', 'ok'),
    ('qq', 'csa', 'info'), ('kk', 'csa', 'info'),
    ('csa', 'qq', 'refused'), ('csa', 'kk', 'refused'), ('kk', 'qq', 'refused'),
    ('qq', 'kk', 'refused'),
])
def test_mode_pairs(tmp_path, monkeypatch, trained, evaluated, outcome):
    """The allowed (trained, evaluated) table of docs/method.md."""
    import declip_mm.models.backbones.declip_vit as declip_vit
    logged = []
    monkeypatch.setattr(declip_vit, 'print_log', lambda msg, **kw: logged.append(msg))
    bb, te = _pair(tiny_clip_config('eva02'), 0)
    path = str(tmp_path / f'{trained}.pth')
    torch.save({'state_dict': open_clip_state_dict(bb, te, True), 'meta': {'attn_mode': trained}},
               path)
    model = DeCLIPVisionTransformer(tiny_clip_config('eva02'), pretrained=path, attn_mode=evaluated)
    if outcome == 'refused':
        with pytest.raises(ValueError, match=f"trained with attn_mode='{trained}'.*"
                                             f"attn_mode='{evaluated}'") as e:
            model.init_weights()
        assert "evaluates every DeCLIP checkpoint with attn_mode='csa'" in str(e.value)
        assert 'check_mode=False' not in str(e.value)
        # check_mode=False still overrides for experiments
        DeCLIPVisionTransformer(tiny_clip_config('eva02'), pretrained=path, attn_mode=evaluated,
                                check_mode=False).init_weights()
        return
    model.init_weights()
    assert model.checkpoint_meta['attn_mode'] == trained
    infos = [m for m in logged if 'untouched' in m]
    assert len(infos) == (1 if outcome == 'info' else 0)
    if outcome == 'info':
        assert f"trained with attn_mode='{trained}'" in infos[0] and "'csa'" in infos[0]


def test_pos_embed_of_other_grid_is_resized(tmp_path):
    src_bb, te = _pair(tiny_clip_config('openai', image_size=48), 0)  # 6x6 grid
    path = str(tmp_path / 'g6.bin')
    torch.save(open_clip_state_dict(src_bb, te, False), path)
    bb = DeCLIPVisionTransformer(tiny_clip_config('openai'), pretrained=path)  # 4x4 grid
    bb.init_weights()
    assert bb.visual.positional_embedding.shape == (17, 64)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(RuntimeError, match='could not read'):
        load_weight_file(str(bad))
    with pytest.raises(FileNotFoundError, match='not found'):
        load_weight_file(str(tmp_path / 'none.pth'))
    torch.save({'epoch': 3}, tmp_path / 'empty.pth')
    with pytest.raises(ValueError, match='no tensors'):
        to_open_clip_state_dict(load_weight_file(str(tmp_path / 'empty.pth')))
    torch.save({'foo.bar': torch.ones(2)}, tmp_path / 'alien.pth')
    with pytest.raises(ValueError, match='unrecognised checkpoint layout'):
        to_open_clip_state_dict(load_weight_file(str(tmp_path / 'alien.pth')))


def test_dinov2_converter_and_refusal():
    sd = {'cls_token': torch.zeros(1, 1, 8), 'register_tokens': torch.zeros(1, 4, 8),
          'mask_token': torch.zeros(1, 8), 'pos_embed': torch.zeros(1, 5, 8),
          'patch_embed.proj.weight': torch.zeros(8, 3, 14, 14),
          'blocks.0.norm1.weight': torch.ones(8), 'blocks.0.attn.qkv.weight': torch.zeros(24, 8),
          'blocks.0.ls1.gamma': torch.ones(8)}
    assert detect_flavour(sd) == 'dinov2'
    out = convert_dinov2(sd)
    assert 'reg_token' in out and 'mask_token' not in out and 'register_tokens' not in out
    with pytest.raises(ValueError, match='DINOv2'):
        to_open_clip_state_dict(sd)


def test_infer_named_architectures():
    for name in ('ViT-B-16', 'EVA02-B-16'):
        bb = DeCLIPVisionTransformer(name)
        sd = {'visual.' + k: v for k, v in bb.visual.state_dict().items()}
        assert infer_model_name(sd) == name


def test_convert_checkpoint_tool(tmp_path):
    import json
    cfg = tiny_clip_config('eva02')
    bb, te = _pair(cfg, 3)
    src = tmp_path / 'eva_clip.pt'
    torch.save(to_eva_clip(open_clip_state_dict(bb, te, True)), src)
    cfg_file = tmp_path / 'tiny.json'
    cfg_file.write_text(json.dumps(cfg))
    dst = tmp_path / 'out.pth'
    res = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', str(src), str(dst),
                          '--model-name', str(cfg_file), '--attn-mode', 'csa', '--attn-scale', '1'],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'eva_clip' in res.stdout and 'visual.rope.freqs_cos' in res.stdout  # reported by name
    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta']['attn_mode'] == 'csa' and ckpt['meta']['attn_scale'] == 1.0
    new = DeCLIPVisionTransformer(cfg, pretrained=str(dst), attn_mode='csa')
    new.init_weights()
    assert new.attn_scale == 1.0  # the recorded tau is applied (attn_scale='auto')
    bb.attn_scale = 1.0
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(new(x)['content'], bb.eval()(x)['content'])
    res = subprocess.run([sys.executable, 'tools/convert_checkpoint.py', str(tmp_path / 'no.pt'),
                          str(tmp_path / 'out2.pth')], capture_output=True, text=True)
    assert res.returncode != 0 and 'not found' in res.stderr


def test_nonfinite_weights_refused_in_every_format(tmp_path, family):
    """Issue 21.10: a NaN in the image tower and an Inf in the text tower, written in every format
    declip_mm reads (open_clip .bin / .safetensors, DeCLIP release, declip_mm export, EVA-CLIP .pt,
    OpenAI state dict and TorchScript jit): every loader refuses the file, naming it. The same
    weights without the two values load (test_every_flavour_loads_identical_weights)."""
    import re

    from declip_mm.apis import inspect_checkpoint
    cfg = tiny_clip_config(family)
    bb, te = _pair(cfg, seed=1)
    with torch.no_grad():
        dict(bb.visual.named_parameters())[next(
            n for n, p in bb.visual.named_parameters() if p.dim() == 2)][0, 0] = float('nan')
        next(p for p in te.text.parameters() if p.dim() == 2)[1, 1] = float('inf')
    paths = _flavour_files(tmp_path, family, cfg, bb, te)
    assert len(paths) == (5 if family == 'eva02' else 6)  # EVA: its own .pt; OpenAI: dict + jit
    for name, path in paths.items():
        pattern = re.escape(name) + r"' holds non-finite values \(NaN/Inf\) in 2 tensor"
        if 'release' in name:  # an image-tower-only release: the NaN alone
            pattern = re.escape(name) + r"' holds non-finite values \(NaN/Inf\) in 1 tensor"
        with pytest.raises(ValueError, match=pattern):
            load_weight_file(path)
        with pytest.raises(ValueError, match=pattern):
            DeCLIPVisionTransformer(cfg, pretrained=path).init_weights()
        with pytest.raises(ValueError, match=pattern):  # tools/test.py's checkpoint routing
            inspect_checkpoint(path)
        if 'release' not in name:
            with pytest.raises(ValueError, match=pattern):
                DeCLIPTextEncoder(cfg, templates='single').load_pretrained(path)
