#!/usr/bin/env python3
"""Writes the small checkpoint fixtures of Tests/CKACheckpointTests/Fixtures/ (run by developers, not in CI).

Every .pth file is real `torch.save` output (torch 2.15.0 from PyPI, run on CPU; default zip format, pickle protocol 2) and every
.safetensors file is real `safetensors.torch.save_file` output (safetensors 0.8.0). The tiny ViT below (width 8, MLP 32, patch 4 on
8×8 inputs = 5 tokens; depth 2, or depth 1 in the larger wrapped files to keep all fixtures under 200 KB) has the
exact parameter names of DINO / MoCo-v3 / MAE / timm (`patch_embed.proj`, `blocks.N.norm1`, `attn.qkv`, …), and
each checkpoint is wrapped the way the official training code wraps it (see shared/docs/reference-models.md §1):

  dino_backbone.pth        bare state dict (dino_vitbase16_pretrain.pth)
  dino_full.pth            {'student': module.backbone.* + module.head.*, 'teacher': backbone.* + head.*,
                            'optimizer', 'epoch', 'args': argparse.Namespace, 'dino_loss'}
  dino_linear.pth          {'state_dict': module.linear.*} (not a backbone: must be refused)
  mocov3.pth.tar           {'epoch', 'arch', 'state_dict': module.base_encoder.* (+ projector head with BN),
                            module.momentum_encoder.* (storages shared with base), module.predictor.*,
                            'optimizer', 'scaler'}; one qkv weight is a non-contiguous (transposed) view
  mae_pretrain_full.pth    {'model': encoder + decoder_*/mask_token, 'optimizer', 'epoch', 'scaler', 'args'}
  mae_finetuned_fp16.pth   {'model': encoder minus norm + fc_norm + head, all float16}
  rcmae_pretrain.pth       {'student': module.*, 'teacher', 'student_without_ddp', 'teacher_without_ddp',
                            'optimizer', 'epoch', 'scaler', 'args'}
  dinov2_p14_bf16.pth      bare DINOv2-style dict: LayerScale ls1/ls2.gamma, patch 14, mask_token, bfloat16
  timm.safetensors         backbone + head (float32)
  dtypes.safetensors       F16, BF16, F64, I64, U8, BOOL, a 0-d and an empty tensor
  values.pth               not a ViT: float64/bfloat16/float16/int64/int32/int16/int8/uint8/bool tensors,
                           transposed, offset, expanded (stride 0) and shared-storage views, a 0-d and an empty
                           tensor, an nn.Parameter, argparse.Namespace, a numpy scalar, torch.device,
                           torch.Size, a 100-bit int, nested containers
  malicious_system.pth     torch.save of an object whose __reduce__ is (os.system, ('touch SENTINEL',))
  malicious_eval.pth       {'model': {... 'x': builtins.eval("open(SENTINEL,'w')")}}
  malicious_popen.pth      a state dict with one value reducing to subprocess.Popen(['touch', SENTINEL])
  legacy.pth               torch.save(..., _use_new_zipfile_serialization=False) (pre-1.6 format)

expected.json records, per fixture, the detected source, the architecture and for each canonical (timm) name the
shape, the float64 sum and sum of squares and the first values of the tensor converted to float32, which the Swift
tests compare against.

Usage:  python3 make_checkpoint_fixtures.py [OUTPUT_DIR]   (default: ../../../Tests/CKACheckpointTests/Fixtures)
Needs:  pip install torch safetensors numpy
"""
import argparse
import collections
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

SENTINEL = "/tmp/cka-checkpoint-fixture-pwned"

WIDTH, DEPTH, PATCH, IMAGE, MLP = 8, 2, 4, 8, 32


class Attention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d, bias=True)
        self.proj = nn.Linear(d, d)


