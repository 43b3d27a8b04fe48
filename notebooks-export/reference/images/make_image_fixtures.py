#!/usr/bin/env python3
"""Writes the image fixtures of Tests/CKAImagesTests/Fixtures/ (run by developers, not in CI).

Everything the Swift tests compare against is Pillow's own output (Pillow 13.0, bundled libjpeg-turbo 3.2),
with torchvision's eval transforms re-implemented below line by line from torchvision/transforms/functional.py
(`_compute_resized_output_size`, `center_crop`, `to_tensor`, `normalize`) so that torch is not needed:

  Resize(S, interp)  : short side -> S, long side -> int(S * long / short); PIL Image.resize (antialiased)
  CenterCrop(C)      : zero-pad when C exceeds the image, then offset int(round((H - C) / 2.0))
  ToTensor           : float32(uint8) / float32(255), HWC -> CHW
  Normalize          : (x - float32(mean)) / float32(std), float32

The script checks this emulation against the torchvision output stored in
shared/data/reference/dinov2-vits14-imgfocus-photos.h5 (/inputs/pixels, Resize(256, bicubic) -> CenterCrop(224)
-> ImageNet) and stops if they differ by a single bit.

Files written (all small; the big photos and the CIFAR folder stay in shared/ and are only described by
checksums):

  odd_sampling.jpg             a JPEG with sampling factors 2x1,1x2,1x1 written by cjpeg
  cifar_*.jpg                  three CIFAR-10 test JPEGs (32x32, 4:2:0) copied from shared/
  chelsea_420.jpg, chelsea_422.jpg, chelsea_444_progressive.jpg, grey.jpg, cmyk.jpg
                               50x35 crops of chelsea.png saved by Pillow in those modes
  rgb.png grey.png grey_alpha.png rgba.png palette.png palette_trns.png bilevel.png
  grey16.png rgb16.png rgba16.png la16.png gamma.png interlaced.png
                               PNGs of every colour type / depth (16-bit and gAMA/Adam7 ones written by hand)
  resize_source.png            40x30 RGB source of the resize tests
  tall_source.png              14x40 RGB source whose resizes run the vertical pass first (Pillow >= 13)
  corrupt_idat.png truncated.png truncated.jpg corrupt.jpg empty.png not_an_image.gif text.jpg png_named.jpg
  huge.png huge.jpg            error cases (huge.* declare 20000x20000 / 65000x65000 in valid headers)
  expected.bin                 concatenated expected uint8 images and float32 tensors
  expected.json                what each expected.bin range is, plus CRC-32 checksums for the large cases

Usage:  python3 make_image_fixtures.py [OUTPUT_DIR]   (default: ../../../Tests/CKAImagesTests/Fixtures)
Needs:  pip install pillow numpy h5py; cjpeg (apt install libjpeg-turbo-progs)
"""
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image, features

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../../Tests/CKAImagesTests/Fixtures"))
SHARED = os.path.abspath(os.path.join(HERE, "../../../../shared"))
PHOTOS = os.path.join(SHARED, "data/images/photos")
CIFAR = os.path.join(SHARED, "data/images/cifar10-test-1000")
REFERENCE = os.path.join(SHARED, "data/reference/dinov2-vits14-imgfocus-photos.h5")

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
HALF = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "box": Image.BOX,
           "hamming": Image.HAMMING, "lanczos": Image.LANCZOS}
PRESETS = {  # name: (resize, interpolation, crop, (mean, std))  -- shared/docs/reference-models.md section 4
    "dino": (256, "bicubic", 224, IMAGENET),
    "mocov3": (256, "bilinear", 224, IMAGENET),
    "mae": (256, "bicubic", 224, IMAGENET),
    "timm-augreg": (248, "bicubic", 224, HALF),
    "dinov2": (256, "bicubic", 224, IMAGENET),
}


# ---------------------------------------------------------------- torchvision eval transforms on PIL images
def tv_resize(im, size, interpolation):
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return im
    return im.resize((new_w, new_h), FILTERS[interpolation])


