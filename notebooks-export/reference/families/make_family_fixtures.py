#!/usr/bin/env python3
"""Writes Tests/CKAViTTests/FamilyFixtures/ from the OFFICIAL libraries (developer-run; not run by CI):

    python3 -m pip install transformers timm open_clip_torch      # on the developer's side only, with torch (CPU)
    python3 make_family_fixtures.py [--images ../shared/data/images/cifar10-test-1000] [--out DIR]

Issue 16: every ViT family researchers compare must load in its real layout and give, at every hook point, the
official library's forward to <= 1e-5 relative. For each family a tiny random-initialised model (width 32, 4
heads, 2 blocks, MLP 64, patch 7, 28x28 input = 16 patches) is saved exactly as the library saves it:

  hf-vit          transformers ViTForImageClassification, save_pretrained (model.safetensors + config.json)
  hf-vit-sharded  the same weights, save_pretrained(max_shard_size) -> model-0000k-of-0000n.safetensors + index
  hf-vit-bin      the same weights as pytorch_model.bin (torch.save of the hub-named state dict, a torch zip)
  hf-vit-mae      transformers ViTMAEModel (fixed sin-cos table; run unmasked: mask_ratio 0, increasing noise)
  hf-vit-mae-pretraining  transformers ViTMAEForPreTraining (encoder + decoder), plus mae-loss.h5: its loss
                  with a fixed mask (the `noise` argument) for `cka landscape --loss mae`
  hf-dinov2       transformers Dinov2Model (LayerScale, eps 1e-6)
  hf-dinov2-reg   transformers Dinov2WithRegistersModel (2 register tokens)
  hf-deit         transformers DeiTForImageClassificationWithTeacher (class + distillation token, two heads)
  hf-clip         transformers CLIPModel (vision tower + visual_projection; text tower ignored; quick_gelu)
  hf-siglip       transformers SiglipVisionModel (no class token, MAP attention-pool head, gelu_pytorch_tanh)
  open-clip       open_clip.CLIP(quick_gelu=True) state_dict -> open_clip_pytorch_model.bin (torch.save)
  timm-reg        timm VisionTransformer(reg_tokens=2, no_embed_class=True) -> model.safetensors
  timm-map        timm VisionTransformer(class_token=False, global_pool='map') -> model.safetensors
  timm-hub        timm save_for_hf directory (config.json + model.safetensors) of vit_base_patch32_siglip_256
                  (SigLIP 2: MAP head, gelu_tanh known from the architecture name only)
  timm-dynamic    timm VisionTransformer(dynamic_img_size=True, reg_tokens=1), 56 px patch 4, run at 40 and 72 px
  openai-torchscript  a tiny torch.jit.save archive, the format of OpenAI's ViT-B-16.pt (must be refused)

Each family directory also holds `reference.h5`, an activation store (docs/formats.md section 1) with
/inputs/ids, /inputs/labels, /inputs/classes, /inputs/pixels (the family's own preprocessing of the three
CIFAR-10 images copied to images/, as the official processor computes it) and /activations/<hook>: every hook
point under timm's names, captured by forward hooks on the official modules (q, k, v projections concatenated
in that order for `attn.qkv`; HF hidden_states[i+1] is checked to equal the `blocks.i` hook), the pooled
features blocks.i:cls|gap|gap_nocls and norm:... computed from the tokens (gap_nocls skips every prefix token),
and the head features (`head`, `attn_pool`, `fc_norm`) as the official model returns them.

Parameters: every tensor is re-drawn from a seeded N(0, 1) scaled per kind (matrices 1/sqrt(fan_in), norms
1 + 0.2 N, biases 0.1 N, tokens and position tables 0.5 N, LayerScale 0.5 + 0.2 N) so that no part is trivial.
"""
import argparse
import json
import os
import shutil

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def _import_torchvision():
    """timm imports torchvision. PyPI's torchvision wheels are CUDA builds whose C ops do not load beside the CPU
    torch wheel, and importing them fails while registering fake kernels of those ops (torchvision::nms). Nothing
    here uses those ops (only PIL transforms), so they are skipped."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        import sys
        for name in [n for n in sys.modules if n.startswith("torchvision")]:
            del sys.modules[name]
        register = torch.library.register_fake
        torch.library.register_fake = lambda *a, **k: (lambda f: f)
        try:
            import torchvision  # noqa: F401
        finally:
            torch.library.register_fake = register


_import_torchvision()

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "../../.."))
IMAGES = ["airplane", "cat", "ship"]
D, HEADS, DEPTH, MLP, PATCH, SIZE = 32, 4, 2, 64, 7, 28
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def pil(T, name):
    """The PIL backend of an image processor (transformers >= 5 defaults to a torchvision tensor backend whose
    antialiased resize differs from PIL by up to one uint8 level; transformers 4 and the `*Pil` classes use PIL)."""
    return getattr(T, name + "Pil", None) or getattr(T, name)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            n = torch.randn(p.shape, generator=g, dtype=torch.float64)
            leaf = name.split(".")[-1]
            if "lambda1" in name or name.endswith("gamma") or ".ls_" in name or "ls1" in name or "ls2" in name:
                v = 0.5 + 0.2 * n
            elif p.dim() == 1 and ("norm" in name or "ln_" in name or "layer_norm" in name or "layrnorm" in name
                                   or "layernorm" in name) and leaf == "weight":
                v = 1 + 0.2 * n
            elif p.dim() == 1 and ("bias" in leaf):
                v = 0.1 * n
            elif p.dim() >= 2 and leaf in ("weight", "in_proj_weight") or leaf == "proj":
                fan_in = p.shape[1] if p.dim() == 2 else int(np.prod(p.shape[1:]))
                if leaf == "proj":
                    fan_in = p.shape[0]
                v = n / np.sqrt(fan_in)
            else:  # tokens, position tables, probes, logit scale
                v = 0.5 * n
            p.copy_(v.to(p.dtype))


def load_images(folder):
    ids, labels, imgs = [], [], []
    for k, c in enumerate(IMAGES):
        f = sorted(os.listdir(os.path.join(folder, c)))[0]
        ids.append(f"{c}/{f}")
        labels.append(k)
        imgs.append(Image.open(os.path.join(folder, c, f)).convert("RGB"))
    return ids, labels, imgs


class Recorder:
    """Forward hooks on official modules; values stored under timm hook names as float32 numpy arrays."""

    def __init__(self):
        self.values, self.handles = {}, []

    def hook(self, module, name, pick=lambda m, i, o: o):
        def fn(m, i, o):
            v = pick(m, i, o)
            if isinstance(v, tuple):
                v = v[0]
            if v.dim() == 4:  # a patch-embedding convolution [B, D, g, g] -> [B, P, D]
                v = v.flatten(2).transpose(1, 2)
            self.values[name] = v.detach().float().numpy().copy()
        self.handles.append(module.register_forward_hook(fn))

    def qkv(self, q, k, v, name):
        parts = {}
        def make(tag):
            def fn(m, i, o):
                parts[tag] = o.detach()
                if len(parts) == 3:
                    self.values[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=-1).float().numpy().copy()
                    parts.clear()
            return fn
        for tag, mod in (("q", q), ("k", k), ("v", v)):
            self.handles.append(mod.register_forward_hook(make(tag)))

    def remove(self):
        for h in self.handles:
            h.remove()


def add_pooled(values, prefix, has_cls):
    for name in list(values):
        if not (name == "norm" or (name.startswith("blocks.") and name.count(".") == 1)):
            continue
        x = values[name].astype(np.float64)
        if x.ndim != 3:
            continue
        if has_cls:
            values[name + ":cls"] = x[:, 0].astype(np.float32)
        values[name + ":gap"] = x.mean(axis=1).astype(np.float32)
        values[name + ":gap_nocls"] = x[:, prefix:].mean(axis=1).astype(np.float32)


def write_reference(path, ids, labels, pixels, values, attrs):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "activations"
        f.attrs["format_version"] = 1
        for k, v in attrs.items():
            f.attrs[k] = v
        g = f.create_group("inputs")
        g.create_dataset("ids", data=np.array(ids, dtype=h5py.string_dtype()))
        g.create_dataset("labels", data=np.array(labels, dtype=np.int64))
        g.create_dataset("classes", data=np.array(IMAGES, dtype=h5py.string_dtype()))
        g.create_dataset("pixels", data=pixels.astype(np.float32))
        a = f.create_group("activations")
        for name, v in values.items():
            kw = dict(compression="gzip", compression_opts=9) if v.size > 2000 else {}
            ds = a.create_dataset(name, data=v.astype(np.float32), **kw)
            ds.attrs["order"] = 0


def copy_images(folder, ids, out):
    for i in ids:
        os.makedirs(os.path.join(out, "images", os.path.dirname(i)), exist_ok=True)
        shutil.copyfile(os.path.join(folder, i), os.path.join(out, "images", i))


# ---------------------------------------------------------------- Hugging Face


def hf_hooks(rec, model, family):
    import re
    mods = dict(model.named_modules())
    for name, m in mods.items():
        mt = re.match(r"(?:.*\.)?(?:layers|layer)\.(\d+)(?:\.(.*))?$", name)
        if mt and not name.startswith("head"):
            i, rest = int(mt.group(1)), mt.group(2)
            b = f"blocks.{i}"
            table = {None: b, "layernorm_before": b + ".norm1", "norm1": b + ".norm1", "layer_norm1": b + ".norm1",
                     "attention.o_proj": b + ".attn.proj", "self_attn.out_proj": b + ".attn.proj",
                     "layer_scale1": b + ".ls1", "layer_scale2": b + ".ls2",
                     "layernorm_after": b + ".norm2", "norm2": b + ".norm2", "layer_norm2": b + ".norm2",
                     "mlp.fc1": b + ".mlp.fc1", "mlp.activation_fn": b + ".mlp.act", "mlp.fc2": b + ".mlp.fc2"}
            if rest in table:
                rec.hook(m, table[rest])
            if rest in ("attention", "self_attn"):
                rec.qkv(m.q_proj, m.k_proj, m.v_proj, b + ".attn.qkv")
        elif name.endswith("patch_embeddings") or name.endswith("patch_embedding"):
            rec.hook(m, "patch_embed")
        elif name.endswith("pre_layrnorm"):
            rec.hook(m, "norm_pre")
        elif name.split(".")[-1] == "layernorm" and not name.startswith("head"):
            rec.hook(m, "norm")
        elif name.endswith("post_layernorm") and family == "hf-siglip":
            rec.hook(m, "norm")
        elif name == "head" and family == "hf-siglip":
            rec.hook(m, "attn_pool")


def make_hf(family, out, folder, seed):
    import transformers as T
    kw = dict(hidden_size=D, num_hidden_layers=DEPTH, num_attention_heads=HEADS, image_size=SIZE, patch_size=PATCH,
              attn_implementation="eager")
    if family in ("hf-vit", "hf-vit-sharded", "hf-vit-bin"):
        cfg = T.ViTConfig(intermediate_size=MLP, num_labels=5, **kw)
        model = T.ViTForImageClassification(cfg)
        proc = pil(T, "ViTImageProcessor")(size={"height": SIZE, "width": SIZE})
        prefix, has_cls = 1, True
    elif family == "hf-vit-mae":
        # ViTMAEModel shuffles and masks tokens in its forward; mask_ratio 0 and an increasing noise keep them all
        # in order (the encoder of MAE on the whole image, as feature extraction uses it).
        model = T.ViTMAEModel(T.ViTMAEConfig(intermediate_size=MLP, mask_ratio=0.0, **kw))
        proc = pil(T, "ViTImageProcessor")(size={"height": SIZE, "width": SIZE}, image_mean=IMAGENET_MEAN,
                                           image_std=IMAGENET_STD)
        prefix, has_cls = 1, True
    elif family == "hf-vit-mae-pretraining":
        # ViTMAEForPreTraining: the encoder plus the decoder `cka landscape --loss mae` needs (2 heads of width 8,
        # which no default guesses: config.json says so). norm_pix_loss false, transformers' default (hub configs).
        model = T.ViTMAEForPreTraining(T.ViTMAEConfig(
            intermediate_size=MLP, mask_ratio=0.75, norm_pix_loss=False, decoder_hidden_size=16,
            decoder_num_hidden_layers=2, decoder_num_attention_heads=2, decoder_intermediate_size=48, **kw))
        proc = pil(T, "ViTImageProcessor")(size={"height": SIZE, "width": SIZE}, image_mean=IMAGENET_MEAN,
                                           image_std=IMAGENET_STD)
        prefix, has_cls = 1, True
    elif family == "hf-dinov2":
        model = T.Dinov2Model(T.Dinov2Config(mlp_ratio=2, **kw))
        proc = pil(T, "BitImageProcessor")(size={"shortest_edge": 32}, crop_size={"height": SIZE, "width": SIZE},
                                   resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_convert_rgb=True)
        prefix, has_cls = 1, True
    elif family == "hf-dinov2-reg":
        model = T.Dinov2WithRegistersModel(T.Dinov2WithRegistersConfig(mlp_ratio=2, num_register_tokens=2, **kw))
        proc = pil(T, "BitImageProcessor")(size={"shortest_edge": 32}, crop_size={"height": SIZE, "width": SIZE},
                                   resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_convert_rgb=True)
        prefix, has_cls = 3, True
    elif family == "hf-deit":
        model = T.DeiTForImageClassificationWithTeacher(T.DeiTConfig(intermediate_size=MLP, num_labels=5, **kw))
        proc = pil(T, "DeiTImageProcessor")(size={"height": 32, "width": 32}, crop_size={"height": SIZE, "width": SIZE})
        prefix, has_cls = 2, True
    elif family == "hf-clip":
        vc = dict(intermediate_size=MLP, hidden_act="quick_gelu", **{k: v for k, v in kw.items()
                                                                      if k != "attn_implementation"})
        tc = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64,
                  max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1)
        model = T.CLIPModel(T.CLIPConfig(text_config=tc, vision_config=vc, projection_dim=16,
                                         attn_implementation="eager"))
        proc = pil(T, "CLIPImageProcessor")(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
        prefix, has_cls = 1, True
    elif family == "hf-siglip":
        model = T.SiglipVisionModel(T.SiglipVisionConfig(intermediate_size=MLP, **kw))
        proc = pil(T, "SiglipImageProcessor")(size={"height": SIZE, "width": SIZE})
        prefix, has_cls = 0, False
    else:
        raise ValueError(family)
    randomize(model, seed)
    model.eval()
    os.makedirs(out, exist_ok=True)
    if family == "hf-vit-sharded":
        model.save_pretrained(out, max_shard_size="40KB")
    elif family == "hf-vit-bin":
        # transformers 5 writes safetensors only; older versions wrote torch.save(state_dict) under the hub names,
        # which is what this re-saves (the names save_pretrained wrote, the tensors unchanged).
        from safetensors.torch import load_file
        model.save_pretrained(out)
        sd = load_file(os.path.join(out, "model.safetensors"))
        os.remove(os.path.join(out, "model.safetensors"))
        torch.save(sd, os.path.join(out, "pytorch_model.bin"))
    else:
        model.save_pretrained(out)
    proc.save_pretrained(out)
    ids, labels, imgs = load_images(folder)
    copy_images(folder, ids, out)
    pixels = proc(images=imgs, return_tensors="pt")["pixel_values"].float()
    rec = Recorder()
    vision = {"hf-clip": lambda: model.vision_model, "hf-vit-mae-pretraining": lambda: model.vit}.get(
        family, lambda: model)()
    hf_hooks(rec, vision, family)
    with torch.no_grad():
        if family == "hf-clip":
            features = model.get_image_features(pixel_values=pixels)
            if not torch.is_tensor(features):
                features = features.pooler_output
            o = model.vision_model(pixel_values=pixels, output_hidden_states=True)
            hidden = o.hidden_states
            rec.values["norm"] = model.vision_model.post_layernorm(o.last_hidden_state).numpy()
            rec.values["head"] = features.numpy()
            assert np.allclose(rec.values["norm"][:, 0], o.pooler_output.numpy(), atol=1e-6)
        else:
            extra = {}
            if family in ("hf-vit-mae", "hf-vit-mae-pretraining"):
                extra["noise"] = torch.arange((SIZE // PATCH) ** 2, dtype=torch.float32).repeat(len(ids), 1)
            if family == "hf-vit-mae-pretraining":  # the encoder unmasked, as extraction runs it
                model.config.mask_ratio = 0.0
                o = model.vit(pixel_values=pixels, output_hidden_states=True, **extra)
                model.config.mask_ratio = 0.75
            else:
                o = model(pixel_values=pixels, output_hidden_states=True, **extra)
            hidden = o.hidden_states
            if family in ("hf-vit", "hf-vit-sharded", "hf-vit-bin", "hf-deit"):
                rec.values["head"] = o.logits.numpy()
            if family == "hf-siglip":
                assert np.allclose(rec.values["attn_pool"], o.pooler_output.numpy())
    rec.remove()
    for i in range(DEPTH):  # hidden_states[i + 1] is block i's output
        assert np.array_equal(hidden[i + 1].numpy(), rec.values[f"blocks.{i}"]), f"{family}: hidden_states {i}"
    add_pooled(rec.values, prefix, has_cls)
    write_reference(os.path.join(out, "reference.h5"), ids, labels, pixels.numpy(), rec.values,
                    {"family": family, "library": f"transformers {T.__version__}", "prefix_tokens": prefix})
    if family == "hf-vit-mae-pretraining":
        write_mae_loss(model, os.path.join(out, "mae-loss.h5"), ids, labels, pixels, seed)
    if family in ("hf-dinov2", "hf-dinov2-reg"):
        # DINOv2 interpolates its position table to any input (bicubic, antialias): the same model at 42 px.
        proc42 = pil(T, "BitImageProcessor")(size={"shortest_edge": 48}, crop_size={"height": 42, "width": 42},
                                             resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
        pixels42 = proc42(images=imgs, return_tensors="pt")["pixel_values"].float()
        with torch.no_grad():
            o = model(pixel_values=pixels42, output_hidden_states=True)
        values = {f"blocks.{i}": o.hidden_states[i + 1].numpy() for i in range(DEPTH)}
        values["norm"] = o.last_hidden_state.numpy()
        write_reference(os.path.join(out, "reference-42.h5"), ids, labels, pixels42.numpy(), values,
                        {"family": family, "library": f"transformers {T.__version__}", "image_size": 42})
    return rec.values


def write_mae_loss(model, path, ids, labels, pixels, seed):
    """ViTMAEForPreTraining's loss with a fixed mask: `noise` (seeded uniform) fixes HF's random_masking
    (ids_shuffle = argsort(noise), 4 of 16 patches kept at mask_ratio 0.75). Written as the activation store's
    /inputs plus /masks [N, P] uint8 (1 = masked, the layout `cka landscape --masks` reads) and /reference/:
    noise, ids_shuffle, logits [N, P, p*p*3], loss (config.norm_pix_loss = false) and loss_norm_pix (the same
    model with norm_pix_loss = true)."""
    g = torch.Generator().manual_seed(1000 + seed)
    noise = torch.rand(len(ids), (SIZE // PATCH) ** 2, generator=g)
    assert model.config.mask_ratio == 0.75 and not model.config.norm_pix_loss
    with torch.no_grad():
        o = model(pixel_values=pixels, noise=noise)
        model.config.norm_pix_loss = True
        o_norm = model(pixel_values=pixels, noise=noise)
        model.config.norm_pix_loss = False
    write_reference(path, ids, labels, pixels.numpy(), {}, {"family": "hf-vit-mae-pretraining"})
    with h5py.File(path, "a") as f:
        f.create_dataset("masks", data=o.mask.numpy().astype(np.uint8))
        r = f.create_group("reference")
        r.create_dataset("noise", data=noise.numpy())
        r.create_dataset("ids_shuffle", data=torch.argsort(noise, dim=1).numpy().astype(np.int64))
        r.create_dataset("logits", data=o.logits.numpy(), compression="gzip", compression_opts=9)
        r.create_dataset("loss", data=np.array([o.loss.item()], dtype=np.float64))
        r.create_dataset("loss_norm_pix", data=np.array([o_norm.loss.item()], dtype=np.float64))
    print(f"  MAE loss {o.loss.item():.6f}, norm-pix {o_norm.loss.item():.6f}")


# ---------------------------------------------------------------- open_clip


def make_open_clip(out, folder, seed):
    import open_clip
    model = open_clip.CLIP(
        embed_dim=16, quick_gelu=True,
        vision_cfg=dict(layers=DEPTH, width=D, head_width=D // HEADS, patch_size=PATCH, image_size=SIZE,
                        mlp_ratio=MLP / D),
        text_cfg=dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1))
    randomize(model, seed)
    model.eval()
    os.makedirs(out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(out, "open_clip_pytorch_model.bin"))
    # open_clip's hub layout (push_to_hub): the model config beside the weights says QuickGELU and the head width.
    cfg = {"model_cfg": {"embed_dim": 16, "quick_gelu": True,
                         "vision_cfg": {"layers": DEPTH, "width": D, "head_width": D // HEADS, "patch_size": PATCH,
                                        "image_size": SIZE, "mlp_ratio": MLP / D},
                         "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}},
           "preprocess_cfg": {"mean": CLIP_MEAN, "std": CLIP_STD}}
    with open(os.path.join(out, "open_clip_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    ids, labels, imgs = load_images(folder)
    copy_images(folder, ids, out)
    tf = open_clip.image_transform(SIZE, is_train=False, mean=CLIP_MEAN, std=CLIP_STD)
    pixels = torch.stack([tf(im) for im in imgs])
    v = model.visual
    rec = Recorder()
    rec.hook(v.conv1, "patch_embed")
    rec.hook(v.ln_pre, "norm_pre")
    for i, blk in enumerate(v.transformer.resblocks):
        b = f"blocks.{i}"
        rec.hook(blk.ln_1, b + ".norm1")
        rec.hook(blk.ln_1, b + ".attn.qkv",
                 lambda m, i_, o, blk=blk: F.linear(o, blk.attn.in_proj_weight, blk.attn.in_proj_bias))
        rec.hook(blk.attn, b + ".attn.proj", lambda m, i_, o: o[0])
        rec.hook(blk.ln_2, b + ".norm2")
        rec.hook(blk.mlp.c_fc, b + ".mlp.fc1")
        rec.hook(blk.mlp.gelu, b + ".mlp.act")
        rec.hook(blk.mlp.c_proj, b + ".mlp.fc2")
        rec.hook(blk, b)
    rec.hook(v.ln_post, "norm")
    with torch.no_grad():
        feats = model.encode_image(pixels)
    rec.remove()
    rec.values["head"] = feats.numpy()
    assert rec.values["blocks.0"].shape[0] == len(ids), "resblocks must be batch-first"
    add_pooled(rec.values, 1, True)
    write_reference(os.path.join(out, "reference.h5"), ids, labels, pixels.numpy(), rec.values,
                    {"family": "open-clip", "library": f"open_clip {open_clip.__version__}", "prefix_tokens": 1})


# ---------------------------------------------------------------- timm


def timm_recorder(model):
    """Hooks on every timm hook point of a VisionTransformer."""
    rec = Recorder()
    rec.hook(model.patch_embed, "patch_embed")
    for i, blk in enumerate(model.blocks):
        b = f"blocks.{i}"
        for n in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.act", "mlp.fc2"):
            rec.hook(blk.get_submodule(n), f"{b}.{n}")
        rec.hook(blk, b)
    rec.hook(model.norm, "norm")
    if getattr(model, "attn_pool", None) is not None:
        rec.hook(model.attn_pool, "attn_pool")
    return rec


def make_timm_hub(out, folder, seed):
    """A timm hub directory (`timm.models.push_to_hf_hub` / `save_for_hf`: config.json with `architecture`,
    `model_args`, `pretrained_cfg`, beside model.safetensors) of a SigLIP 2 architecture, whose GELU is the tanh
    approximation (`act_layer='gelu_tanh'` in the architecture's defaults, not in `model_args`): the name is the
    only record of it. Preprocessing from `pretrained_cfg` (timm's resolve_data_config + create_transform)."""
    import timm
    from timm.models import _hub
    timm.layers.set_fused_attn(False)
    model = timm.create_model("vit_base_patch32_siglip_256", pretrained=False, img_size=SIZE, patch_size=PATCH,
                              embed_dim=D, depth=DEPTH, num_heads=HEADS, mlp_ratio=MLP / D, num_classes=0)
    assert type(model.blocks[0].mlp.act).__name__ == "GELUTanh" and model.attn_pool is not None
    randomize(model, seed)
    model.eval()
    shutil.rmtree(out, ignore_errors=True)
    # Export preprocessing unlike the bare-file preset (timm augreg: 0.9, bicubic, 0.5), so reading it is tested.
    _hub.save_for_hf(model, out, safe_serialization=True,
                     data_config=dict(crop_pct=0.875, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD))
    ids, labels, imgs = load_images(folder)
    copy_images(folder, ids, out)
    # What timm.create_model("hf-hub:…") resolves from the saved pretrained_cfg.
    with open(os.path.join(out, "config.json")) as f:
        saved = json.load(f)["pretrained_cfg"]
    cfg = timm.data.resolve_data_config({}, pretrained_cfg=saved)
    tf = timm.data.create_transform(**cfg)
    print(cfg, tf)
    pixels = torch.stack([tf(im) for im in imgs])
    rec = timm_recorder(model)
    with torch.no_grad():
        model(pixels)
    rec.remove()
    add_pooled(rec.values, 0, False)
    write_reference(os.path.join(out, "reference.h5"), ids, labels, pixels.numpy(), rec.values,
                    {"family": "timm-hub", "library": f"timm {timm.__version__}", "prefix_tokens": 0})


def make_timm(family, out, folder, seed):
    import timm
    from timm.models.vision_transformer import VisionTransformer
    from safetensors.torch import save_file
    timm.layers.set_fused_attn(False)
    kw = dict(img_size=SIZE, patch_size=PATCH, embed_dim=D, depth=DEPTH, num_heads=HEADS, mlp_ratio=MLP / D)
    if family == "timm-reg":
        model_kwargs = dict(reg_tokens=2, no_embed_class=True, num_classes=5, **kw)
        prefix, has_cls = 3, True
    elif family == "timm-map":
        model_kwargs = dict(class_token=False, global_pool="map", num_classes=5, **kw)
        prefix, has_cls = 0, False
    else:
        raise ValueError(family)
    model = VisionTransformer(**model_kwargs)
    randomize(model, seed)
    model.eval()
    os.makedirs(out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "model.safetensors"))
    ids, labels, imgs = load_images(folder)
    copy_images(folder, ids, out)
    # timm's eval transform with the augreg settings the toolkit uses for bare timm files (crop_pct 0.9, bicubic,
    # mean = std = 0.5): Resize(int(28 / 0.9) = 31) -> CenterCrop(28).
    tf = timm.data.create_transform(input_size=(3, SIZE, SIZE), crop_pct=0.9, interpolation="bicubic",
                                    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    print(tf)
    pixels = torch.stack([tf(im) for im in imgs])
    rec = timm_recorder(model)
    with torch.no_grad():
        logits = model(pixels)
    rec.remove()
    rec.values["head"] = logits.numpy()
    add_pooled(rec.values, prefix, has_cls)
    write_reference(os.path.join(out, "reference.h5"), ids, labels, pixels.numpy(), rec.values,
                    {"family": family, "library": f"timm {timm.__version__}", "prefix_tokens": prefix})

    # The same weights at 42 px (6 x 6 patches): timm's own loader resamples pos_embed (checkpoint_filter_fn ->
    # resample_abs_pos_embed: bicubic, antialias, prefix rows kept) when the model is built for another size.
    from timm.models.vision_transformer import checkpoint_filter_fn
    big = VisionTransformer(**{**model_kwargs, "img_size": 42})
    big.load_state_dict(checkpoint_filter_fn(model.state_dict(), big))
    big.eval()
    tf42 = timm.data.create_transform(input_size=(3, 42, 42), crop_pct=0.9, interpolation="bicubic",
                                      mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    pixels42 = torch.stack([tf42(im) for im in imgs])
    rec = Recorder()
    for i, blk in enumerate(big.blocks):
        rec.hook(blk, f"blocks.{i}")
    rec.hook(big.norm, "norm")
    with torch.no_grad():
        big(pixels42)
    rec.remove()
    write_reference(os.path.join(out, "reference-42.h5"), ids, labels, pixels42.numpy(), rec.values,
                    {"family": family, "library": f"timm {timm.__version__}", "image_size": 42})
    with h5py.File(os.path.join(out, "reference-42.h5"), "a") as f:
        f.create_dataset("reference/pos_embed", data=big.pos_embed.detach().numpy())


DYN_PATCH, DYN_SIZE, DYN_RUN = 4, 56, (40, 72)


def make_timm_dynamic(out, folder, seed):
    """timm `dynamic_img_size=True`: the model resamples its position table in every forward (`_pos_embed` ->
    `resample_abs_pos_embed(pos_embed, new_size=(H, W), old_size=grid, num_prefix_tokens)`, bicubic, antialias)
    for inputs of any size. Its state dict is that of the same model without the flag. A class token plus one
    register with `no_embed_class=False`, so the table carries two prefix rows that must be kept. Trained at 56 px,
    patch 4 (grid 14, as ViT-*/16 at 224) and run at 40 and 72 px (grids 10 and 18, as 160 and 288 px at /16)."""
    import timm
    from timm.models.vision_transformer import VisionTransformer
    from safetensors.torch import save_file
    timm.layers.set_fused_attn(False)
    model = VisionTransformer(img_size=DYN_SIZE, patch_size=DYN_PATCH, embed_dim=D, depth=DEPTH, num_heads=HEADS,
                              mlp_ratio=MLP / D, reg_tokens=1, num_classes=5, dynamic_img_size=True)
    assert model.num_prefix_tokens == 2 and model.pos_embed.shape[1] == 2 + (DYN_SIZE // DYN_PATCH) ** 2
    randomize(model, seed)
    model.eval()
    os.makedirs(out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "model.safetensors"))
    ids, labels, imgs = load_images(folder)
    copy_images(folder, ids, out)
    for size in DYN_RUN:
        tf = timm.data.create_transform(input_size=(3, size, size), crop_pct=0.9, interpolation="bicubic",
                                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        pixels = torch.stack([tf(im) for im in imgs])
        rec = Recorder()
        for i, blk in enumerate(model.blocks):
            rec.hook(blk, f"blocks.{i}")
        rec.hook(model.norm, "norm")
        with torch.no_grad():
            logits = model(pixels)  # the 56 px model itself, fed `size` px
            table = timm.layers.resample_abs_pos_embed(model.pos_embed, new_size=(size // DYN_PATCH,) * 2,
                                                       old_size=model.patch_embed.grid_size, num_prefix_tokens=2)
        rec.remove()
        rec.values["head"] = logits.numpy()
        add_pooled(rec.values, 2, True)
        path = os.path.join(out, f"reference-{size}.h5")
        write_reference(path, ids, labels, pixels.numpy(), rec.values,
                        {"family": "timm-dynamic", "library": f"timm {timm.__version__}", "image_size": size,
                         "prefix_tokens": 2})
        with h5py.File(path, "a") as f:
            f.create_dataset("reference/pos_embed", data=table.numpy())
    # Non-square inputs (e.g. 40 x 72) run in timm too; the toolkit crops squares, so only square sizes are checked.


def make_torchscript(out):
    """A TorchScript archive (torch.jit.save), the format of OpenAI's CLIP `ViT-B-16.pt`: refused with the
    one-line conversion recipe (its weights are only reachable by running its code)."""
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), os.path.join(out, "ViT-tiny.pt"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default=os.path.join(REPO, "../shared/data/images/cifar10-test-1000"))
    ap.add_argument("--out", default=os.path.join(REPO, "Tests/CKAViTTests/FamilyFixtures"))
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    families = ["hf-vit", "hf-vit-sharded", "hf-vit-bin", "hf-dinov2", "hf-dinov2-reg", "hf-deit", "hf-clip",
                "hf-siglip", "open-clip", "timm-reg", "timm-map", "openai-torchscript", "hf-vit-mae", "timm-dynamic",
                "hf-vit-mae-pretraining", "timm-hub"]
    for seed, family in enumerate(families):
        if args.only and family not in args.only.split(","):
            continue
        out = os.path.join(args.out, family)
        shutil.rmtree(out, ignore_errors=True)
        s = 16 if family in ("hf-vit", "hf-vit-sharded", "hf-vit-bin") else 100 + seed  # the three hf-vit layouts hold the same weights
        if family.startswith("hf-"):
            make_hf(family, out, args.images, s)
        elif family == "open-clip":
            make_open_clip(out, args.images, s)
        elif family == "openai-torchscript":
            make_torchscript(out)
        elif family == "timm-dynamic":
            make_timm_dynamic(out, args.images, s)
        elif family == "timm-hub":
            make_timm_hub(out, args.images, s)
        else:
            make_timm(family, out, args.images, s)
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
        print(f"{family}: {size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
