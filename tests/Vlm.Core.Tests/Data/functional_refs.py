#!/usr/bin/python3
"""Reference tensors for Vlm.Core's F.* ops, made with PyTorch (Debian python3-torch 1.13, float32, CPU).

Run: /usr/bin/python3 tests/Vlm.Core.Tests/Data/functional_refs.py
Writes functional_refs.safetensors beside this script. For each case NAME it stores the inputs (NAME.x, ...),
the output (NAME.out), a fixed upstream gradient (NAME.gout) and torch's gradients of sum(out * gout)
with respect to every float input (NAME.grad.x, ...). Tests never need Python.
"""
import json
import os
import struct

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
T = {}


def put(name, t):
    T[name] = t.detach().contiguous().clone()


def case(name, fn, inputs, grad_of):
    """inputs: dict of tensors; grad_of: names of float inputs that need gradients."""
    leaves = {}
    for k, v in inputs.items():
        v = v.detach().clone()
        if k in grad_of:
            v.requires_grad_(True)
        leaves[k] = v
        put(f"{name}.{k}", v)
    out = fn(**leaves)
    put(f"{name}.out", out)
    if grad_of:
        gout = torch.randn(out.shape) if out.dim() > 0 else torch.tensor(1.7)
        put(f"{name}.gout", gout)
        grads = torch.autograd.grad((out * gout).sum(), [leaves[k] for k in grad_of])
        for k, g in zip(grad_of, grads):
            put(f"{name}.grad.{k}", g)


# ---------------------------------------------------------------- softmax
x = torch.randn(4, 7, 33) * 3
x[0, 0, :] *= 40  # large logits
case("softmax_last", lambda x: F.softmax(x, -1), {"x": x}, ["x"])
case("log_softmax_last", lambda x: F.log_softmax(x, -1), {"x": x}, ["x"])
x = torch.randn(3, 5, 6)
case("softmax_mid", lambda x: F.softmax(x, 1), {"x": x}, ["x"])
case("log_softmax_first", lambda x: F.log_softmax(x, 0), {"x": x}, ["x"])

# ---------------------------------------------------------------- layer norm
x = torch.randn(6, 10, 48) * 2 + 0.5
w = torch.randn(48)
b = torch.randn(48)
case("layer_norm", lambda x, w, b: F.layer_norm(x, (48,), w, b, 1e-5), {"x": x, "w": w, "b": b}, ["x", "w", "b"])
case("layer_norm_plain", lambda x: F.layer_norm(x, (48,), None, None, 1e-6), {"x": x}, ["x"])
x = torch.randn(4, 3, 5)
w = torch.randn(3, 5)
b = torch.randn(3, 5)
case("layer_norm_2d", lambda x, w, b: F.layer_norm(x, (3, 5), w, b, 1e-12), {"x": x, "w": w, "b": b}, ["x", "w", "b"])

# ---------------------------------------------------------------- attention (the math, as HF eager attention)
def attention(q, k, v, mask=None, causal=False, scale=None, bool_mask=None):
    s = scale if scale is not None else 1.0 / (q.shape[-1] ** 0.5)
    scores = torch.matmul(q, k.transpose(-1, -2)) * s
    if mask is not None:
        scores = scores + mask
    if bool_mask is not None:
        scores = scores.masked_fill(~bool_mask, float("-inf"))
    if causal:
        tq, tk = scores.shape[-2:]
        keep = torch.ones(tq, tk, dtype=torch.bool).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    p = F.softmax(scores, -1)
    return torch.matmul(p, v), p


