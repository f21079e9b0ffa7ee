#!/usr/bin/python3
"""Reference trajectories for Vlm.Nn.Optim, made with PyTorch (1.13, CPU, float32).

Writes optim_refs.safetensors beside this file:
  init.{name}                 initial parameters
  grad.{k}.{name}             the fixed gradient fed at step k (absent = parameter has no grad that step)
  {run}.{k}.{name}            parameters after step k, for run in adamw, sgd, sgdn
  {run}.norm                  clip_grad_norm_ total norm before each step (shape [T])
  sched.linear / sched.cosine LambdaLR factors for steps 0..15 (warmup 3, total 12), float64
Runs: two param groups (decay: w1, w2 with weight decay; no_decay: b1, ln.weight, lr x0.5), linear warmup 2 /
total 8 schedule, clip_grad_norm_(max_norm=1.0) before every step. Run: /usr/bin/python3 optim_refs.py
"""
import json, math, os, struct
import numpy as np
import torch

torch.manual_seed(1234)
T = 6
shapes = {"w1": (5, 7), "w2": (3, 9), "b1": (7,), "ln.weight": (19,)}
names = list(shapes)
init = {n: torch.randn(*s) for n, s in shapes.items()}
grads = []
for k in range(T):
    scale = 3.0 if k % 2 == 0 else 0.05  # some steps clip, some do not
    g = {n: torch.randn(*s) * scale for n, s in shapes.items()}
    if k == 3:
        del g["b1"]  # a frozen step for one parameter: its state must not advance
    grads.append(g)

out = {}
for n in names:
    out[f"init.{n}"] = init[n]
for k, g in enumerate(grads):
    for n, t in g.items():
        out[f"grad.{k}.{n}"] = t

def lin(step, warm=2, total=8):
    if step < warm:
        return float(step) / float(max(1, warm))
    return max(0.0, float(total - step) / float(max(1, total - warm)))

def run(tag, make_opt):
    params = {n: torch.nn.Parameter(init[n].clone()) for n in names}
    groups = [
        {"params": [params["w1"], params["w2"]], "weight_decay": 0.1, "lr": 0.02},
        {"params": [params["b1"], params["ln.weight"]], "weight_decay": 0.0, "lr": 0.02 * 0.5},
    ]
    opt = make_opt(groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lin)
    norms = []
    for k, g in enumerate(grads):
        opt.zero_grad(set_to_none=True)
        for n in names:
            params[n].grad = g[n].clone() if n in g else None
        norms.append(float(torch.nn.utils.clip_grad_norm_([params[n] for n in names], 1.0)))
        opt.step()
        sched.step()
        for n in names:
            out[f"{tag}.{k}.{n}"] = params[n].detach().clone()
    out[f"{tag}.norm"] = torch.tensor(norms, dtype=torch.float32)

run("adamw", lambda g: torch.optim.AdamW(g, lr=0.02, betas=(0.9, 0.99), eps=1e-6, foreach=False))
run("sgd", lambda g: torch.optim.SGD(g, lr=0.02, momentum=0.9, dampening=0.1, foreach=False))
run("sgdn", lambda g: torch.optim.SGD(g, lr=0.02, momentum=0.9, nesterov=True, foreach=False))

# HF transformers' schedule formulas (optimization.py), evaluated for steps 0..15.
def hf_linear(s, w=3, t=12):
    if s < w:
        return float(s) / float(max(1, w))
    return max(0.0, float(t - s) / float(max(1, t - w)))

def hf_cosine(s, w=3, t=12, cycles=0.5):
    if s < w:
        return float(s) / float(max(1, w))
    p = float(s - w) / float(max(1, t - w))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(cycles) * 2.0 * p)))

out["sched.linear"] = torch.tensor([hf_linear(s) for s in range(16)], dtype=torch.float64)
out["sched.cosine"] = torch.tensor([hf_cosine(s) for s in range(16)], dtype=torch.float64)

def save(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = t.detach().contiguous().numpy()
        dt = {np.float32: "F32", np.float64: "F64"}[a.dtype.type]
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)

save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_refs.safetensors"), out)
print(torch.__version__, len(out), "tensors")
