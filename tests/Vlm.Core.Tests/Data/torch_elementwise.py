"""Reference tensors for tests/Vlm.Core.Tests/TorchReferenceTests.cs, made with PyTorch (CPU, float32).

Run from this folder: /usr/bin/python3 torch_elementwise.py  → torch_elementwise.safetensors
(written without the safetensors package: 8-byte header length, JSON header, raw little-endian data).
"""
import json, math, struct
import torch

torch.manual_seed(1234)
g = torch.Generator().manual_seed(1234)

# Inputs: a dense sweep over the interesting range, random values of many magnitudes, and edge values.
sweep = torch.linspace(-12.0, 12.0, 8001)
rand = torch.randn(6000, generator=g) * torch.pow(10.0, torch.rand(6000, generator=g) * 4 - 2)
edges = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.5, -0.5, 0.6, -0.6, 1.0, -1.0, 1.4142135, -1.4142135,
                      3.0, -3.0, 5.5, -5.5, 9.0, -9.0, 15.0, -15.0, 20.0, -20.0, 50.0, -50.0, 80.0, -80.0,
                      88.7, 88.72, 89.0, -87.3, -87.4, -100.0, -103.0, -110.0])
x = torch.cat([sweep, rand, edges]).float()
ax = x.abs() + 1e-3

out = {"x": x, "ax": ax}
out["exp"] = torch.exp(x)
out["log"] = torch.log(ax)
out["sqrt"] = torch.sqrt(ax)
out["rsqrt"] = torch.rsqrt(ax)
out["pow_1_7"] = torch.pow(ax, 1.7)
out["tanh"] = torch.tanh(x)
out["sigmoid"] = torch.sigmoid(x)
out["erf"] = torch.erf(x)
out["gelu"] = torch.nn.functional.gelu(x)
out["gelu_tanh"] = torch.nn.functional.gelu(x, approximate="tanh")
out["silu"] = torch.nn.functional.silu(x)
out["quick_gelu"] = x * torch.sigmoid(1.702 * x)

# Derivatives through autograd (gradient of the sum = element-wise derivative), on a moderate range.
xd = x[(x.abs() < 30)].clone()
out["xd"] = xd
for name, f in [("gelu", lambda t: torch.nn.functional.gelu(t)),
                ("gelu_tanh", lambda t: torch.nn.functional.gelu(t, approximate="tanh")),
                ("silu", torch.nn.functional.silu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid),
                ("quick_gelu", lambda t: t * torch.sigmoid(1.702 * t))]:
    t = xd.clone().requires_grad_(True)
    f(t).sum().backward()
    out["d_" + name] = t.grad.detach()

# Reductions on a (6, 37) matrix and its transpose.
m = torch.randn(6, 37, generator=g) * 3
out["m"] = m
out["var1"] = m.var(1)
out["var0_pop"] = m.var(0, unbiased=False)
out["std1"] = m.std(1)
out["lse1"] = torch.logsumexp(m, 1)
out["lse0"] = torch.logsumexp(m, 0)
out["cumsum1"] = torch.cumsum(m, 1)
out["amax1"] = m.amax(1)
out["argmax0"] = m.argmax(0)

def save(path, tensors):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        t = t.contiguous()
        dt = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        b = t.numpy().tobytes()
        header[k] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    header["__metadata__"] = {"torch": torch.__version__, "script": "torch_elementwise.py"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)

save("torch_elementwise.safetensors", out)
print("wrote", len(out), "tensors,", x.numel(), "inputs")
