"""Deterministic ViT parameters from an integer-hash formula (shared by the fixture generator and the Swift tests).

Every element of every parameter is a pure function of (seed, timm parameter name, flat element index), so the
Swift test (Tests/CKAViTTests/OfficialCodeTests.swift, `OfficialWeights`) rebuilds bit-identical float32 weights
without any weight file being committed:

    key(name)   = FNV-1a 64 of the UTF-8 bytes of the timm name (e.g. "blocks.3.mlp.fc1.weight")
    mix(z)      = SplitMix64 finaliser: z ^= z>>30; z *= 0xBF58476D1CE4E5B9; z ^= z>>27; z *= 0x94D049BB133111EB; z ^= z>>31
    base        = mix(key(name) ^ mix(seed))
    z_i         = mix(base + (i + 1) * 0x9E3779B97F4A7C15)            (all uint64, wrapping; i = row-major flat index)
    u_i         = (z_i >> 40) * 2^-23 - 1                              (top 24 bits -> uniform in [-1, 1), exact in float32)
    value_i     = float32(offset + scale * u_i)                        (scale is a power of two, so scale*u is exact)

`scale`/`offset` depend only on the kind of parameter (see `kind_of`): Linear weights 2^-4..2^-6 (std 0.009..0.036),
biases 2^-4/2^-5, LayerNorm weight 1 +- 2^-3, LayerNorm bias 2^-4, pos_embed 2^-4, cls_token 2^-3. The row-major flat
index of `patch_embed.proj.weight` [768, 3, 16, 16] is the (out, channel, row, col) order both sides use.
"""
import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
M1, M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
MASK = (1 << 64) - 1


def fnv1a64(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & MASK
    return h


def mix_int(z: int) -> int:
    z &= MASK
    z = ((z ^ (z >> 30)) * M1) & MASK
    z = ((z ^ (z >> 27)) * M2) & MASK
    return z ^ (z >> 31)


def mix_np(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(M2)
    return z ^ (z >> np.uint64(31))


def kind_of(name: str):
    """(offset, log2 scale) of a timm parameter name."""
    if name == "cls_token":
        return 0.0, -3
    if name == "pos_embed":
        return 0.0, -4
    if name.startswith("patch_embed.proj."):
        return 0.0, -5
    leaf = name.split(".")[-2] if "." in name else name
    is_weight = name.endswith(".weight")
    if leaf in ("norm1", "norm2", "norm", "fc_norm"):
        return (1.0, -3) if is_weight else (0.0, -4)
    if leaf == "qkv":
        return 0.0, -4
    if leaf == "proj":
        return 0.0, -5
    if leaf == "fc1":
        return 0.0, -4
    if leaf == "fc2":
        return 0.0, -6 if is_weight else -5
    raise KeyError(f"no formula for parameter {name!r}")


def formula_tensor(name: str, shape, seed: int) -> np.ndarray:
    n = int(np.prod(shape))
    base = mix_int(fnv1a64(name) ^ mix_int(seed))
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = mix_np(np.uint64(base) + i * np.uint64(GOLDEN))
    u = (z >> np.uint64(40)).astype(np.float64) * 2.0 ** -23 - 1.0
    offset, log2scale = kind_of(name)
    v = offset + (2.0 ** log2scale) * u
    return v.astype(np.float32).reshape(shape)


def timm_parameter_shapes(width=768, depth=12, patch=16, grid=14, mlp_ratio=4, final_norm=True, fc_norm=False):
    """The backbone parameters (timm names and shapes) in a fixed order."""
    d, hid = width, mlp_ratio * width
    shapes = {"cls_token": (1, 1, d), "pos_embed": (1, grid * grid + 1, d),
              "patch_embed.proj.weight": (d, 3, patch, patch), "patch_embed.proj.bias": (d,)}
    for b in range(depth):
        p = f"blocks.{b}."
        shapes.update({p + "norm1.weight": (d,), p + "norm1.bias": (d,),
                       p + "attn.qkv.weight": (3 * d, d), p + "attn.qkv.bias": (3 * d,),
                       p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
                       p + "norm2.weight": (d,), p + "norm2.bias": (d,),
                       p + "mlp.fc1.weight": (hid, d), p + "mlp.fc1.bias": (hid,),
                       p + "mlp.fc2.weight": (d, hid), p + "mlp.fc2.bias": (d,)})
    if final_norm:
        shapes.update({"norm.weight": (d,), "norm.bias": (d,)})
    if fc_norm:
        shapes.update({"fc_norm.weight": (d,), "fc_norm.bias": (d,)})
    return shapes


def probe_values(seed: int):
    """A few (name, flat index, float32 bits) probes the Swift test checks first, to localise a formula mismatch."""
    out = []
    for name, shape in [("cls_token", (1, 1, 768)), ("blocks.0.norm1.weight", (768,)),
                        ("blocks.11.mlp.fc2.weight", (768, 3072)), ("patch_embed.proj.weight", (768, 3, 16, 16))]:
        t = formula_tensor(name, shape, seed).reshape(-1)
        for i in (0, 1, t.size - 1):
            out.append((name, i, int(t[i:i + 1].view(np.uint32)[0])))
    return out