B, H, Tq, Tk, D = 2, 3, 5, 7, 8
q = torch.randn(B, H, Tq, D)
k = torch.randn(B, H, Tk, D)
v = torch.randn(B, H, Tk, D)
case("attn_plain", lambda q, k, v: attention(q, k, v)[0], {"q": q, "k": k, "v": v}, ["q", "k", "v"])
T["attn_plain.probs"] = attention(q, k, v)[1].detach().contiguous()
# HF extended padding mask (B, 1, 1, Tk): 0 keep, finfo.min drop; batch 1 masks every key (uniform rows).
pad = torch.ones(B, Tk)
pad[0, 5:] = 0
pad[1, :] = 0
ext = (1.0 - pad[:, None, None, :]) * torch.finfo(torch.float32).min
case("attn_hfmask", lambda q, k, v, mask: attention(q, k, v, mask=mask)[0], {"q": q, "k": k, "v": v, "mask": ext}, ["q", "k", "v"])
T["attn_hfmask.probs"] = attention(q, k, v, mask=ext)[1].detach().contiguous()
qc = torch.randn(B, H, 6, D)
kc = torch.randn(B, H, 6, D)
vc = torch.randn(B, H, 6, 4)
case("attn_causal", lambda q, k, v: attention(q, k, v, causal=True, scale=0.3)[0], {"q": qc, "k": kc, "v": vc}, ["q", "k", "v"])
bm = torch.rand(1, 1, Tq, Tk) > 0.4
bm[..., 0] = True  # no fully masked row
case("attn_boolmask", lambda q, k, v, m: attention(q, k, v, bool_mask=m)[0], {"q": q, "k": k, "v": v, "m": bm}, ["q", "k", "v"])
fm = torch.randn(B, 1, Tq, Tk)
case("attn_floatmask", lambda q, k, v, mask: attention(q, k, v, mask=mask)[0], {"q": q, "k": k, "v": v, "mask": fm}, ["q", "k", "v"])

# ---------------------------------------------------------------- losses
logits = torch.randn(6, 5) * 2
tgt = torch.tensor([1, 0, 4, -100, 2, 2])
for red in ["mean", "sum", "none"]:
    case(f"ce_{red}", lambda x, t: F.cross_entropy(x, t, reduction=red), {"x": logits, "t": tgt}, ["x"])
    case(f"ce_ls_{red}", lambda x, t: F.cross_entropy(x, t, reduction=red, label_smoothing=0.1), {"x": logits, "t": tgt}, ["x"])
logits3 = torch.randn(2, 5, 3)
tgt3 = torch.tensor([[0, 4, -100], [3, 3, 1]])
case("ce_nd", lambda x, t: F.cross_entropy(x, t, label_smoothing=0.2), {"x": logits3, "t": tgt3}, ["x"])
case("ce_ignore7", lambda x, t: F.cross_entropy(x, t, ignore_index=2), {"x": logits, "t": tgt.clamp(min=0)}, ["x"])

xb = torch.randn(4, 6) * 3
tb = torch.rand(4, 6)
wb = torch.rand(6) + 0.5
pwb = torch.rand(6) * 3
for red in ["mean", "sum", "none"]:
    case(f"bce_{red}", lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction=red), {"x": xb, "t": tb}, ["x", "t"])
case("bce_weighted", lambda x, t, w, pw: F.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw),
     {"x": xb, "t": tb, "w": wb, "pw": pwb}, ["x", "t"])

inp = F.log_softmax(torch.randn(3, 5), -1)
tp = F.softmax(torch.randn(3, 5), -1)
tp[0, 2] = 0.0
for red in ["batchmean", "mean", "sum", "none"]:
    case(f"kl_{red}", lambda x, t: F.kl_div(x, t, reduction=red), {"x": inp, "t": tp}, ["x", "t"])
case("kl_logtarget", lambda x, t: F.kl_div(x, t, reduction="batchmean", log_target=True),
     {"x": inp, "t": F.log_softmax(torch.randn(3, 5), -1)}, ["x", "t"])

xn = torch.randn(3, 4, 5)
xn[1, :, 2] = 0.0
case("normalize", lambda x: F.normalize(x, p=2.0, dim=1), {"x": xn}, ["x"])
case("normalize_last", lambda x: F.normalize(x, dim=-1), {"x": torch.randn(4, 6)}, ["x"])

