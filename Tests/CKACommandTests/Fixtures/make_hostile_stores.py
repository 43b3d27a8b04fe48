#!/usr/bin/env python3
"""Writes the hostile activation stores of the hardening tests (issue 13) into this folder.

Each file is small on disk but declares something a careless reader would trust. Run from anywhere:
    python3 Tests/CKACommandTests/Fixtures/make_hostile_stores.py
Needs h5py and numpy. The files are committed with this script.
"""
import os
import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def store(name, n=64, labels=False):
    f = h5py.File(os.path.join(HERE, name), "w", libver="earliest", track_order=False)
    f.attrs["format"] = "activations"
    f.attrs["format_version"] = 1
    f.attrs["model"] = name[:-3]
    f.create_dataset("inputs/ids", data=np.array([f"x{k:03d}" for k in range(n)], dtype=h5py.string_dtype()))
    if labels:
        f.create_dataset("inputs/labels", data=(np.arange(n) % 2).astype("i8"))
    return f


# Class 2: huge declared, empty chunked datasets.
with store("huge_activations.h5", labels=True) as f:
    f.create_dataset("activations/blocks.0", shape=(64, 2_000_000_000), dtype="f4", chunks=(1, 1_000_000))
    f.create_dataset("logits", shape=(64, 2_000_000_000), dtype="f4", chunks=(1, 1_000_000))
with h5py.File(os.path.join(HERE, "huge_ids.h5"), "w") as f:
    f.attrs["format"] = "activations"
    f.attrs["format_version"] = 1
    f.create_dataset("inputs/ids", shape=(10**12,), dtype=h5py.string_dtype(), chunks=(1024,))
with store("huge_pixels.h5", n=4) as f:
    f.create_dataset("inputs/pixels", shape=(4, 3, 100_000, 100_000), dtype="f4", chunks=(1, 1, 1000, 1000))
with store("huge_grams.h5") as f:
    f.create_dataset("activations/blocks.0", data=np.random.default_rng(0).standard_normal((64, 8)).astype("f4"))
    g = f.create_dataset("grams/blocks.0", shape=(1_000_000_000, 32, 32), dtype="f8", chunks=(1, 32, 32))
    g.attrs["batch_size"] = 32
    g.attrs["tokens"] = "flatten"
    g.attrs["centered"] = True

# Class 9: misleading messages; class 10: layers k-NN must refuse.
with store("version_1_5.h5") as f:
    f.attrs["format_version"] = 1.5
    f.create_dataset("activations/a", data=np.ones((64, 3), "f4"))
with store("empty_activations.h5") as f:
    f.create_group("activations")
rng = np.random.default_rng(1)
with store("scaled.h5", labels=True) as f:
    f.create_dataset("activations/huge", data=(rng.standard_normal((64, 8)) * 1e19).astype("f4"))
    f.create_dataset("activations/tiny", data=(rng.standard_normal((64, 8)) * 1e-25).astype("f4"))
    f.create_dataset("activations/zero", data=np.zeros((64, 8), "f4"))
    f.create_dataset("activations/const", data=np.tile(rng.standard_normal((1, 8)).astype("f4"), (64, 1)))
    f.create_dataset("activations/nofeatures", data=np.zeros((64, 0), "f4"))
    base = rng.standard_normal((64, 8)).astype("f4")
    f.create_dataset("activations/unit", data=base)
    f.create_dataset("activations/unit_x2e70", data=base * np.float32(2.0 ** 70))   # exact: a power of two

# Class 9: a gzip chunk whose bytes are garbage; it is read on the comparison's reader thread, where HDF5's
# automatic error printing had not been switched off.
with store("corrupt_chunk.h5") as f:
    d = f.create_dataset("activations/a", data=rng.standard_normal((64, 256)).astype("f4"), chunks=(16, 256),
                         compression="gzip")
    info = d.id.get_chunk_info(1)
    offset, size = info.byte_offset, info.size
with open(os.path.join(HERE, "corrupt_chunk.h5"), "r+b") as raw:
    raw.seek(offset)
    raw.write(bytes((7 * i + 3) % 256 for i in range(size)))
