#!/usr/bin/env python3
"""A PyTorch timing stand-in for HF transformers' BridgeTowerModel (v4.47.1) where `transformers` cannot be installed.

Why: the issue's speed target compares Vlm with `transformers` on PyTorch 1.13 on this machine kind, but this
machine has Debian's python3-torch and no `transformers` (no PyPI here). This file is an independent re-statement
of HF's BridgeTowerModel forward pass with the same PyTorch modules and ops in the same order (nn.MultiheadAttention
over (seq, batch, dim) for the CLIP vision blocks, BERT/RoBERTa eager attention for text and cross-modal layers,
the additive all-zero image mask HF adds, link towers, poolers) and the same parameter names, so an HF
state dict loads with strict=True. `--check` proves the equivalence numerically: it loads every
../shared/fixtures/bridgetower_* model folder that HF's own BridgeTowerModel produced outputs for and compares
text_features / image_features / pooler_output (atol 1e-4).

  /usr/bin/python3 benchmarks/bridgetower_torch.py --check
  OMP_NUM_THREADS=2 /usr/bin/python3 benchmarks/bridgetower_torch.py --batch 1 --reps 5   # JSON line like vlm bench
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F

# ------------------------------------------------------------------ config (HF defaults = bridgetower-base)

TEXT_DEFAULTS = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, hidden_act="gelu", max_position_embeddings=514, type_vocab_size=1,
                     layer_norm_eps=1e-5, pad_token_id=1, position_embedding_type="absolute")
VISION_DEFAULTS = dict(hidden_size=768, num_hidden_layers=12, num_channels=3, patch_size=16, image_size=288,
                       layer_norm_eps=1e-5, share_layernorm=True, remove_last_layer=False, stop_gradient=False)
TOP_DEFAULTS = dict(hidden_size=768, num_hidden_layers=6, num_attention_heads=12, layer_norm_eps=1e-5,
                    link_tower_type="add", share_cross_modal_transformer_layers=True, share_link_tower_layers=False)


class Cfg:
    def __init__(self, d):
        self.__dict__.update(d)


def make_config(raw=None):
    raw = raw or {}
    top = dict(TOP_DEFAULTS, **{k: v for k, v in raw.items() if k in TOP_DEFAULTS})
    text = dict(TEXT_DEFAULTS, **{k: v for k, v in raw.get("text_config", {}).items() if k in TEXT_DEFAULTS})
    vis = dict(VISION_DEFAULTS, **{k: v for k, v in raw.get("vision_config", {}).items() if k in VISION_DEFAULTS})
    return Cfg(top), Cfg(text), Cfg(vis)


def act(name):
    return {"gelu": nn.GELU(), "relu": nn.ReLU(), "gelu_new": nn.GELU(approximate="tanh")}[name]


# ------------------------------------------------------------------ vision tower (CLIP ViT, sequence-first)

class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualBlock(nn.Module):
    def __init__(self, v):
        super().__init__()
        d = v.hidden_size
        self.attn = nn.MultiheadAttention(d, d // 64)
        self.ln_1 = nn.LayerNorm(d, eps=v.layer_norm_eps)
        self.mlp = nn.ModuleDict({"c_fc": nn.Linear(d, 4 * d), "gelu": QuickGELU(), "c_proj": nn.Linear(4 * d, d)})
        self.ln_2 = nn.LayerNorm(d, eps=v.layer_norm_eps)

    def forward(self, x):  # (N, B, D)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=None, key_padding_mask=None)[0]
        h = self.ln_2(x)
        for layer in self.mlp.values():
            h = layer(h)
        return x + h


class VisionEmbeddings(nn.Module):
    def __init__(self, v):
        super().__init__()
        d = v.hidden_size
        self.class_embedding = nn.Parameter(torch.randn(d))
        self.patch_embedding = nn.Conv2d(v.num_channels, d, v.patch_size, stride=v.patch_size, bias=False)
        n = (v.image_size // v.patch_size) ** 2 + 1
        self.position_embedding = nn.Embedding(n, d)
        self.register_buffer("position_ids", torch.arange(n).expand((1, -1)), persistent=False)

    def forward(self, pixels):
        b = pixels.shape[0]
        p = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(b, 1, -1), p], dim=1)
        return x + self.position_embedding(self.position_ids)


class Transformer(nn.Module):
    def __init__(self, v):
        super().__init__()
        n = v.num_hidden_layers - (1 if v.remove_last_layer else 0)
        self.resblocks = nn.ModuleList([ResidualBlock(v) for _ in range(n)])


class Visual(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.embeddings = VisionEmbeddings(v)
        self.ln_pre = nn.LayerNorm(v.hidden_size, eps=v.layer_norm_eps)
        self.transformer = Transformer(v)
        self.ln_post = nn.LayerNorm(v.hidden_size, eps=v.layer_norm_eps)

    def forward_pre(self, pixels):
        return self.ln_pre(self.embeddings(pixels)).permute(1, 0, 2)

    def forward_post(self, x):
        return self.ln_post(x.permute(1, 0, 2))


class VisionModel(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.visual = Visual(v)


# ------------------------------------------------------------------ text tower (RoBERTa) and cross-modal layers

class SelfAttention(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.h = t.num_attention_heads
        self.dh = t.hidden_size // t.num_attention_heads
        self.query = nn.Linear(t.hidden_size, t.hidden_size)
        self.key = nn.Linear(t.hidden_size, t.hidden_size)
        self.value = nn.Linear(t.hidden_size, t.hidden_size)

    def split(self, x):
        return x.view(x.size()[:-1] + (self.h, self.dh)).permute(0, 2, 1, 3)

    def forward(self, x, mask, kv=None, kv_mask=None):
        q = self.query(x)
        src, m = (x, mask) if kv is None else (kv, kv_mask)
        k, v = self.split(self.key(src)), self.split(self.value(src))
        s = torch.matmul(self.split(q), k.transpose(-1, -2)) / math.sqrt(self.dh)
        if m is not None:
            s = s + m
        p = F.softmax(s, dim=-1)
        c = torch.matmul(p, v).permute(0, 2, 1, 3).contiguous()
        return c.view(c.size()[:-2] + (self.h * self.dh,)), p


class DenseLn(nn.Module):
    def __init__(self, din, d, eps):
        super().__init__()
        self.dense = nn.Linear(din, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.self = SelfAttention(t)
        self.output = DenseLn(t.hidden_size, t.hidden_size, t.layer_norm_eps)

    def forward(self, x, mask, kv=None, kv_mask=None):
        c, p = self.self(x, mask, kv, kv_mask)
        return self.output(c, x), p


class Intermediate(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.dense = nn.Linear(t.hidden_size, t.intermediate_size)
        self.fn = act(t.hidden_act)

    def forward(self, x):
        return self.fn(self.dense(x))


class TextLayer(nn.Module):
    def __init__(self, t, cross=False):
        super().__init__()
        self.attention = Attention(t)
        if cross:
            self.crossattention = Attention(t)
        self.intermediate = Intermediate(t)
        self.output = DenseLn(t.intermediate_size, t.hidden_size, t.layer_norm_eps)

    def forward(self, x, mask, enc=None, enc_mask=None):
        a, p = self.attention(x, mask)
        if enc is not None:
            a, _ = self.crossattention(a, mask, enc, enc_mask)
        return self.output(self.intermediate(a), a), p


class TextEmbeddings(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.pad = t.pad_token_id
        self.word_embeddings = nn.Embedding(t.vocab_size, t.hidden_size, padding_idx=t.pad_token_id)
        self.position_embeddings = nn.Embedding(t.max_position_embeddings, t.hidden_size, padding_idx=t.pad_token_id)
        self.token_type_embeddings = nn.Embedding(t.type_vocab_size, t.hidden_size)
        self.LayerNorm = nn.LayerNorm(t.hidden_size, eps=t.layer_norm_eps)

    def forward(self, ids):
        m = ids.ne(self.pad).int()
        pos = (torch.cumsum(m, dim=1).type_as(m) * m).long() + self.pad
        x = self.word_embeddings(ids) + self.token_type_embeddings(torch.zeros_like(ids))
        return self.LayerNorm(x + self.position_embeddings(pos))


class Encoder(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.layer = nn.ModuleList([TextLayer(t) for _ in range(t.num_hidden_layers)])


class Pooler(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.dense = nn.Linear(d, d)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


class TextModel(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.embeddings = TextEmbeddings(t)
        self.encoder = Encoder(t)
        self.pooler = Pooler(t.hidden_size)


class LinkTower(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.kind = c.link_tower_type
        if self.kind == "scaled_add":
            self.scaled_factor = nn.Parameter(torch.tensor(1.0))
        elif self.kind == "interpolate":
            self.beta = nn.Parameter(torch.tensor(0.5))
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x, cross):
        if self.kind == "add":
            return self.LayerNorm(x + cross)
        if self.kind == "scaled_add":
            return self.LayerNorm(x * self.scaled_factor + cross)
        return self.LayerNorm(x * (1 - self.beta) + cross * self.beta)


def extended(mask):
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


class BridgeTower(nn.Module):
    def __init__(self, raw=None):
        super().__init__()
        c, t, v = make_config(raw)
        assert c.share_cross_modal_transformer_layers and not c.share_link_tower_layers, "HF-working layouts only"
        self.c = c
        h, n = c.hidden_size, c.num_hidden_layers
        self.vision_model = VisionModel(v)
        self.text_model = TextModel(t)
        self.cross_modal_text_transform = nn.Linear(t.hidden_size, h)
        self.cross_modal_image_transform = nn.Linear(v.hidden_size, h)
        self.token_type_embeddings = nn.Embedding(2, h)
        self.cross_modal_image_layers = nn.ModuleList([TextLayer(t, cross=True) for _ in range(n)])
        self.cross_modal_text_layers = nn.ModuleList([TextLayer(t, cross=True) for _ in range(n)])
        self.cross_modal_image_pooler = Pooler(h)
        self.cross_modal_text_pooler = Pooler(h)
        self.cross_modal_text_layernorm = nn.LayerNorm(h, eps=c.layer_norm_eps)
        self.cross_modal_image_layernorm = nn.LayerNorm(h, eps=c.layer_norm_eps)
        self.cross_modal_text_link_tower = nn.ModuleList([LinkTower(c) for _ in range(n - 1)])
        self.cross_modal_image_link_tower = nn.ModuleList([LinkTower(c) for _ in range(n - 1)])

    def forward(self, input_ids, attention_mask, pixel_values):
        n_text = len(self.text_model.encoder.layer)
        split = n_text - self.c.num_hidden_layers + 1
        text = self.text_model.embeddings(input_ids)
        tmask = extended(attention_mask)
        for layer in self.text_model.encoder.layer[:split]:
            text = layer(text, tmask)[0]
        visual = self.vision_model.visual
        image = visual.forward_pre(pixel_values)
        for block in visual.transformer.resblocks[:split]:
            image = block(image)
        tt = self.token_type_embeddings(torch.zeros(1, dtype=torch.long))
        it = self.token_type_embeddings(torch.ones(1, dtype=torch.long))
        cross_text = self.cross_modal_text_layernorm(self.cross_modal_text_transform(text) + tt)
        cross_image = self.cross_modal_image_layernorm(self.cross_modal_image_transform(visual.forward_post(image)) + it)
        imask = extended(torch.ones(cross_image.shape[:2], dtype=torch.long))  # HF adds this all-zero mask
        ft = self.cross_modal_text_layers[0](cross_text, tmask, cross_image, imask)[0]
        fi = self.cross_modal_image_layers[0](cross_image, imask, cross_text, tmask)[0]
        for j, i in enumerate(range(split, n_text)):
            text = self.text_model.encoder.layer[i](text, tmask)[0]
            image = visual.transformer.resblocks[i](image)
            img = self.cross_modal_image_transform(visual.forward_post(image)) + it
            txt = self.cross_modal_text_transform(text) + tt
            bt = self.cross_modal_text_link_tower[j](txt, ft)
            bi = self.cross_modal_image_link_tower[j](img, fi)
            ft = self.cross_modal_text_layers[j + 1](bt, tmask, bi, imask)[0]
            fi = self.cross_modal_image_layers[j + 1](bi, imask, bt, tmask)[0]
        pooled = torch.cat([self.cross_modal_text_pooler(ft), self.cross_modal_image_pooler(fi)], dim=-1)
        return ft, fi, pooled


# ------------------------------------------------------------------ fixture check and timing

def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    dt = {"F32": torch.float32, "I64": torch.int64, "I32": torch.int32, "F16": torch.float16, "BF16": torch.bfloat16}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        buf = bytearray(raw[8 + n + a:8 + n + b])
        out[k] = torch.frombuffer(buf, dtype=dt[v["dtype"]]).reshape(v["shape"]).clone() if b > a else \
            torch.zeros(v["shape"], dtype=dt[v["dtype"]])
    return out


def check(fixtures):
    names = ["bridgetower_model", "bridgetower_variant_link_scaled_add", "bridgetower_variant_link_interpolate",
             "bridgetower_variant_relative_key"]
    ok = True
    for name in names:
        d = os.path.join(fixtures, name)
        raw = json.load(open(os.path.join(d, "config.json")))
        if raw.get("text_config", {}).get("position_embedding_type", "absolute") != "absolute":
            print(f"{name}: skipped (relative positions are not part of the base timing)")
            continue
        model = BridgeTower(raw).eval()
        weights = read_safetensors(os.path.join(d, "model.safetensors"))
        weights = {k: v for k, v in weights.items() if not k.startswith(("itm_score", "mlm_score", "itc_"))}
        weights = {k[len("bridgetower."):] if k.startswith("bridgetower.") else k: v for k, v in weights.items()}
        model.load_state_dict(weights, strict=True)
        inp = read_safetensors(os.path.join(d, "inputs.safetensors"))
        ref = read_safetensors(os.path.join(d, "outputs.safetensors"))
        with torch.no_grad():
            ft, fi, pooled = model(inp["input_ids"], inp["attention_mask"], inp["pixel_values"])
        for key, got in (("text_features", ft), ("image_features", fi), ("pooler_output", pooled)):
            err = (got - ref[key]).abs().max().item()
            ok &= err <= 1e-4
            print(f"{name}: {key} max |diff| = {err:.2e}")
    print("fixture check:", "PASS" if ok else "FAIL")
    return ok


def bench(batch, reps, threads):
    torch.manual_seed(0)
    model = BridgeTower().eval()
    ids = torch.randint(0, 1000, (batch, 50))
    mask = torch.ones(batch, 50, dtype=torch.long)
    pixels = torch.randn(batch, 3, 288, 288)
    times = []
    with torch.no_grad():
        for i in range(reps + 1):
            t0 = time.perf_counter()
            model(ids, mask, pixels)
            if i > 0:
                times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(json.dumps({"name": f"bridgetower_base_forward_b{batch}", "impl": "torch-hf-mirror", "threads": threads,
                      "ms": round(times[len(times) // 2], 1), "min_ms": round(times[0], 1),
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                      "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the HF fixtures and exit")
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.check:
        sys.exit(0 if check(a.fixtures) else 1)
    bench(a.batch, a.reps, a.threads)


if __name__ == "__main__":
    main()
