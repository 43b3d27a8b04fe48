"""Shared by the fixture generators: loading the official model code from a checkout, and the shims that let
2021-era official code (pinned to timm 0.3.2 / 0.4.9) run on current timm (1.0.x). See
vit/make_official_fixtures.py for what each shim is for."""
import importlib.util
import sys
import types


def load_module(name, path, extra_path=None, purge=()):
    """Imports the file `path` as module `name` (registered in sys.modules), with `extra_path` first on sys.path
    while it loads; modules named in `purge` (and their submodules) are forgotten first, so that e.g. MAE's and
    RC-MAE's own `util` packages do not shadow each other."""
    for k in [k for k in sys.modules if any(k == p or k.startswith(p + ".") for p in purge)]:
        del sys.modules[k]
    if extra_path:
        sys.path.insert(0, extra_path)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod
    finally:
        if extra_path:
            sys.path.remove(extra_path)


def install_timm_shims():
    import timm.layers
    import timm.models.vision_transformer as tvt
    helpers = types.ModuleType("timm.models.layers.helpers")
    helpers.to_2tuple = timm.layers.to_2tuple
    sys.modules["timm.models.layers.helpers"] = helpers                                  # shim 1
    if not hasattr(tvt.VisionTransformer, "num_tokens"):
        tvt.VisionTransformer.num_tokens = property(lambda self: self.num_prefix_tokens)  # shim 2
    timm.layers.set_fused_attn(False)                                                   # shim 4