def tv_center_crop(im, crop):
    w, h = im.size
    if crop > w or crop > h:
        l, t = (crop - w) // 2 if crop > w else 0, (crop - h) // 2 if crop > h else 0
        r, b = (crop - w + 1) // 2 if crop > w else 0, (crop - h + 1) // 2 if crop > h else 0
        padded = Image.new(im.mode, (w + l + r, h + t + b), 0)
        padded.paste(im, (l, t))
        im, (w, h) = padded, padded.size
        if (w, h) == (crop, crop):
            return im
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return im.crop((left, top, left + crop, top + crop))


def tv_tensor(im, mean, std):
    x = np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return (x - m) / s


def pipeline(im, resize, interpolation, crop, stats):
    if resize is not None:
        im = tv_resize(im, resize, interpolation)
    im = tv_center_crop(im, crop)
    return np.asarray(im, dtype=np.uint8), tv_tensor(im, *stats)


# ---------------------------------------------------------------- output bookkeeping
blob = bytearray()
expected = {"pillow": Image.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"),
            "decode": {}, "resize": [], "pipelines": [], "errors": {}, "photos": {}, "reference": {}, "cifar": {}}


def put(array):
    """Appends an array to expected.bin; returns [offset, length]."""
    global blob
    data = np.ascontiguousarray(array).tobytes()
    entry = [len(blob), len(data)]
    blob += data
    return entry


def crc(array):
    return zlib.crc32(np.ascontiguousarray(array).tobytes()) & 0xFFFFFFFF


def digest(array):
    a = np.asarray(array)
    return {"crc32": crc(a), "count": int(a.size), "sum": float(a.astype(np.float64).sum())}


