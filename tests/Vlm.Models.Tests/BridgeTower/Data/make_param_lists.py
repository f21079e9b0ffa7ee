#!/usr/bin/env python3
"""Generates the approved parameter lists (state-dict names and shapes) of full-size BridgeTower models.

How: the HF transformers v4.47.1 module tree of modeling_bridgetower.py is re-declared here with plain torch.nn
modules on the meta device (no memory), mirroring each HF class's attribute names and constructor arguments
(nn.MultiheadAttention for the vision blocks, so its in_proj_weight / out_proj names come from PyTorch itself), then
state_dict() is listed. transformers itself is not installed on this machine (no PyPI access), so this is an
independent derivation from the HF source, not a run of it. Non-persistent buffers (position_ids, token_type_ids)
are not in the state dict, as in v4.47.1.

Configs: bridgetower-base = the HF BridgeTowerConfig defaults (the HF docstring says the defaults give that
architecture: RoBERTa-base text tower, CLIP ViT-B/16 at 288 px, 6 cross-modal layers of width 768);
bridgetower-large-itm-mlm-itc = RoBERTa-large text tower (24 layers, 1024 wide, 16 heads, FFN 4096), CLIP ViT-L/14
at 294 px (24 layers, 1024 wide), 6 cross-modal layers of width 1024 with 16 heads, contrastive_hidden_size 512
(the published model card: 294x294 images, "almost 900M parameters"; this list has 866.6M).

Run: /usr/bin/python3 make_param_lists.py   (torch 1.13) — writes *.params.txt beside this script.
"""
import os
from collections import OrderedDict
import torch
from torch import nn

META = torch.device("meta")


def lin(i, o, bias=True):
    return nn.Linear(i, o, bias=bias, device=META)


def ln(n):
    return nn.LayerNorm(n, device=META)


def emb(n, d):
    return nn.Embedding(n, d, device=META)


class Attn(nn.Module):  # BridgeTowerAttention: self (q/k/v [+distance]) + output (dense, LayerNorm)
    def __init__(self, t):
        super().__init__()
        self.self = nn.Module()
        for n in ("query", "key", "value"):
            setattr(self.self, n, lin(t["hidden"], t["hidden"]))
        if t["pos"] != "absolute":
            self.self.distance_embedding = emb(2 * t["max_pos"] - 1, t["hidden"] // t["heads"])
        self.output = nn.Module()
        self.output.dense = lin(t["hidden"], t["hidden"])
        self.output.LayerNorm = ln(t["hidden"])


class FFN(nn.Module):
    def __init__(self, t, holder):
        super().__init__()
        holder.intermediate = nn.Module()
        holder.intermediate.dense = lin(t["hidden"], t["inter"])
        holder.output = nn.Module()
        holder.output.dense = lin(t["inter"], t["hidden"])
        holder.output.LayerNorm = ln(t["hidden"])


class TextLayer(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.attention = Attn(t)
        FFN(t, self)


class CrossLayer(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.attention = Attn(t)
        self.crossattention = Attn(t)
        FFN(t, self)


class Block(nn.Module):  # BridgeTowerResidualAttention
    def __init__(self, d):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, d // 64, device=META)
        self.ln_1 = ln(d)
        self.mlp = nn.ModuleDict(OrderedDict([("c_fc", lin(d, 4 * d)), ("c_proj", lin(4 * d, d))]))
        self.ln_2 = ln(d)


class Visual(nn.Module):
    def __init__(self, v):
        super().__init__()
        d, p = v["hidden"], v["patch"]
        self.embeddings = nn.Module()
        self.embeddings.class_embedding = nn.Parameter(torch.empty(d, device=META))
        self.embeddings.patch_embedding = nn.Conv2d(3, d, p, p, bias=False, device=META)
        self.embeddings.position_embedding = emb((v["image"] // p) ** 2 + 1, d)
        self.ln_pre = ln(d)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList([Block(d) for _ in range(v["layers"])])
        self.ln_post = ln(d)


class Model(nn.Module):  # BridgeTowerModel
    def __init__(self, c):
        super().__init__()
        t, v, h, n = c["text"], c["vision"], c["hidden"], c["layers"]
        self.cross_modal_text_transform = lin(t["hidden"], h)
        self.cross_modal_image_transform = lin(v["hidden"], h)
        self.token_type_embeddings = emb(2, h)
        self.vision_model = nn.Module()
        self.vision_model.visual = Visual(v)
        self.text_model = nn.Module()
        e = self.text_model.embeddings = nn.Module()
        e.word_embeddings = emb(t["vocab"], t["hidden"])
        e.position_embeddings = emb(t["max_pos"], t["hidden"])
        e.token_type_embeddings = emb(1, t["hidden"])
        e.LayerNorm = ln(t["hidden"])
        self.text_model.encoder = nn.Module()
        self.text_model.encoder.layer = nn.ModuleList([TextLayer(t) for _ in range(t["layers"])])
        self.text_model.pooler = nn.Module()
        self.text_model.pooler.dense = lin(t["hidden"], t["hidden"])
        self.cross_modal_image_layers = nn.ModuleList([CrossLayer(t) for _ in range(n)])
        self.cross_modal_text_layers = nn.ModuleList([CrossLayer(t) for _ in range(n)])
        for name in ("cross_modal_image_pooler", "cross_modal_text_pooler"):
            m = nn.Module()
            m.dense = lin(h, h)
            setattr(self, name, m)
        self.cross_modal_text_layernorm = ln(h)
        self.cross_modal_image_layernorm = ln(h)
        for name in ("cross_modal_text_link_tower", "cross_modal_image_link_tower"):
            towers = nn.ModuleList()
            for _ in range(n - 1):
                m = nn.Module()
                m.LayerNorm = ln(h)  # link_tower_type 'add': no scalar parameter
                towers.append(m)
            setattr(self, name, towers)


class Contrastive(nn.Module):  # BridgeTowerForContrastiveLearning
    def __init__(self, c):
        super().__init__()
        h, e = c["hidden"], c["contrastive"]
        self.bridgetower = Model(c)
        for name, i in (("itc_text_head", h), ("itc_image_head", h), ("itc_cross_modal_head", 2 * h)):
            m = nn.Module()
            m.fc = lin(i, e)
            setattr(self, name, m)
        self.logit_scale = nn.Parameter(torch.empty((), device=META))


BASE = dict(hidden=768, layers=6,
            text=dict(vocab=50265, hidden=768, layers=12, heads=12, inter=3072, max_pos=514, pos="absolute"),
            vision=dict(hidden=768, layers=12, patch=16, image=288))
LARGE = dict(hidden=1024, layers=6, contrastive=512,
             text=dict(vocab=50265, hidden=1024, layers=24, heads=16, inter=4096, max_pos=514, pos="absolute"),
             vision=dict(hidden=1024, layers=24, patch=14, image=294))


def write(path, module):
    total = 0
    with open(path, "w") as f:
        f.write("# name<TAB>shape — generated by make_param_lists.py (see its header)\n")
        for name, t in module.state_dict().items():
            f.write(f"{name}\t{','.join(str(s) for s in t.shape)}\n")
            total += t.numel()
    print(path, total)


here = os.path.dirname(os.path.abspath(__file__))
write(os.path.join(here, "bridgetower-base.params.txt"), Model(BASE))
write(os.path.join(here, "bridgetower-large-itm-mlm-itc.params.txt"), Contrastive(LARGE))
