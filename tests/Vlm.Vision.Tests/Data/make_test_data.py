#!/usr/bin/python3
"""Generates the Vlm.Vision test data with Pillow 9.4 (Debian python3-pil) + numpy.

Run from this folder: /usr/bin/python3 make_test_data.py
Writes:
  png/*.png            PNGs written by the small encoder below: every colour type / bit depth, plain and Adam7,
                       rows cycling through all five filters, tRNS variants, several IDAT chunks, eXIf.
  formats/*            BMP, PGM/PPM and JPEG files written by Pillow (or by hand).
  expected.safetensors raw.<file> (I32 source samples, H,W,C), pil.<file> (U8, np.array(Image.open) for
                       8-bit modes), rgb.<file> (U8, Pillow convert('RGB')), exif.<file> (U8, exif_transpose + RGB),
                       resample.<i>.src / resample.<i>.out (U8, Pillow Image.resize).
  expected.json        per-file and per-resample-case parameters.
Deterministic (numpy seed 1234); rerunning reproduces the files.
"""
import io, json, os, struct, zlib
import numpy as np
from PIL import Image, ImageOps

rng = np.random.default_rng(1234)
os.makedirs("png", exist_ok=True)
os.makedirs("formats", exist_ok=True)
tensors = {}
meta = {"files": {}, "resample": []}

def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)

def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)

def filter_row(f, cur, prev, bpp):
    out = bytearray([f])
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][f]
        out.append((cur[i] - pred) & 0xff)
    return bytes(out)

def pack_rows(samples, depth):
    """samples: (h, w, ch) ints -> list of row byte strings."""
    h, w, ch = samples.shape
    rows = []
    for y in range(h):
        vals = samples[y].reshape(-1)
        if depth == 16:
            rows.append(b"".join(struct.pack(">H", int(v)) for v in vals))
        elif depth == 8:
            rows.append(bytes(int(v) for v in vals))
        else:
            bits = "".join(format(int(v), "0%db" % depth) for v in vals)
            bits += "0" * (-len(bits) % 8)
            rows.append(bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)))
    return rows

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]

def encode_png(samples, depth, ct, interlace, extra=b"", idat_parts=1, exif=None):
    h, w, ch = samples.shape
    bpp = max(1, ch * depth // 8)
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    fcount = 0
    for (x0, y0, dx, dy) in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        rows = pack_rows(sub, depth)
        prev = bytes(len(rows[0]))
        for r in rows:
            raw += filter_row(fcount % 5, r, prev, bpp)
            fcount += 1
            prev = r
    comp = zlib.compress(bytes(raw), 9)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ct, 0, 0, interlace)) + extra
    if exif is not None:
        out += chunk(b"eXIf", exif)
    step = max(1, -(-len(comp) // idat_parts))
    for i in range(0, len(comp), step):
        out += chunk(b"IDAT", comp[i:i + step])
    return out + chunk(b"IEND", b"")

def tiff_orientation(o, le=True):
    e = "<" if le else ">"
    return (b"II" if le else b"MM") + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1) + \
        struct.pack(e + "HHIHH", 0x0112, 3, 1, o, 0) + struct.pack(e + "I", 0)

def record(name, data, raw=None):
    im = Image.open(io.BytesIO(data))
    im.load()
    info = {"mode": im.mode, "width": im.size[0], "height": im.size[1]}
    if raw is not None:
        tensors["raw." + name] = raw.astype(np.int32)
    if im.mode in ("L", "LA", "RGB", "RGBA", "P", "CMYK"):
        tensors["pil." + name] = np.ascontiguousarray(np.array(im).astype(np.uint8))
    tensors["rgb." + name] = np.ascontiguousarray(np.array(im.convert("RGB")))
    tensors["exif." + name] = np.ascontiguousarray(np.array(ImageOps.exif_transpose(im).convert("RGB")))
    info["orientation"] = int(im.getexif().get(0x0112, 1))
    meta["files"][name] = info

# ---------------------------------------------------------------- PNG suite
combos = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8),
          (4, 8), (4, 16), (6, 8), (6, 16)]
