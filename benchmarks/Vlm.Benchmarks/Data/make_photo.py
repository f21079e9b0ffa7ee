#!/usr/bin/python3
"""Writes photo640x480.jpg: a synthetic photo-like 640x480 image (smooth gradients, shapes, mild noise), Pillow
JPEG quality 90, 4:2:0 — the input of ImageBenchmarks. Deterministic (seed 7)."""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter
rng = np.random.default_rng(7)
yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
img = np.stack([128 + 100 * np.sin(xx / 70), 128 + 90 * np.cos(yy / 50), 128 + 60 * np.sin((xx + yy) / 90)], -1)
im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
d = ImageDraw.Draw(im)
for _ in range(40):
    x, y, r = rng.integers(0, 640), rng.integers(0, 480), rng.integers(5, 60)
    d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
im = im.filter(ImageFilter.GaussianBlur(1.5))
arr = np.clip(np.array(im).astype(int) + rng.integers(-6, 7, size=(480, 640, 3)), 0, 255).astype(np.uint8)
Image.fromarray(arr).save("photo640x480.jpg", quality=90)
