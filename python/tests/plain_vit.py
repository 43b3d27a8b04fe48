"""A plain-torch re-implementation of timm's VisionTransformer forward, with timm's module names (no timm needed).

Pre-norm blocks, LayerNorm eps 1e-6, exact GELU, CLS token + learned position embedding; `patch_embed` returns
the patch tokens [B, P, D] (before the CLS token and the position embedding), as timm's PatchEmbed and
`cka extract`'s `patch_embed` hook. Used by test_vit_equivalence.py and Benchmarks/scripts/vitcka_overhead.py.
"""
import json

import numpy as np
import torch
from torch import nn


def load_safetensors(path):
    """A safetensors file (F32 tensors) as numpy arrays: u64 header length, JSON header, raw data."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        assert h["dtype"] == "F32"
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(h["shape"])
    return out


class PatchEmbed(nn.Module):
    def __init__(self, width, patch):
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, patch)

    def forward(self, x):                         # [B, 3, H, W] → [B, P, D] (timm: flatten(2).transpose(1, 2))
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q * (d // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width, eps=1e-6), Attention(width, heads)
        self.norm2, self.mlp = nn.LayerNorm(width, eps=1e-6), Mlp(width, 4 * width)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, width, depth, heads, patch, tokens):
        super().__init__()
        self.patch_embed = PatchEmbed(width, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    @classmethod
    def from_safetensors(cls, path):
        w = load_safetensors(path)
        width, depth = w["cls_token"].shape[-1], len({k.split(".")[1] for k in w if k.startswith("blocks.")})
        model = cls(width, depth, heads=max(1, width // 64), patch=w["patch_embed.proj.weight"].shape[-1],
                    tokens=w["pos_embed"].shape[1])
        missing, unexpected = model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items()})
        assert not missing and not unexpected
        return model.eval()