sizes = [(13, 11), (1, 1), (3, 2), (9, 17)]
for ct, depth in combos:
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ct]
    for si, (w, h) in enumerate(sizes):
        for interlace in (0, 1):
            if si > 0 and depth not in (1, 8, 16):
                continue
            maxv = (1 << depth) - 1
            extra = b""
            if ct == 3:
                npal = min(1 << depth, 200)
                pal = rng.integers(0, 256, size=(npal, 3), dtype=np.uint8)
                extra = chunk(b"PLTE", pal.tobytes())
                samples = rng.integers(0, npal, size=(h, w, 1))
                if interlace and si == 0:
                    extra += chunk(b"tRNS", bytes(rng.integers(0, 256, size=min(npal, 5), dtype=np.uint8)))
            else:
                samples = rng.integers(0, maxv + 1, size=(h, w, ch))
                if interlace and si == 0 and ct in (0, 2):
                    extra = chunk(b"tRNS", struct.pack(">" + "H" * ch, *([min(3, maxv)] * ch)))
            name = "ct%d_d%d_%dx%d_%s.png" % (ct, depth, w, h, "adam7" if interlace else "plain")
            data = encode_png(samples, depth, ct, interlace, extra, idat_parts=3 if si == 0 else 1)
            open("png/" + name, "wb").write(data)
            record(name, data, samples)

# palette with fewer entries than the indices used (Pillow: gray ramp beyond the palette)
samples = np.array([[[0], [1], [7], [255]]])
data = encode_png(samples, 8, 3, 0, chunk(b"PLTE", bytes([10, 20, 30, 40, 50, 60])))
open("png/short_palette.png", "wb").write(data); record("short_palette.png", data, samples)
# eXIf orientation 6 (little-endian TIFF) and 3 (big-endian)
for o, le in ((6, True), (3, False)):
    samples = rng.integers(0, 256, size=(5, 7, 3))
    data = encode_png(samples, 8, 2, 0, exif=tiff_orientation(o, le))
    nm = "exif%d.png" % o
    open("png/" + nm, "wb").write(data); record(nm, data, samples)

# ---------------------------------------------------------------- other formats
base = rng.integers(0, 256, size=(23, 31, 3), dtype=np.uint8)
# smooth-ish photo-like image for JPEG
yy, xx = np.mgrid[0:48, 0:64]
photo = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8)
photo = np.clip(photo.astype(int) + rng.integers(-20, 21, size=photo.shape), 0, 255).astype(np.uint8)

def save(name, im, **kw):
    buf = io.BytesIO(); im.save(buf, **kw); data = buf.getvalue()
    open("formats/" + name, "wb").write(data); record(name, data)

save("rgb24.bmp", Image.fromarray(base), format="BMP")
save("p8.bmp", Image.fromarray(base).convert("P", palette=Image.ADAPTIVE, colors=50), format="BMP")
save("p1.bmp", Image.fromarray(base[..., 0]).convert("1"), format="BMP")
save("gray.bmp", Image.fromarray(base[..., 1]), format="BMP")
# 32-bit BI_RGB bottom-up and 24-bit top-down, written by hand (Pillow does not write them)
def bmp(w, h, bits, pix_rows, top_down):
    stride = (w * bits + 31) // 32 * 4
    body = b"".join(r + bytes(stride - len(r)) for r in pix_rows)
    hdr = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, bits, 0, len(body), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(body), 0, 0, 54) + hdr + body
rows = [bytes(base[y, :, ::-1].reshape(-1)) for y in range(23)]  # BGR
for nm, bits, td, rr in (("rgb24_topdown.bmp", 24, True, rows),
                         ("bgrx32.bmp", 32, False, [b"".join(bytes(p) + b"\x7f" for p in base[y, :, ::-1]) for y in range(23)][::-1])):
    data = bmp(31, 23, bits, rr if td else (rr if bits == 32 else rr[::-1]), td)
    open("formats/" + nm, "wb").write(data); record(nm, data)