def save(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def pil_rgb(path_or_bytes):
    im = Image.open(io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


# ---------------------------------------------------------------- hand-written PNGs (16-bit, gAMA, Adam7)
def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(samples, color_type, depth, extra=b"", interlace=False):
    """samples: HxWxC uint8/uint16 array (C = 1, 2, 3, 4), written big-endian, filter 0."""
    h, w = samples.shape[:2]
    dtype = ">u2" if depth == 16 else "u1"
    def raw(a):
        return b"".join(b"\x00" + a[y].astype(dtype).tobytes() for y in range(a.shape[0])) if a.size else b""
    if interlace:
        data = b""
        for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]:
            data += raw(samples[y0::dy, x0::dx])
    else:
        data = raw(samples)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", zlib.compress(data, 9))
            + png_chunk(b"IEND", b""))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    rng = np.random.default_rng(20240607)
    chelsea = Image.open(os.path.join(PHOTOS, "chelsea.png")).convert("RGB")
    crop = chelsea.crop((190, 65, 240, 100))                      # 50x35, the cat's face

    # ---------------------------------------------------------------- decoding
    decode = expected["decode"]
    def record(name, data, expect=None, note=None, tolerance=0):
        save(name, data)
        if expect is None:
            expect = pil_rgb(data)
        entry = {"width": int(expect.shape[1]), "height": int(expect.shape[0]), "pixels": put(expect)}
        if note:
            entry["note"] = note
        entry["tolerance"] = tolerance
        decode[name] = entry

    for cls, idx in [("cat", "0000"), ("ship", "0003"), ("frog", "0007")]:
        with open(os.path.join(CIFAR, cls, idx + ".jpg"), "rb") as f:
            record(f"cifar_{cls}_{idx}.jpg", f.read())

    def jpeg(im, **kw):
        b = io.BytesIO()
        im.save(b, "JPEG", **kw)
        return b.getvalue()
    record("chelsea_420.jpg", jpeg(crop, quality=85, subsampling=2))
    record("chelsea_422.jpg", jpeg(crop, quality=90, subsampling=1))
    record("chelsea_444_progressive.jpg", jpeg(crop, quality=92, subsampling=0, progressive=True, optimize=True))
    record("grey.jpg", jpeg(crop.convert("L"), quality=90))
    record("cmyk.jpg", jpeg(crop.convert("CMYK"), quality=90))
    # Unusual chroma sampling (Y 2x1, Cb 1x2, Cr 1x1): TurboJPEG 2.x refuses its header but decodes it.
    with open(os.path.join(OUT, "_s.ppm"), "wb") as f:
        f.write(b"P6 23 17 255\n" + np.asarray(crop.resize((23, 17), Image.BICUBIC), dtype=np.uint8).tobytes())
    odd = subprocess.run(["cjpeg", "-sample", "2x1,1x2,1x1", "-quality", "90", os.path.join(OUT, "_s.ppm")],
                         check=True, capture_output=True).stdout
    os.remove(os.path.join(OUT, "_s.ppm"))
    record("odd_sampling.jpg", odd)
    record("png_named.jpg", save_png(crop).getvalue())    # a PNG named .jpg: detected by its bytes

    small = np.asarray(crop.resize((23, 17), Image.BICUBIC), dtype=np.uint8)   # content for the PNG fixtures
    alpha = (np.arange(23 * 17).reshape(17, 23) * 7 % 256).astype(np.uint8)
    alpha[0, :5] = 0
    def pil_png(im, **kw):
        b = io.BytesIO()
        im.save(b, "PNG", **kw)
        return b.getvalue()
    record("rgb.png", pil_png(Image.fromarray(small)))
    record("grey.png", pil_png(Image.fromarray(small).convert("L")))
    record("grey_alpha.png", pil_png(Image.fromarray(np.dstack([np.asarray(Image.fromarray(small).convert("L")), alpha]), "LA")))
    record("rgba.png", pil_png(Image.fromarray(np.dstack([small, alpha]), "RGBA")))
    pal = Image.fromarray(small).quantize(colors=16)
    record("palette.png", pil_png(pal))
    record("palette_trns.png", pil_png(pal, transparency=0))
    record("bilevel.png", pil_png(Image.fromarray(small).convert("1")))
    wide = small.astype(np.uint16) * 257 + rng.integers(0, 256 - small.astype(np.int64)).astype(np.uint16)  # high byte = small
    grey16 = wide[..., 0]
    record("rgb16.png", png_bytes(wide, 2, 16))
    lossy = "16-bit with alpha: libpng's simplified API rounds to 8 bits where PIL keeps the high byte"
    record("rgba16.png", png_bytes(np.dstack([wide, np.full(grey16.shape, 65535, np.uint16)]), 6, 16),
           note=lossy, tolerance=1)
    record("la16.png", png_bytes(np.dstack([grey16, alpha.astype(np.uint16) * 257]), 4, 16), note=lossy, tolerance=1)
    hi = (grey16 >> 8).astype(np.uint8)
    record("grey16.png", png_bytes(grey16, 0, 16), expect=np.dstack([hi, hi, hi]),
           note="high byte; PIL opens I;16 and convert('RGB') clips to 255 instead")
    gamma = png_chunk(b"gAMA", struct.pack(">I", 100000)) + png_chunk(b"cHRM", struct.pack(">8I", *[31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000]))
    record("gamma.png", png_bytes(small, 2, 8, extra=gamma), note="gAMA 1.0 + cHRM: ignored like PIL")
    record("interlaced.png", png_bytes(small, 2, 8, interlace=True))
    # PIL's reading of the hand-written 16-bit files is the high byte (checked here, not trusted):
    assert np.array_equal(pil_rgb(png_bytes(wide, 2, 16)), small)

    # ---------------------------------------------------------------- error cases
    errors = expected["errors"]
    good_png = pil_png(Image.fromarray(small))
    good_jpg = jpeg(crop, quality=85, subsampling=2)
    idat = good_png.index(b"IDAT") + 4
    bad = bytearray(good_png)
    for i in range(idat + 10, idat + 40):
        bad[i] ^= 0x5A
    save("corrupt_idat.png", bytes(bad)); errors["corrupt_idat.png"] = "corrupt"
    save("truncated.png", good_png[: len(good_png) * 2 // 3]); errors["truncated.png"] = "corrupt"
    save("truncated.jpg", good_jpg[: len(good_jpg) * 3 // 5]); errors["truncated.jpg"] = "corrupt"
    sos = good_jpg.index(b"\xff\xda")
    save("corrupt.jpg", good_jpg[:sos] + b"\xff\xc0\x00\x03\x00" + good_jpg[sos:]); errors["corrupt.jpg"] = "corrupt"
    save("empty.png", b""); errors["empty.png"] = "empty"
    gif = io.BytesIO(); Image.fromarray(small).save(gif, "GIF")
    save("not_an_image.gif", gif.getvalue()); errors["not_an_image.gif"] = "unsupportedFormat"
    save("text.jpg", b"this is not a JPEG file\n"); errors["text.jpg"] = "unsupportedFormat"
    huge = png_bytes(np.zeros((1, 1), np.uint8), 0, 8)
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    huge = huge[:8] + png_chunk(b"IHDR", ihdr) + huge[8 + 25:]
    save("huge.png", huge); errors["huge.png"] = "tooLarge"
    sof = good_jpg.index(b"\xff\xc0")
    save("huge.jpg", good_jpg[:sof + 5] + struct.pack(">HH", 65000, 65000) + good_jpg[sof + 9:])
    errors["huge.jpg"] = "tooLarge"
    for name in [n for n, kind in errors.items() if kind != "unsupportedFormat"]:   # Pillow refuses them too
        try:
            pil_rgb(os.path.join(OUT, name))
        except Exception:
            continue
        sys.exit(f"Pillow decodes the error fixture {name}")

    # ---------------------------------------------------------------- resizing (Pillow Image.resize)
    astro = Image.open(os.path.join(PHOTOS, "astronaut.png")).convert("RGB")
    src = np.asarray(astro.crop((150, 40, 310, 160)).resize((40, 30), Image.BOX), dtype=np.uint8).copy()
    src[:6, :8] = 0; src[:6, 8:16] = 255; src[24:, 32:] = [255, 0, 0]          # hard edges, clipping
    src[10:14, :] = rng.integers(0, 256, (4, 40, 3))                           # noise band
    save("resize_source.png", pil_png(Image.fromarray(src)))
    # A tall source: Pillow >= 13 runs the vertical pass first when the height shrinks by more than twice as
    # many pixels as the width (40 -> 28 against 14 -> 10; 40 -> 9 against 14 -> 12).
    tall = np.asarray(Image.fromarray(src).transpose(Image.Transpose.ROTATE_90).resize((14, 40), Image.BOX)).copy()
    save("tall_source.png", pil_png(Image.fromarray(tall)))
    sizes = {"resize_source.png": [(20, 15), (17, 13), (47, 35), (31, 41), (7, 5), (1, 1), (3, 30), (40, 30), (81, 8)],
             "tall_source.png": [(10, 28), (12, 9), (5, 30)]}
    for file, targets in sizes.items():
        source = Image.open(os.path.join(OUT, file))
        for w, h in targets:
            for name, f in FILTERS.items():
                out = np.asarray(source.resize((w, h), f), dtype=np.uint8)
                expected["resize"].append({"source": file, "width": w, "height": h, "filter": name,
                                           "pixels": put(out)})

    # ---------------------------------------------------------------- full pipelines on committed files
    cases = [("resize_source.png", 20, "bicubic", 16, IMAGENET), ("resize_source.png", 26, "bilinear", 21, HALF),
             ("resize_source.png", None, "bilinear", 34, IMAGENET), ("resize_source.png", 12, "bicubic", 16, IMAGENET),
             ("chelsea_420.jpg", 30, "bicubic", 28, IMAGENET), ("cifar_cat_0000.jpg", 24, "bilinear", 24, HALF),
             ("tall_source.png", 10, "bicubic", 7, IMAGENET), ("tall_source.png", 9, "bilinear", 6, HALF)]
    for file, resize, interp, c, stats in cases:   # uint8 crops; float32 tensors for the first three
        u8, x = pipeline(Image.open(os.path.join(OUT, file)).convert("RGB"), resize, interp, c, stats)
        case = {"file": file, "resize": resize, "interpolation": interp, "crop": c, "mean": stats[0],
                "std": stats[1], "uint8": put(u8), "float32_digest": digest(x)}
        if len(expected["pipelines"]) < 3:
            case["float32"] = put(x)
        expected["pipelines"].append(case)
    for file in ["cifar_cat_0000.jpg", "chelsea_420.jpg", "resize_source.png"]:
        for preset, (resize, interp, c, stats) in PRESETS.items():
            u8, x = pipeline(Image.open(os.path.join(OUT, file)).convert("RGB"), resize, interp, c, stats)
            expected["pipelines"].append({"file": file, "preset": preset, "uint8_digest": digest(u8),
                                          "float32_digest": digest(x)})

    # ---------------------------------------------------------------- the big photos (not committed)
    for name in sorted(os.listdir(PHOTOS)):
        im = Image.open(os.path.join(PHOTOS, name)).convert("RGB")
        entry = {"width": im.size[0], "height": im.size[1], "decoded": digest(np.asarray(im)), "resize": {},
                 "presets": {}}
        for interp in ["bicubic", "bilinear"]:
            for s in [256, 224, 100, 700]:
                r = np.asarray(tv_resize(im, s, interp), dtype=np.uint8)
                entry["resize"][f"{interp}{s}"] = {"width": int(r.shape[1]), "height": int(r.shape[0]),
                                                   "digest": digest(r)}
        for preset, (resize, interp, c, stats) in PRESETS.items():
            u8, x = pipeline(im, resize, interp, c, stats)
            entry["presets"][preset] = {"uint8": digest(u8), "float32": digest(x)}
            if preset == "dino":
                entry["presets"][preset]["float32_subsample"] = put(x[:, ::16, ::16])
        expected["photos"][name] = entry

    # ---------------------------------------------------------------- torchvision reference (HDF5)
    import h5py
    with h5py.File(REFERENCE, "r") as f:
        ids = [i.decode() if isinstance(i, bytes) else i for i in f["/inputs/ids"][:]]
        pixels = f["/inputs/pixels"][:]
        preprocessing = f.attrs["preprocessing"]
    for i, name in enumerate(ids):
        im = Image.open(os.path.join(PHOTOS, name)).convert("RGB")
        _, x = pipeline(im, 256, "bicubic", 224, IMAGENET)
        if not np.array_equal(x, pixels[i]):
            sys.exit(f"emulated torchvision differs from the reference file for {name}: "
                     f"max {np.abs(x - pixels[i]).max()}")
        expected["reference"][name] = {"file": "data/reference/dinov2-vits14-imgfocus-photos.h5", "index": i,
                                       "preprocessing": str(preprocessing), "float32": digest(pixels[i]),
                                       "min": float(pixels[i].min()), "max": float(pixels[i].max()),
                                       "float32_subsample": put(pixels[i][:, ::16, ::16])}

    # ---------------------------------------------------------------- the CIFAR folder (not committed)
    classes = sorted(e.name for e in os.scandir(CIFAR) if e.is_dir())
    ids, crcs = [], []
    for c in classes:
        for root, _, fnames in sorted(os.walk(os.path.join(CIFAR, c), followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith((".jpg", ".jpeg", ".png")):
                    path = os.path.join(root, fname)
                    ids.append(os.path.relpath(path, CIFAR))
                    crcs.append(crc(pil_rgb(path)))
    expected["cifar"] = {"classes": classes, "count": len(ids), "first_ids": ids[:3], "last_id": ids[-1],
                         "ids_crc32": zlib.crc32("\n".join(ids).encode()) & 0xFFFFFFFF, "decoded_crc32_hex": "".join(f"{c:08x}" for c in crcs)}

    if os.path.exists(os.path.join(OUT, ".keep")):
        os.remove(os.path.join(OUT, ".keep"))
    save("expected.bin", bytes(blob))
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {OUT}")


def save_png(im):
    b = io.BytesIO()
    im.save(b, "PNG")
    return b


if __name__ == "__main__":
    main()
