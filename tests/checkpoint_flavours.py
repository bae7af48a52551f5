"""Write the same random weights in every checkpoint flavour declip_mm reads (docs/method.md §1)."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn


def open_clip_state_dict(backbone, text_encoder, custom_text: bool):
    sd = OrderedDict(('visual.' + k, v.clone()) for k, v in backbone.visual.state_dict().items())
    for k, v in text_encoder.text.state_dict().items():
        sd[('text.' + k) if custom_text else k] = v.clone()
    sd['logit_scale'] = torch.tensor(4.6052)
    return sd


_EVA_BACK = (('attn.norm.', 'attn.inner_attn_ln.'), ('mlp.norm.', 'mlp.ffn_ln.'),
             ('mlp.fc1_g.', 'mlp.w1.'), ('mlp.fc1_x.', 'mlp.w2.'), ('mlp.fc2.', 'mlp.w3.'),
             ('attn.q_proj.bias', 'attn.q_bias'), ('attn.v_proj.bias', 'attn.v_bias'))


def to_eva_clip(sd):
    """open_clip EVA layout -> original EVA-CLIP layout (with the rope buffers it ships)."""
    out = OrderedDict()
    for k, v in sd.items():
        if k.startswith('visual.trunk.'):
            k = 'visual.' + k[len('visual.trunk.'):]
            for new, old in _EVA_BACK:
                k = k.replace(new, old)
        out[k] = v
    out['visual.rope.freqs_cos'] = torch.randn(16, 16)
    out['visual.rope.freqs_sin'] = torch.randn(16, 16)
    return out


def to_declip_release(sd, eva: bool):
    """Official DeCLIP-style release: image tower only, module. prefixes, wrapped in state_dict."""
    inner = to_eva_clip(sd) if eva else sd
    out = OrderedDict()
    for k, v in inner.items():
        if k.startswith('visual.'):
            out['module.' + k[len('visual.'):]] = v
    if eva:
        out['module.blocks.0.attn.rope.freqs_cos'] = torch.randn(4, 4)
    return {'state_dict': out, 'epoch': 6}


def to_openai_state_dict(sd, half=False):
    out = OrderedDict((k, v.half() if half and v.is_floating_point() else v) for k, v in sd.items())
    out['input_resolution'] = torch.tensor(32)
    out['context_length'] = torch.tensor(77)
    out['vocab_size'] = torch.tensor(49408)
    return out


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_openai_jit(sd, path):
    """A TorchScript archive whose state dict has the OpenAI keys (like the original release)."""
    root = _Holder()
    for key, value in sd.items():
        *mods, leaf = key.split('.')
        m = root
        for name in mods:
            if not hasattr(m, name):
                m.add_module(name, _Holder())
            m = getattr(m, name)
        if value.is_floating_point():
            m.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
        else:
            m.register_buffer(leaf, value.clone())
    torch.jit.save(torch.jit.script(root), path)