class Mlp(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(h, d)


class LayerScale(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.gamma = nn.Parameter(torch.rand(d) * 0.1 + 1e-5)


class Block(nn.Module):
    def __init__(self, d, h, layer_scale=False):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d)
        if layer_scale:
            self.ls1 = LayerScale(d)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = Mlp(d, h)
        if layer_scale:
            self.ls2 = LayerScale(d)


class PatchEmbed(nn.Module):
    def __init__(self, d, p):
        super().__init__()
        self.proj = nn.Conv2d(3, d, kernel_size=p, stride=p)


class TinyViT(nn.Module):
    """Parameter names as in DINO / timm / MAE `VisionTransformer`."""

    def __init__(self, d=WIDTH, depth=DEPTH, p=PATCH, image=IMAGE, h=MLP, num_classes=0, layer_scale=False,
                 fc_norm=False, mask_token=False):
        super().__init__()
        n = (image // p) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, d).normal_())
        self.patch_embed = PatchEmbed(d, p)
        self.blocks = nn.ModuleList([Block(d, h, layer_scale) for _ in range(depth)])
        if fc_norm:
            self.fc_norm = nn.LayerNorm(d, eps=1e-6)
        else:
            self.norm = nn.LayerNorm(d, eps=1e-6)
        if num_classes:
            self.head = nn.Linear(d, num_classes)
        # Non-trivial LayerNorm affines so that sums distinguish tensors.
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.normal_(1.0, 0.1)
                    m.bias.normal_(0.0, 0.1)


def prefixed(sd, prefix):
    return collections.OrderedDict((prefix + k, v) for k, v in sd.items())


def mae_decoder(d_dec=4, depth=1, enc=WIDTH, p=PATCH, image=IMAGE):
    n = (image // p) ** 2
    sd = collections.OrderedDict()
    sd["mask_token"] = torch.zeros(1, 1, d_dec).normal_(0, 0.02)
    sd["decoder_embed.weight"] = torch.randn(d_dec, enc) * 0.1
    sd["decoder_embed.bias"] = torch.zeros(d_dec)
    sd["decoder_pos_embed"] = torch.randn(1, n + 1, d_dec) * 0.02
    blk = Block(d_dec, 4 * d_dec)
    for i in range(depth):
        for k, v in blk.state_dict().items():
            sd[f"decoder_blocks.{i}.{k}"] = v.clone()
    sd["decoder_norm.weight"] = torch.ones(d_dec)
    sd["decoder_norm.bias"] = torch.zeros(d_dec)
    sd["decoder_pred.weight"] = torch.randn(p * p * 3, d_dec) * 0.1
    sd["decoder_pred.bias"] = torch.zeros(p * p * 3)
    return sd


def small_optimizer_state(model):
    """A real AdamW state for two parameters only (to keep the fixture small)."""
    params = [model.cls_token, model.pos_embed]
    opt = torch.optim.AdamW(params, lr=1e-3)
    loss = sum((p ** 2).sum() for p in params)
    loss.backward()
    opt.step()
    for p in params:
        p.grad = None
    return opt.state_dict()


def train_args(**extra):
    ns = argparse.Namespace(arch="vit_tiny", patch_size=PATCH, lr=5e-4, batch_size_per_gpu=64, epochs=100,
                            use_fp16=True, output_dir="./out", data_path="/path/to/imagenet/train")
    for k, v in extra.items():
        setattr(ns, k, v)
    return ns


class System:
    def __reduce__(self):
        return (os.system, (f"touch {SENTINEL}",))


class Eval:
    def __reduce__(self):
        return (eval, (f"open({SENTINEL!r}, 'w')",))


class Popen:
    def __reduce__(self):
        return (subprocess.Popen, (["touch", SENTINEL],))


def describe(t):
    """[shape, sum, weighted sum Σ (i+1)·x_i] of the tensor converted to float32, row-major, summed in float64
    (the weights catch element-order mistakes such as a wrong stride gather)."""
    a = t.detach().to(torch.float32).to(torch.float64).contiguous().reshape(-1)
    w = torch.arange(1, a.numel() + 1, dtype=torch.float64)
    return [list(t.shape), float("%.10g" % float(a.sum())), float("%.10g" % float((a * w).sum()))]


def canonical(sd, strip=()):
    out = {}
    for k, v in sd.items():
        for s in strip:
            if k.startswith(s):
                k = k[len(s):]
        out[k] = describe(v)
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../../Tests/CKACheckpointTests/Fixtures")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    expected = {}

    def arch(width=WIDTH, depth=DEPTH, patch=PATCH, tokens=(IMAGE // PATCH) ** 2 + 1, mlp=MLP, ls=False, fc_norm=False,
             classes=None):
        return {"width": width, "depth": depth, "patch": patch, "tokens": tokens, "mlp": mlp, "layer_scale": ls,
                "fc_norm": fc_norm, "classes": classes}

    # 1. DINO backbone: bare state dict.
    m = TinyViT()
    sd = m.state_dict()
    torch.save(sd, f"{out}/dino_backbone.pth")
    expected["dino_backbone.pth"] = {"source": "dino", "key": None, "arch": arch(), "params": canonical(sd)}

    # 2. DINO full checkpoint.
    teacher = TinyViT(depth=1)
    student = TinyViT(depth=1)
    # To keep the file small the student shares the teacher's storages except for a few distinct tensors
    # (real students differ everywhere; the loader must pick the teacher either way).
    with torch.no_grad():
        distinct = {"cls_token", "pos_embed", "blocks.0.norm1.weight"}
        for (k, ps), (_, pt) in zip(student.named_parameters(), teacher.named_parameters()):
            if k not in distinct:
                ps.data = pt.data
    head = collections.OrderedDict()
    head["mlp.0.weight"] = torch.randn(8, WIDTH)
    head["mlp.0.bias"] = torch.randn(8)
    head["mlp.2.weight"] = torch.randn(8, 8)
    head["mlp.2.bias"] = torch.randn(8)
    head["mlp.4.weight"] = torch.randn(4, 8)
    head["mlp.4.bias"] = torch.randn(4)
    head["last_layer.weight_g"] = torch.ones(16, 1)
    head["last_layer.weight_v"] = torch.randn(16, 4)
    t_sd = prefixed(teacher.state_dict(), "backbone.")
    t_sd.update(prefixed(head, "head."))
    s_sd = prefixed(student.state_dict(), "module.backbone.")
    s_sd.update(prefixed(collections.OrderedDict((k, v + 1) for k, v in head.items()), "module.head."))
    full = {"student": s_sd, "teacher": t_sd, "optimizer": small_optimizer_state(student), "epoch": 3,
            "args": train_args(teacher_temp=0.04), "dino_loss": {"center": torch.zeros(1, 16)}}
    torch.save(full, f"{out}/dino_full.pth")
    expected["dino_full.pth"] = {"source": "dino-full", "key": "teacher", "arch": arch(depth=1),
                                 "params": canonical(teacher.state_dict()),
                                 "student_cls_token": describe(student.cls_token)}

    # 3. DINO linear weights (not a backbone).
    torch.save({"state_dict": {"module.linear.weight": torch.randn(10, 2 * WIDTH), "module.linear.bias": torch.zeros(10)}},
               f"{out}/dino_linear.pth")

    # 4. MoCo-v3: base encoder + projector (BN) + momentum encoder (shared storages) + predictor.
    base = TinyViT(depth=1)
    base.pos_embed.requires_grad = False  # fixed sin-cos table stored as a frozen Parameter in MoCo-v3
    b_sd = base.state_dict()
    # A non-contiguous qkv weight: the transpose of a [W, 3W] tensor.
    b_sd["blocks.0.attn.qkv.weight"] = b_sd["blocks.0.attn.qkv.weight"].t().contiguous().t()
    assert not b_sd["blocks.0.attn.qkv.weight"].is_contiguous()
    proj = collections.OrderedDict()
    proj["0.weight"] = torch.randn(16, WIDTH)
    bn = nn.BatchNorm1d(16)
    bn(torch.randn(4, 16))
    for k, v in bn.state_dict().items():
        proj["1." + k] = v
    proj["3.weight"] = torch.randn(16, 16)
    for k, v in bn.state_dict().items():
        proj["4." + k] = v.clone()
    proj["6.weight"] = torch.randn(8, 16)
    bn_last = nn.BatchNorm1d(8, affine=False)
    for k, v in bn_last.state_dict().items():
        proj["7." + k] = v
    sd = prefixed(b_sd, "module.base_encoder.")
    sd.update(prefixed(proj, "module.base_encoder.head."))
    sd.update(prefixed(b_sd, "module.momentum_encoder."))      # same tensors: storages are shared in the file
    sd.update(prefixed(proj, "module.momentum_encoder.head."))
    pred = collections.OrderedDict([("0.weight", torch.randn(16, 8)), ("3.weight", torch.randn(8, 16))])
    sd.update(prefixed(pred, "module.predictor."))
    torch.save({"epoch": 300, "arch": "vit_base", "state_dict": sd, "optimizer": small_optimizer_state(base),
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                           "_growth_tracker": 17}},
               f"{out}/mocov3.pth.tar")
    expected["mocov3.pth.tar"] = {"source": "mocov3", "key": "state_dict", "arch": arch(depth=1), "params": canonical(b_sd)}

    # 5. MAE pre-training checkpoint with decoder.
    enc = TinyViT(depth=1)
    model = enc.state_dict()
    dec = mae_decoder()
    model.update(dec)
    torch.save({"model": model, "optimizer": small_optimizer_state(enc), "epoch": 799,
                "scaler": {"scale": 1024.0}, "args": train_args(mask_ratio=0.75, norm_pix_loss=True)},
               f"{out}/mae_pretrain_full.pth")
    expected["mae_pretrain_full.pth"] = {"source": "mae", "key": "model", "arch": arch(depth=1),
                                         "params": canonical(enc.state_dict()), "decoder": canonical(dec)}

    # 6. MAE finetuned, float16: fc_norm instead of norm, classifier head.
    ft = TinyViT(num_classes=10, fc_norm=True).half()
    sd = ft.state_dict()
    head_sd = {k: v for k, v in sd.items() if k.startswith("head.")}
    body = {k: v for k, v in sd.items() if not k.startswith("head.")}
    torch.save({"model": sd, "args": train_args(global_pool=True, nb_classes=10)}, f"{out}/mae_finetuned_fp16.pth")
    expected["mae_finetuned_fp16.pth"] = {"source": "mae", "key": "model", "arch": arch(fc_norm=True, classes=10),
                                          "params": canonical(body), "head": canonical(head_sd)}

    # 7. RC-MAE pre-training checkpoint.
    t = TinyViT(depth=1)
    s = TinyViT(depth=1)
    with torch.no_grad():   # shared storages except a few tensors, as for DINO above
        for (k, ps), (_, pt) in zip(s.named_parameters(), t.named_parameters()):
            if k not in {"cls_token", "blocks.0.mlp.fc2.bias"}:
                ps.data = pt.data
    dec = mae_decoder()
    t_sd = t.state_dict()
    t_sd.update(dec)
    s_sd = s.state_dict()
    s_sd.update(dec)
    torch.save({"student": prefixed(s_sd, "module."), "teacher": t_sd, "student_without_ddp": s_sd,
                "teacher_without_ddp": t_sd, "optimizer": small_optimizer_state(s), "epoch": 1599,
                "scaler": {"scale": 256.0}, "args": train_args(ema_op="per_iter", ema_m=0.996)},
               f"{out}/rcmae_pretrain.pth")
    expected["rcmae_pretrain.pth"] = {"source": "rcmae", "key": "teacher", "arch": arch(depth=1),
                                      "params": canonical(t.state_dict()), "decoder": canonical(dec),
                                      "student_cls_token": describe(s.cls_token)}

    # 8. DINOv2-style: LayerScale, patch 14, mask_token, bfloat16.
    v2 = TinyViT(p=14, image=28, layer_scale=True, mask_token=True).to(torch.bfloat16)
    sd = v2.state_dict()
    torch.save(sd, f"{out}/dinov2_p14_bf16.pth")
    expected["dinov2_p14_bf16.pth"] = {"source": "dinov2", "key": None,
                                       "arch": arch(patch=14, tokens=5, ls=True),
                                       "params": canonical({k: v for k, v in sd.items() if k != "mask_token"})}

    # 9. timm safetensors (float32 and bfloat16).
    tm = TinyViT(num_classes=10)
    sd = {k: v.contiguous() for k, v in tm.state_dict().items()}
    save_file(sd, f"{out}/timm.safetensors", metadata={"format": "pt"})
    body = {k: v for k, v in sd.items() if not k.startswith("head.")}
    head_sd = {k: v for k, v in sd.items() if k.startswith("head.")}
    expected["timm.safetensors"] = {"source": "timm", "key": None, "arch": arch(classes=10),
                                    "params": canonical(body), "head": canonical(head_sd)}
    dt = {"f16": torch.tensor([0.5, -1.0, 65504.0, 6.1e-5], dtype=torch.float16),
          "bf16": torch.tensor([[1.0, -2.5], [3.140625, 1e-3]], dtype=torch.bfloat16),
          "f64": torch.tensor([0.1, -1e30], dtype=torch.float64),
          "i64": torch.tensor([1, -2, 2 ** 40]), "u8": torch.tensor([0, 255], dtype=torch.uint8),
          "bool": torch.tensor([True, False]), "scalar": torch.tensor(7.0), "empty": torch.zeros(0, 2)}
    save_file(dt, f"{out}/dtypes.safetensors")
    expected["dtypes.safetensors"] = {k: describe(v) for k, v in dt.items()}

    # 10. Values: dtypes and views (not a ViT).
    base64 = torch.arange(12, dtype=torch.float64).reshape(3, 4) / 8 - 0.5
    shared = torch.arange(10, dtype=torch.float32)
    param = nn.Parameter(torch.tensor([1.5, -2.25]))
    values = collections.OrderedDict()
    values["f64"] = base64
    values["f64_t"] = base64.t()                       # transposed view of the same storage
    values["bf16"] = torch.tensor([1.0, -2.5, 3.140625, 1e-3], dtype=torch.bfloat16)
    values["f16"] = torch.tensor([[0.5, -1.0], [65504.0, 6.1e-5]], dtype=torch.float16)
    values["i64"] = torch.tensor([1, -2, 2 ** 40], dtype=torch.int64)
    values["i32"] = torch.tensor([7, -8], dtype=torch.int32)
    values["i16"] = torch.tensor([300, -300], dtype=torch.int16)
    values["i8"] = torch.tensor([-5, 5], dtype=torch.int8)
    values["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    values["bool"] = torch.tensor([True, False, True])
    values["shared_a"] = shared[2:6]                   # storage offset 2
    values["shared_b"] = shared.view(2, 5)[:, ::2]     # strided view of the same storage
    values["expanded"] = torch.tensor([3.0, 4.0]).expand(3, 2)   # stride 0
    values["scalar"] = torch.tensor(2.5)
    values["empty"] = torch.zeros(0, 3)
    values["param"] = param
    values["args"] = train_args()
    values["np_scalar"] = np.float64(0.125)
    values["device"] = torch.device("cpu")
    values["size"] = torch.Size([2, 3])
    values["big"] = 2 ** 100 + 7
    values["neg"] = -(2 ** 70)
    values["nested"] = {"a": [1, 2.5, None, True, "x"], "b": (b"\x00\x01", {3, 4}), "c": frozenset([5])}
    torch.save(values, f"{out}/values.pth")
    expected["values.pth"] = {k: describe(v) for k, v in values.items() if isinstance(v, torch.Tensor)}

    # 11. Malicious files (torch.save pickles the __reduce__ payload; loading with pickle would run it).
    small = collections.OrderedDict([("cls_token", torch.zeros(1, 1, WIDTH)), ("pos_embed", torch.zeros(1, 5, WIDTH))])
    torch.save({"model": small, "payload": System()}, f"{out}/malicious_system.pth")
    torch.save({"model": {"x": Eval()}}, f"{out}/malicious_eval.pth")
    sd = collections.OrderedDict(small)
    sd["blocks.0.attn.qkv.weight"] = Popen()
    torch.save(sd, f"{out}/malicious_popen.pth")

    # 12. Legacy (pre-1.6) serialization.
    torch.save({"w": torch.ones(2)}, f"{out}/legacy.pth", _use_new_zipfile_serialization=False)

    sha256 = {n: hashlib.sha256(open(os.path.join(out, n), "rb").read()).hexdigest()
              for n in sorted(os.listdir(out)) if n.endswith((".pth", ".tar", ".safetensors"))}
    with open(f"{out}/expected.json", "w") as f:
        json.dump({"generator": "make_checkpoint_fixtures.py", "torch": torch.__version__,
                   "sentinel": SENTINEL, "width": WIDTH, "sha256": sha256, "fixtures": expected}, f, sort_keys=True,
                  separators=(",", ":"), allow_nan=False)
    total = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
    print(f"wrote {len(os.listdir(out))} files, {total} bytes, to {out}")
    assert not os.path.exists(SENTINEL), "a payload ran while writing the fixtures?"


if __name__ == "__main__":
    main()
