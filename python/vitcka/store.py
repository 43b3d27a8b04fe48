"""`StoreWriter`: a format-v1 activation store (formats.md §1), written minibatch by minibatch."""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import h5py
import numpy as np
import torch

from . import __version__
from ._layers import POOLINGS, block_index, infer_kind, matches_any, split_patterns

STORES = ("activations", "pooled", "grams", "logits")
TOKENS = ("flatten", "cls", "gap", "gap_nocls")
GRAM_PRECISIONS = ("float32", "float64")


class StoreError(ValueError):
    """Input the activation-store format forbids (the message names the file, the layer or the input)."""


class DuplicateIdError(StoreError):
    """The same input id was given twice."""


class IdOrderError(StoreError):
    """Ids that differ from (or reorder) the inputs of the store being appended to."""


class NonFiniteError(StoreError):
    """A feature holds NaN or ±Inf."""


@dataclass
class _Layer:
    """What is written for one input layer (a module output, or a feature the user adds)."""
    name: str
    shape: tuple                       # per-example shape, as first given
    datasets: List[tuple] = field(default_factory=list)   # (/activations name, reduction) this layer writes
    gram: Optional["_GramBatcher"] = None


def _abandon_on_error(method):
    """A failing call abandons the store (deletes the temporary file): nothing partial survives an error."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.abandon()
            raise
    return wrapper


def _temporary_path(path: str) -> str:
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{base}.partial-{os.getpid()}")


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise StoreError(f"layer '{name}': expected a torch.Tensor or numpy array, got {type(x).__name__}")


def _float64_on(device: torch.device) -> bool:
    return device.type != "mps"     # Apple's MPS has no float64


@contextlib.contextmanager
def _full_float32_products():
    """Full float32 matrix products (no TF32 / bf16 shortcuts a user may have enabled) inside the block."""
    previous = torch.get_float32_matmul_precision()
    if previous != "highest":
        torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        if previous != "highest":
            torch.set_float32_matmul_precision(previous)


def centered_gram(x: torch.Tensor, precision: str = "float32", chunk_columns: int = 4096) -> torch.Tensor:
    """`Xc·Xcᵀ` of `x` `[b, F]` with every feature column centred over the b rows, computed on `x`'s device.

    - `precision="float32"` (default): float32 products of blocks of `chunk_columns` centred columns (TF32
      off), summed in float64 — on the device where it has float64, else on the CPU (Apple MPS).
    - `precision="float64"`: float64 products throughout (column blocks of about 64 MB; slow on GPUs with
      little float64 throughput; MPS has none and uses the float32 path).

    Extra memory: one block of columns. Returns a float64 CPU tensor `[b, b]`."""
    if precision not in GRAM_PRECISIONS:
        raise ValueError(f"gram precision: unknown '{precision}' (use {', '.join(GRAM_PRECISIONS)})")
    b, f = x.shape
    wide = _float64_on(x.device)
    if precision == "float64" and wide:
        cols = max(1, (64 << 20) // (8 * max(1, b)))
        g = torch.zeros((b, b), dtype=torch.float64, device=x.device)
        for c0 in range(0, f, cols):
            xc = x[:, c0:c0 + cols].to(torch.float64)
            xc = xc - xc.mean(dim=0, keepdim=True)
            g += xc @ xc.T
        return g.to("cpu")
    total = torch.device("cpu") if not wide else x.device
    g = torch.zeros((b, b), dtype=torch.float64, device=total)
    centring = torch.promote_types(x.dtype, torch.float32)      # float64 rows are centred before the cast
    mean = x.mean(dim=0, dtype=centring)
    with _full_float32_products():
        for c0 in range(0, f, chunk_columns):
            xc = (x[:, c0:c0 + chunk_columns].to(centring) - mean[c0:c0 + chunk_columns]).to(torch.float32)
            g += (xc @ xc.T).to(total, torch.float64)
    return g.to("cpu")


class _GramBatcher:
    """Rows of one layer's representation until `batch_size` of them make a Gram (consecutive inputs)."""

    def __init__(self, batch_size: int, precision: str):
        self.batch_size = batch_size
        self.precision = precision
        self.pending: List[torch.Tensor] = []
        self.filled = 0

    def add(self, rows: torch.Tensor, emit) -> None:
        b = self.batch_size
        start, n = 0, rows.shape[0]
        while start < n:
            take = min(b - self.filled, n - start)
            part = rows[start:start + take]
            start += take
            if self.filled == 0 and take == b:
                emit(centered_gram(part, self.precision))
                continue
            # Kept past this call: a copy, so that later in-place ops of the model cannot change it.
            self.pending.append(part.clone())
            self.filled += take
            if self.filled == b:
                emit(centered_gram(torch.cat(self.pending), self.precision))
                self.pending, self.filled = [], 0