save("gray.pgm", Image.fromarray(base[..., 0]), format="PPM")
save("rgb.ppm", Image.fromarray(base), format="PPM")
for nm, data in (("maxval100.pgm", b"P5\n# comment\n3 2\n100\n" + bytes([0, 50, 100, 1, 99, 25])),
                 ("maxval1000.pgm", b"P5 2 2 1000\n" + struct.pack(">4H", 0, 3, 500, 1000)),
                 ("maxval65535.pgm", b"P5 2 1 65535\n" + struct.pack(">2H", 0x1234, 200)),
                 ("rgb16.ppm", b"P6 2 1 65535\n" + struct.pack(">6H", 0x1234, 0xffff, 0, 5, 0x8000, 0x80ff))):
    open("formats/" + nm, "wb").write(data); record(nm, data)
save("baseline.jpg", Image.fromarray(photo), format="JPEG", quality=90)
save("progressive.jpg", Image.fromarray(photo), format="JPEG", quality=75, progressive=True)
save("q444.jpg", Image.fromarray(photo), format="JPEG", quality=95, subsampling=0)
save("gray.jpg", Image.fromarray(photo[..., 1]), format="JPEG", quality=85)
save("odd_size.jpg", Image.fromarray(photo[:37, :29]), format="JPEG", quality=80)
save("cmyk.jpg", Image.fromarray(photo).convert("CMYK"), format="JPEG", quality=90)
for o in range(1, 9):
    ex = Image.Exif(); ex[0x0112] = o
    save("orient%d.jpg" % o, Image.fromarray(photo[:20, :30]), format="JPEG", quality=90, exif=ex.tobytes())

# ---------------------------------------------------------------- resampling
filters = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "box": Image.BOX, "hamming": Image.HAMMING, "lanczos": Image.LANCZOS}
cases = []
for mode, ch in (("RGB", 3), ("L", 1), ("RGBA", 4), ("LA", 2)):
    for fname in filters:
        for (w, h, ow, oh) in ((37, 23, 16, 11), (19, 13, 45, 31), (40, 30, 40, 17), (25, 25, 60, 7), (64, 48, 23, 64)):
            if mode in ("RGBA", "LA") and fname not in ("bicubic", "bilinear", "nearest"):
                continue
            if mode != "RGB" and (w, h) == (25, 25):
                continue
            cases.append((mode, ch, fname, w, h, ow, oh))
for i, (mode, ch, fname, w, h, ow, oh) in enumerate(cases):
    arr = rng.integers(0, 256, size=(h, w, ch), dtype=np.uint8)
    if ch == 4 or ch == 2:
        arr[..., -1] = rng.choice([0, 255, 1, 128, 77], size=(h, w))
    im = Image.fromarray(arr[..., 0] if ch == 1 else arr, mode)
    out = np.array(im.resize((ow, oh), filters[fname]))
    tensors["resample.%d.src" % i] = arr
    tensors["resample.%d.out" % i] = out.reshape(oh, ow, ch)
    meta["resample"].append({"mode": mode, "filter": fname, "width": ow, "height": oh})

# ---------------------------------------------------------------- write
def write_safetensors(path, ts):
    header, off, blobs = {}, 0, []
    for k in sorted(ts):
        a = np.ascontiguousarray(ts[k])
        dt = {np.dtype(np.uint8): "U8", np.dtype(np.int32): "I32"}[a.dtype]
        b = a.tobytes()
        header[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b); blobs.append(b)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj))); f.write(hj)
        for b in blobs: f.write(b)

write_safetensors("expected.safetensors", tensors)
json.dump(meta, open("expected.json", "w"), indent=1, sort_keys=True)
print(len(meta["files"]), "files,", len(meta["resample"]), "resample cases")
