"""`extract`: run a PyTorch model over a loader and stream hooked module outputs into an activation store."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

import torch

from ._layers import POOLINGS, matches_any, split_patterns
from .store import StoreError, StoreWriter


@dataclass
class ExtractionSummary:
    """What `extract` wrote."""
    path: str
    examples: int
    layers: List[str]                     # /activations datasets, in order
    gram_layers: List[str]                # layers with /grams
    seconds: float
    warnings: List[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


def hookable_layers(model: torch.nn.Module) -> List[str]:
    """Every module path of `model` (`model.named_modules()` without the root): the names `layers` globs match."""
    return [n for n, _ in model.named_modules() if n]


def _selected(names: Sequence[str], patterns: Optional[List[str]]) -> List[str]:
    if patterns is None:
        return []
    out = []
    for n in names:
        if matches_any(patterns, n) or any(matches_any(patterns, f"{n}:{p}") for p in POOLINGS):
            out.append(n)
    return out


def _first_tensor(name: str, output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise StoreError(f"layer '{name}' outputs a {type(output).__name__}, not a tensor; hook a module that returns "
                     "a tensor (or a tuple whose first element is one)")


class _Progress:
    """tqdm when it is installed, else one plain line rewritten at most once a second (on stderr)."""

    def __init__(self, total: Optional[int], enabled: bool, label: str):
        self.total, self.enabled, self.label = total, enabled, label
        self.done, self.start, self.last = 0, time.monotonic(), 0.0
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, unit="img", desc=label)
            except ImportError:
                pass

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= 1 or (self.total is not None and self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            of = f"/{self.total}" if self.total is not None else ""
            print(f"\r{self.label}: {self.done}{of} inputs, {rate:.1f} img/s", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done:
            self.last = 0.0
            self.total = self.done
            self.update(0)
            print(file=sys.stderr, flush=True)


def _to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_device(v, device) for v in x)
    return x


def extract(model: torch.nn.Module, loader, out, layers, store=("grams", "pooled"), gram_batch_size: int = 32,
            model_name: Optional[str] = None, device=None, *, gram_tokens: str = "flatten",
            poolings: Sequence[str] = POOLINGS, pooled_layers=None, feature_maps: str = "gap",
            dtype="float32", classes: Optional[Sequence[str]] = None, attributes=None, checkpoint: str = "",
            checkpoint_sha256: str = "", architecture: str = "", preprocessing: str = "", append: bool = False,
            gram_precision: str = "float32", prefix_tokens: Optional[int] = None,
            progress: bool = True) -> ExtractionSummary:
    """Runs `model` over `loader` and writes the outputs of the modules matching `layers` as an activation store
    (formats.md §1) at `out`, as `cka extract` does for its own ViTs.

    - `layers`: globs over `model.named_modules()` names, `.` and `:` being separators as in the `cka` command
      (`"blocks.*"`, `"blocks.*.mlp.fc1,norm"`, `"layer[1-4]"`; a list or a comma-separated string). A glob
      with a pooling suffix (`blocks.*:cls`) selects only that pooled feature. `hookable_layers(model)` lists
      the names.
    - `loader` yields `(ids, inputs)` or `(ids, inputs, labels)`: ids are B strings (unique, in a stable order:
      stores are compared input by input), inputs a tensor (or a dict / tuple of tensors, passed as
      `model(**inputs)` / `model(*inputs)`), moved to `device`.
    - `store`: any of `"grams"`, `"pooled"`, `"activations"`, `"logits"` (the model's output `[B, C]` as
      `/logits`, for `cka agreement`); `gram_batch_size`: inputs per stored Gram
      (consecutive, in loader order: compare with `cka compare --batch-size` of the same value). A loader whose
      batch size is a multiple of `gram_batch_size` keeps memory to one minibatch.
    - `prefix_tokens`: tokens `gap_nocls` leaves out; None = the model's `num_prefix_tokens` (timm: CLS +
      registers), else 1.
    - `device`: where the model runs (`"cuda"`, …); None = where its parameters are. Grams are computed there.
    - Other options as `StoreWriter`. The model runs in eval mode under `torch.inference_mode()` and gets its
      training flag back afterwards; every hook is removed, whatever happens.

    Returns an `ExtractionSummary`. Raises `StoreError` (duplicate ids, ids that differ from the store
    appended to, NaN/Inf, a module that outputs no tensor) and leaves nothing under `out`.
    """
    patterns = split_patterns(layers)
    only_logits = not isinstance(store, str) and set(store) == {"logits"}
    if patterns is None and not only_logits:
        raise ValueError("layers: give the module names to hook (globs, e.g. 'blocks.*')")
    pooled_patterns = split_patterns(pooled_layers)
    names = hookable_layers(model)
    hooked = list(dict.fromkeys(_selected(names, patterns) + _selected(names, pooled_patterns)))
    if not hooked and not (only_logits and patterns is None):
        raise ValueError(f"no module matches {','.join(patterns or [])} (e.g. {', '.join(names[:12])}, …)")
    if device is not None:
        device = torch.device(device)
        model.to(device)
    else:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    out = os.fspath(out)
    writer = StoreWriter(out, model=model_name, store=store, gram_batch_size=gram_batch_size, gram_tokens=gram_tokens,
                         poolings=poolings, layers=patterns, pooled_layers=pooled_patterns, feature_maps=feature_maps,
                         dtype=dtype, classes=classes, attributes=attributes, checkpoint=checkpoint,
                         checkpoint_sha256=checkpoint_sha256, architecture=architecture, preprocessing=preprocessing,
                         append=append, gram_precision=gram_precision,
                         prefix_tokens=prefix_tokens if prefix_tokens is not None
                         else int(getattr(model, "num_prefix_tokens", 1)))
    modules = dict(model.named_modules())
    handles = []

    def make_hook(name):
        def hook(_module, _inputs, output):
            writer.add_layer(name, _first_tensor(name, output))
        return hook

    total = None
    try:
        total = len(loader.dataset)             # a DataLoader over a sized dataset
    except (AttributeError, TypeError):
        pass
    bar = _Progress(total, progress, f"vitcka {os.path.basename(out)}")
    was_training = model.training
    start = time.monotonic()
    try:
        for name in hooked:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        model.eval()
        with torch.inference_mode():
            for item in loader:
                if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                    raise ValueError("the loader must yield (ids, inputs) or (ids, inputs, labels)")
                ids, inputs = item[0], item[1]
                labels = item[2] if len(item) == 3 else None
                writer.begin_batch(ids, labels)
                inputs = _to_device(inputs, device)
                if isinstance(inputs, dict):
                    output = model(**inputs)
                elif isinstance(inputs, (tuple, list)):
                    output = model(*inputs)
                else:
                    output = model(inputs)
                if "logits" in writer.store:
                    writer.add_logits(_first_tensor("the model", output))
                writer.end_batch()
                bar.update(writer.count - bar.done)
        path = writer.close()
    except BaseException:
        writer.abandon()
        raise
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        bar.close()
    layers_written = writer.layers
    grams = [n for n, layer in writer._layers.items() if layer.gram is not None]
    return ExtractionSummary(path=path, examples=writer.count, layers=layers_written, gram_layers=grams,
                             seconds=time.monotonic() - start, warnings=list(dict.fromkeys(writer.warnings)))