# ---------------------------------------------------------------- conv2d
xc = torch.randn(2, 3, 9, 8)
wc = torch.randn(4, 3, 3, 3) * 0.3
bc = torch.randn(4)
case("conv_s2p1", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), {"x": xc, "w": wc, "b": bc}, ["x", "w", "b"])
case("conv_s1p0", lambda x, w: F.conv2d(x, w, None, stride=1, padding=0), {"x": xc, "w": wc}, ["x", "w"])
case("conv_rect", lambda x, w, b: F.conv2d(x, w, b, stride=(1, 2), padding=(2, 1)),
     {"x": xc, "w": torch.randn(2, 3, 2, 3), "b": torch.randn(2)}, ["x", "w", "b"])
xp = torch.randn(2, 3, 8, 12)
wp = torch.randn(5, 3, 4, 4) * 0.2
bp = torch.randn(5)
case("conv_patch", lambda x, w, b: F.conv2d(x, w, b, stride=4), {"x": xp, "w": wp, "b": bp}, ["x", "w", "b"])

# ---------------------------------------------------------------- interpolation
xi = torch.randn(1, 2, 5, 6)
case("bicubic_up", lambda x: F.interpolate(x, size=(8, 9), mode="bicubic", align_corners=False), {"x": xi}, ["x"])
case("bicubic_down", lambda x: F.interpolate(x, size=(3, 4), mode="bicubic", align_corners=False), {"x": xi}, ["x"])
case("bicubic_up_ac", lambda x: F.interpolate(x, size=(8, 9), mode="bicubic", align_corners=True), {"x": xi}, ["x"])
case("bicubic_same", lambda x: F.interpolate(x, size=(5, 6), mode="bicubic", align_corners=False), {"x": xi}, ["x"])
case("bilinear_up", lambda x: F.interpolate(x, size=(8, 9), mode="bilinear", align_corners=False), {"x": xi}, ["x"])
case("bilinear_down", lambda x: F.interpolate(x, size=(3, 4), mode="bilinear", align_corners=False), {"x": xi}, ["x"])
case("bilinear_up_ac", lambda x: F.interpolate(x, size=(8, 9), mode="bilinear", align_corners=True), {"x": xi}, ["x"])

# Added later (appended so the earlier cases keep their random draws).
case("bicubic_scale", lambda x: F.interpolate(x, scale_factor=(1.7, 1.3), mode="bicubic", align_corners=False), {"x": xi}, ["x"])
case("bilinear_scale", lambda x: F.interpolate(x, scale_factor=(0.6, 1.5), mode="bilinear", align_corners=False), {"x": xi}, ["x"])
cwt = torch.rand(5) + 0.2
case("ce_weight", lambda x, t, w: F.cross_entropy(x, t, weight=w), {"x": logits, "t": tgt, "w": cwt}, ["x"])
case("ce_weight_ls", lambda x, t, w: F.cross_entropy(x, t, weight=w, label_smoothing=0.15), {"x": logits, "t": tgt, "w": cwt}, ["x"])
case("ce_weight_ls_none", lambda x, t, w: F.cross_entropy(x, t, weight=w, label_smoothing=0.15, reduction="none"),
     {"x": logits, "t": tgt, "w": cwt}, ["x"])

# conv whose im2col is built in more than one block of output positions (K = 2048 → 512 of the 529 positions per block).
case("conv_blocks", lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1),
     {"x": torch.randn(1, 128, 24, 24), "w": torch.randn(2, 128, 4, 4) * 0.1, "b": torch.randn(2)}, ["x", "w", "b"])


# ---------------------------------------------------------------- write safetensors (no safetensors package needed)
def save(path, tensors):
    dt = {torch.float32: "F32", torch.int64: "I64", torch.bool: "BOOL"}
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype == torch.bool:
            data = bytes(t.flatten().to(torch.uint8).tolist())
        else:
            data = t.numpy().tobytes()
        header[name] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b_ in blobs:
            f.write(b_)


save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "functional_refs.safetensors"), T)
print(f"wrote {len(T)} tensors")
