"""Generates the torch.save checkpoints the PyTorchBinFile tests read (run: /usr/bin/python3 make_pt_files.py).

Made with torch 1.13 (zip format, pickle protocol 2). Expected values are written as a plain safetensors file
(expected_pt.safetensors, float32 for floating tensors, every tensor contiguous) by a tiny writer below, so the
tests need neither Python nor the safetensors package.
"""
import collections, io, json, struct, zipfile
import torch

torch.manual_seed(0)


def basic_state():
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 4)
    sd["f16"] = torch.randn(2, 5).half()
    sd["bf16"] = torch.randn(4, 3).bfloat16()
    sd["f64"] = torch.randn(3).double()
    sd["i64"] = torch.arange(-3, 9, dtype=torch.int64).reshape(3, 4)
    sd["i32"] = torch.tensor([1, -2, 3], dtype=torch.int32)
    sd["u8"] = torch.tensor([0, 7, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["i16"] = torch.tensor([-300, 5], dtype=torch.int16)
    sd["i8"] = torch.tensor([-100, 5], dtype=torch.int8)
    base = torch.randn(5, 6)
    sd["transposed"] = base.t()                      # strides (1, 6): non-contiguous
    sd["narrowed"] = base[1:4, 2:5]                  # offset 8, strides (6, 1)
    emb = torch.randn(7, 4)
    sd["embed.weight"] = emb                         # tied: two names, one storage
    sd["lm_head.weight"] = emb
    sd["row2"] = emb[2]                              # a view with an offset into the same storage
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["expanded"] = torch.randn(1, 3).expand(4, 3)  # stride 0
    return sd


def write_safetensors(path, tensors):
    names = {torch.float32: "F32", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        if t.is_floating_point():
            t = t.float()
        elif t.dtype in (torch.int16, torch.int8):
            t = t.int()
        t = t.contiguous()
        b = t.numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


basic = basic_state()
torch.save(basic, "pt_basic.bin")

# Parameters pickle through torch._utils._rebuild_parameter; nested dicts flatten to dotted names.
nested = {"model": collections.OrderedDict(w=torch.nn.Parameter(torch.randn(2, 2)), b=torch.randn(2)),
          "epoch": 3, "opt": {"lr": 0.1, "betas": (0.9, 0.99)}, "names": ["a", "b"]}
torch.save(nested, "pt_nested.bin")

torch.save(collections.OrderedDict(x=torch.ones(2)), "pt_legacy.bin", _use_new_zipfile_serialization=False)

expected = dict(basic)
expected["model.w"] = nested["model"]["w"].detach()
expected["model.b"] = nested["model"]["b"]
write_safetensors("expected_pt.safetensors", expected)

# A hostile pickle, written byte by byte (never unpickled here): os.system("echo pwned") via GLOBAL + REDUCE.
evil = b"\x80\x02" + b"cos\nsystem\n" + b"X" + struct.pack("<I", 10) + b"echo pwned" + b"\x85" + b"R" + b"."
with zipfile.ZipFile("pt_malicious.bin", "w") as z:
    z.writestr("archive/data.pkl", evil)
    z.writestr("archive/version", "3\n")
print("ok")