def _reduce_tokens(x: torch.Tensor, how: str, name: str, wide: bool = False, prefix: int = 1) -> torch.Tensor:
    """`[B, T, D]` → `[B, T·D]` (flatten) or `[B, D]`; `[B, D]` unchanged; `[B, C, H, W, …]` flattened, or
    averaged over the spatial axes for `gap`; `gap_nocls` leaves out the first `prefix` tokens (CLS, registers).
    Means are taken in float32 at least, in float64 if `wide` (for Grams, on devices that have it)."""
    acc = torch.float64 if wide and _float64_on(x.device) else torch.promote_types(x.dtype, torch.float32)
    if x.dim() == 2:
        return x
    if x.dim() == 3:
        if how == "flatten":
            return x.reshape(x.shape[0], -1)
        if how == "cls":
            return x[:, 0]
        if how == "gap":
            return x.mean(dim=1, dtype=acc)
        if x.shape[1] <= prefix:
            raise StoreError(f"layer '{name}': gap_nocls needs more than the {prefix} prefix token(s), got "
                             f"{list(x.shape)}")
        return x[:, prefix:].mean(dim=1, dtype=acc)
    if how == "flatten":
        return x.reshape(x.shape[0], -1)
    if how == "gap":
        return x.mean(dim=tuple(range(2, x.dim())), dtype=acc)
    raise StoreError(f"layer '{name}': tokens={how} is for token outputs [B, T, D], got {list(x.shape)}")


class StoreWriter:
    """Writes an activation store (formats.md §1, format v1) that every `cka` command reads.

    ```python
    with vitcka.StoreWriter("feats.h5", model="my-model", store=("pooled", "grams"), gram_batch_size=32) as w:
        for ids, feats in batches:            # feats: {"layer": tensor [B, D] or [B, T, D] or [B, C, H, W]}
            w.add(ids, feats)
    ```

    For each layer given to `add`:

    - `pooled`: token outputs `[B, T, D]` become `name:cls`, `name:gap`, `name:gap_nocls` `[N, D]`
      (`poolings`; `gap_nocls` leaves out the first `prefix_tokens` tokens, 1 = the CLS token);
      `[B, D]` features are stored as `name`; feature maps `[B, C, H, W]` as `name:gap`
      `[N, C]` (mean over the spatial positions; `feature_maps="flatten"`: `name` `[N, C·H·W]`).
      `pooled_layers` (globs) restricts which layers get pooled features.
    - `activations`: `name` `[N, T, D]` or `[N, D]` (higher ranks flattened to `[N, F]`) in `dtype`.
    - `grams`: `/grams/name` `[k, b, b]` float64: per consecutive run of `gram_batch_size` inputs, the Gram of
      the representation (`gram_tokens` reduces `[B, T, D]`; maps are flattened) with its feature columns
      centred within the run, computed on the tensors' device and accumulated in float64 (float32 products of
      4096-column blocks summed in float64; `gram_precision="float64"`: float64 products) — what
      `cka extract --store grams` writes. A last run shorter than `gram_batch_size` has no Gram (a warning).

    The file is written as `.NAME.partial-PID` beside `path` and renamed into place by `close()`; an
    exception (or leaving the `with` block by one) deletes it, so `path` never holds a partial store.
    Duplicate ids, non-finite values and (with `append=True`) ids that differ from the store's raise a
    `StoreError` subclass.

    `append=True` adds layers to the existing store at `path`: `add` must give its ids in the store's order,
    and all of them before `close()`; the store is replaced atomically.
    """

    def __init__(self, path: Union[str, os.PathLike], *, model: Optional[str] = None,
                 store: Iterable[str] = ("grams", "pooled"), gram_batch_size: int = 32, gram_tokens: str = "flatten",
                 poolings: Sequence[str] = POOLINGS, layers=None, pooled_layers=None, feature_maps: str = "gap",
                 dtype: Union[str, torch.dtype] = "float32", classes: Optional[Sequence[str]] = None,
                 attributes: Optional[Mapping[str, Any]] = None, checkpoint: str = "", checkpoint_sha256: str = "",
                 architecture: str = "", preprocessing: str = "", append: bool = False,
                 gram_precision: str = "float32", prefix_tokens: int = 1):
        self.path = os.fspath(path)
        self.store = tuple(store) if not isinstance(store, str) else tuple(s.strip() for s in store.split(","))
        for s in self.store:
            if s not in STORES:
                raise ValueError(f"store: unknown '{s}' (use {', '.join(STORES)})")
        if not self.store:
            raise ValueError("store: nothing to store")
        if "grams" in self.store and gram_batch_size < 4:
            raise ValueError("gram_batch_size must be at least 4 (HSIC₁ needs 4 examples)")
        if gram_precision not in GRAM_PRECISIONS:
            raise ValueError(f"gram_precision: unknown '{gram_precision}' (use {', '.join(GRAM_PRECISIONS)})")
        if gram_tokens not in TOKENS:
            raise ValueError(f"gram_tokens: unknown '{gram_tokens}' (use {', '.join(TOKENS)})")
        for p in poolings:
            if p not in POOLINGS:
                raise ValueError(f"poolings: unknown '{p}' (use {', '.join(POOLINGS)})")
        if feature_maps not in ("gap", "flatten"):
            raise ValueError(f"feature_maps: unknown '{feature_maps}' (use gap or flatten)")
        dtype_name = str(dtype).replace("torch.", "")
        if dtype_name not in ("float16", "float32"):
            raise ValueError(f"dtype: {dtype} (use float16 or float32)")
        self.gram_batch_size = gram_batch_size
        self.gram_tokens = gram_tokens
        self.gram_precision = gram_precision
        if prefix_tokens < 0:
            raise ValueError(f"prefix_tokens: {prefix_tokens} (at least 0)")
        self.prefix_tokens = prefix_tokens
        self.poolings = tuple(poolings)
        self.layers_patterns = split_patterns(layers)
        self.pooled_layers = split_patterns(pooled_layers)
        self.feature_maps = feature_maps
        self.dtype = np.dtype(dtype_name)
        self.append = append
        self._tmp = _temporary_path(self.path)
        self._layers: Dict[str, _Layer] = {}
        self._ids: List[str] = []
        self._id_set: Dict[str, int] = {}
        self._labels: List[int] = []
        self._batch: Optional[List[str]] = None
        self._seen: set = set()
        self._done = False
        self._file: Optional[h5py.File] = None
        self._existing_ids: Optional[List[str]] = None
        self._next_order = 0
        self.warnings: List[str] = []
        if append:
            self._open_existing()
        else:
            self._file = h5py.File(self._tmp, "w")
            attrs = {"format": "activations", "format_version": np.int64(1), "model": model or "model",
                     "checkpoint": checkpoint, "checkpoint_sha256": checkpoint_sha256, "architecture": architecture,
                     "preprocessing": preprocessing, "created_by": f"vitcka {__version__}"}
            for k, v in {**attrs, **dict(attributes or {})}.items():
                self._file.attrs[k] = v
            self._classes = list(classes) if classes is not None else None

    # MARK: opening

    def _open_existing(self) -> None:
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such store to append to")
        with h5py.File(self.path, "r") as f:
            fmt = f.attrs.get("format")
            if fmt is not None and _text(fmt) != "activations":
                raise StoreError(f"{self.path}: format is '{_text(fmt)}', expected 'activations'")
            version = f.attrs.get("format_version")
            if version is not None and int(version) != 1:
                raise StoreError(f"{self.path}: format_version {int(version)} (this writer knows 1)")
            if "inputs/ids" not in f:
                raise StoreError(f"{self.path}: no /inputs/ids")
            self._existing_ids = [_text(s) for s in f["inputs/ids"][()]]
            orders = [int(ds.attrs["order"]) for ds in f["activations"].values()
                      if "order" in ds.attrs] if "activations" in f else []
            self._next_order = max(orders, default=-1) + 1
        shutil.copyfile(self.path, self._tmp)
        try:
            self._file = h5py.File(self._tmp, "r+")
        except Exception:
            os.unlink(self._tmp)
            raise
        self._classes = None

    # MARK: adding

    def add(self, ids: Sequence, features: Mapping[str, Any], labels: Optional[Sequence[int]] = None,
            logits: Any = None) -> None:
        """Adds one minibatch: `ids` (B strings, in order) and `{layer: tensor [B, …]}` on any device.
        Every call gives the same layers; `labels` (B ints, -1 = unknown) are optional; `logits` `[B, C]`
        (with `"logits"` in `store`) are written to `/logits`, which `cka agreement` reads."""
        self.begin_batch(ids, labels)
        for name, x in features.items():
            self.add_layer(name, x)
        if logits is not None:
            self.add_logits(logits)
        self.end_batch()

    @_abandon_on_error
    def begin_batch(self, ids: Sequence, labels: Optional[Sequence[int]] = None) -> None:
        """Starts a minibatch of `ids` whose layers follow with `add_layer` (how `extract` feeds forward hooks)."""
        self._check_open()
        ids = _ids_list(ids)
        if labels is not None:
            labels = [int(v) for v in (labels.tolist() if hasattr(labels, "tolist") else labels)]
            if len(labels) != len(ids):
                raise StoreError(f"{self.path}: {len(labels)} labels for {len(ids)} ids")
        if not ids:
            raise StoreError(f"{self.path}: an empty minibatch")
        start = len(self._ids)
        for i, s in enumerate(ids):
            j = self._id_set.get(s)
            if j is not None:
                raise DuplicateIdError(f"{self.path}: duplicate input id '{s}' (inputs {j} and {start + i}); "
                                       "every input needs its own id")
            self._id_set[s] = start + i
        if self._existing_ids is not None:
            want = self._existing_ids[start:start + len(ids)]
            if ids != want:
                k = next((i for i, (a, b) in enumerate(zip(ids, want)) if a != b), len(want))
                if k >= len(want):
                    raise IdOrderError(f"{self.path}: more inputs than the {len(self._existing_ids)} of the store "
                                       f"being appended to (input {start + k}: '{ids[k]}')")
                other = self._existing_ids.index(ids[k]) if ids[k] in self._existing_ids else None
                how = (f"it is input {other} there: ids must come in the store's order" if other is not None
                       else "the store has no such id")
                raise IdOrderError(f"{self.path}: input {start + k} is '{ids[k]}' but the store has "
                                   f"'{want[k]}' ({how})")
        self._ids += ids
        self._labels += labels if labels is not None else [-1] * len(ids)
        self._batch = ids
        self._seen = set()

    @_abandon_on_error
    def add_layer(self, name: str, x: Any) -> None:
        """Adds layer `name`'s rows `[B, …]` for the current minibatch (see `begin_batch`)."""
        if self._batch is None:
            raise RuntimeError("add_layer outside begin_batch/end_batch")
        x = _as_tensor(x, name)
        b = len(self._batch)
        if name in self._seen:
            raise StoreError(f"{self.path}: layer '{name}' given twice for one minibatch (a module that runs "
                             "more than once per forward: hook another one)")
        if x.dim() < 2 or x.shape[0] != b:
            raise StoreError(f"{self.path}: layer '{name}' has shape {list(x.shape)}; expected [{b}, …] "
                             f"(one row per id of the minibatch)")
        if not x.is_floating_point():
            x = x.float()
        # One reduction (no temporary); a NaN or ±Inf anywhere makes the sum non-finite. Only then (or on an
        # overflow of the sum) the exact element-wise check.
        if not bool(torch.isfinite(x.sum())):
            finite = torch.isfinite(x)
            if not bool(finite.all()):
                bad = int((~finite).reshape(b, -1).any(dim=1).nonzero()[0, 0])
                what = "NaN" if bool(torch.isnan(x[bad]).any()) else "Inf"
                raise NonFiniteError(f"{self.path}: layer '{name}' holds {what} for input '{self._batch[bad]}'")
        layer = self._layers.get(name)
        if layer is None:
            if len(self._ids) > b:
                raise StoreError(f"{self.path}: layer '{name}' first appears after {len(self._ids) - b} inputs; "
                                 "every minibatch must give the same layers")
            layer = self._declare(name, tuple(x.shape[1:]))
        elif tuple(x.shape[1:]) != layer.shape:
            raise StoreError(f"{self.path}: layer '{name}' has rows of shape {list(x.shape[1:])}, earlier "
                             f"{list(layer.shape)}")
        self._seen.add(name)
        for ds_name, how in layer.datasets:
            self._append(ds_name, self._stored_value(name, how, x))
        if layer.gram is not None:
            rows = _reduce_tokens(x, self.gram_tokens, name, wide=True, prefix=self.prefix_tokens).reshape(b, -1)
            layer.gram.add(rows, lambda g: self._append("grams/" + name, g.numpy()))

    @_abandon_on_error
    def add_logits(self, x: Any) -> None:
        """Adds the current minibatch's logits `[B, C]` to `/logits` (float32; `store` must include "logits")."""
        if self._batch is None:
            raise RuntimeError("add_logits outside begin_batch/end_batch")
        if "logits" not in self.store:
            raise StoreError(f"{self.path}: logits given but store={self.store} has no 'logits'")
        x = _as_tensor(x, "/logits")
        b = len(self._batch)
        if x.dim() != 2 or x.shape[0] != b:
            raise StoreError(f"{self.path}: logits of shape {list(x.shape)}; expected [{b}, C]")
        if "/logits" in self._seen:
            raise StoreError(f"{self.path}: logits given twice for one minibatch")
        x = x.float()
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0, 0])
            raise NonFiniteError(f"{self.path}: /logits hold NaN or Inf for input '{self._batch[bad]}'")
        f = self._file
        if "logits" not in f:
            if len(self._ids) > b:
                raise StoreError(f"{self.path}: logits first given after {len(self._ids) - b} inputs")
            c = x.shape[1]
            d = f.create_dataset("logits", shape=(0, c), maxshape=(None, c), dtype=np.float32,
                                 chunks=(max(1, min(1024, (4 << 20) // (4 * c))), c), track_times=False)
            d.attrs["kind"] = "model_output"
            d.attrs["readout"] = "the model's output"
        elif f["logits"].shape[1] != x.shape[1]:
            raise StoreError(f"{self.path}: logits with {x.shape[1]} classes, earlier {f['logits'].shape[1]}")
        d = f["logits"]
        n = d.shape[0]
        d.resize(n + b, axis=0)
        d[n:] = x.cpu().numpy()
        self._seen.add("/logits")

    @_abandon_on_error
    def end_batch(self) -> None:
        """Ends the minibatch: every layer (and the logits, if stored) must have been given."""
        if self._batch is None:
            raise RuntimeError("end_batch without begin_batch")
        missing = [n for n in self._layers if n not in self._seen]
        if "logits" in self.store and "/logits" not in self._seen:
            missing.append("/logits")
        self._batch = None
        if missing:
            raise StoreError(f"{self.path}: layer '{missing[0]}' was not given for the minibatch ending at input "
                             f"{len(self._ids) - 1}; every minibatch must give the same layers")

    # MARK: layout

    def _declare(self, name: str, shape: tuple) -> _Layer:
        f = self._file
        if "/" in name:
            raise StoreError(f"{self.path}: layer name '{name}' contains '/'")
        layer = _Layer(name, shape)
        rank = len(shape) + 1
        specs = []                                  # (dataset, reduction, kind)
        full = matches_any(self.layers_patterns, name)
        if "activations" in self.store and full:
            specs.append((name, "flatten" if rank > 3 else "none", infer_kind(name)))
        if "pooled" in self.store:
            # As `cka extract --layers`: `blocks.3` selects blocks.3:cls etc. too; `blocks.*:cls` only the CLS.
            pats = self.pooled_layers if self.pooled_layers is not None else self.layers_patterns

            def wanted(ds: str) -> bool:
                return matches_any(pats, ds) or matches_any(pats, name)
            if rank == 3:
                specs += [(f"{name}:{p}", p, "pooled") for p in self.poolings if wanted(f"{name}:{p}")]
            elif rank == 2:
                if not specs and wanted(name):
                    specs.append((name, "none", "pooled"))
            elif self.feature_maps == "gap":
                if wanted(f"{name}:gap"):
                    specs.append((f"{name}:gap", "gap", "pooled"))
            elif not specs and wanted(name):
                specs.append((name, "flatten", "pooled"))
        for ds, how, kind in specs:
            if "activations/" + ds in f:
                raise StoreError(f"{self.path}: /activations/{ds} exists already")
            if how == "none":
                row = shape
            elif how == "flatten":
                row = (int(np.prod(shape)),)
            else:
                row = (shape[-1],) if rank == 3 else (shape[0],)
            row_bytes = max(1, int(np.prod(row, dtype=np.int64)) * self.dtype.itemsize)
            rows = max(1, min(1024, (4 << 20) // row_bytes))
            d = f.create_dataset("activations/" + ds, shape=(0,) + row, maxshape=(None,) + row, dtype=self.dtype,
                                 chunks=(rows,) + row, track_times=False)
            d.attrs["order"] = np.int64(self._next_order)
            d.attrs["kind"] = kind
            d.attrs["block"] = np.int64(block_index(ds))
            self._next_order += 1
            layer.datasets.append((ds, how))
        if "grams" in self.store and full:
            gname = "grams/" + name
            if gname in f:
                raise StoreError(f"{self.path}: /{gname} exists already")
            if rank > 3 and self.gram_tokens in ("cls", "gap_nocls"):
                raise StoreError(f"{self.path}: layer '{name}' is a feature map {list(shape)}: gram_tokens="
                                 f"{self.gram_tokens} is for token outputs [B, T, D] (use flatten or gap)")
            b = self.gram_batch_size
            d = f.create_dataset(gname, shape=(0, b, b), maxshape=(None, b, b), dtype=np.float64,
                                 chunks=(max(1, min(64, (1 << 20) // max(1, b * b * 8))), b, b), track_times=False)
            d.attrs["batch_size"] = np.int64(b)
            d.attrs["tokens"] = self.gram_tokens
            d.attrs["centered"] = np.bool_(True)
            layer.gram = _GramBatcher(b, self.gram_precision)
        self._layers[name] = layer
        return layer

    def _stored_value(self, name: str, how: str, x: torch.Tensor) -> np.ndarray:
        if how != "none":
            x = _reduce_tokens(x, how, name, prefix=self.prefix_tokens)
        torch_dtype = torch.float16 if self.dtype == np.float16 else torch.float32
        return x.to(torch_dtype).cpu().numpy()

    def _append(self, ds_name: str, value: np.ndarray) -> None:
        key = ds_name if ds_name.startswith("grams/") else "activations/" + ds_name
        d = self._file[key]
        if ds_name.startswith("grams/"):
            value = value[None]
        n = d.shape[0]
        d.resize(n + value.shape[0], axis=0)
        d[n:] = value

    # MARK: finishing

    def _check_open(self) -> None:
        if self._done or self._file is None:
            raise RuntimeError(f"{self.path}: the writer was already closed or abandoned")

    def close(self) -> str:
        """Writes `/inputs`, checks every layer has N rows, and renames the store into place. Returns the path."""
        self._check_open()
        try:
            if self._batch is not None:
                raise RuntimeError("close inside an unfinished minibatch")
            n = len(self._ids)
            if n == 0:
                raise StoreError(f"{self.path}: no inputs were added")
            if not self._layers and "logits" not in self._file:
                raise StoreError(f"{self.path}: no layers were added")
            f = self._file
            if self._existing_ids is not None:
                if n != len(self._existing_ids):
                    raise IdOrderError(f"{self.path}: {n} inputs given, the store has {len(self._existing_ids)}")
            else:
                f.create_dataset("inputs/ids", data=np.array(self._ids, dtype=object),
                                 dtype=h5py.string_dtype("utf-8"), track_times=False)
                if any(v >= 0 for v in self._labels):
                    f.create_dataset("inputs/labels", data=np.asarray(self._labels, dtype=np.int64), track_times=False)
                if self._classes is not None:
                    f.create_dataset("inputs/classes", data=np.array(self._classes, dtype=object),
                                     dtype=h5py.string_dtype("utf-8"), track_times=False)
            for layer in self._layers.values():
                for ds, _ in layer.datasets:
                    assert f["activations/" + ds].shape[0] == n
                if layer.gram is not None and layer.gram.filled:
                    left = layer.gram.filled
                    self.warnings.append(f"the last {left} of {n} inputs do not fill a Gram batch of "
                                         f"{self.gram_batch_size} and have no Gram")
                    layer.gram.pending = []
            f.close()
            self._file = None
            os.replace(self._tmp, self.path)
            self._done = True
        except BaseException:
            self.abandon()
            raise
        for w in dict.fromkeys(self.warnings):
            warnings.warn(f"{self.path}: {w}", stacklevel=2)
        return self.path

    def abandon(self) -> None:
        """Closes and deletes the temporary file; nothing appears under `path`."""
        if self._done:
            return
        self._done = True
        try:
            if self._file is not None:
                self._file.close()
        finally:
            self._file = None
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)

    @property
    def count(self) -> int:
        """Inputs added so far."""
        return len(self._ids)

    @property
    def layers(self) -> List[str]:
        """The `/activations` datasets written, in order."""
        return [ds for layer in self._layers.values() for ds, _ in layer.datasets]

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def __del__(self):
        try:
            self.abandon()
        except Exception:
            pass


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _ids_list(ids: Any) -> List[str]:
    if isinstance(ids, str):
        raise StoreError("ids: a sequence of strings, got one string")
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    elif isinstance(ids, np.ndarray):
        ids = ids.tolist()
    return [_text(s) for s in ids]
